//! Property tests of [`DrfAllocator`]: random event sequences checked against a simple model
//! (no agent over-allocated, limits hold, filters respected, bookkeeping exact), and fairness
//! properties (equal shares, weighted shares, guarantees first).

use std::collections::HashMap;

use proptest::prelude::*;
use wasmos_api::{AgentId, FrameworkId, Resources};

use super::{Allocator, AllocatorConfig, DrfAllocator, Millis, Quota};

const ROLES: [&str; 3] = ["r0", "r1", "r2"];

#[derive(Clone, Debug)]
enum Op {
    AddAgent { cpus: u64, mem: u64 },
    RemoveAgent(usize),
    AddFramework(usize),
    RemoveFramework(usize),
    Allocate { dt: Millis },
    Decline { pick: usize, refuse_ms: Millis },
    ReturnHalf(usize),
    Suppress(usize),
    Revive(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..16, 1u64..64).prop_map(|(c, m)| Op::AddAgent { cpus: c, mem: m * 256 }),
        1 => any::<usize>().prop_map(Op::RemoveAgent),
        2 => (0..ROLES.len()).prop_map(Op::AddFramework),
        1 => any::<usize>().prop_map(Op::RemoveFramework),
        4 => (0u64..4_000).prop_map(|dt| Op::Allocate { dt }),
        4 => (any::<usize>(), prop_oneof![Just(0u64), 1u64..10_000])
            .prop_map(|(pick, refuse_ms)| Op::Decline { pick, refuse_ms }),
        1 => any::<usize>().prop_map(Op::ReturnHalf),
        1 => any::<usize>().prop_map(Op::Suppress),
        1 => any::<usize>().prop_map(Op::Revive),
    ]
}

/// What the allocator should believe, kept the simple way.
#[derive(Default)]
struct Model {
    agents: Vec<(AgentId, Resources)>,
    frameworks: Vec<(FrameworkId, usize)>,
    held: HashMap<(FrameworkId, AgentId), Resources>,
    /// (until, declined resources) per framework and agent.
    filters: HashMap<(FrameworkId, AgentId), (Millis, Resources)>,
    suppressed: Vec<FrameworkId>,
    now: Millis,
    next: usize,
}

fn sum<'a>(it: impl Iterator<Item = &'a Resources>) -> Resources {
    it.fold(Resources::ZERO, |acc, r| acc.checked_add(r).unwrap())
}

fn half(r: &Resources) -> Resources {
    Resources {
        millicpus: r.millicpus / 2,
        mem_mb: r.mem_mb / 2,
        disk_mb: r.disk_mb / 2,
    }
}

