//! [`MasterCore::check_invariants`], the agreement between the core's books that the property
//! tests (`proptests`) and the fuzz harness (`fuzz-harness/`) check after every step.

use wasmos_api::Resources;

use super::MasterCore;
use crate::registry::FrameworkState;

impl MasterCore {
    /// The books agree with each other: what the allocator counts for each framework is its
    /// outstanding offers plus its live tasks on agents the allocator knows; offers point at
    /// connected frameworks and agents; connection maps match the registry.
    ///
    /// Costs a pass over every framework, offer and task: for tests, not the serving path.
    pub fn check_invariants(&self) -> Result<(), String> {
        for fw in self.registry.frameworks.keys() {
            let mut expect = Resources::ZERO;
            for o in self.offers.of_framework(fw) {
                expect = expect
                    .checked_add(&o.resources)
                    .map_err(|e| e.to_string())?;
                if !self.agents.contains_key(&o.agent) {
                    return Err(format!(
                        "offer {} is of disconnected agent {}",
                        o.id, o.agent
                    ));
                }
                if !self.schedulers.contains_key(fw) {
                    return Err(format!(
                        "offer {} is held by disconnected framework {fw}",
                        o.id
                    ));
                }
            }
            for t in self.tasks.of_framework(fw) {
                if !t.state.is_terminal() && self.allocator.agent_available(&t.agent).is_some() {
                    expect = expect
                        .checked_add(&t.resources)
                        .map_err(|e| e.to_string())?;
                }
            }
            let got = self.allocator.framework_allocation(fw);
            if got != Some(expect) {
                return Err(format!(
                    "framework {fw}: allocator counts {got:?}, books say {expect}"
                ));
            }
            let connected = matches!(
                self.registry.frameworks[fw].state,
                FrameworkState::Connected
            );
            if connected != self.schedulers.contains_key(fw) {
                return Err(format!("framework {fw}: registry and connections disagree"));
            }
        }
        for fw in self.schedulers.keys() {
            if !self.registry.frameworks.contains_key(fw) {
                return Err(format!("connected framework {fw} is not registered"));
            }
        }
        for t in self.tasks.all() {
            if !self.registry.frameworks.contains_key(&t.framework) {
                return Err(format!(
                    "task {} of removed framework {}",
                    t.id, t.framework
                ));
            }
        }
        for agent in self.agents.keys() {
            if self.allocator.agent_available(agent).is_none() {
                return Err(format!("connected agent {agent} is not in the allocator"));
            }
        }
        Ok(())
    }
}
