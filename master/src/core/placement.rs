//! Placement feedback: why a framework waits for resources, as one sentence for the people
//! watching it (`wasmos status`, `wasmos submit`'s progress line), and what it reported of its
//! progress (`driver.report-progress`).
//!
//! # Policy
//!
//! A framework is said to wait when, for more than [`WAITING_AFTER_MS`]:
//! * it wants offers (active, not suppressed) and no agent can take tasks (none registered,
//!   or none reachable and healthy): "waiting: no agent registered";
//! * or its scheduler reported the resources of a task it has no fitting offer for
//!   (`waiting-for`), and either no agent's *total* holds them ("waiting: tasks need 8 CPUs,
//!   the largest agent has 2"), or some agent's total does but none has them free ("waiting:
//!   tasks need 8 CPUs, no agent has them free (most free: 1.5)").
//!
//! A framework whose task fits some agent's free resources is not said to wait: its offer is
//! on the way (or filtered by its own declines), and a sentence would only confuse.
//!
//! # Cost
//!
//! Nothing is computed per offer: [`waiting_sentence`] runs when the state is read
//! (`GetState`), once per framework that reported something or has no agent to go to, over
//! the usable agents (`O(frameworks × agents)` for those frameworks only). What a scheduler
//! reported is kept in the leader's memory ([`FrameworkProgress`]), not replicated: a new
//! leader restarts hosted schedulers, whose `init` reports again.

use wasmos_api::resources::cpus_text;
use wasmos_api::{FrameworkId, Resources};

use super::MasterCore;
use crate::allocator::Millis;
use crate::registry::AgentState;

/// How long a framework must have waited before it is said to wait: 3 s. Shorter, and every
/// job would flash "waiting" while its first offers are on their way.
pub const WAITING_AFTER_MS: Millis = 3_000;

/// What a framework's scheduler last reported of its progress.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrameworkProgress {
    /// Tasks it will run in all, when it said so.
    pub tasks_total: Option<u64>,
    /// The resources of a task it has no fitting offer for, and since when it has reported
    /// those (a report of the same resources keeps the time).
    pub waiting_for: Option<(Resources, Millis)>,
}

/// An agent as placement feedback sees it: its total and what is not allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentRoom {
    /// Its total resources.
    pub total: Resources,
    /// What no framework holds (neither used nor offered).
    pub free: Resources,
}

/// One resource dimension, with how to print an amount of it.
struct Dimension {
    get: fn(&Resources) -> u64,
    /// `8 CPUs`, `512 MiB of memory`.
    show: fn(u64) -> String,
    /// `8`, `512 MiB`: after "the largest agent has".
    short: fn(u64) -> String,
}

const DIMENSIONS: [Dimension; 3] = [
    Dimension {
        get: |r| r.millicpus,
        show: |m| {
            let n = cpus_text(m);
            if m == 1000 {
                format!("{n} CPU")
            } else {
                format!("{n} CPUs")
            }
        },
        short: cpus_text,
    },
    Dimension {
        get: |r| r.mem_mb,
        show: |m| format!("{m} MiB of memory"),
        short: |m| format!("{m} MiB"),
    },
    Dimension {
        get: |r| r.disk_mb,
        show: |m| format!("{m} MiB of disk"),
        short: |m| format!("{m} MiB"),
    },
];

/// Why a framework waits, as a sentence starting `waiting: `; `None` when it need not wait.
///
/// `agents` are the agents that can take tasks (reachable, healthy); `registered` is how many
/// agents are registered in all. `wants_offers` is whether the framework wants offers;
/// `waiting_for` the resources of a task it reported it has no fitting offer for.
pub fn waiting_sentence(
    wants_offers: bool,
    waiting_for: Option<&Resources>,
    agents: &[AgentRoom],
    registered: usize,
) -> Option<String> {
    if agents.is_empty() {
        if !wants_offers && waiting_for.is_none() {
            return None;
        }
        return Some(if registered == 0 {
            "waiting: no agent registered".into()
        } else {
            format!(
                "waiting: no agent can take tasks ({registered} registered, none reachable and \
                 healthy)"
            )
        });
    }
    let need = waiting_for?;
    if !agents.iter().any(|a| need.fits_in(&a.total)) {
        // A dimension no agent has enough of names the problem best.
        for d in &DIMENSIONS {
            let largest = agents.iter().map(|a| (d.get)(&a.total)).max().unwrap_or(0);
            if (d.get)(need) > largest {
                return Some(format!(
                    "waiting: tasks need {}, the largest agent has {}",
                    (d.show)((d.get)(need)),
                    (d.short)(largest)
                ));
            }
        }
        // Every dimension fits some agent, but no one agent has them all.
        return Some(format!(
            "waiting: tasks need {}, which no single agent has",
            show_all(need)
        ));
    }
    if agents.iter().any(|a| need.fits_in(&a.free)) {
        return None;
    }
    for d in &DIMENSIONS {
        let most = agents.iter().map(|a| (d.get)(&a.free)).max().unwrap_or(0);
        if (d.get)(need) > most {
            return Some(format!(
                "waiting: tasks need {}, no agent has them free (most free: {})",
                (d.show)((d.get)(need)),
                (d.short)(most)
            ));
        }
    }
    Some(format!(
        "waiting: tasks need {}, no agent has them free at once",
        show_all(need)
    ))
}