fn run_ops(limits: [Option<u64>; 3], ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut al = DrfAllocator::new(AllocatorConfig::default());
    for (role, limit) in ROLES.iter().zip(limits) {
        if let Some(cpus) = limit {
            let limit = Resources {
                millicpus: cpus * 1000,
                mem_mb: u64::MAX,
                disk_mb: u64::MAX,
            };
            al.set_quota(
                role,
                Quota {
                    guarantee: Resources::ZERO,
                    limit: Some(limit),
                },
            )
            .unwrap();
        }
    }
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::AddAgent { cpus, mem } => {
                m.next += 1;
                let id = AgentId::new(format!("a{}", m.next)).unwrap();
                let total = Resources::new(cpus as f64, mem, 0);
                al.add_agent(id.clone(), total).unwrap();
                m.agents.push((id, total));
            }
            Op::RemoveAgent(i) if !m.agents.is_empty() => {
                let (id, _) = m.agents.remove(i % m.agents.len());
                al.remove_agent(&id).unwrap();
                m.held.retain(|(_, a), _| *a != id);
                m.filters.retain(|(_, a), _| *a != id);
            }
            Op::AddFramework(role) => {
                m.next += 1;
                let id = FrameworkId::new(format!("f{}", m.next)).unwrap();
                al.add_framework(id.clone(), ROLES[role], true).unwrap();
                m.frameworks.push((id, role));
            }
            Op::RemoveFramework(i) if !m.frameworks.is_empty() => {
                let (id, _) = m.frameworks.remove(i % m.frameworks.len());
                al.remove_framework(&id).unwrap();
                m.held.retain(|(f, _), _| *f != id);
                m.filters.retain(|(f, _), _| *f != id);
                m.suppressed.retain(|f| *f != id);
            }
            Op::Allocate { dt } => {
                m.now += dt;
                for a in al.allocate(m.now) {
                    let key = (a.framework.clone(), a.agent.clone());
                    if let Some(&(until, declined)) = m.filters.get(&key) {
                        // A filter covers only what was declined: offering more is allowed.
                        prop_assert!(
                            until <= m.now || !a.resources.fits_in(&declined),
                            "{key:?} offered {} at {} before {until}, within the declined {declined}",
                            a.resources,
                            m.now
                        );
                    }
                    prop_assert!(
                        !m.suppressed.contains(&a.framework),
                        "suppressed got an offer"
                    );
                    prop_assert!(!a.resources.is_zero());
                    let held = m.held.entry(key).or_default();
                    *held = held.checked_add(&a.resources).unwrap();
                }
            }
            Op::Decline { pick, refuse_ms } if !m.held.is_empty() => {
                let mut keys: Vec<_> = m.held.keys().cloned().collect();
                keys.sort();
                let key = keys[pick % keys.len()].clone();
                let res = m.held.remove(&key).unwrap_or_default();
                al.recover(&key.0, &key.1, res, refuse_ms, m.now).unwrap();
                if refuse_ms > 0 {
                    m.filters.insert(key, (m.now + refuse_ms, res));
                }
            }
            Op::ReturnHalf(pick) if !m.held.is_empty() => {
                let mut keys: Vec<_> = m.held.keys().cloned().collect();
                keys.sort();
                let key = keys[pick % keys.len()].clone();
                let back = half(&m.held[&key]);
                al.recover(&key.0, &key.1, back, 0, m.now).unwrap();
                let held = m.held.get_mut(&key).unwrap();
                *held = held.checked_sub(&back).unwrap();
            }
            Op::Suppress(i) if !m.frameworks.is_empty() => {
                let id = m.frameworks[i % m.frameworks.len()].0.clone();
                al.suppress(&id).unwrap();
                m.suppressed.push(id);
            }
            Op::Revive(i) if !m.frameworks.is_empty() => {
                let id = m.frameworks[i % m.frameworks.len()].0.clone();
                al.revive(&id).unwrap();
                m.suppressed.retain(|f| *f != id);
                m.filters.retain(|(f, _), _| *f != id);
            }
            _ => {}
        }

        // No agent is over-allocated, and the allocator's books match the model.
        for (agent, total) in &m.agents {
            let used = sum(m
                .held
                .iter()
                .filter(|((_, a), _)| a == agent)
                .map(|(_, r)| r));
            prop_assert!(used.fits_in(total), "{agent} holds {used} of {total}");
            prop_assert_eq!(
                al.agent_available(agent),
                Some(total.checked_sub(&used).unwrap())
            );
        }
        for (fw, role) in &m.frameworks {
            let held = sum(m.held.iter().filter(|((f, _), _)| f == fw).map(|(_, r)| r));
            prop_assert_eq!(al.framework_allocation(fw), Some(held));
            let _ = role;
        }
        // Quota limits hold.
        for (r, limit) in limits.iter().enumerate() {
            if let (Some(cpus), Some(alloc)) = (limit, al.role_allocation(ROLES[r])) {
                prop_assert!(
                    alloc.millicpus <= cpus * 1000,
                    "role {} holds {alloc}",
                    ROLES[r]
                );
            }
        }
    }
    Ok(())
}

