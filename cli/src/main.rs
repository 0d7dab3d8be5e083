//! The `wasmos` command. Thin glue: each subcommand parses its flags and calls a library crate.

mod acl;
mod agent;
mod certs;
mod client;
mod compiler;
mod dev;
mod display;
mod history;
mod logs;
mod master;
mod members;
mod new;
mod ops;
mod status;
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
    /// certificate). The environment variable is better than the flag: a flag shows in `ps`
    /// [default: $WASMOS_TOKEN].
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
    #[command(
        after_help = "Example:\n  wasmos master --data-dir /var/lib/wasmos         # on 127.0.0.1:5050\n  wasmos acl bootstrap                            # the first token"
    )]
    Master(master::Args),
    /// Run an agent: registers with a master and runs the tasks it sends, until Ctrl-C.
    #[command(
        after_help = "Example:\n  WASMOS_TOKEN=AGENT_TOKEN wasmos agent --master 10.0.0.1:5050 --work-dir /var/lib/wasmos-agent\n  wasmos agent --master 10.0.0.1:5050 --work-dir /srv/agent --http 0.0.0.0:5052   # + /health, /ready, /metrics"
    )]
    Agent(agent::Args),
    /// Upload a framework component to a master, start it, and follow it to its result.
    #[command(
        after_help = "Example:\n  wasmos submit pi.wasm -- 8 100000          # follow it to its result\n  wasmos submit pi.wasm --detach -- 8 100000  # print its id and return"
    )]
    Submit(submit::Args),
    /// Follow a framework (submitted with --detach, or by another `wasmos submit`) to its
    /// result, as `wasmos submit` does; Ctrl-C leaves it running.
    Attach(submit::AttachArgs),
    /// Print how a framework ended: its result (exit 0) or failure (exit 1); exit 3 while it
    /// still runs.
    #[command(after_help = "Example:\n  wasmos result fw-1a2b3c-2 && echo finished")]
    Result(submit::AttachArgs),
    /// Run a master and agents in this process on 127.0.0.1 (and optionally one framework).
    #[command(
        after_help = "Example:\n  wasmos dev                                  # serve on 127.0.0.1:5050\n  wasmos dev --run pi.wasm -- 8 100000        # run one framework and exit\n  wasmos dev --open                           # and open the web UI"
    )]
    Dev(dev::Args),
    /// Show one framework, active or completed: state, role, principal, times, task counts by
    /// state, its result or failure, and why it waits for resources.
    Status(status::Args),
    /// List a master's agents: ids, addresses, state, tasks, resources used and total.
    Agents(ops::AgentsArgs),
    /// List a master's frameworks: ids, names, roles, scheduler kind and state, tasks, usage.
    Frameworks(ops::FrameworksArgs),
    /// Show a framework's stored state (what its scheduler put with `driver.state-put`): every
    /// key, or one key's value.
    State(ops::StateArgs),
    /// List the tasks a master knows: ids, states, frameworks, hosts, resources.
    Tasks(ops::TasksArgs),
    /// Print a task's stdout or stderr (read through the master from the agent that ran it),
    /// or a hosted scheduler's log lines.
    Logs(logs::Args),
    /// Kill a task through the master (its framework gets TASK_KILLED) and wait for it to end.
    #[command(after_help = "Example:\n  wasmos kill task-7 --framework fw-1a2b3c-2 --timeout 10s")]
    Kill(ops::KillArgs),
    /// Tear a framework down: its tasks are killed, its scheduler stopped, and it is removed.
    #[command(after_help = "Example:\n  wasmos teardown fw-1a2b3c-2")]
    Teardown(ops::TeardownArgs),
    /// Manage the components in the masters' blob store.
    #[command(
        after_help = "Example:\n  wasmos components delete 3f5a...e9   # a sha256 from `wasmos frameworks`"
    )]
    Components {
        #[command(subcommand)]
        command: ops::ComponentsCommand,
    },
    /// Operate a replicated group of masters.
    #[command(
        after_help = "Example:\n  wasmos operator members list --master 10.0.0.1:5050,10.0.0.2:5050"
    )]
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Bootstrap the ACLs and define policies.
    #[command(
        after_help = "Example:\n  wasmos acl bootstrap\n  wasmos acl policy apply eng eng-policy.json"
    )]
    Acl {
        #[command(subcommand)]
        command: acl::AclCommand,
    },
    /// Create, list and revoke tokens.
    #[command(
        after_help = "Example:\n  wasmos tokens create --principal alice --policy eng --ttl 30d\n  wasmos tokens list"
    )]
    Tokens {
        #[command(subcommand)]
        command: acl::TokensCommand,
    },
    /// Read a master's audit log (refusals and mutating calls) from its data dir.
    #[command(after_help = "Example:\n  wasmos audit --data-dir /var/lib/wasmos --since 2h")]
    Audit(acl::AuditArgs),
    /// Make the cluster's TLS certificates: a CA, then one certificate per master, agent and
    /// client, each naming its role.
    #[command(
        after_help = "Example:\n  wasmos certs init --dir tls\n  wasmos certs issue master m1 --dir tls --host 10.0.0.1"
    )]
    Certs {
        #[command(subcommand)]
        command: certs::CertsCommand,
    },
    /// Write a new framework project (scheduler and executor, the WIT, a README and
    /// `./build.sh`) that builds on its own, outside this repository.
    #[command(
        after_help = "Example:\n  wasmos new squares --lang rust\n  cd squares && wasmos dev --run \"$(./build.sh | tail -1)\""
    )]
    New(new::Args),
    /// Work with single tasks, without a cluster.
    #[command(after_help = "Example:\n  wasmos task run pi.wasm --payload 20000")]
    Task {
        #[command(subcommand)]
        command: TaskCommand,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// List, add or remove the masters of the group.
    #[command(
        after_help = "Example:\n  wasmos operator members add 2 10.0.0.2:5050 --master 10.0.0.1:5050"
    )]
    Members {
        #[command(subcommand)]
        command: members::MembersCommand,
    },
}