/// `2 CPUs, 512 MiB of memory` (dimensions that are zero left out).
fn show_all(r: &Resources) -> String {
    let parts: Vec<String> = DIMENSIONS
        .iter()
        .filter(|d| (d.get)(r) > 0)
        .map(|d| (d.show)((d.get)(r)))
        .collect();
    parts.join(", ")
}

impl MasterCore {
    /// Records what `framework`'s scheduler reported of its progress at `now` (the latest
    /// report wins; an unknown framework's is ignored).
    pub fn report_progress(
        &mut self,
        framework: &FrameworkId,
        tasks_total: Option<u64>,
        waiting_for: Option<Resources>,
        now: Millis,
    ) {
        if !self.registry.frameworks.contains_key(framework) {
            return;
        }
        let entry = self.progress.entry(framework.clone()).or_default();
        entry.tasks_total = tasks_total;
        entry.waiting_for = match (waiting_for, entry.waiting_for) {
            (Some(r), Some((old, since))) if r == old => Some((r, since)),
            (Some(r), _) => Some((r, now)),
            (None, _) => None,
        };
    }

    /// What `framework` reported of its progress, if anything.
    pub fn progress_of(&self, framework: &FrameworkId) -> Option<&FrameworkProgress> {
        self.progress.get(framework)
    }

    /// The agents that can take tasks now: reachable and healthy, with their totals and
    /// free resources.
    fn usable_agents(&self) -> Vec<AgentRoom> {
        self.registry
            .agents
            .values()
            .filter(|a| matches!(a.state, AgentState::Active))
            .filter(|a| {
                self.agents.contains_key(&a.id) && self.agent_unhealthy_reason(&a.id).is_none()
            })
            .map(|a| AgentRoom {
                total: a.resources,
                free: self.allocator.agent_available(&a.id).unwrap_or_default(),
            })
            .collect()
    }