/// Identical agents of `slots` tasks each; frameworks take one task per offer and decline the
/// rest with no filter, or decline everything with a long filter when they are full. Returns
/// each framework's number of tasks once nothing more is offered.
fn fill_one_task_per_offer(
    al: &mut DrfAllocator,
    task: Resources,
    demand: &HashMap<FrameworkId, usize>,
) -> HashMap<FrameworkId, usize> {
    let mut tasks: HashMap<FrameworkId, usize> = HashMap::new();
    let mut now = 0;
    for _ in 0..10_000 {
        now += 1;
        let out = al.allocate(now);
        if out.is_empty() {
            break;
        }
        for a in out {
            let n = tasks.entry(a.framework.clone()).or_default();
            if *n < demand[&a.framework] && task.fits_in(&a.resources) {
                *n += 1;
                let rest = a.resources.checked_sub(&task).unwrap();
                al.recover(&a.framework, &a.agent, rest, 0, now).unwrap();
            } else {
                al.recover(&a.framework, &a.agent, a.resources, 1 << 40, now)
                    .unwrap();
            }
        }
    }
    tasks
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn books_limits_and_filters_hold(
        limits in proptest::array::uniform3(proptest::option::of(1u64..40)),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run_ops(limits, ops)?;
    }

    #[test]
    fn equal_weights_and_demands_give_shares_within_one_task(
        agents in 1usize..20,
        frameworks in 2usize..8,
        slots in 1u64..6,
    ) {
        let task = Resources::new(1.0, 512, 0);
        let mut al = DrfAllocator::new(AllocatorConfig::default());
        for i in 0..agents {
            let size = Resources::new(slots as f64, 512 * slots, 0);
            al.add_agent(AgentId::new(format!("a{i}")).unwrap(), size).unwrap();
        }
        let mut demand = HashMap::new();
        for i in 0..frameworks {
            let id = FrameworkId::new(format!("f{i}")).unwrap();
            al.add_framework(id.clone(), "r", true).unwrap();
            demand.insert(id, usize::MAX);
        }
        let tasks = fill_one_task_per_offer(&mut al, task, &demand);
        let counts: Vec<usize> =
            demand.keys().map(|f| tasks.get(f).copied().unwrap_or(0)).collect();
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        prop_assert!(hi - lo <= 1, "task counts {counts:?}");
        prop_assert_eq!(counts.iter().sum::<usize>(), agents * slots as usize, "cluster full");
        let task_share = task.dominant_share(&al.cluster_total());
        let shares: Vec<f64> =
            demand.keys().map(|f| al.framework_share(f).unwrap()).collect();
        let spread = shares.iter().cloned().fold(f64::MIN, f64::max)
            - shares.iter().cloned().fold(f64::MAX, f64::min);
        prop_assert!(spread <= task_share + 1e-9, "shares {shares:?}, task share {task_share}");
    }

    #[test]
    fn shares_follow_weights(w0 in 1u32..5, w1 in 1u32..5, agents in 10usize..80) {
        let mut al = DrfAllocator::new(AllocatorConfig::default());
        let agent = Resources::new(2.0, 2048, 0);
        for i in 0..agents {
            al.add_agent(AgentId::new(format!("a{i}")).unwrap(), agent).unwrap();
        }
        al.set_weight("r0", w0 as f64).unwrap();
        al.set_weight("r1", w1 as f64).unwrap();
        al.add_framework(FrameworkId::new("f0").unwrap(), "r0", true).unwrap();
        al.add_framework(FrameworkId::new("f1").unwrap(), "r1", true).unwrap();
        al.allocate(0);
        let total = al.cluster_total();
        let s0 = al.role_allocation("r0").unwrap().dominant_share(&total) / w0 as f64;
        let s1 = al.role_allocation("r1").unwrap().dominant_share(&total) / w1 as f64;
        let step = agent.dominant_share(&total) / w0.min(w1) as f64;
        prop_assert!((s0 - s1).abs() <= step + 1e-9, "weighted shares {s0} vs {s1}, step {step}");
    }

    #[test]
    fn guarantees_are_met_first(
        guarantees in proptest::collection::vec(0u64..10, 1..4),
        others in 1usize..10,
        agents in 4usize..40,
    ) {
        // Many competitors in an unquoted role would take everything on fair share alone.
        let agent = Resources::new(4.0, 4096, 0);
        let mut al = DrfAllocator::new(AllocatorConfig::default());
        for i in 0..agents {
            al.add_agent(AgentId::new(format!("a{i}")).unwrap(), agent).unwrap();
        }
        for i in 0..others {
            al.add_framework(FrameworkId::new(format!("o{i}")).unwrap(), "best-effort", true)
                .unwrap();
        }
        // Guarantees in whole agents, scaled down so that they fit with one agent to spare each.
        let budget = agents.saturating_sub(guarantees.len()) as u64;
        let want: u64 = guarantees.iter().sum();
        let mut expect = Vec::new();
        for (i, g) in guarantees.iter().enumerate() {
            let g = if want > budget { g * budget / want.max(1) } else { *g };
            let role = format!("q{i}");
            let guarantee = Resources::new(4.0 * g as f64, 0, 0);
            al.set_quota(&role, Quota { guarantee, limit: None }).unwrap();
            al.add_framework(FrameworkId::new(format!("g{i}")).unwrap(), &role, true).unwrap();
            expect.push((role, guarantee));
        }
        al.allocate(0);
        for (role, guarantee) in expect {
            let got = al.role_allocation(&role).unwrap();
            prop_assert!(guarantee.fits_in(&got), "role {role} got {got}, guaranteed {guarantee}");
        }
    }

    #[test]
    fn limited_role_never_exceeds_its_limit_under_demand(limit in 1u64..30, agents in 1usize..20) {
        let mut al = DrfAllocator::new(AllocatorConfig::default());
        for i in 0..agents {
            al.add_agent(AgentId::new(format!("a{i}")).unwrap(), Resources::new(3.0, 3000, 0))
                .unwrap();
        }
        let lim = Resources { millicpus: limit * 1000, mem_mb: u64::MAX, disk_mb: u64::MAX };
        al.set_quota("r", Quota { guarantee: Resources::ZERO, limit: Some(lim) }).unwrap();
        al.add_framework(FrameworkId::new("f").unwrap(), "r", true).unwrap();
        al.allocate(0);
        let got = al.role_allocation("r").unwrap();
        prop_assert!(got.millicpus <= limit * 1000);
        prop_assert_eq!(got.millicpus, (limit * 1000).min(agents as u64 * 3000), "limit reached");
    }
}
