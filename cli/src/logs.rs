//! `wasmos logs`: a task's stdout or stderr, or a hosted scheduler's `log` lines, read through
//! the master (`ReadTaskLog`, `ReadSchedulerLog`; the master asks the task's agent, the CLI
//! never talks to agents).
//!
//! A task's bytes go to stdout as the task wrote them. `-f` polls every [`FOLLOW_POLL`] from
//! where the last read ended until the task (or the framework) has ended and everything is
//! read, then exits 0.
//!
//! Exit status: 0 on success; 1 when the master refused (an unknown task, output that is gone,
//! an agent that is not connected, no right to read it); 2 when the master cannot be reached.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use wasmos_api::proto as pb;

use crate::client::{self, Failure, status_text_at};
use crate::display::escape_controls_keep_lines;
use crate::ops::MasterArg;

/// How often `-f` asks for more.
const FOLLOW_POLL: Duration = Duration::from_millis(300);
/// Bytes asked for per read (the master's largest answer).
const READ_BYTES: u32 = 1 << 20;

/// `wasmos logs`.
#[derive(clap::Args)]
#[command(after_help = LOGS_HELP)]
pub struct Args {
    /// The task whose output to print (or, with --scheduler, the framework).
    #[arg(value_name = "TASK_ID")]
    id: String,
    /// The task's framework; needed only when several frameworks have a task of that id.
    #[arg(long, value_name = "ID")]
    framework: Option<String>,
    /// Print the task's stderr instead of its stdout (a Wasm task's stderr also holds its
    /// executor's `log` lines of that task, as `LEVEL message`).
    #[arg(long, conflicts_with = "scheduler")]
    stderr: bool,
    /// Print the `log` lines of hosted framework ID's scheduler (ID in place of TASK_ID).
    #[arg(long)]
    scheduler: bool,
    /// Keep printing what is written until the task (framework) ends.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Print only the last N lines (then, with -f, what follows) [default: all].
    #[arg(long, value_name = "N")]
    tail: Option<u32>,
    #[command(flatten)]
    master: MasterArg,
}

const LOGS_HELP: &str = "\
A task's output is kept in its sandbox on the agent that ran it until the sandbox is collected
(7 days after it ended, sooner when the agent's disk runs low); each read is at most 1 MiB.
A scheduler's last 1,000 lines (256 KiB) are kept in the leading master's memory.

Example:
  wasmos logs task-7                        # its stdout
  wasmos logs task-7 --stderr --tail 20     # the last 20 lines of its stderr
  wasmos logs task-7 -f                     # follow it until it ends
  wasmos logs --scheduler fw-1a2b3c-2 -f    # the scheduler's log lines";

enum Error {
    Refused(String),
    Unreachable(String),
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Refused(m) | Failure::Failed(m) => Error::Unreachable(m),
        }
    }
}

/// Runs `wasmos logs`.
pub async fn run(args: Args) -> ExitCode {
    let r = if args.scheduler {
        scheduler(&args).await
    } else {
        task(&args).await
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Refused(m)) => {
            eprintln!("wasmos logs: {}", escape_controls_keep_lines(&m));
            ExitCode::from(1)
        }
        Err(Error::Unreachable(m)) => {
            eprintln!("wasmos logs: {}", escape_controls_keep_lines(&m));
            ExitCode::from(2)
        }
    }
}

fn write_out(data: &[u8]) {
    let mut out = std::io::stdout().lock();
    // A reader that went away (`| head`) ends the command quietly.
    if out.write_all(data).and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

async fn task(args: &Args) -> Result<(), Error> {
    let (mut op, leader) = client::connect_leader(&args.master.master).await?;
    let stream = if args.stderr {
        pb::LogStream::Stderr
    } else {
        pb::LogStream::Stdout
    };
    let mut offset = 0;
    let mut tail = args.tail.unwrap_or(0);
    loop {
        let r = op
            .read_task_log(pb::ReadTaskLogRequest {
                task_id: args.id.clone(),
                framework_id: args.framework.clone().unwrap_or_default(),
                stream: stream as i32,
                offset,
                max_bytes: READ_BYTES,
                tail_lines: tail,
            })
            .await
            .map_err(|s| Error::Refused(status_text_at(&leader, &s)))?
            .into_inner();
        // `--tail` applies to the first read only; what follows is read from where it ended.
        tail = 0;
        write_out(&r.data);
        let more = r.next_offset < r.size;
        offset = r.next_offset;
        if more {
            continue;
        }
        if !args.follow || r.task_ended {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

async fn scheduler(args: &Args) -> Result<(), Error> {
    let (mut op, leader) = client::connect_leader(&args.master.master).await?;
    let mut after = 0;
    let mut tail = args.tail.unwrap_or(0);
    loop {
        let r = op
            .read_scheduler_log(pb::ReadSchedulerLogRequest {
                framework_id: args.id.clone(),
                tail_lines: tail,
                after_seq: after,
            })
            .await
            .map_err(|s| Error::Refused(status_text_at(&leader, &s)))?
            .into_inner();
        tail = 0;
        let mut text = String::new();
        for l in &r.lines {
            after = after.max(l.seq);
            text.push_str(&format!(
                "{} {:<5} {}\n",
                humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + Duration::from_millis(l.unix_ms)
                ),
                l.level,
                escape_controls_keep_lines(&l.message)
            ));
        }
        write_out(text.as_bytes());
        if !args.follow || r.framework_ended {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}
