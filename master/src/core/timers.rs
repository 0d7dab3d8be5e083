//! Time in the core: [`MasterCore::tick`], which runs every timeout (one function per timer),
//! and [`MasterCore::allocate`], one allocation cycle turned into offers. The server calls
//! both from its timer loop; neither reads a clock, the caller passes `now`.

use std::collections::{BTreeMap, HashSet};

use tracing::{debug, info, warn};
use wasmos_api::proto as pb;
use wasmos_api::{AgentId, FrameworkId, TaskId, TaskState, convert};

use super::outbound::reason;
use super::{Event, MasterCore};
use crate::allocator::Millis;
use crate::registry::{AgentState, Command, FrameworkState};

impl MasterCore {
    /// Runs timeouts: offers, agent heartbeats and removal, framework failover, update resends,
    /// scheduler heartbeats. Call it often (every allocation interval is fine). Each timer is
    /// one function below, run in this order.
    pub fn tick(&mut self, now: Millis) {
        self.rescind_expired_offers(now);
        self.mark_silent_agents_unreachable(now);
        self.stop_awaiting_late_agents(now);
        self.remove_long_unreachable_agents(now);
        self.remove_failed_over_frameworks(now);
        self.resend_unacknowledged_updates(now);
        self.lose_timed_out_launches(now);
        self.heartbeat_schedulers(now);
        self.collect_unreferenced_components(now);
    }

    /// Offers past their timeout are rescinded and their resources return to the pool. An
    /// expired offer is an implicit decline (the agent is refused to the framework for the
    /// default filter, 5 s, as in Mesos), and its framework is set aside: it gets no offers
    /// until it accepts, declines, revives or subscribes again, so a framework that never
    /// answers holds resources for one offer timeout, not one per agent in turn.
    fn rescind_expired_offers(&mut self, now: Millis) {
        let refuse_ms = wasmos_api::launch::Filters::default().decline_ms();
        for o in self.offers.remove_expired(now) {
            let _ = self
                .allocator
                .recover(&o.framework, &o.agent, o.resources, refuse_ms, now);
            self.set_aside(&o.framework, "an offer expired unanswered", now);
            self.send_scheduler(
                &o.framework,
                Event::Rescind(pb::scheduler_event::Rescind {
                    offer_id: o.id.to_string(),
                }),
            );
            self.want_allocation();
        }
    }

    /// Connected agents silent for longer than `agent_unreachable_timeout` become unreachable.
    fn mark_silent_agents_unreachable(&mut self, now: Millis) {
        let unreachable_after = Self::ms(self.config.agent_unreachable_timeout);
        let silent: Vec<AgentId> = self
            .agents
            .iter()
            .filter(|(_, c)| now.saturating_sub(c.last_heartbeat_ms) > unreachable_after)
            .map(|(id, _)| id.clone())
            .collect();
        for agent in silent {
            self.mark_unreachable(&agent, now, "it missed its heartbeats");
        }
    }

    /// Admitted agents that did not re-register with this (new) leader by their deadline are
    /// marked unreachable in the registry.
    fn stop_awaiting_late_agents(&mut self, now: Millis) {
        if self.awaiting_agents.is_empty() {
            return;
        }
        let late: Vec<AgentId> = self
            .awaiting_agents
            .iter()
            .filter(|(_, deadline)| now >= **deadline)
            .map(|(id, _)| id.clone())
            .collect();
        for agent in late {
            self.awaiting_agents.remove(&agent);
            info!(agent_id = %agent, "agent did not re-register with the new leader in time");
            let _ = self.commit(Command::MarkAgentUnreachable {
                id: agent,
                since_ms: now,
            });
        }
    }

    /// Agents unreachable for longer than `agent_removal_timeout` are removed.
    fn remove_long_unreachable_agents(&mut self, now: Millis) {
        let removal_after = Self::ms(self.config.agent_removal_timeout);
        let gone: Vec<AgentId> = self
            .registry
            .agents
            .values()
            .filter_map(|a| match a.state {
                AgentState::Unreachable { since_ms }
                    if now.saturating_sub(since_ms) > removal_after =>
                {
                    Some(a.id.clone())
                }
                _ => None,
            })
            .collect();
        for agent in gone {
            self.remove_agent(&agent, now);
        }
    }

    /// Frameworks disconnected for at least their failover timeout are removed.
    fn remove_failed_over_frameworks(&mut self, now: Millis) {
        let expired: Vec<FrameworkId> = self
            .registry
            .frameworks
            .values()
            .filter_map(|f| match f.state {
                FrameworkState::Disconnected { since_ms }
                    if now.saturating_sub(since_ms) >= f.failover_timeout_ms =>
                {
                    Some(f.id.clone())
                }
                _ => None,
            })
            .collect();
        for fw in expired {
            self.remove_framework(&fw, now, "its failover timeout passed");
        }
    }

