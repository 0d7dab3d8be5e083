//! A new leader and the agents of the old one, against `MasterCore` directly (time passed in):
//! an admitted agent that never re-registers with the new leader is not offered, is marked
//! unreachable in the registry once `agent_reregister_wait` has passed, and removed after
//! `agent_removal_timeout`; one that re-registers in time stays active.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use super::*;
use crate::registry::AgentState;
use wasmos_api::Resources;

const WAIT: Duration = Duration::from_secs(5);
const REMOVAL_MS: Millis = 10_000;

fn config() -> MasterConfig {
    MasterConfig {
        // Long, so that only the re-registration wait and the removal timeout act here.
        agent_unreachable_timeout: Duration::from_secs(600),
        agent_removal_timeout: Duration::from_millis(REMOVAL_MS),
        ..MasterConfig::default()
    }
}

/// Registers an agent (a new one when `id` is empty) with 4 CPUs and 4 GiB.
fn register(
    core: &mut MasterCore,
    id: &str,
    hostname: &str,
    now: Millis,
) -> (
    AgentId,
    mpsc::Receiver<Result<pb::MasterMessage, tonic::Status>>,
) {
    let (tx, rx) = mpsc::channel(1024);
    let conn = core.new_conn();
    let reg = pb::agent_message::Register {
        info: Some(pb::AgentInfo {
            id: id.into(),
            hostname: hostname.into(),
            address: String::new(),
            resources: Some(pb::Resources {
                millicpus: 4000,
                mem_mb: 4096,
                disk_mb: 0,
            }),
            attributes: vec![],
        }),
        tasks: vec![],
        unhealthy_reason: String::new(),
        isolation: vec![],
        isolation_warning: String::new(),
    };
    let agent = core.agent_register(conn, tx, reg, now).unwrap();
    (agent, rx)
}

fn state_of(core: &MasterCore, agent: &AgentId) -> Option<AgentState> {
    core.registry.agents.get(agent).map(|a| a.state)
}

#[test]
fn an_agent_that_never_reregisters_with_a_new_leader_is_marked_unreachable_then_removed() {
    let notify = Arc::new(Notify::new());
    let mut old = MasterCore::new(config(), "old", notify.clone());
    let (late, _late_rx) = register(&mut old, "", "late", 0);
    let (back, _back_rx) = register(&mut old, "", "back", 0);

    // The new leader takes over the replicated registry at 1000.
    let taken_over = 1_000;
    let deadline = taken_over + WAIT.as_millis() as Millis;
    let mut core = MasterCore::from_registry(
        config(),
        "new",
        notify,
        old.registry.clone(),
        taken_over,
        WAIT,
    );
    let (again, _again_rx) = register(&mut core, back.as_str(), "back", 2_000);
    assert_eq!(again, back);

    core.tick(deadline - 1);
    assert_eq!(
        state_of(&core, &late),
        Some(AgentState::Active),
        "still awaited"
    );
    assert_eq!(
        core.allocator.agent_available(&late),
        None,
        "an agent that has not re-registered is not offered"
    );
    assert_eq!(
        core.allocator.agent_available(&back),
        Some(Resources::new(4.0, 4096, 0))
    );

    core.tick(deadline);
    assert_eq!(
        state_of(&core, &late),
        Some(AgentState::Unreachable { since_ms: deadline }),
        "marked unreachable at the end of the wait"
    );
    assert_eq!(state_of(&core, &back), Some(AgentState::Active));

    core.tick(deadline + REMOVAL_MS);
    assert!(
        state_of(&core, &late).is_some(),
        "not before the removal timeout"
    );
    core.tick(deadline + REMOVAL_MS + 1);
    assert_eq!(
        state_of(&core, &late),
        None,
        "removed after the removal timeout"
    );
    assert_eq!(state_of(&core, &back), Some(AgentState::Active));
    core.check_invariants().unwrap();
}
