//! `wasmos submit`: uploads a framework component to a master (`UploadComponent`, streamed in
//! chunks), starts it as a hosted framework (`SubmitFramework`) and follows it
//! (`GetFrameworkResult`, plus `GetState` for task counts) until it ends.
//!
//! Exit status: 0 when the framework finished (its result on stdout), 1 when it failed or was
//! removed without a result (the reason on stderr), 2 when the input is bad, the master cannot
//! be reached or it refused the component or the submission.
//!
//! Ctrl-C while following tears the framework down (a second one exits at once); `--detach`
//! prints the framework's id and exits; `wasmos attach ID` ([`attach`]) follows it again.
//!
//! `wasmos dev --run` calls [`submit_and_follow`] over loopback.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use wasmos_api::ComponentDigest;
use wasmos_api::proto as pb;

use crate::client::{
    self, DEFAULT_MASTER, Failure, OperatorClient, connect, find_leader, master_list, status_text,
};
use crate::display::{escape_controls, escape_controls_keep_lines};

/// Size of the chunks a component is uploaded in (the API allows up to 1 MiB).
const CHUNK_BYTES: usize = 1 << 20;
/// How often the framework's result is polled.
const POLL: Duration = Duration::from_millis(100);
/// How often task counts are read (`GetState` returns the whole cluster).
const STATE_POLL: Duration = Duration::from_millis(500);
/// How often a plain (non-terminal) progress line may be printed.
const PLAIN_EVERY: Duration = Duration::from_secs(2);
/// How long the master may stay unreachable while a framework is followed.
const LOST_MASTER: Duration = client::LEADER_WAIT;

