//! Property tests of [`DrfAllocator`]: random event sequences checked against a simple model
//! (no agent over-allocated, limits hold, filters respected, bookkeeping exact) and for
//! liveness (after every cycle, nothing is left that a framework wanting offers could take:
//! filters expire, revives count); an oracle that recomputes shares from the recorded events
//! and checks each allocation's order, with weighted roles of several frameworks, CPU-heavy
//! and memory-heavy tasks on heterogeneous agents and churn; and fairness properties (equal
//! shares, weighted shares, guarantees first).

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
        match op.clone() {
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

        if matches!(op, Op::Allocate { .. }) {
            check_nothing_left_unoffered(&m, &limits)?;
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

/// Worth offering, by the default `min_allocatable` (0.01 cpus or 32 MiB), restated here.
fn worth_offering(r: &Resources) -> bool {
    r.millicpus >= 10 || r.mem_mb >= 32
}

/// Liveness, right after a cycle: no framework that wants offers could still be offered
/// anything. For every agent with free resources worth offering, every active, unsuppressed
/// framework is either within an unexpired filter there or in a role whose limit leaves it
/// nothing worth offering. An allocator that never offers, whose filters never expire or
/// that forgets a revive fails this.
fn check_nothing_left_unoffered(m: &Model, limits: &[Option<u64>; 3]) -> Result<(), TestCaseError> {
    for (agent, total) in &m.agents {
        let used = sum(m
            .held
            .iter()
            .filter(|((_, a), _)| a == agent)
            .map(|(_, r)| r));
        let free = total.saturating_sub(&used);
        if !worth_offering(&free) {
            continue;
        }
        for (fw, role) in &m.frameworks {
            if m.suppressed.contains(fw) {
                continue;
            }
            let headroom = match limits[*role] {
                None => Resources::UNLIMITED,
                Some(cpus) => {
                    let held = sum(m
                        .held
                        .iter()
                        .filter(|((f, _), _)| m.frameworks.iter().any(|(g, r)| g == f && r == role))
                        .map(|(_, r)| r));
                    Resources {
                        millicpus: (cpus * 1000).saturating_sub(held.millicpus),
                        mem_mb: u64::MAX,
                        disk_mb: u64::MAX,
                    }
                }
            };
            let offer = free.min_each(&headroom);
            if !worth_offering(&offer) {
                continue;
            }
            let filtered = m
                .filters
                .get(&(fw.clone(), agent.clone()))
                .is_some_and(|&(until, declined)| until > m.now && offer.fits_in(&declined));
            prop_assert!(
                filtered,
                "at {}: {fw} (role {}) wants offers and could take {offer} on {agent}, \
                 which it has not filtered, but the cycle left it unoffered",
                m.now,
                ROLES[*role]
            );
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

/// A framework of the DRF oracle test: its role, the shape of its tasks and how many it wants.
#[derive(Clone, Debug)]
struct FwSpec {
    role: usize,
    task: Resources,
    demand: usize,
}

/// Tasks whose dominant resource is CPU or memory, so that frameworks' dominant resources
/// differ.
fn task_shape() -> impl Strategy<Value = Resources> {
    prop_oneof![
        (1u64..4, 64u64..512).prop_map(|(c, m)| Resources::new(c as f64, m, 0)),
        (100u64..500, 1u64..8).prop_map(|(mc, g)| Resources {
            millicpus: mc,
            mem_mb: g * 1024,
            disk_mb: 0,
        }),
    ]
}

fn fw_spec() -> impl Strategy<Value = FwSpec> {
    (0..ROLES.len(), task_shape(), 1usize..12).prop_map(|(role, task, demand)| FwSpec {
        role,
        task,
        demand,
    })
}

/// Agents whose CPU and memory vary independently: CPU-rich, memory-rich and small ones.
fn agent_shape() -> impl Strategy<Value = Resources> {
    (1u64..32, 1u64..64).prop_map(|(c, g)| Resources::new(c as f64, g * 1024, 0))
}

#[derive(Clone, Debug)]
enum Churn {
    FinishTask(usize),
    AddAgent(Resources),
    RemoveAgent(usize),
    AddFramework(FwSpec),
    RemoveFramework(usize),
    Suppress(usize),
    Revive(usize),
}

fn churn() -> impl Strategy<Value = Churn> {
    prop_oneof![
        6 => any::<usize>().prop_map(Churn::FinishTask),
        1 => agent_shape().prop_map(Churn::AddAgent),
        1 => any::<usize>().prop_map(Churn::RemoveAgent),
        1 => fw_spec().prop_map(Churn::AddFramework),
        1 => any::<usize>().prop_map(Churn::RemoveFramework),
        1 => any::<usize>().prop_map(Churn::Suppress),
        1 => any::<usize>().prop_map(Churn::Revive),
    ]
}

/// The dominant share, computed here rather than by `Resources::dominant_share`.
fn share_of(r: &Resources, total: &Resources) -> f64 {
    [
        (r.millicpus, total.millicpus),
        (r.mem_mb, total.mem_mb),
        (r.disk_mb, total.disk_mb),
    ]
    .into_iter()
    .filter(|&(_, t)| t > 0)
    .map(|(u, t)| u as f64 / t as f64)
    .fold(0.0, f64::max)
}

impl Model {
    fn free(&self, agent: &AgentId) -> Resources {
        let total = self
            .agents
            .iter()
            .find(|(a, _)| a == agent)
            .map(|(_, t)| *t);
        let used = sum(self
            .held
            .iter()
            .filter(|((_, a), _)| a == agent)
            .map(|(_, r)| r));
        total.unwrap_or_default().saturating_sub(&used)
    }

    /// Whether `fw` wants offers and some agent has free resources worth offering that it
    /// has not filtered (no quota limits in the oracle test).
    fn eligible(&self, fw: &FrameworkId) -> bool {
        !self.suppressed.contains(fw)
            && self.agents.iter().any(|(a, _)| {
                let free = self.free(a);
                worth_offering(&free) && !self.filtered(fw, a, &free)
            })
    }

    fn filtered(&self, fw: &FrameworkId, agent: &AgentId, offer: &Resources) -> bool {
        self.filters
            .get(&(fw.clone(), agent.clone()))
            .is_some_and(|&(until, declined)| until > self.now && offer.fits_in(&declined))
    }

    fn fw_held(&self, fw: &FrameworkId) -> Resources {
        sum(self
            .held
            .iter()
            .filter(|((f, _), _)| f == fw)
            .map(|(_, r)| r))
    }

    fn role_held(&self, role: usize) -> Resources {
        let members: Vec<&FrameworkId> = self
            .frameworks
            .iter()
            .filter(|(_, r)| *r == role)
            .map(|(f, _)| f)
            .collect();
        sum(self
            .held
            .iter()
            .filter(|((f, _), _)| members.contains(&f))
            .map(|(_, r)| r))
    }

    fn total(&self) -> Resources {
        sum(self.agents.iter().map(|(_, t)| t))
    }
}

/// Weighted roles with several frameworks each, CPU-heavy and memory-heavy tasks on
/// heterogeneous agents, and churn between cycles (tasks end, agents and frameworks come and
/// go, suppress and revive). Each allocation is checked, in the order the cycle made it,
/// against shares recomputed from the recorded events: the chosen framework's role has the
/// lowest weighted dominant share of the roles that have a framework able to take something,
/// and the framework the lowest dominant share of such frameworks in its role; it gets all
/// of the agent's free resources. After each cycle nothing is left that a framework could
/// take (liveness).
fn run_drf_oracle(
    weights: [u32; 3],
    agents: Vec<Resources>,
    fws: Vec<FwSpec>,
    rounds: Vec<Vec<Churn>>,
) -> Result<(), TestCaseError> {
    const LONG: Millis = 1 << 40;
    let mut al = DrfAllocator::new(AllocatorConfig::default());
    for (role, w) in ROLES.iter().zip(weights) {
        al.set_weight(role, w as f64).unwrap();
    }
    let mut m = Model::default();
    let mut specs: HashMap<FrameworkId, FwSpec> = HashMap::new();
    let mut tasks: Vec<(FrameworkId, AgentId, Resources)> = Vec::new();
    // Frameworks that declined with a long filter because they had all they wanted; they
    // revive when one of their tasks ends, as a scheduler would.
    let mut full: Vec<FrameworkId> = Vec::new();
    let add_agent = |al: &mut DrfAllocator, m: &mut Model, total: Resources| {
        m.next += 1;
        let id = AgentId::new(format!("a{}", m.next)).unwrap();
        al.add_agent(id.clone(), total).unwrap();
        m.agents.push((id, total));
    };
    let add_fw = |al: &mut DrfAllocator,
                  m: &mut Model,
                  specs: &mut HashMap<FrameworkId, FwSpec>,
                  spec: FwSpec| {
        m.next += 1;
        let id = FrameworkId::new(format!("f{}", m.next)).unwrap();
        al.add_framework(id.clone(), ROLES[spec.role], true)
            .unwrap();
        m.frameworks.push((id.clone(), spec.role));
        specs.insert(id, spec);
    };
    for a in agents {
        add_agent(&mut al, &mut m, a);
    }
    for spec in fws {
        add_fw(&mut al, &mut m, &mut specs, spec);
    }
    for round in rounds {
        for c in round {
            match c {
                Churn::FinishTask(i) if !tasks.is_empty() => {
                    let (f, a, r) = tasks.remove(i % tasks.len());
                    al.recover(&f, &a, r, 0, m.now).unwrap();
                    let held = m.held.get_mut(&(f.clone(), a.clone())).unwrap();
                    *held = held.checked_sub(&r).unwrap();
                    if full.contains(&f) {
                        full.retain(|g| *g != f);
                        al.revive(&f).unwrap();
                        m.suppressed.retain(|g| *g != f);
                        m.filters.retain(|(g, _), _| *g != f);
                    }
                }
                Churn::AddAgent(total) => add_agent(&mut al, &mut m, total),
                Churn::RemoveAgent(i) if !m.agents.is_empty() => {
                    let (id, _) = m.agents.remove(i % m.agents.len());
                    al.remove_agent(&id).unwrap();
                    m.held.retain(|(_, a), _| *a != id);
                    m.filters.retain(|(_, a), _| *a != id);
                    tasks.retain(|(_, a, _)| *a != id);
                }
                Churn::AddFramework(spec) => add_fw(&mut al, &mut m, &mut specs, spec),
                Churn::RemoveFramework(i) if !m.frameworks.is_empty() => {
                    let (id, _) = m.frameworks.remove(i % m.frameworks.len());
                    al.remove_framework(&id).unwrap();
                    m.held.retain(|(f, _), _| *f != id);
                    m.filters.retain(|(f, _), _| *f != id);
                    m.suppressed.retain(|f| *f != id);
                    tasks.retain(|(f, _, _)| *f != id);
                    full.retain(|f| *f != id);
                }
                Churn::Suppress(i) if !m.frameworks.is_empty() => {
                    let id = m.frameworks[i % m.frameworks.len()].0.clone();
                    al.suppress(&id).unwrap();
                    m.suppressed.push(id);
                }
                Churn::Revive(i) if !m.frameworks.is_empty() => {
                    let id = m.frameworks[i % m.frameworks.len()].0.clone();
                    al.revive(&id).unwrap();
                    m.suppressed.retain(|f| *f != id);
                    m.filters.retain(|(f, _), _| *f != id);
                    full.retain(|f| *f != id);
                }
                _ => {}
            }
        }

        m.now += 1_000;
        let out = al.allocate(m.now);
        let total = m.total();
        for a in &out {
            let role = m
                .frameworks
                .iter()
                .find(|(f, _)| *f == a.framework)
                .map(|(_, r)| *r);
            prop_assert!(role.is_some(), "offer to unknown {}", a.framework);
            let role = role.unwrap_or_default();
            let free = m.free(&a.agent);
            prop_assert_eq!(
                a.resources,
                free,
                "{} gets all of {}'s free",
                a.framework,
                a.agent
            );
            prop_assert!(
                !m.suppressed.contains(&a.framework) && !m.filtered(&a.framework, &a.agent, &free),
                "{} offered {} though it does not want it",
                a.framework,
                a.agent
            );
            let weighted = |r: usize| share_of(&m.role_held(r), &total) / weights[r] as f64;
            let mine = weighted(role);
            for (other, r) in &m.frameworks {
                if !m.eligible(other) {
                    continue;
                }
                prop_assert!(
                    mine <= weighted(*r) + 1e-9,
                    "{} (role {}, weighted share {mine}) served before {other} (role {}, {})",
                    a.framework,
                    ROLES[role],
                    ROLES[*r],
                    weighted(*r)
                );
                if *r == role {
                    let (s, o) = (
                        share_of(&m.fw_held(&a.framework), &total),
                        share_of(&m.fw_held(other), &total),
                    );
                    prop_assert!(
                        s <= o + 1e-9,
                        "{} (share {s}) served before {other} (share {o}) in role {}",
                        a.framework,
                        ROLES[role]
                    );
                }
            }
            let held = m
                .held
                .entry((a.framework.clone(), a.agent.clone()))
                .or_default();
            *held = held.checked_add(&a.resources).unwrap();
        }
        check_nothing_left_unoffered(&m, &[None; 3])?;

        // Each framework launches one task per offer while it wants more and the task fits,
        // and returns the rest; otherwise it declines all, for good while it is full.
        for a in out {
            let spec = &specs[&a.framework];
            let running = tasks.iter().filter(|(f, _, _)| *f == a.framework).count();
            let key = (a.framework.clone(), a.agent.clone());
            if running < spec.demand && spec.task.fits_in(&a.resources) {
                tasks.push((a.framework.clone(), a.agent.clone(), spec.task));
                let rest = a.resources.checked_sub(&spec.task).unwrap();
                al.recover(&a.framework, &a.agent, rest, 0, m.now).unwrap();
                let held = m.held.get_mut(&key).unwrap();
                *held = held.checked_sub(&rest).unwrap();
            } else {
                al.recover(&a.framework, &a.agent, a.resources, LONG, m.now)
                    .unwrap();
                let held = m.held.get_mut(&key).unwrap();
                *held = held.checked_sub(&a.resources).unwrap();
                m.filters.insert(key, (m.now + LONG, a.resources));
                if running >= spec.demand && !full.contains(&a.framework) {
                    full.push(a.framework.clone());
                }
            }
        }
    }
    Ok(())
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
    fn drf_order_and_liveness_against_recomputed_shares(
        weights in proptest::array::uniform3(1u32..4),
        agents in proptest::collection::vec(agent_shape(), 1..12),
        fws in proptest::collection::vec(fw_spec(), 2..9),
        rounds in proptest::collection::vec(proptest::collection::vec(churn(), 0..5), 1..25),
    ) {
        run_drf_oracle(weights, agents, fws, rounds)?;
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
