//! `wasmos-bench`: one subcommand per scenario; each prints one JSON object on stdout.
//!
//! Run in release mode (`cargo run --release -p wasmos-bench -- SCENARIO --json`): debug
//! builds measure the debug build. See `bench/README.md` for the scenarios and their targets.

mod allocator;
mod chaos;
mod component;
mod e2e;
mod failover;
mod http;
mod instantiate;
mod launch;
mod scale;
mod secure;
mod stats;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wasmos-bench", about = "wasmos benchmarks")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Instantiation, warm task round trip, limit-metering slowdown, native spawn.
    Instantiate(instantiate::Args),
    /// One component from upload to a warm task: upload, first compile, cached load,
    /// instantiate, first task, warm round trip (to compare guests of different languages).
    Component(component::Args),
    /// DRF allocation cycle time (full and incremental) and memory per agent.
    Allocator(allocator::AllocatorArgs),
    /// Launch-to-RUNNING and launch-to-terminal latency and tasks/s through one agent.
    Launch(launch::Args),
    /// A real cluster of processes (master + agents on loopback): tasks/s and latency of a
    /// hosted framework's tasks, and logreg's first and later iteration times.
    E2e(e2e::Args),
    /// Three masters and agents as processes; the leader is killed repeatedly: time until a
    /// new leader commits and until a task launches again, and registry commits/s.
    Failover(failover::Args),
    /// A seeded chaos soak: three masters (each in its own network namespace) and agents as
    /// processes under a continuous mix of frameworks and a fault every few seconds; counts
    /// violations of what must hold (correct results, identical registries, bounded RSS).
    /// Needs root.
    Chaos(chaos::Args),
    /// A master with 100,000 known tasks: `/api/v1/tasks` latency (p50/p99) and e2e
    /// throughput unpolled over polled 10 times a second.
    Http(http::Args),
    /// Simulated agents (real gRPC sessions, many per connection) and frameworks against a
    /// group of real masters: registration time, master memory per agent, heartbeats/s,
    /// launch overhead, allocation-cycle time, starvation of a late large framework, and
    /// re-registration after the leader is killed.
    Scale(scale::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = match cli.scenario {
        Scenario::Instantiate(args) => instantiate::run(args)?,
        Scenario::Allocator(args) => allocator::run(args)?,
        Scenario::Component(args) => component::run(args)?,
        Scenario::Launch(args) => launch::run(args)?,
        Scenario::E2e(args) => e2e::run(args)?,
        Scenario::Failover(args) => failover::run(args)?,
        Scenario::Http(args) => http::run(args)?,
        Scenario::Chaos(args) => chaos::run(args)?,
        Scenario::Scale(args) => scale::run(args)?,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