#[derive(clap::Args)]
pub struct Args {
    /// The framework component (a `.wasm` file of the wasmos:framework world).
    component: PathBuf,
    /// The framework's name [default: the file name without `.wasm`].
    #[arg(long)]
    name: Option<String>,
    /// The role the framework's resources are allocated to.
    #[arg(long, default_value = "default")]
    role: String,
    /// The master (`host:port` or `http://host:port`), or several masters of one group,
    /// comma-separated: the leader is found among them, and followed when it changes.
    #[arg(long, value_name = "ADDR[,ADDR...]", env = "WASMOS_MASTER", default_value = DEFAULT_MASTER)]
    master: String,
    #[command(flatten)]
    limits: LimitArgs,
    /// Print the framework's id once it started, and exit (0) without following it; `wasmos
    /// attach ID` follows it later. Without it, Ctrl-C tears the framework down.
    #[arg(long)]
    detach: bool,
    /// Arguments passed to the framework's `init`, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

/// Caps on the framework's scheduler (each defaults to the master's default).
#[derive(clap::Args, Clone, Default)]
pub struct LimitArgs {
    /// Fuel each scheduler callback may burn (about one unit per Wasm instruction); at most
    /// 10^11 [default: 10^9].
    #[arg(long)]
    fuel: Option<u64>,
    /// Linear memory the scheduler may grow to, in MiB; at most 1024 [default: 128].
    #[arg(long, value_name = "MIB")]
    memory_mb: Option<u64>,
    /// Wall-clock deadline of each scheduler callback, in seconds; at most 60 s [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = crate::duration_secs)]
    callback_timeout: Option<Duration>,
    /// The deadline of each of the framework's Wasm tasks, in seconds
    /// (`FrameworkInfo.wasm_task_timeout_seconds`): above 0, at most 604800 (7 days) and at
    /// most each agent's `--max-wasm-task-timeout` (24 h unless set), or its tasks are refused
    /// [default: each agent's default, 1 h].
    #[arg(long, value_name = "DURATION", value_parser = crate::seconds)]
    task_timeout: Option<f64>,
    /// The fuel budget of each of the framework's Wasm tasks (`FrameworkInfo.wasm_task_fuel`,
    /// about one unit per Wasm instruction): 1..10^13 and at most each agent's
    /// `--max-wasm-task-fuel` (10^12 unless set) [default: each agent's default, 10^11].
    #[arg(long, value_name = "N")]
    task_fuel: Option<u64>,
}

impl LimitArgs {
    fn to_pb(&self) -> Option<pb::SchedulerLimits> {
        if self.fuel.is_none() && self.memory_mb.is_none() && self.callback_timeout.is_none() {
            return None;
        }
        Some(pb::SchedulerLimits {
            fuel: self.fuel.unwrap_or(0),
            memory_mb: self.memory_mb.unwrap_or(0),
            callback_timeout_seconds: self.callback_timeout.map_or(0.0, |d| d.as_secs_f64()),
        })
    }
}

/// A framework to submit.
pub struct Submission {
    pub component: PathBuf,
    pub name: Option<String>,
    pub role: String,
    pub limits: LimitArgs,
    pub args: Vec<String>,
}

pub async fn run(args: Args) -> ExitCode {
    let submission = Submission {
        component: args.component,
        name: args.name,
        role: args.role,
        limits: args.limits,
        args: args.args,
    };
    // Installed now, so that Ctrl-C from here on is ours (the process would die of it).
    let signal = crate::shutdown_signal();
    tokio::pin!(signal);
    let who = "wasmos submit";
    let started = tokio::select! {
        s = start(&args.master, &submission) => s,
        () = &mut signal => {
            eprintln!("{who}: interrupted before the framework was started");
            return ExitCode::from(130);
        }
    };
    let mut started = match started {
        Ok(s) => s,
        Err(f) => return f.report(who),
    };
    if args.detach {
        println!("{}", started.framework_id);
        eprintln!(
            "{who}: detached; follow it with `wasmos attach {}`, stop it with `wasmos teardown {}`",
            started.framework_id, started.framework_id
        );
        return ExitCode::SUCCESS;
    }
    tokio::select! {
        r = started.follow() => finish(r, who),
        () = &mut signal => tear_down_on_interrupt(&started, who).await,
    }
}

/// `wasmos attach FRAMEWORK_ID`: follows a running (or ended) framework to its result, as
/// `wasmos submit` does; Ctrl-C stops following and leaves the framework running.
pub async fn attach(args: AttachArgs) -> ExitCode {
    let who = "wasmos attach";
    let signal = crate::shutdown_signal();
    tokio::pin!(signal);
    let followed = async {
        let masters = master_list(&args.master);
        let leader = find_leader(&masters).await?;
        let op = connect(&leader).await?;
        let mut started = Started {
            op,
            master: leader,
            masters,
            framework_id: args.framework_id.clone(),
        };
        started.follow().await
    };
    tokio::select! {
        r = followed => finish(r, who),
        () = &mut signal => {
            eprintln!(
                "{who}: interrupted; framework {} keeps running (`wasmos attach {}` again, \
                 `wasmos teardown {}` to stop it)",
                args.framework_id, args.framework_id, args.framework_id
            );
            ExitCode::from(130)
        }
    }
}

/// `wasmos result FRAMEWORK_ID`: prints how a framework ended, without waiting: its result on
/// stdout (exit 0), its failure on stderr (exit 1); exit 3 while it still runs, 2 when the
/// master cannot be asked or does not know it.
pub async fn result(args: AttachArgs) -> ExitCode {
    let who = "wasmos result";
    let asked = async {
        let leader = find_leader(&master_list(&args.master)).await?;
        let mut op = connect(&leader).await?;
        op.get_framework_result(pb::GetFrameworkResultRequest {
            framework_id: args.framework_id.clone(),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| Failure::Refused(client::status_text_at(&leader, &s)))
    };
    let id = escape_controls(&args.framework_id);
    match asked.await {
        Err(f) => f.report(who),
        Ok(r) if r.ended => finish(
            if r.succeeded {
                Ok(r.result)
            } else {
                Err(Failure::Failed(r.result))
            },
            who,
        ),
        Ok(r) if r.registered => {
            eprintln!("{who}: framework {id} is still running; `wasmos attach {id}` waits for its result");
            ExitCode::from(3)
        }
        Ok(_) => Failure::Failed(format!(
            "framework {id} was removed without a result (torn down, or its failover timeout passed)"
        ))
        .report(who),
    }
}

/// The arguments of `wasmos attach` and `wasmos result`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  wasmos submit pi.wasm --detach -- 8 100000   # prints the id\n  wasmos attach fw-1a2b3c-2"
)]
pub struct AttachArgs {
    /// The framework's id (as `wasmos submit --detach` printed it, or `wasmos frameworks`).
    framework_id: String,
    /// The master (`host:port` or `http://host:port`), or several masters of one group,
    /// comma-separated: the leader is found among them, and followed when it changes.
    #[arg(long, value_name = "ADDR[,ADDR...]", env = "WASMOS_MASTER", default_value = DEFAULT_MASTER)]
    master: String,
}

