//! The `wasmos` command. Thin glue: each subcommand parses its flags and calls a library crate.

mod task_run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// wasmos: a cluster resource manager whose frameworks are WebAssembly components.
#[derive(Parser)]
#[command(name = "wasmos", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with single tasks, without a cluster.
    Task {
        #[command(subcommand)]
        command: TaskCommand,
    },
}

#[derive(Subcommand)]
enum TaskCommand {
    /// Run one task in a framework's executor on this machine and print its result.
    Run(task_run::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WASMOS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
            Command::Task {
                command: TaskCommand::Run(args),
            } => task_run::run(args).await,
        }
    })
}