    /// Why each framework waits at `now`, with since when: computed for the frameworks that
    /// reported what they wait for, and for all of them when no agent can take tasks.
    pub(super) fn waiting_frameworks(
        &self,
        now: Millis,
    ) -> std::collections::HashMap<FrameworkId, (String, Millis)> {
        let mut out = std::collections::HashMap::new();
        let agents = self.usable_agents();
        let registered = self.registry.agents.len();
        // Since when no agent can take tasks: the last one was lost (as far as the registry
        // says; an unhealthy agent's time is not known, so it does not push this back).
        let no_agent_since = self
            .registry
            .agents
            .values()
            .filter_map(|a| match a.state {
                AgentState::Unreachable { since_ms } => Some(since_ms),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        for f in self.registry.frameworks.values() {
            let reported = self.progress.get(&f.id).and_then(|p| p.waiting_for);
            if !agents.is_empty() && reported.is_none() {
                continue;
            }
            let registered_ms = self.tasks.history().registered_ms(&f.id).unwrap_or(now);
            let since = if agents.is_empty() {
                registered_ms.max(no_agent_since)
            } else {
                reported.map_or(now, |(_, since)| since)
            };
            if now.saturating_sub(since) <= WAITING_AFTER_MS {
                continue;
            }
            let wants = self.allocator.wants_offers(&f.id);
            if let Some(s) =
                waiting_sentence(wants, reported.as_ref().map(|r| &r.0), &agents, registered)
            {
                out.insert(f.id.clone(), (s, since));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use tokio::sync::{Notify, mpsc};
    use wasmos_api::proto as pb;

    use super::*;
    use crate::MasterConfig;

    type SchedRx = mpsc::Receiver<Result<pb::SchedulerEvent, tonic::Status>>;

    /// A core with one framework subscribed at time 0 and no agent: the core, the framework,
    /// its connection and the receiver of its events (kept open).
    fn core_with_framework() -> (MasterCore, FrameworkId, super::super::ConnId, SchedRx) {
        let mut core = MasterCore::new(MasterConfig::default(), "t", Arc::new(Notify::new()));
        let (tx, rx) = mpsc::channel(16);
        let conn = core.new_conn();
        let info = pb::FrameworkInfo {
            name: "f".into(),
            role: "r".into(),
            ..Default::default()
        };
        let fw = core.subscribe(conn, tx, Some(info), 0).unwrap();
        (core, fw, conn, rx)
    }

    fn waiting_at(core: &MasterCore, now: Millis) -> String {
        core.cluster_state_at(&HashSet::new(), now).frameworks[0]
            .waiting
            .clone()
    }

    #[test]
    fn waiting_is_said_only_after_the_threshold() {
        let (mut core, fw, conn, _rx) = core_with_framework();
        assert_eq!(waiting_at(&core, WAITING_AFTER_MS), "", "at the threshold");
        assert_eq!(
            waiting_at(&core, WAITING_AFTER_MS + 1),
            "waiting: no agent registered",
            "one past it"
        );
        let state = core.cluster_state_at(&HashSet::new(), WAITING_AFTER_MS + 1);
        assert_eq!(state.frameworks[0].waiting_since_unix_ms, 0);
        // What it reports is kept, the time of a report of the same resources too.
        core.report_progress(&fw, Some(7), Some(cpus(8000)), 100);
        core.report_progress(&fw, Some(7), Some(cpus(8000)), 200);
        assert_eq!(
            core.progress_of(&fw).unwrap().waiting_for,
            Some((cpus(8000), 100))
        );
        let state = core.cluster_state_at(&HashSet::new(), WAITING_AFTER_MS + 1);
        assert_eq!(state.frameworks[0].tasks_total, Some(7));
        // Suppressed, with nothing reported waiting: nothing is said.
        core.report_progress(&fw, Some(7), None, 300);
        core.scheduler_call(
            &fw,
            conn,
            Some(pb::scheduler_call::Call::Suppress(Default::default())),
            300,
        );
        assert_eq!(waiting_at(&core, 10 * WAITING_AFTER_MS), "");
    }

    fn cpus(millicpus: u64) -> Resources {
        Resources {
            millicpus,
            mem_mb: 32,
            disk_mb: 0,
        }
    }

    fn agent(total: u64, free: u64) -> AgentRoom {
        AgentRoom {
            total: cpus(total),
            free: cpus(free),
        }
    }

    #[test]
    fn no_agent_is_said_when_the_framework_wants_offers() {
        assert_eq!(
            waiting_sentence(true, None, &[], 0).as_deref(),
            Some("waiting: no agent registered")
        );
        assert!(
            waiting_sentence(true, None, &[], 2)
                .unwrap()
                .contains("2 registered, none reachable")
        );
        assert_eq!(waiting_sentence(false, None, &[], 0), None, "suppressed");
    }

    #[test]
    fn a_task_as_large_as_the_largest_agent_fits_and_one_millicpu_more_does_not() {
        let agents = [agent(2000, 2000), agent(1000, 1000)];
        assert_eq!(waiting_sentence(true, Some(&cpus(2000)), &agents, 2), None);
        assert_eq!(
            waiting_sentence(true, Some(&cpus(2001)), &agents, 2).as_deref(),
            Some("waiting: tasks need 2.001 CPUs, the largest agent has 2")
        );
        assert_eq!(
            waiting_sentence(true, Some(&cpus(8000)), &agents, 2).as_deref(),
            Some("waiting: tasks need 8 CPUs, the largest agent has 2")
        );
    }

    #[test]
    fn a_task_that_fits_a_total_but_no_free_room_says_the_most_free() {
        let agents = [agent(2000, 1500), agent(1000, 0)];
        assert_eq!(
            waiting_sentence(true, Some(&cpus(1500)), &agents, 2),
            None,
            "at the bound it fits"
        );
        assert_eq!(
            waiting_sentence(true, Some(&cpus(1501)), &agents, 2).as_deref(),
            Some("waiting: tasks need 1.501 CPUs, no agent has them free (most free: 1.5)")
        );
    }

    #[test]
    fn memory_is_named_in_mib() {
        let agents = [AgentRoom {
            total: cpus(4000),
            free: cpus(4000),
        }];
        let need = Resources {
            millicpus: 100,
            mem_mb: 33,
            disk_mb: 0,
        };
        assert_eq!(
            waiting_sentence(true, Some(&need), &agents, 1).as_deref(),
            Some("waiting: tasks need 33 MiB of memory, the largest agent has 32 MiB")
        );
    }

    #[test]
    fn dimensions_split_over_agents_fit_no_single_agent() {
        let a = AgentRoom {
            total: Resources {
                millicpus: 4000,
                mem_mb: 10,
                disk_mb: 0,
            },
            free: Resources::ZERO,
        };
        let b = AgentRoom {
            total: Resources {
                millicpus: 1000,
                mem_mb: 1000,
                disk_mb: 0,
            },
            free: Resources::ZERO,
        };
        let need = Resources {
            millicpus: 2000,
            mem_mb: 100,
            disk_mb: 0,
        };
        assert_eq!(
            waiting_sentence(true, Some(&need), &[a, b], 2).as_deref(),
            Some("waiting: tasks need 2 CPUs, 100 MiB of memory, which no single agent has")
        );
    }
}