/// Ctrl-C while following a submitted framework: tear it down (a second Ctrl-C exits at
/// once); exit status 130 either way.
async fn tear_down_on_interrupt(started: &Started, who: &str) -> ExitCode {
    let id = &started.framework_id;
    eprintln!("{who}: interrupted; tearing down framework {id} (Ctrl-C again to exit at once)");
    let mut op = started.op.clone();
    let teardown = op.teardown_framework(pb::TeardownFrameworkRequest {
        framework_id: id.clone(),
    });
    tokio::select! {
        r = teardown => match r {
            Ok(r) => {
                let r = r.into_inner();
                eprintln!(
                    "{who}: framework {id} torn down ({} task(s) killed)",
                    r.tasks_killed
                );
            }
            Err(s) if s.code() == tonic::Code::NotFound => {
                eprintln!("{who}: framework {id} had ended already");
            }
            Err(s) => {
                eprintln!(
                    "{who}: could not tear down framework {id}: {}; it may still run: \
                     `wasmos teardown {id} --master {}`",
                    status_text(&s),
                    started.master
                );
            }
        },
        () = crate::shutdown_signal() => {
            eprintln!(
                "{who}: exiting; framework {id} may still run: `wasmos teardown {id} --master {}`",
                started.master
            );
        }
    }
    ExitCode::from(130)
}

/// Prints a framework's result on stdout (exit 0) or the failure on stderr.
pub fn finish(outcome: Result<String, Failure>, who: &str) -> ExitCode {
    match outcome {
        Ok(result) => {
            // The framework chose this text: its lines are kept, terminal escapes are not.
            println!("{}", escape_controls_keep_lines(&result));
            ExitCode::SUCCESS
        }
        Err(f) => f.report(who),
    }
}

/// Uploads, submits and follows `submission` on the master at `master`; returns the
/// framework's result.
pub async fn submit_and_follow(master: &str, submission: &Submission) -> Result<String, Failure> {
    start(master, submission).await?.follow().await
}

/// A submitted framework and where it runs.
struct Started {
    op: OperatorClient,
    /// The leader it was submitted to (or is now followed on).
    master: String,
    /// Every master given, to find a new leader among.
    masters: Vec<String>,
    framework_id: String,
}

impl Started {
    /// Follows the framework to its result.
    async fn follow(&mut self) -> Result<String, Failure> {
        follow(
            &mut self.op,
            &self.master,
            &self.masters,
            &self.framework_id,
        )
        .await
    }
}

/// Uploads and submits `submission` on the master at `master`.
async fn start(master: &str, submission: &Submission) -> Result<Started, Failure> {
    let path = &submission.component;
    let bytes = std::fs::read(path).map_err(|e| {
        Failure::Refused(format!(
            "cannot read the framework component {}: {e}; give the path of a .wasm file",
            path.display()
        ))
    })?;
    let name = match &submission.name {
        Some(n) => n.clone(),
        None => default_name(path),
    };
    let masters = master_list(master);
    let master = &find_leader(&masters).await?;
    let mut op = connect(master).await?;
    let digest = upload(&mut op, master, path, bytes).await?;
    let info = pb::FrameworkInfo {
        id: String::new(),
        name: name.clone(),
        role: submission.role.clone(),
        principal: std::env::var("USER").unwrap_or_default(),
        failover_timeout_seconds: 0.0,
        component_sha256: digest,
        wasm_task_timeout_seconds: submission.limits.task_timeout,
        wasm_task_fuel: submission.limits.task_fuel,
    };
    let framework_id = op
        .submit_framework(pb::SubmitFrameworkRequest {
            info: Some(info),
            args: submission.args.clone(),
            limits: submission.limits.to_pb(),
        })
        .await
        .map_err(|s| {
            Failure::Refused(format!(
                "the master at {master} refused to start {}: {}",
                path.display(),
                status_text(&s)
            ))
        })?
        .into_inner()
        .framework_id;
    eprintln!(
        "wasmos: submitted {} as framework {} to {master}",
        escape_controls(&name),
        escape_controls(&framework_id)
    );
    Ok(Started {
        op,
        master: master.clone(),
        masters,
        framework_id,
    })
}

