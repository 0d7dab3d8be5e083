//! `wasmos-bench allocator`: how long one allocation cycle of the DRF allocator takes.
//!
//! Modelled on Mesos's `DeclineOffers` allocator benchmark: every framework wants resources,
//! and between cycles every framework declines everything it was offered with a zero filter,
//! so each measured cycle offers every agent's resources afresh. Also measured: a cycle after
//! one agent's resources change (the incremental path, which should touch only that agent),
//! and the master memory each agent costs (resident-set growth while building the allocator
//! and its outstanding allocations, divided by agents; Linux only, 0 elsewhere).
//!
//! Only the `allocate` call is timed; declines are timed separately (`decline_ms_p50`).

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::json;
use wasmos_api::{AgentId, FrameworkId, Resources};
use wasmos_master::allocator::{Allocation, Allocator, AllocatorConfig, DrfAllocator};

/// Arguments of `wasmos-bench allocator`.
#[derive(Clone, Debug, clap::Args)]
pub struct AllocatorArgs {
    /// Print JSON (the only format; accepted for symmetry with the other scenarios).
    #[arg(long)]
    pub json: bool,
    /// Number of agents.
    #[arg(long, default_value_t = 50_000)]
    pub agents: usize,
    /// Number of frameworks, spread round-robin over the roles.
    #[arg(long, default_value_t = 1_000)]
    pub frameworks: usize,
    /// Number of roles.
    #[arg(long, default_value_t = 10)]
    pub roles: usize,
    /// Number of measured cycles of each kind.
    #[arg(long, default_value_t = 20)]
    pub cycles: usize,
}

/// Runs the benchmark and returns its figures as JSON (keys: `agents`, `frameworks`, `roles`,
/// `cycle_ms_p50`, `cycle_ms_p99`, `incremental_cycle_ms_p50`, `bytes_per_agent`, plus
/// `incremental_cycle_ms_p99`, `decline_ms_p50`, `cycles`, `full_over_incremental`).
pub fn run(args: AllocatorArgs) -> anyhow::Result<serde_json::Value> {
    ensure!(
        args.agents > 0 && args.frameworks > 0,
        "need at least one agent and one framework"
    );
    ensure!(
        args.roles > 0 && args.cycles > 0,
        "need at least one role and one cycle"
    );

    let rss_before = resident_bytes();
    let mut al = DrfAllocator::new(AllocatorConfig::default());
    let agent_size = Resources::new(16.0, 64 * 1024, 512 * 1024);
    let agents: Vec<AgentId> = (0..args.agents)
        .map(|i| AgentId::new(format!("agent-{i:06}")))
        .collect::<Result<_, _>>()?;
    for a in &agents {
        al.add_agent(a.clone(), agent_size)?;
    }
    for i in 0..args.frameworks {
        let id = FrameworkId::new(format!("framework-{i:05}"))?;
        al.add_framework(id, &format!("role-{}", i % args.roles), true)?;
    }

    let mut now = 0u64;
    // Warm-up cycle; it also leaves every agent's resources outstanding, the worst case for
    // memory.
    let mut outstanding = al.allocate(now);
    ensure!(
        outstanding.len() == args.agents,
        "warm-up offered {} agents",
        outstanding.len()
    );
    let rss_after = resident_bytes();
    let bytes_per_agent = rss_after.saturating_sub(rss_before) / args.agents as u64;

    let mut full = Vec::with_capacity(args.cycles);
    let mut declines = Vec::with_capacity(args.cycles);
    for _ in 0..args.cycles {
        now += 1_000;
        let t = Instant::now();
        decline_all(&mut al, &outstanding, now)?;
        declines.push(t.elapsed());
        let t = Instant::now();
        outstanding = al.allocate(now);
        full.push(t.elapsed());
        ensure!(
            outstanding.len() == args.agents,
            "a full cycle offered {} of {} agents",
            outstanding.len(),
            args.agents
        );
    }

    // Incremental: everything is offered; one agent grows, and only it is allocated.
    let mut incremental = Vec::with_capacity(args.cycles);
    for c in 0..args.cycles {
        now += 1_000;
        let agent = &agents[(c * 7919) % agents.len()];
        let bigger = Resources {
            millicpus: agent_size.millicpus + 1_000 * (c as u64 + 1),
            ..agent_size
        };
        al.update_agent(agent, bigger).context("growing an agent")?;
        let t = Instant::now();
        let got = al.allocate(now);
        incremental.push(t.elapsed());
        ensure!(
            got.len() == 1,
            "an incremental cycle offered {} agents, expected 1",
            got.len()
        );
        outstanding.extend(got);
    }

    let full_p50 = percentile_ms(&mut full, 0.50);
    let inc_p50 = percentile_ms(&mut incremental, 0.50);
    Ok(json!({
        "agents": args.agents,
        "frameworks": args.frameworks,
        "roles": args.roles,
        "cycles": args.cycles,
        "cycle_ms_p50": full_p50,
        "cycle_ms_p99": percentile_ms(&mut full, 0.99),
        "incremental_cycle_ms_p50": inc_p50,
        "incremental_cycle_ms_p99": percentile_ms(&mut incremental, 0.99),
        "full_over_incremental": if inc_p50 > 0.0 { full_p50 / inc_p50 } else { f64::INFINITY },
        "decline_ms_p50": percentile_ms(&mut declines, 0.50),
        "bytes_per_agent": bytes_per_agent,
    }))
}

fn decline_all(al: &mut DrfAllocator, offers: &[Allocation], now: u64) -> anyhow::Result<()> {
    for o in offers {
        al.recover(&o.framework, &o.agent, o.resources, 0, now)?;
    }
    Ok(())
}

/// The `q` quantile of `samples`, in milliseconds (nearest rank).
fn percentile_ms(samples: &mut [Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort();
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1].as_secs_f64() * 1e3
}

/// This process's resident set size in bytes (Linux), or 0 where unknown.
fn resident_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_reports_every_key() {
        let v = run(AllocatorArgs {
            json: true,
            agents: 200,
            frameworks: 20,
            roles: 3,
            cycles: 3,
        })
        .unwrap();
        for key in [
            "agents",
            "frameworks",
            "roles",
            "cycle_ms_p50",
            "cycle_ms_p99",
            "incremental_cycle_ms_p50",
            "bytes_per_agent",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        assert_eq!(v["agents"], 200);
    }
}
