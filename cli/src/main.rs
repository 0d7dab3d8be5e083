//! The `wasmos` command. Thin glue: each subcommand parses its flags and calls a library crate.

mod acl;
mod agent;
mod certs;
mod client;
mod compiler;
mod dev;
mod display;
mod master;
mod members;
mod ops;
mod submit;
mod task_run;
mod tls_args;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// wasmos: a cluster resource manager whose frameworks are WebAssembly components.
#[derive(Parser)]
#[command(name = "wasmos", version, about)]
struct Cli {
    /// The token calls to a master carry (as `authorization: Bearer TOKEN`); every master
    /// enforces ACLs (all but a plain `wasmos dev`), so every call but `wasmos acl bootstrap`
    /// needs one; `wasmos agent` sends it too (an agent token, unless it has an agent
    /// certificate). By default the environment variable WASMOS_TOKEN, which is better than
    /// the flag: a flag shows in `ps`.
    #[arg(long, global = true, value_name = "TOKEN")]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a master: serves schedulers, agents and operators until Ctrl-C. It enforces ACLs:
    /// create the first (management) token with `wasmos acl bootstrap`, then tokens for
    /// tenants and agents with `wasmos tokens create`.
    Master(master::Args),
    /// Run an agent: registers with a master and runs the tasks it sends, until Ctrl-C.
    Agent(agent::Args),
    /// Upload a framework component to a master, start it, and follow it to its result.
    Submit(submit::Args),
    /// Run a master and agents in this process on 127.0.0.1 (and optionally one framework).
    Dev(dev::Args),
    /// List a master's agents: ids, addresses, state, tasks, resources used and total.
    Agents(ops::AgentsArgs),
    /// List a master's frameworks: ids, names, roles, scheduler kind and state, tasks, usage.
    Frameworks(ops::FrameworksArgs),
    /// List the tasks a master knows: ids, states, frameworks, hosts, resources.
    Tasks(ops::TasksArgs),
    /// Kill a task through the master (its framework gets TASK_KILLED) and wait for it to end.
    Kill(ops::KillArgs),
    /// Tear a framework down: its tasks are killed, its scheduler stopped, and it is removed.
    Teardown(ops::TeardownArgs),
    /// Manage the components in the masters' blob store.
    Components {
        #[command(subcommand)]
        command: ops::ComponentsCommand,
    },
    /// Operate a replicated group of masters.
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Bootstrap the ACLs and define policies.
    Acl {
        #[command(subcommand)]
        command: acl::AclCommand,
    },
    /// Create, list and revoke tokens.
    Tokens {
        #[command(subcommand)]
        command: acl::TokensCommand,
    },
    /// Read a master's audit log (refusals and mutating calls) from its data dir.
    Audit(acl::AuditArgs),
    /// Make the cluster's TLS certificates: a CA, then one certificate per master, agent and
    /// client, each naming its role.
    Certs {
        #[command(subcommand)]
        command: certs::CertsCommand,
    },
    /// Work with single tasks, without a cluster.
    Task {
        #[command(subcommand)]
        command: TaskCommand,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// List, add or remove the masters of the group.
    Members {
        #[command(subcommand)]
        command: members::MembersCommand,
    },
}

#[derive(Subcommand)]
enum TaskCommand {
    /// Run one task in a framework's executor on this machine and print its result.
    Run(task_run::Args),
}

fn main() -> ExitCode {
    // The component compiler child (hidden; see `compiler.rs`): before any thread starts, so
    // that its memory limit covers everything it does.
    let mut argv = std::env::args_os().skip(1);
    if argv.next().as_deref()
        == Some(std::ffi::OsStr::new(
            wasmos_wasm_executor::compile::COMPILE_SUBCOMMAND,
        ))
    {
        let rest: Vec<_> = argv.collect();
        let code = wasmos_wasm_executor::compile::child_main(&rest);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WASMOS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Err(e) = client::set_token(
        cli.token
            .clone()
            .or_else(|| std::env::var("WASMOS_TOKEN").ok())
            .as_deref(),
    ) {
        eprintln!("wasmos: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wasmos: cannot start the async runtime: {e}");
            return ExitCode::from(70);
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Master(args) => master::run(args).await,
            Command::Agent(args) => agent::run(args).await,
            Command::Submit(args) => submit::run(args).await,
            Command::Dev(args) => dev::run(args).await,
            Command::Agents(args) => ops::agents(args).await,
            Command::Frameworks(args) => ops::frameworks(args).await,
            Command::Tasks(args) => ops::tasks(args).await,
            Command::Kill(args) => ops::kill(args).await,
            Command::Teardown(args) => ops::teardown(args).await,
            Command::Components { command } => ops::components(command).await,
            Command::Operator {
                command: OperatorCommand::Members { command },
            } => members::run(command).await,
            Command::Certs { command } => certs::run(command),
            Command::Task {
                command: TaskCommand::Run(args),
            } => task_run::run(args).await,
            Command::Acl { command } => acl::acl(command).await,
            Command::Tokens { command } => acl::tokens(command).await,
            Command::Audit(args) => acl::audit(args),
        }
    })
}

/// Parses a non-negative number of seconds (`0.5`, `15`) into a duration.
fn duration_secs(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    std::time::Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{s:?} must be a finite number of seconds, 0 or more"))
}

/// Resolves on Ctrl-C or SIGTERM, so that `kill` stops a master or agent cleanly.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