/// `pi.wasm` → `pi`.
fn default_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "framework".into())
}

/// Streams `bytes` to the master's blob store; returns the digest it stored them under.
async fn upload(
    op: &mut OperatorClient,
    master: &str,
    path: &Path,
    bytes: Vec<u8>,
) -> Result<String, Failure> {
    let expected = ComponentDigest::of(&bytes).to_hex();
    let chunks: Vec<pb::UploadComponentChunk> = if bytes.is_empty() {
        vec![pb::UploadComponentChunk {
            expected_sha256: expected,
            data: Vec::new(),
        }]
    } else {
        bytes
            .chunks(CHUNK_BYTES)
            .enumerate()
            .map(|(i, c)| pb::UploadComponentChunk {
                expected_sha256: if i == 0 {
                    expected.clone()
                } else {
                    String::new()
                },
                data: c.to_vec(),
            })
            .collect()
    };
    let stored = op
        .upload_component(tokio_stream::iter(chunks))
        .await
        .map_err(|s| {
            Failure::Refused(format!(
                "the master at {master} refused the component {}: {}",
                path.display(),
                status_text(&s)
            ))
        })?
        .into_inner();
    Ok(stored.sha256)
}

/// Task counts of one framework: those staging and running from the master's live tasks, those
/// finished and failed from the master's own counts (`FrameworkSummary.tasks_finished` and
/// `tasks_failed`, exact while one master leads; a new leader counts from what it learns); the
/// total its scheduler reported and why it waits, when it does.
#[derive(Default)]
struct Progress {
    staging: u64,
    running: u64,
    finished: u64,
    failed: u64,
    /// `FrameworkSummary.tasks_total`.
    total: Option<u64>,
    /// `FrameworkSummary.waiting` (empty when nothing waits).
    waiting: String,
}

impl Progress {
    fn update(&mut self, state: &pb::ClusterState, framework_id: &str) {
        if let Some(f) = state
            .frameworks
            .iter()
            .find(|f| f.info.as_ref().is_some_and(|i| i.id == framework_id))
        {
            // Never shown going back when a new leader starts counting again.
            self.finished = self.finished.max(f.tasks_finished);
            self.failed = self.failed.max(f.tasks_failed);
            self.total = f.tasks_total.or(self.total);
            self.waiting = crate::display::escape_controls(&f.waiting).into_owned();
        }
        (self.staging, self.running) = (0, 0);
        for t in state
            .tasks
            .iter()
            .filter(|t| t.framework_id == framework_id)
        {
            let Some(s) = &t.status else { continue };
            match pb::TaskState::try_from(s.state).unwrap_or(pb::TaskState::Unspecified) {
                pb::TaskState::Staging | pb::TaskState::Starting => self.staging += 1,
                pb::TaskState::Running | pb::TaskState::Unreachable => self.running += 1,
                _ => {}
            }
        }
    }

    /// `37/100 finished, 8 running, 0 failed` (`37 finished, ...` without a total), with
    /// `, 2 starting` when tasks are on their way and `; waiting: ...` when the master says why
    /// the framework waits.
    fn line(&self) -> String {
        let finished = match self.total {
            Some(total) => format!("{}/{total}", self.finished),
            None => self.finished.to_string(),
        };
        let mut line = format!(
            "{finished} finished, {} running, {} failed",
            self.running, self.failed
        );
        if self.staging > 0 {
            line.push_str(&format!(", {} starting", self.staging));
        }
        if !self.waiting.is_empty() {
            line.push_str("; ");
            line.push_str(&self.waiting);
        }
        line
    }
}

