//! A scheduler's `Accept` call: offers turned into staged tasks on one agent.
//!
//! The call is handled in two steps. [`MasterCore::check_accept`] takes `&self`, so it cannot
//! change anything: it reads the whole call against the books and returns an [`AcceptPlan`],
//! either the launch to make or the refusal with every problem found (all of them, not the
//! first; its message names the first few and counts the rest, so it stays within
//! [`limits::MAX_REFUSAL_MESSAGE_BYTES`] however many tasks the call held). A call with more tasks or
//! offer ids than [`wasmos_api::limits`] allows is refused whole before any task is read.
//! Only then does [`MasterCore::launch`] or [`MasterCore::refuse_launch`] apply it.
//! A refused accept still uses up the offers of this framework that it named: their
//! resources go back to the pool, unfiltered, and each task named gets an `ERROR` update.
//! Declines and the other calls live in `schedulers`.

use std::collections::{BTreeSet, HashSet};

use tracing::{debug, debug_span, warn};
use wasmos_api::convert::{self, ConvertError};
use wasmos_api::limits;
use wasmos_api::proto as pb;
use wasmos_api::{
    AgentId, FrameworkId, OfferId, Resources, TaskId, TaskInfo, TaskKind, TaskState, TaskStatus,
};

use super::outbound::reason;
use super::{MasterCore, ToAgent};
use crate::allocator::Millis;
use crate::offers::OfferRecord;
use crate::tasks::TaskRecord;

/// What an `Accept` call comes to once every part of it has been checked.
enum AcceptPlan {
    /// Every offer and task checked out: take the offers, stage the tasks.
    Launch(Launch),
    /// At least one problem: nothing launches.
    Refuse(Refusal),
    /// No problem and no offer. An accept names at least one offer or is refused, and every
    /// offer it names is taken or is a problem, so no call comes to this; it is kept as a case
    /// (nothing done) rather than assumed away.
    Empty,
}

/// A checked launch: everything in it fits.
struct Launch {
    /// The one agent all the offers are of.
    agent: AgentId,
    /// The offers to take (all this framework's, all of `agent`).
    offers: Vec<OfferId>,
    /// What the offers hold beyond what the tasks need; it returns to the pool, refused to
    /// this framework for `refuse_ms`.
    remainder: Resources,
    /// The call's filter (0: none); when no task is launched, at least the decline floor
    /// (`MIN_DECLINE_REFUSE_SECONDS`), as for a decline.
    refuse_ms: Millis,
    /// The tasks to stage, in the order given. None: the accept is a decline.
    tasks: Vec<TaskInfo>,
}

/// A refused accept, with what it still changes.
struct Refusal {
    /// `launch refused: ` and the first problems found, `; `-separated, then a count of the
    /// rest: at most [`limits::MAX_REFUSAL_MESSAGE_BYTES`] bytes.
    why: String,
    /// The offers of this framework the call named; they are used up, their resources
    /// returned without a filter.
    offers: Vec<OfferId>,
    /// The agent of the first of `offers`, reported in the tasks' `ERROR` updates.
    agent: Option<AgentId>,
    /// Every task id the call named that could be read; each gets an `ERROR` update. When
    /// there is none, the scheduler gets an `Error` event instead.
    task_ids: BTreeSet<TaskId>,
}

impl MasterCore {
    /// Handles an `Accept` call: checks it whole, then applies the launch or the refusal.
    pub(super) fn accept(
        &mut self,
        fw: &FrameworkId,
        accept: pb::scheduler_call::Accept,
        now: Millis,
    ) {
        crate::counters::Counters::add(
            &self.counters.offers_accepted,
            accept.offer_ids.len() as u64,
        );
        match self.check_accept(fw, accept) {
            AcceptPlan::Launch(launch) => self.launch(fw, launch, now),
            AcceptPlan::Refuse(refusal) => self.refuse_launch(fw, refusal, now),
            AcceptPlan::Empty => {}
        }
    }