    /// Updates unacknowledged for `update_resend_interval` (the agent's and the master's
    /// own), and those that did not reach a full queue, are sent again to connected
    /// schedulers; entries for updates acknowledged or forgotten meanwhile are dropped. Each
    /// scan sends a framework at most what its queue takes: at its first refused send the
    /// rest of its updates wait for the next scan (still due), so a framework that reads
    /// slowly gets all its updates in queue-sized batches and none is lost.
    fn resend_unacknowledged_updates(&mut self, now: Millis) {
        let resend_after = Self::ms(self.config.update_resend_interval);
        // The scan costs one step per update in flight and `tick` runs after every allocation
        // wake-up (thousands a second under load): look at most every tenth of the interval.
        if now.saturating_sub(self.last_resend_scan_ms) < resend_after / 10 {
            return;
        }
        self.last_resend_scan_ms = now;
        let mut due: Vec<((FrameworkId, TaskId), Millis)> = self
            .unacked
            .iter()
            .filter(|(k, at)| {
                (**at == 0 || now.saturating_sub(**at) >= resend_after)
                    && self.schedulers.contains_key(&k.0)
            })
            .map(|(k, at)| (k.clone(), *at))
            .collect();
        // Oldest first, so a batch never starves the updates behind it.
        due.sort_unstable_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        let mut full: HashSet<FrameworkId> = HashSet::new();
        for ((fw, task), at) in due {
            if full.contains(&fw) {
                continue;
            }
            let pending = self
                .tasks
                .get(&fw, &task)
                .and_then(Self::pending_of)
                .or_else(|| {
                    self.answers
                        .get(&(fw.clone(), task.clone()))
                        .map(|a| (a.status.clone(), a.why))
                });
            match pending {
                Some((status, why)) => {
                    if !self.send_update(&fw, &status, why, now) {
                        // Keep its place in the order for the next scan.
                        self.unacked.insert((fw.clone(), task), at);
                        full.insert(fw);
                    }
                }
                None => {
                    self.unacked.remove(&(fw, task));
                }
            }
        }
    }

    /// Tasks `STAGING` or `STARTING` for `launch_timeout` are `LOST`: their resources return,
    /// their framework hears why, and their agent is told to kill them (a late start dies at
    /// once; an update from it for the forgotten task is answered with a kill too).
    fn lose_timed_out_launches(&mut self, now: Millis) {
        let Some(timeout) = self.config.launch_timeout.map(Self::ms) else {
            return;
        };
        // One step per task: look at most every tenth of the timeout (and at most every
        // 100 ms), as for resends.
        if now.saturating_sub(self.last_launch_scan_ms) < (timeout / 10).max(100) {
            return;
        }
        self.last_launch_scan_ms = now;
        let late: Vec<(FrameworkId, TaskId, AgentId)> = self
            .tasks
            .all()
            .filter(|r| matches!(r.state, TaskState::Staging | TaskState::Starting))
            .filter(|r| now.saturating_sub(r.updated_ms) >= timeout)
            .map(|r| (r.framework.clone(), r.id.clone(), r.agent.clone()))
            .collect();
        if late.is_empty() {
            return;
        }
        warn!(
            tasks = late.len(),
            "launches timed out; their tasks are lost"
        );
        for (fw, task, agent) in late {
            let why = format!(
                "agent {agent} did not report the task running within the launch timeout \
                 ({} s); it is killed there should it still start",
                timeout / 1000
            );
            self.lose_task(&fw, &task, &why, reason::LAUNCH_TIMEOUT, true, now);
            self.kill_on_agent(&agent, vec![(fw, task)]);
        }
        self.want_allocation();
    }

    /// Every `scheduler_heartbeat_interval`, each connected scheduler gets a `Heartbeat`.
    fn heartbeat_schedulers(&mut self, now: Millis) {
        let hb = Self::ms(self.config.scheduler_heartbeat_interval);
        if now.saturating_sub(self.last_scheduler_heartbeat_ms) >= hb {
            self.last_scheduler_heartbeat_ms = now;
            let fws: Vec<FrameworkId> = self.schedulers.keys().cloned().collect();
            for fw in fws {
                self.send_scheduler(&fw, Event::Heartbeat(pb::scheduler_event::Heartbeat {}));
            }
        }
    }

    /// Runs one allocation cycle and sends the resulting offers, one event per framework;
    /// then rescinds early, for frameworks the cycle left waiting, offers that higher shares
    /// hold unanswered (`early_rescind`), for the next cycle to give away.
    pub fn allocate(&mut self, now: Millis) {
        let timeout = self.config.offer_timeout.map(Self::ms);
        let mut batches: BTreeMap<FrameworkId, Vec<pb::Offer>> = BTreeMap::new();
        for a in self.allocator.allocate(now) {
            if !self.schedulers.contains_key(&a.framework) {
                let _ = self
                    .allocator
                    .recover(&a.framework, &a.agent, a.resources, 0, now);
                continue;
            }
            let rec = self.offers.create(
                a.framework.clone(),
                a.agent.clone(),
                a.resources,
                now,
                timeout,
            );
            let (hostname, attributes) = self
                .registry
                .agents
                .get(&a.agent)
                .map(|r| (r.hostname.clone(), convert::attributes_pb(&r.attributes)))
                .unwrap_or_default();
            batches.entry(a.framework).or_default().push(pb::Offer {
                id: rec.id.to_string(),
                framework_id: rec.framework.to_string(),
                agent_id: rec.agent.to_string(),
                hostname,
                resources: Some(rec.resources.into()),
                attributes,
            });
        }
        for (fw, offers) in batches {
            debug!(framework_id = %fw, count = offers.len(), "offers");
            self.send_scheduler(&fw, Event::Offers(pb::scheduler_event::Offers { offers }));
        }
        self.end_expired_set_asides(now);
        self.rescind_for_waiting(now);
    }
}