/// How long one poll of the framework's result may take before the master counts as lost
/// (a master that is gone refuses at once; one behind a partition does not answer).
const POLL_TIMEOUT: Duration = Duration::from_secs(1);

/// Polls the framework's result until it ends, showing task counts on stderr.
async fn follow(
    op: &mut OperatorClient,
    master: &str,
    masters: &[String],
    framework_id: &str,
) -> Result<String, Failure> {
    let mut master = master.to_string();
    let mut op = op.clone();
    let op = &mut op;
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut progress = Progress::default();
    let mut last_state: Option<Instant> = None;
    let mut last_line = String::new();
    let mut last_plain: Option<Instant> = None;
    let mut unreachable_since: Option<Instant> = None;
    let mut gone_once = false;
    let clear = |tty: bool| {
        if tty {
            eprint!("\r\x1b[2K");
        }
    };
    loop {
        let poll = op.get_framework_result(pb::GetFrameworkResultRequest {
            framework_id: framework_id.to_string(),
        });
        let r = match tokio::time::timeout(POLL_TIMEOUT, poll).await {
            Ok(r) => r,
            Err(_) => Err(tonic::Status::unavailable(format!(
                "no answer within {}",
                crate::display::duration(POLL_TIMEOUT)
            ))),
        };
        if let Err(s) = &r
            && s.code() != tonic::Code::NotFound
            && unreachable_since.is_none()
        {
            // Said once per outage, before the search for a leader (which may take a while).
            clear(tty);
            eprintln!(
                "wasmos: master at {master} lost, retrying ({})",
                s.message()
            );
        }
        let r = match r {
            Ok(r) => {
                if unreachable_since.take().is_some() {
                    clear(tty);
                    eprintln!("wasmos: reached the master at {master} again");
                }
                r.into_inner()
            }
            Err(s) if s.code() == tonic::Code::NotFound => {
                clear(tty);
                return Err(Failure::Failed(format!(
                    "the master at {master} does not know framework {framework_id} any more \
                     (did the master restart?)"
                )));
            }
            Err(s)
                if s.code() == tonic::Code::FailedPrecondition
                    || s.code() == tonic::Code::Unavailable =>
            {
                // The leader changed (or is changing): find the new one.
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if let Ok((client, leader)) = client::find_new_leader(&s, masters).await {
                    if leader != master {
                        eprintln!("wasmos: following framework {framework_id} on {leader}");
                    }
                    *op = client;
                    master = leader;
                    continue;
                }
                if since.elapsed() > LOST_MASTER {
                    clear(tty);
                    return Err(Failure::Refused(format!(
                        "lost the master at {master} while following framework {framework_id}: \
                         {}; the framework may still be running there",
                        status_text(&s)
                    )));
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(s) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > LOST_MASTER {
                    clear(tty);
                    return Err(Failure::Refused(format!(
                        "lost the master at {master} while following framework {framework_id}: \
                         {}; the framework may still be running there",
                        status_text(&s)
                    )));
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        if r.ended {
            clear(tty);
            return if r.succeeded {
                Ok(r.result)
            } else {
                Err(Failure::Failed(r.result))
            };
        }
        if !r.registered {
            // Finishing records the outcome before removing the framework; ask once more so
            // that a removal racing this poll is not mistaken for a teardown.
            if gone_once {
                clear(tty);
                return Err(Failure::Failed(format!(
                    "framework {framework_id} was removed without a result (torn down)"
                )));
            }
            gone_once = true;
            continue;
        }
        if last_state.is_none_or(|t| t.elapsed() >= STATE_POLL) {
            last_state = Some(Instant::now());
            if let Ok(state) = op.get_state(pb::GetStateRequest {}).await {
                progress.update(&state.into_inner(), framework_id);
            }
            let line = format!(
                "wasmos: {framework_id} running for {}: {}",
                crate::display::duration(Duration::from_secs(start.elapsed().as_secs())),
                progress.line()
            );
            if tty {
                eprint!("\r\x1b[2K{line}");
                let _ = std::io::stderr().flush();
            } else {
                let counts = progress.line();
                if counts != last_line && last_plain.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
                    eprintln!("{line}");
                    last_line = counts;
                    last_plain = Some(Instant::now());
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}
