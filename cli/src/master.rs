//! `wasmos master`: runs a master (`wasmos_master::Master`) on a TCP address until Ctrl-C or
//! SIGTERM. Every knob not given on the command line keeps its `MasterConfig` default.
//!
//! It listens on `--listen` (default 127.0.0.1:5050, where `wasmos submit` looks by default).
//! Once it listens it prints `wasmos master listening on ADDR` on stdout, so scripts and tests
//! that pass port 0 learn the port.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use wasmos_master::{Master, MasterConfig};

use crate::duration_secs;

#[derive(clap::Args)]
pub struct Args {
    /// Address to serve the scheduler, agent and operator gRPC APIs on (port 0 picks one).
    #[arg(long, value_name = "ADDR", default_value = crate::submit::DEFAULT_MASTER)]
    listen: SocketAddr,
    /// How often the allocator runs when nothing changes, in seconds.
    #[arg(long, value_name = "SECONDS", value_parser = duration_secs)]
    allocation_interval: Option<Duration>,
    /// How long an offer may go unanswered before it is rescinded, in seconds; 0 never
    /// rescinds.
    #[arg(long, value_name = "SECONDS", value_parser = duration_secs)]
    offer_timeout: Option<Duration>,
    /// How often agents heartbeat, in seconds.
    #[arg(long, value_name = "SECONDS", value_parser = duration_secs)]
    agent_heartbeat_interval: Option<Duration>,
    /// How long without a heartbeat before an agent is unreachable, in seconds.
    #[arg(long, value_name = "SECONDS", value_parser = duration_secs)]
    agent_unreachable_timeout: Option<Duration>,
    /// How long an unreachable agent may take to come back before it is removed, in seconds.
    #[arg(long, value_name = "SECONDS", value_parser = duration_secs)]
    agent_removal_timeout: Option<Duration>,
    /// How often schedulers receive a heartbeat event, in seconds.
    #[arg(long, value_name = "SECONDS", value_parser = duration_secs)]
    scheduler_heartbeat_interval: Option<Duration>,
    /// Largest framework component accepted, in MiB.
    #[arg(long, value_name = "MIB")]
    max_component_mb: Option<u64>,
}

impl Args {
    fn config(&self) -> anyhow::Result<MasterConfig> {
        let mut c = MasterConfig::default();
        if let Some(d) = self.allocation_interval {
            anyhow::ensure!(
                !d.is_zero(),
                "--allocation-interval must be above 0 seconds"
            );
            c.allocation_interval = d;
        }
        if let Some(d) = self.offer_timeout {
            c.offer_timeout = (!d.is_zero()).then_some(d);
        }
        if let Some(d) = self.agent_heartbeat_interval {
            anyhow::ensure!(
                !d.is_zero(),
                "--agent-heartbeat-interval must be above 0 seconds"
            );
            c.agent_heartbeat_interval = d;
        }
        if let Some(d) = self.agent_unreachable_timeout {
            c.agent_unreachable_timeout = d;
        }
        anyhow::ensure!(
            c.agent_unreachable_timeout > c.agent_heartbeat_interval,
            "the agent unreachable timeout ({:?}) must be longer than the agent heartbeat \
             interval ({:?}); raise --agent-unreachable-timeout",
            c.agent_unreachable_timeout,
            c.agent_heartbeat_interval
        );
        if let Some(d) = self.agent_removal_timeout {
            c.agent_removal_timeout = d;
        }
        if let Some(d) = self.scheduler_heartbeat_interval {
            anyhow::ensure!(
                !d.is_zero(),
                "--scheduler-heartbeat-interval must be above 0 seconds"
            );
            c.scheduler_heartbeat_interval = d;
        }
        if let Some(mb) = self.max_component_mb {
            c.max_component_bytes = mb
                .checked_mul(1 << 20)
                .context("--max-component-mb is too large")?;
            c.max_blob_store_bytes = c.max_blob_store_bytes.max(c.max_component_bytes);
        }
        Ok(c)
    }
}

pub async fn run(args: Args) -> ExitCode {
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmos master: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let config = args.config()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another master running there? pick another --listen",
                args.listen
            )
        })?;
    let bound = listener
        .local_addr()
        .context("cannot read the listening address")?;
    println!("wasmos master listening on {bound}");
    Master::new(config)
        .serve(listener, crate::shutdown_signal())
        .await
        .with_context(|| format!("the master on {bound} failed"))
}
