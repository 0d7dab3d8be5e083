//! Hostile frameworks against `MasterCore` directly (no network, time passed in): a decline is
//! refused for at least `MIN_DECLINE_REFUSE_SECONDS` whatever filter it asks for, and frameworks
//! that decline everything with a zero filter keep neither a later framework nor a newcomer
//! among 500 of them from an offer for more than a few allocation cycles; frameworks that never
//! answer are set aside after their offer times out, so a later framework is not kept waiting
//! behind 500 of them.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};

use super::*;

/// The master's default allocation interval, in milliseconds.
const CYCLE_MS: Millis = 250;

type SchedRx = mpsc::Receiver<Result<pb::SchedulerEvent, tonic::Status>>;
type AgentRx = mpsc::Receiver<Result<pb::MasterMessage, tonic::Status>>;

struct Sched {
    fw: FrameworkId,
    conn: ConnId,
    rx: SchedRx,
}

/// A core, its time, and what its agents were sent (kept so their channels stay open).
struct World {
    core: MasterCore,
    now: Millis,
    agents: Vec<AgentRx>,
    /// Each agent's id and stream, in registration order.
    agent_ids: Vec<(AgentId, ConnId)>,
}

impl World {
    fn new(agents: usize) -> Self {
        let mut w = World {
            core: MasterCore::new(MasterConfig::default(), "t", Arc::new(Notify::new())),
            now: 0,
            agents: Vec::new(),
            agent_ids: Vec::new(),
        };
        for i in 0..agents {
            let (tx, rx) = mpsc::channel(1024);
            let conn = w.core.new_conn();
            let reg = pb::agent_message::Register {
                info: Some(pb::AgentInfo {
                    id: String::new(),
                    hostname: format!("h{i}"),
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
            let id = w.core.agent_register(conn, tx, reg, 0).unwrap();
            w.agents.push(rx);
            w.agent_ids.push((id, conn));
        }
        w
    }

    fn subscribe(&mut self, name: &str, role: &str) -> Sched {
        let (tx, rx) = mpsc::channel(1024);
        let conn = self.core.new_conn();
        let info = pb::FrameworkInfo {
            id: String::new(),
            name: name.into(),
            role: role.into(),
            principal: String::new(),
            failover_timeout_seconds: 0.0,
            component_sha256: String::new(),
            ..Default::default()
        };
        let fw = self.core.subscribe(conn, tx, Some(info), self.now).unwrap();
        Sched { fw, conn, rx }
    }

    /// The offers `s` received since the last look: (offer id, agent id, resources).
    fn offers(s: &mut Sched) -> Vec<(String, String, pb::Resources)> {
        Self::offers_and_rescinds(s).0
    }

    /// The offers `s` received since the last look, and how many offers were rescinded.
    fn offers_and_rescinds(s: &mut Sched) -> (Vec<(String, String, pb::Resources)>, usize) {
        let mut out = Vec::new();
        let mut rescinds = 0;
        while let Ok(Ok(ev)) = s.rx.try_recv() {
            match ev.event {
                Some(Event::Offers(o)) => out.extend(
                    o.offers
                        .into_iter()
                        .map(|x| (x.id, x.agent_id, x.resources.unwrap_or_default())),
                ),
                Some(Event::Rescind(_)) => rescinds += 1,
                _ => {}
            }
        }
        (out, rescinds)
    }

    fn call(&mut self, s: &Sched, call: Call) {
        assert!(
            self.core
                .scheduler_call(&s.fw, s.conn, Some(call), self.now)
        );
    }

    fn decline(&mut self, s: &Sched, offer_ids: Vec<String>, refuse_seconds: f64) {
        let filters = Some(pb::Filters {
            refuse_seconds: Some(refuse_seconds),
        });
        self.call(
            s,
            Call::Decline(pb::scheduler_call::Decline { offer_ids, filters }),
        );
    }

    /// Advances the clock to `at`, has every agent heartbeat, and runs the timers and an
    /// allocation cycle there.
    fn cycle_at(&mut self, at: Millis) {
        self.now = at;
        for (agent, conn) in &self.agent_ids {
            assert!(self.core.agent_message(agent, *conn, None, at));
        }
        self.core.tick(at);
        self.core.allocate(at);
    }
}

#[test]
fn a_decline_is_refused_for_at_least_the_floor() {
    // At the floor, one below it and far below it (zero, negative, NaN, minus infinity).
    for refuse_seconds in [
        1.0,
        0.999,
        0.5,
        0.0,
        -0.0,
        -1.0,
        f64::NAN,
        f64::NEG_INFINITY,
    ] {
        let mut w = World::new(1);
        let mut s = w.subscribe("f", "r");
        w.cycle_at(0);
        let offers = World::offers(&mut s);
        assert_eq!(offers.len(), 1);
        w.decline(&s, vec![offers[0].0.clone()], refuse_seconds);
        w.cycle_at(1);
        w.cycle_at(999);
        assert!(
            World::offers(&mut s).is_empty(),
            "declined with {refuse_seconds}: re-offered within the floor"
        );
        w.cycle_at(1000);
        assert_eq!(
            World::offers(&mut s).len(),
            1,
            "{refuse_seconds}: after 1 s"
        );
    }
}

#[test]
fn an_accept_that_launches_nothing_is_a_decline_but_a_launch_remainder_keeps_its_filter() {
    let mut w = World::new(1);
    let mut s = w.subscribe("f", "r");
    w.cycle_at(0);
    let offer = World::offers(&mut s).remove(0);
    let zero = Some(pb::Filters {
        refuse_seconds: Some(0.0),
    });
    w.call(
        &s,
        Call::Accept(pb::scheduler_call::Accept {
            offer_ids: vec![offer.0],
            launches: vec![],
            filters: zero,
        }),
    );
    w.cycle_at(999);
    assert!(World::offers(&mut s).is_empty(), "empty accept: floored");
    w.cycle_at(1000);
    let offer = World::offers(&mut s).remove(0);

    // Launch one small task with filter 0: the rest is offered again in the next cycle.
    let task = pb::TaskInfo {
        task_id: "t1".into(),
        name: "t1".into(),
        agent_id: offer.1.clone(),
        resources: Some(pb::Resources {
            millicpus: 1000,
            mem_mb: 128,
            disk_mb: 0,
        }),
        kind: Some(pb::task_info::Kind::Wasm(pb::WasmTask {
            executor_id: "e".into(),
            payload: vec![],
            ..Default::default()
        })),
    };
    w.call(
        &s,
        Call::Accept(pb::scheduler_call::Accept {
            offer_ids: vec![offer.0],
            launches: vec![task],
            filters: zero,
        }),
    );
    w.cycle_at(1001);
    let again = World::offers(&mut s);
    assert_eq!(again.len(), 1, "the remainder comes back at once");
    assert_eq!(again[0].2.millicpus, 3000);
}

#[test]
fn a_framework_declining_everything_does_not_starve_a_later_one() {
    let mut w = World::new(1);
    let mut hostile = w.subscribe("hostile", "r");
    let mut t = 0;
    for _ in 0..20 {
        w.cycle_at(t);
        let ids = World::offers(&mut hostile)
            .into_iter()
            .map(|o| o.0)
            .collect();
        w.decline(&hostile, ids, 0.0);
        t += CYCLE_MS;
    }
    let mut later = w.subscribe("later", "r");
    let got = (0..3).position(|_| {
        w.cycle_at(t);
        t += CYCLE_MS;
        let ids = World::offers(&mut hostile)
            .into_iter()
            .map(|o| o.0)
            .collect();
        w.decline(&hostile, ids, 0.0);
        !World::offers(&mut later).is_empty()
    });
    assert_eq!(
        got,
        Some(0),
        "the later framework is offered the agent in its first cycle"
    );
}

#[test]
fn five_hundred_frameworks_declining_everything_do_not_keep_a_newcomer_waiting() {
    // 500 frameworks in 5 roles on 20 agents decline every offer with a zero filter, all in
    // the same cycle; after 15 s (60 cycles) a newcomer subscribes.
    const CYCLES_ALLOWED: usize = 3;
    let mut w = World::new(20);
    let mut hostile: Vec<Sched> = (0..500)
        .map(|i| w.subscribe(&format!("h{i}"), &format!("r{}", i % 5)))
        .collect();
    let mut t = 0;
    let decline_all = |w: &mut World, hostile: &mut Vec<Sched>| {
        for s in hostile.iter_mut() {
            let ids: Vec<String> = World::offers(s).into_iter().map(|o| o.0).collect();
            if !ids.is_empty() {
                w.decline(s, ids, 0.0);
            }
        }
    };
    for _ in 0..60 {
        w.cycle_at(t);
        t += CYCLE_MS;
        decline_all(&mut w, &mut hostile);
    }
    let mut newcomer = w.subscribe("newcomer", "r0");
    let got = (0..CYCLES_ALLOWED).position(|_| {
        w.cycle_at(t);
        t += CYCLE_MS;
        decline_all(&mut w, &mut hostile);
        !World::offers(&mut newcomer).is_empty()
    });
    assert_eq!(
        got,
        Some(0),
        "the newcomer is offered an agent in its first cycle"
    );
}

#[test]
fn idle_subscribers_step_aside_and_a_later_framework_gets_offers_and_runs() {
    // 500 frameworks in 5 roles on 20 agents subscribe and never answer; one more declines
    // everything with a zero filter. Each idle one is offered an agent in turn and lets the
    // offer expire (the default offer timeout, 60 s): 500 of them on 20 agents take 25
    // timeouts. Then a well-behaved framework subscribes, between two expiry waves.
    const CYCLES_ALLOWED: usize = 3;
    let mut w = World::new(20);
    let timeout = MasterCore::ms(
        w.core
            .config
            .offer_timeout
            .expect("a default offer timeout"),
    );
    let _idle: Vec<Sched> = (0..500)
        .map(|i| w.subscribe(&format!("idle{i}"), &format!("r{}", i % 5)))
        .collect();
    let mut decliner = w.subscribe("decliner", "r0");
    let mut t = 0;
    let decline = |w: &mut World, s: &mut Sched| {
        let ids: Vec<String> = World::offers(s).into_iter().map(|o| o.0).collect();
        if !ids.is_empty() {
            w.decline(s, ids, 0.0);
        }
    };
    while t <= 26 * timeout + 10 * CYCLE_MS {
        w.cycle_at(t);
        t += CYCLE_MS;
        decline(&mut w, &mut decliner);
    }
    let mut later = w.subscribe("later", "r0");
    let mut offers = Vec::new();
    for cycle in 0..CYCLES_ALLOWED {
        w.cycle_at(t);
        t += CYCLE_MS;
        decline(&mut w, &mut decliner);
        offers = World::offers(&mut later);
        if !offers.is_empty() {
            break;
        }
        assert!(
            cycle + 1 < CYCLES_ALLOWED,
            "no offer for the later framework in {CYCLES_ALLOWED} cycles"
        );
    }
    launch_two_tasks_that_finish(&mut w, &mut later, offers.remove(0), t);
}

/// A pi-like framework's life after its first offer: it launches two tasks on it, the agent
/// reports them finished, and the framework acknowledges both; the master forgets them.
fn launch_two_tasks_that_finish(
    w: &mut World,
    later: &mut Sched,
    offer: (String, String, pb::Resources),
    t: Millis,
) {
    let (offer_id, agent_id, _) = offer;
    let launches = (0..2)
        .map(|i| pb::TaskInfo {
            task_id: format!("t{i}"),
            name: format!("t{i}"),
            agent_id: agent_id.clone(),
            resources: Some(pb::Resources {
                millicpus: 1000,
                mem_mb: 128,
                disk_mb: 0,
            }),
            kind: Some(pb::task_info::Kind::Wasm(pb::WasmTask {
                executor_id: "e".into(),
                payload: vec![],
                ..Default::default()
            })),
        })
        .collect();
    w.call(
        &later,
        Call::Accept(pb::scheduler_call::Accept {
            offer_ids: vec![offer_id],
            launches,
            filters: None,
        }),
    );
    let (agent, conn) = w
        .agent_ids
        .iter()
        .find(|(a, _)| a.as_str() == agent_id)
        .cloned()
        .expect("the offered agent");
    let updates = (0..2)
        .map(|i| pb::AgentStatusUpdate {
            framework_id: later.fw.to_string(),
            status: Some(pb::TaskStatus {
                task_id: format!("t{i}"),
                agent_id: agent_id.clone(),
                state: pb::TaskState::Finished as i32,
                message: String::new(),
                data: Some(b"done".to_vec()),
                uuid: format!("u{i}"),
                reason: String::new(),
            }),
        })
        .collect();
    assert!(w.core.agent_message(
        &agent,
        conn,
        Some(pb::agent_message::Message::StatusUpdates(
            pb::agent_message::StatusUpdates { updates }
        )),
        t,
    ));
    let mut finished = 0;
    while let Ok(Ok(ev)) = later.rx.try_recv() {
        if let Some(Event::Update(u)) = ev.event
            && let Some(s) = u.status
            && s.state == pb::TaskState::Finished as i32
        {
            finished += 1;
            w.call(
                &later,
                Call::Acknowledge(pb::scheduler_call::Acknowledge {
                    agent_id: s.agent_id,
                    task_id: s.task_id,
                    uuid: s.uuid,
                }),
            );
        }
    }
    assert_eq!(finished, 2);
    assert!(w.core.tasks.of_framework(&later.fw).is_empty());
}

#[test]
fn a_later_framework_beside_idle_subscribers_gets_offers_before_any_offer_times_out() {
    // 500 frameworks in 5 roles on 20 agents subscribe and never answer; one more declines
    // everything with a zero filter. 45 s later, before any offer could time out, a
    // well-behaved framework subscribes: it waits at most a few cycles and the minimum hold
    // for offers that idle frameworks sit on to be rescinded for it, then runs.
    let mut w = World::new(20);
    let timeout = MasterCore::ms(
        w.core
            .config
            .offer_timeout
            .expect("a default offer timeout"),
    );
    let cycles_allowed = 5 + w.core.min_offer_hold_ms().div_ceil(CYCLE_MS) as usize;
    let _idle: Vec<Sched> = (0..500)
        .map(|i| w.subscribe(&format!("idle{i}"), &format!("r{}", i % 5)))
        .collect();
    let mut decliner = w.subscribe("decliner", "r0");
    let mut t = 0;
    let decline = |w: &mut World, s: &mut Sched| {
        let ids: Vec<String> = World::offers(s).into_iter().map(|o| o.0).collect();
        if !ids.is_empty() {
            w.decline(s, ids, 0.0);
        }
    };
    while t < 45_000 {
        w.cycle_at(t);
        t += CYCLE_MS;
        decline(&mut w, &mut decliner);
    }
    let mut later = w.subscribe("later", "r0");
    let mut offers = Vec::new();
    for cycle in 0..cycles_allowed {
        w.cycle_at(t);
        t += CYCLE_MS;
        decline(&mut w, &mut decliner);
        offers = World::offers(&mut later);
        if !offers.is_empty() {
            break;
        }
        assert!(
            cycle + 1 < cycles_allowed,
            "no offer for the later framework in {cycles_allowed} cycles"
        );
    }
    assert!(t < timeout, "no offer had timed out yet");
    launch_two_tasks_that_finish(&mut w, &mut later, offers.remove(0), t);
}

#[test]
fn a_framework_that_answers_within_the_minimum_hold_is_never_rescinded_early() {
    // One agent and two frameworks: `prompt` answers each offer three cycles after it came
    // (within the hold) by declining it; `silent` never answers. Whenever one holds the agent
    // the other waits at share zero. Only `silent` loses offers early.
    let mut w = World::new(1);
    assert!(3 * CYCLE_MS < w.core.min_offer_hold_ms());
    let mut prompt = w.subscribe("prompt", "r");
    let mut silent = w.subscribe("silent", "r");
    let mut t = 0;
    let (mut answered, mut silent_offers, mut silent_rescinds) = (0, 0, 0);
    let mut held: Vec<(Millis, String)> = Vec::new();
    for _ in 0..60 {
        w.cycle_at(t);
        let (offers, rescinds) = World::offers_and_rescinds(&mut prompt);
        assert_eq!(
            rescinds, 0,
            "at {t} ms: an offer answered in time was rescinded"
        );
        held.extend(offers.into_iter().map(|o| (t, o.0)));
        let due: Vec<String> = held
            .extract_if(.., |(at, _)| t - *at >= 3 * CYCLE_MS)
            .map(|(_, id)| id)
            .collect();
        if !due.is_empty() {
            answered += due.len();
            w.decline(&prompt, due, 0.0);
        }
        let (offers, rescinds) = World::offers_and_rescinds(&mut silent);
        silent_offers += offers.len();
        silent_rescinds += rescinds;
        t += CYCLE_MS;
    }
    assert!(answered >= 3, "prompt had offers to answer: {answered}");
    assert!(
        silent_offers >= 1 && silent_rescinds >= 1,
        "silent held the agent and lost it early"
    );
}

#[test]
fn equal_shares_do_not_rescind_each_other() {
    // Two agents, two frameworks that each hold one offer unanswered and want more: both
    // wait at the same share, so neither takes the other's offer (no ping-pong).
    let mut w = World::new(2);
    let mut a = w.subscribe("a", "r");
    let mut b = w.subscribe("b", "r");
    let mut t = 0;
    w.cycle_at(t);
    assert_eq!(World::offers(&mut a).len(), 1);
    assert_eq!(World::offers(&mut b).len(), 1);
    for _ in 0..40 {
        t += CYCLE_MS;
        w.cycle_at(t);
        for s in [&mut a, &mut b] {
            let (offers, rescinds) = World::offers_and_rescinds(s);
            assert_eq!((offers.len(), rescinds), (0, 0), "at {t} ms");
        }
    }
}

#[test]
fn a_set_aside_framework_is_offered_again_after_the_set_aside_time_without_a_call() {
    // A live scheduler that only waits for offers: its one offer expires unanswered, so it is
    // set aside; it makes no call, and after `SET_ASIDE_MS` it is offered the agent again.
    use super::early_rescind::SET_ASIDE_MS;
    let mut w = World::new(1);
    let timeout = w.core.config.offer_timeout.unwrap().as_millis() as Millis;
    let mut waiting = w.subscribe("waiting", "r");
    let mut t = 0;
    w.cycle_at(t);
    assert_eq!(World::offers(&mut waiting).len(), 1);
    let mut again = None;
    while t < timeout + SET_ASIDE_MS + 2_000 {
        t += CYCLE_MS;
        w.cycle_at(t);
        let (offers, _) = World::offers_and_rescinds(&mut waiting);
        if !offers.is_empty() {
            again = Some(t);
            break;
        }
    }
    let again = again.expect("offered again without a call");
    assert!(
        again >= timeout + SET_ASIDE_MS,
        "offered again at {again} ms, before the set-aside time ended"
    );
}