#[derive(Subcommand)]
enum TaskCommand {
    /// Run one task in a framework's executor on this machine and print its result.
    #[command(after_help = "Example:\n  wasmos task run pi.wasm --payload 20000")]
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
    let cli = Cli::parse();
    // Servers (and a serving `wasmos dev`) log their events at info by default (never one line per task); other commands
    // only warnings. WASMOS_LOG (`debug`, `wasmos::audit=debug`, ...) chooses otherwise.
    let server = match &cli.command {
        Command::Master(_) | Command::Agent(_) => true,
        // A one-shot `dev --run` prints its framework's progress and result only.
        Command::Dev(args) => !args.runs_a_framework(),
        _ => false,
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WASMOS_LOG").unwrap_or_else(|_| {
                // openraft's info lines are its internals (votes, engine state dumps):
                // warnings only, unless WASMOS_LOG asks for them.
                tracing_subscriber::EnvFilter::new(if server {
                    "info,openraft=warn"
                } else {
                    "warn"
                })
            }),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    if !matches!(
        cli.command,
        Command::Master(_) | Command::Agent(_) | Command::Dev(_)
    ) {
        quiet_on_closed_stdout();
    }
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
            Command::Attach(args) => submit::attach(args).await,
            Command::Result(args) => submit::result(args).await,
            Command::Dev(args) => dev::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Agents(args) => ops::agents(args).await,
            Command::Frameworks(args) => ops::frameworks(args).await,
            Command::Tasks(args) => ops::tasks(args).await,
            Command::State(args) => ops::framework_state(args).await,
            Command::Logs(args) => logs::run(args).await,
            Command::Kill(args) => ops::kill(args).await,
            Command::Teardown(args) => ops::teardown(args).await,
            Command::Components { command } => ops::components(command).await,
            Command::Operator {
                command: OperatorCommand::Members { command },
            } => members::run(command).await,
            Command::Certs { command } => certs::run(command),
            Command::New(args) => new::run(args),
            Command::Task {
                command: TaskCommand::Run(args),
            } => task_run::run(args).await,
            Command::Acl { command } => acl::acl(command).await,
            Command::Tokens { command } => acl::tokens(command).await,
            Command::Audit(args) => acl::audit(args),
        }
    })
}

/// Makes a command whose reader went away (`wasmos tasks | head -1`) stop quietly with exit
/// status 0 instead of panicking: Rust ignores SIGPIPE, so a write to the closed pipe fails,
/// and `println!` panics with "failed printing to stdout: Broken pipe". (Restoring SIGPIPE's
/// default would not do: the gRPC clients' `writev` to a socket the master closed would then
/// kill the process without a word.)
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info)
    }));
}

/// Parses a listening address: `IP:PORT` or `HOST:PORT` (`localhost:5050`), a host name
/// resolved now (its first IPv4 address, else its first address).
fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let addrs: Vec<std::net::SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| {
            format!("{s:?} is not HOST:PORT or IP:PORT, or its host does not resolve: {e}")
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

/// Parses a duration of every time flag: with units as humantime reads them (`500ms`, `30s`,
/// `1h30m`, `30d`, `2w`), or a bare non-negative number of seconds (`0.5`, `15`).
fn duration_secs(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return std::time::Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("{s:?} must be a finite number of seconds, 0 or more"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}); write e.g. 500ms, 30s, 1h30m or 7d"))
}

/// [`duration_secs`] as a number of seconds, for the flags that carry seconds on to the API.
fn seconds(s: &str) -> Result<f64, String> {
    duration_secs(s).map(|d| d.as_secs_f64())
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