    /// Refuses an `Accept` call for a reason decided outside the core (the authorization
    /// layer refusing a hosted scheduler's native tasks): like any refused accept, the offers
    /// of this framework it names are used up (their resources returned, unfiltered) and each
    /// task it names gets an `ERROR` update whose message is `launch refused: ` and `why`.
    /// Returns false, doing nothing, when `conn` is not the framework's scheduler connection
    /// (as [`MasterCore::scheduler_call`]).
    pub fn refuse_accept(
        &mut self,
        fw: &FrameworkId,
        conn: super::ConnId,
        accept: pb::scheduler_call::Accept,
        why: String,
        now: Millis,
    ) -> bool {
        if self.schedulers.get(fw).map(|c| c.conn) != Some(conn) {
            return false;
        }
        // It answered its offers, as with any accept.
        self.end_idle(fw, true);
        if limits::check_accept_size(accept.offer_ids.len(), accept.launches.len()).is_err() {
            // Refused whole by the size check, with its own message.
            self.accept(fw, accept, now);
            return true;
        }
        let offers = self.own_offers(fw, &accept.offer_ids);
        let agent = offers
            .first()
            .and_then(|o| self.offers.get(o))
            .map(|o| o.agent.clone());
        let task_ids = accept
            .launches
            .iter()
            .filter_map(|t| TaskId::new(t.task_id.clone()).ok())
            .collect();
        let refusal = Refusal {
            why: limits::refusal_message(&[why]),
            offers,
            agent,
            task_ids,
        };
        self.refuse_launch(fw, refusal, now);
        true
    }

    /// Reads an `Accept` call against the books without changing them. The problems come in
    /// this order: the offers', whether they are of one agent, each task's, then whether the
    /// tasks fit in the offers.
    fn check_accept(&self, fw: &FrameworkId, accept: pb::scheduler_call::Accept) -> AcceptPlan {
        if let Err(e) = limits::check_accept_size(accept.offer_ids.len(), accept.launches.len()) {
            return AcceptPlan::Refuse(Refusal {
                why: e.to_string(),
                offers: self.own_offers(fw, &accept.offer_ids),
                agent: None,
                task_ids: BTreeSet::new(),
            });
        }
        let filters = convert::filters(accept.filters);
        let mut problems: Vec<String> = Vec::new();
        let offers = self.check_offers(fw, &accept.offer_ids, &mut problems);
        let agent = offers.first().map(|o| o.agent.clone());
        if offers.iter().any(|o| Some(&o.agent) != agent.as_ref()) {
            problems
                .push("the offers are of more than one agent; accept one agent's at a time".into());
        }
        let offered = offers
            .iter()
            .try_fold(Resources::ZERO, |acc, o| acc.checked_add(&o.resources))
            .unwrap_or(Resources::ZERO);
        let offers: Vec<OfferId> = offers.into_iter().map(|o| o.id.clone()).collect();

        let (tasks, unparsed_ids) =
            self.check_tasks(fw, accept.launches, agent.as_ref(), &mut problems);
        let needed = tasks
            .iter()
            .try_fold(Resources::ZERO, |acc, t| acc.checked_add(&t.resources));
        let remainder = match &needed {
            Ok(n) => offered
                .checked_sub(n)
                .map_err(|e| format!("the tasks need {n} but the offers hold {offered} ({e})")),
            Err(e) => Err(format!(
                "the tasks' resources add up beyond what can be counted: {e}"
            )),
        };
        let remainder = match remainder {
            Ok(r) => r,
            Err(p) => {
                if problems.is_empty() || !offers.is_empty() {
                    problems.push(p);
                }
                Resources::ZERO
            }
        };

        if !problems.is_empty() {
            return AcceptPlan::Refuse(Refusal {
                why: limits::refusal_message(&problems),
                offers,
                agent,
                task_ids: tasks
                    .iter()
                    .map(|t| t.task_id.clone())
                    .chain(unparsed_ids)
                    .collect(),
            });
        }
        let Some(agent) = agent else {
            return AcceptPlan::Empty;
        };
        let refuse_ms = if tasks.is_empty() {
            filters.decline_ms()
        } else {
            filters.refuse_ms()
        };
        AcceptPlan::Launch(Launch {
            agent,
            offers,
            remainder,
            refuse_ms,
            tasks,
        })
    }

    /// The offers named that this framework holds, each once; nothing said of the others. For
    /// a call too large to be read, whose offers must still go back to the pool.
    fn own_offers(&self, fw: &FrameworkId, offer_ids: &[String]) -> Vec<OfferId> {
        let mut seen = HashSet::new();
        offer_ids
            .iter()
            .filter_map(|raw| convert::id::<OfferId>("accept.offer_ids", raw).ok())
            .filter(|id| self.offers.get(id).is_some_and(|o| &o.framework == fw))
            .filter(|id| seen.insert(id.clone()))
            .collect()
    }

    /// The offers named that this framework holds, each once, in the order named; a problem
    /// for every other id.
    fn check_offers(
        &self,
        fw: &FrameworkId,
        offer_ids: &[String],
        problems: &mut Vec<String>,
    ) -> Vec<&OfferRecord> {
        let mut offers: Vec<&OfferRecord> = Vec::new();
        let mut seen = HashSet::new();
        if offer_ids.is_empty() {
            problems.push("accept lists no offer ids".into());
        }
        for raw in offer_ids {
            let id: OfferId = match convert::id("accept.offer_ids", raw) {
                Ok(id) => id,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            if !seen.insert(id.clone()) {
                problems.push(format!("offer {id} is listed twice"));
                continue;
            }
            match self.offers.get(&id) {
                Some(o) if &o.framework == fw => offers.push(o),
                Some(_) => problems.push(format!("offer {id} was not made to this framework")),
                None => problems.push(format!(
                    "offer {id} is unknown or no longer valid (used, declined or rescinded)"
                )),
            }
        }
        offers
    }

    /// Parses the tasks to launch and checks each: a fresh id, the offers' agent, a role
    /// allowed to run command tasks. Returns the tasks that parsed and the ids of those that
    /// did not (where the id itself is valid), with a problem for each fault.
    fn check_tasks(
        &self,
        fw: &FrameworkId,
        launches: Vec<pb::TaskInfo>,
        agent: Option<&AgentId>,
        problems: &mut Vec<String>,
    ) -> (Vec<TaskInfo>, Vec<TaskId>) {
        let role = self
            .registry
            .frameworks
            .get(fw)
            .map(|r| r.role.clone())
            .unwrap_or_default();
        let mut tasks: Vec<TaskInfo> = Vec::new();
        let mut unparsed_ids: Vec<TaskId> = Vec::new();
        let mut ids = HashSet::new();
        for t in launches {
            let raw_id = t.task_id.clone();
            match TaskInfo::try_from(t) {
                Ok(task) => {
                    if !ids.insert(task.task_id.clone()) {
                        problems.push(format!(
                            "task id {} is used twice in this launch",
                            task.task_id
                        ));
                    } else if let Some(old) = self.tasks.get(fw, &task.task_id) {
                        problems.push(format!(
                            "task id {} is already used by a task that is {}",
                            task.task_id, old.state
                        ));
                    }
                    if let Some(a) = agent
                        && &task.agent_id != a
                    {
                        problems.push(format!(
                            "task {} names agent {} but the offers are of agent {a}",
                            task.task_id, task.agent_id
                        ));
                    }
                    if matches!(task.kind, TaskKind::Command { .. })
                        && let Some(allowed) = &self.config.command_task_roles
                        && !allowed.contains(&role)
                    {
                        problems.push(format!(
                            "task {}: role {role:?} may not run native command tasks on this \
                             master (allowed: {}); an operator allows them with \
                             `--command-task-roles {role}` on `wasmos master` or `wasmos dev`",
                            task.task_id,
                            describe_roles(allowed)
                        ));
                    }
                    tasks.push(task);
                }
                Err(e) => {
                    problems.push(match &e {
                        ConvertError::Spec(_) => e.to_string(),
                        _ => format!("task {raw_id:?}: {e}"),
                    });
                    unparsed_ids.extend(TaskId::new(raw_id).ok());
                }
            }
        }
        (tasks, unparsed_ids)
    }

    /// Applies a refusal: the offers named are used up and their resources returned, each task
    /// named gets an `ERROR` update (or the scheduler an `Error` event when none could be read).
    fn refuse_launch(&mut self, fw: &FrameworkId, refusal: Refusal, now: Millis) {
        let Refusal {
            why,
            offers,
            agent,
            task_ids,
        } = refusal;
        let offers: Vec<OfferRecord> = offers
            .iter()
            .filter_map(|id| self.offers.remove(id))
            .collect();
        debug!(framework_id = %fw, %why, tasks = task_ids.len(), "invalid launch");
        for o in &offers {
            if let Err(e) = self.allocator.recover(fw, &o.agent, o.resources, 0, now) {
                warn!(framework_id = %fw, agent_id = %o.agent, error = %e, "recovering an offer");
            }
        }
        for task_id in &task_ids {
            let status = TaskStatus {
                task_id: task_id.clone(),
                agent_id: agent.clone(),
                state: TaskState::Error,
                message: why.clone(),
                data: None,
                uuid: None,
            };
            self.send_answer(fw, status, reason::INVALID_LAUNCH, now);
        }
        if task_ids.is_empty() {
            self.scheduler_error(fw, why, false);
        }
        self.want_allocation();
    }

    /// Applies a checked launch: takes the offers, returns the remainder, stages the tasks and
    /// sends them to the agent in one message. Tasks for an agent that went away meanwhile are
    /// `LOST` at once.
    fn launch(&mut self, fw: &FrameworkId, launch: Launch, now: Millis) {
        let Launch {
            agent,
            offers,
            remainder,
            refuse_ms,
            tasks,
        } = launch;
        for id in &offers {
            self.offers.remove(id);
        }
        if !remainder.is_zero()
            && let Err(e) = self
                .allocator
                .recover(fw, &agent, remainder, refuse_ms, now)
        {
            warn!(framework_id = %fw, agent_id = %agent, error = %e, "recovering the unused remainder");
        }
        if tasks.is_empty() {
            return; // An accept without launches is a decline.
        }
        if !self.agents.contains_key(&agent) {
            // The agent went away between offer and accept (its offers would have been
            // rescinded, so this is a race); the tasks are lost.
            for t in tasks {
                let _ = self.allocator.recover(fw, &agent, t.resources, 0, now);
                let status = TaskStatus {
                    task_id: t.task_id,
                    agent_id: Some(agent.clone()),
                    state: TaskState::Lost,
                    message: format!("agent {agent} disconnected before the launch reached it"),
                    data: None,
                    uuid: None,
                };
                self.send_answer(fw, status, reason::AGENT_UNREACHABLE, now);
            }
            return;
        }
        let (role, component_sha256, budget) = self
            .registry
            .frameworks
            .get(fw)
            .map(|f| {
                (
                    f.role.clone(),
                    f.component_sha256.clone().unwrap_or_default(),
                    f.wasm_budget,
                )
            })
            .unwrap_or_default();
        for t in &tasks {
            let _span =
                debug_span!("launch", framework_id = %fw, agent_id = %agent, task_id = %t.task_id)
                    .entered();
            let inserted = self.tasks.insert(TaskRecord {
                framework: fw.clone(),
                id: t.task_id.clone(),
                name: t.name.clone(),
                agent: agent.clone(),
                resources: t.resources,
                state: TaskState::Staging,
                message: String::new(),
                data: None,
                updated_ms: now,
                launched_ms: now,
                pending_ack: None,
                pending_from_master: None,
            });
            if let Err(e) = inserted {
                warn!(error = %e, "task book refused a validated task");
            } else {
                // An earlier answer about this task id (a refused launch) is moot now.
                self.forget_answer(fw, &t.task_id);
                debug!("task staged");
            }
        }
        let tasks: Vec<pb::TaskInfo> = tasks.iter().map(pb::TaskInfo::from).collect();
        for tasks in run_tasks_batches(tasks) {
            self.send_agent(
                &agent,
                ToAgent::RunTasks(pb::master_message::RunTasks {
                    framework_id: fw.to_string(),
                    tasks,
                    role: role.clone(),
                    component_sha256: component_sha256.clone(),
                    wasm_task_timeout_seconds: budget.timeout_seconds(),
                    wasm_task_fuel: budget.fuel,
                }),
            );
        }
    }
}

/// `tasks` cut, in order, into batches of at most [`limits::RUN_TASKS_BUDGET_BYTES`] encoded
/// bytes each, so that every `RunTasks` fits the agent's session. A validated task is at most
/// [`limits::MAX_TASK_WIRE_BYTES`], which the budget holds, so no batch is over it.
fn run_tasks_batches(tasks: Vec<pb::TaskInfo>) -> Vec<Vec<pb::TaskInfo>> {
    use prost::Message as _;
    let mut batches: Vec<Vec<pb::TaskInfo>> = Vec::new();
    let mut bytes = 0;
    for t in tasks {
        // As a repeated field: tag, length and the task.
        let len = t.encoded_len();
        let len = len + prost::length_delimiter_len(len) + 1;
        match batches.last_mut() {
            Some(b) if bytes + len <= limits::RUN_TASKS_BUDGET_BYTES => {
                bytes += len;
                b.push(t);
            }
            _ => {
                bytes = len;
                batches.push(vec![t]);
            }
        }
    }
    batches
}

/// The roles of `--command-task-roles` as a refusal names them: `none` or `a, b`.
fn describe_roles(roles: &std::collections::BTreeSet<String>) -> String {
    if roles.is_empty() {
        "none".into()
    } else {
        roles.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use wasmos_api::limits::{
        AGENT_SESSION_MAX_MESSAGE_BYTES, MAX_PAYLOAD_BYTES, RUN_TASKS_BUDGET_BYTES,
    };

    use super::*;

    fn task(i: usize, payload: usize) -> pb::TaskInfo {
        pb::TaskInfo {
            task_id: format!("t{i}"),
            name: "n".repeat(1024),
            agent_id: "a".repeat(128),
            resources: Some(pb::Resources {
                millicpus: 1,
                mem_mb: 1,
                disk_mb: 1,
            }),
            kind: Some(pb::task_info::Kind::Wasm(pb::WasmTask {
                executor_id: "e".repeat(128),
                payload: vec![7; payload],
                ..Default::default()
            })),
        }
    }

    #[test]
    fn a_launch_of_large_payloads_is_split_into_run_tasks_that_fit_the_agent() {
        let tasks: Vec<_> = (0..10).map(|i| task(i, MAX_PAYLOAD_BYTES)).collect();
        let batches = run_tasks_batches(tasks);
        assert!(batches.len() >= 3, "{} batches", batches.len());
        let order: Vec<String> = batches
            .iter()
            .flatten()
            .map(|t| t.task_id.clone())
            .collect();
        let want: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
        assert_eq!(order, want, "every task, in order");
        for b in batches {
            let m = pb::MasterMessage {
                message: Some(ToAgent::RunTasks(pb::master_message::RunTasks {
                    framework_id: "f".repeat(128),
                    tasks: b,
                    role: "r".repeat(128),
                    component_sha256: "0".repeat(64),
                    ..Default::default()
                })),
            };
            assert!(
                m.encoded_len() <= AGENT_SESSION_MAX_MESSAGE_BYTES,
                "{}",
                m.encoded_len()
            );
        }
    }

    #[test]
    fn small_launches_go_in_one_run_tasks() {
        let tasks: Vec<_> = (0..limits::MAX_TASKS_PER_LAUNCH)
            .map(|i| task(i, 64))
            .collect();
        assert_eq!(run_tasks_batches(tasks).len(), 1);
        let one = task(0, RUN_TASKS_BUDGET_BYTES);
        assert_eq!(
            run_tasks_batches(vec![one]).len(),
            1,
            "never an empty batch"
        );
    }
}
