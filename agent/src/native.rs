//! The native containerizer: command tasks in a cgroup of their own, with CPU, memory and pids
//! limits, killed with TERM then KILL, adopted again after an agent restart.
//!
//! A task is refused, with the reason, when its framework's role may not run native tasks or
//! when cgroups cannot be used here: there is no unconfined fallback, since a task's limits
//! are a promise to the other tasks on the machine.
//!
//! Each task's sandbox is held to its disk quota (`disk_quota`): a task over it is killed and
//! fails with the reason, and its sandbox is emptied but for its output.
//!
//! Each task is isolated as `isolation` describes (own uid, mount and PID namespaces, no new
//! privileges, no capabilities, a seccomp filter); when a piece does not work here, every
//! native task is refused with the missing pieces named, unless the operator accepted weaker
//! isolation.
//!
//! What lives elsewhere: the process plumbing (`launcher`), the cgroup files (`cgroups`), the
//! disk usage measure (`disk_quota`), the isolation settings and probe (`isolation`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmos_api::{FrameworkId, TaskInfo, TaskKind, TaskState};

use crate::cgroups::{CgroupError, CgroupHierarchy, CgroupLimits, CpuStats, TaskCgroup};
use crate::containerizer::{
    ContainerCheckpoint, ContainerError, Containerizer, ExitFuture, LaunchContext, Launched,
    NativeCheckpoint, TaskExit,
};
use crate::disk_quota::{self, Overrun, OverrunCause};
use crate::isolation::{Isolation, IsolationConfig};
use crate::launcher::{self, CommandSpec, ExitRecord};

/// Settings of the native containerizer.
#[derive(Clone, Debug)]
pub struct NativeConfig {
    /// Roles whose frameworks may run native tasks; `"*"` allows every role. Empty refuses
    /// native tasks altogether.
    pub allowed_roles: Vec<String>,
    /// Name of the directory the agent's task cgroups live under.
    pub cgroup_name: String,
    /// How long a task has to exit after SIGTERM before it gets SIGKILL.
    pub kill_grace: Duration,
    /// Cap on each of a task's stdout and stderr files, in bytes.
    pub max_output_bytes: u64,
    /// Most processes and threads per task.
    pub pids_max: u64,
    /// Memory limit of a task that asks for no memory, in MiB.
    pub default_mem_mb: u64,
    /// Disk quota of the sandbox of a task that asks for no disk (`disk_mb` 0), in MiB. By
    /// default 1024 (`wasmos agent --default-task-disk-mb`).
    pub default_disk_mb: u64,
    /// How often a running task's sandbox usage is measured against its disk quota
    /// (`disk_quota`). By default 500 ms (`wasmos agent --disk-watch-interval`).
    pub disk_watch_interval: Duration,
    /// How tasks are isolated from each other and from the agent. By default every piece,
    /// one uid per framework from 100000-165535, no root roles, weaker isolation refused.
    pub isolation: IsolationConfig,
}

impl Default for NativeConfig {
    fn default() -> Self {
        NativeConfig {
            allowed_roles: vec!["*".into()],
            cgroup_name: "wasmos".into(),
            kill_grace: Duration::from_secs(3),
            max_output_bytes: 10 << 20,
            pids_max: 4096,
            default_mem_mb: 64,
            default_disk_mb: 1024,
            disk_watch_interval: Duration::from_millis(500),
            isolation: IsolationConfig::default(),
        }
    }
}

/// Runs command tasks in cgroups.
pub struct NativeContainerizer {
    config: NativeConfig,
    hierarchy: Result<CgroupHierarchy, String>,
    isolation: Isolation,
}

impl NativeContainerizer {
    /// Detects cgroups and probes isolation (`work_dir` holds the tasks' root mount point and
    /// the uid claims). Never fails: without cgroups, or without a wanted piece of isolation
    /// that the operator did not waive, every native launch is refused with the reason found
    /// here (see [`NativeContainerizer::unavailable_reason`]).
    pub fn new(config: NativeConfig, work_dir: &std::path::Path) -> Self {
        let hierarchy = CgroupHierarchy::detect(&config.cgroup_name).map_err(|e| e.to_string());
        if let Err(why) = &hierarchy {
            tracing::warn!(%why, "native tasks will be refused");
        }
        let isolation = Isolation::new(config.isolation.clone(), work_dir);
        NativeContainerizer {
            config,
            hierarchy,
            isolation,
        }
    }

    /// The isolation of native tasks: what is on, what is missing.
    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    /// Why native tasks are refused on this machine, or `None` when cgroups work.
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.hierarchy.as_ref().err().map(String::as_str)
    }

    /// The cgroup hierarchy, when usable.
    pub fn hierarchy(&self) -> Option<&CgroupHierarchy> {
        self.hierarchy.as_ref().ok()
    }

    fn watch_config(&self) -> WatchConfig {
        WatchConfig {
            grace: self.config.kill_grace,
            disk_interval: self.config.disk_watch_interval,
            max_output_bytes: self.config.max_output_bytes,
        }
    }

    fn role_allowed(&self, role: &str) -> bool {
        self.config
            .allowed_roles
            .iter()
            .any(|r| r == "*" || r == role)
    }

    /// The disk quota of a task's sandbox, in MiB.
    fn disk_limit_mb(&self, task: &TaskInfo) -> u64 {
        if task.resources.disk_mb == 0 {
            self.config.default_disk_mb
        } else {
            task.resources.disk_mb
        }
    }

    fn limits(&self, task: &TaskInfo) -> CgroupLimits {
        let mem_mb = if task.resources.mem_mb == 0 {
            self.config.default_mem_mb
        } else {
            task.resources.mem_mb
        };
        CgroupLimits {
            millicpus: task.resources.millicpus,
            memory_bytes: mem_mb << 20,
            pids: self.config.pids_max,
        }
    }
}

impl NativeContainerizer {
    /// Kills the native tasks of `sandboxes` ((framework, task) pairs in this work dir that no
    /// task record knows) that still run in their cgroup, removes those cgroups, and returns
    /// the pairs whose cgroup held processes. Their supervisors, which wait on the task, record
    /// its exit and end on their own. Nothing without a cgroup is touched (Wasm tasks, ended
    /// ones), nor anything when cgroups are unavailable (no native task could have run).
    pub async fn kill_unrecorded(&self, sandboxes: Vec<(String, String)>) -> Vec<(String, String)> {
        let Ok(hierarchy) = &self.hierarchy else {
            return Vec::new();
        };
        let found: Vec<_> = sandboxes
            .into_iter()
            .filter_map(|(fw, task)| hierarchy.existing(&fw, &task).map(|cg| (fw, task, cg)))
            .collect();
        tokio::task::spawn_blocking(move || {
            let mut killed = Vec::new();
            for (fw, task, cg) in found {
                let ran = !cg.pids().is_empty();
                // SIGKILL, wait until the cgroup is empty, remove it.
                cg.remove();
                tracing::debug!(framework_id = %fw, task_id = %task, ran, "removed an unrecorded task's cgroup");
                if ran {
                    killed.push((fw, task));
                }
            }
            killed
        })
        .await
        .unwrap_or_default()
    }
}

/// CPU statistics of a running native task's cgroup (for tests and usage reports).
pub fn cpu_stats(checkpoint: &NativeCheckpoint) -> Result<CpuStats, CgroupError> {
    checkpoint.cgroup.cpu_stats()
}

#[async_trait::async_trait]
impl Containerizer for NativeContainerizer {
    fn name(&self) -> &'static str {
        "native"
    }

    async fn launch(&self, ctx: LaunchContext<'_>) -> Result<Launched, ContainerError> {
        let TaskKind::Command { argv, env } = &ctx.task.kind else {
            return Err(ContainerError::Refused(
                "the native containerizer runs command tasks only".into(),
            ));
        };
        if !self.role_allowed(ctx.role) {
            return Err(ContainerError::Refused(format!(
                "native (command) tasks are not allowed for role {:?} on this agent; allowed \
                 roles: {:?} (agent setting allowed_roles)",
                ctx.role, self.config.allowed_roles
            )));
        }
        let hierarchy = self
            .hierarchy
            .as_ref()
            .map_err(|why| ContainerError::Refused(format!("native task refused: {why}")))?;
        if let Some(why) = self.isolation.refusal() {
            return Err(ContainerError::Refused(why));
        }
        let isolation = self
            .isolation
            .prepare(ctx.framework_id.as_str(), ctx.role, ctx.sandbox)
            .map_err(|e| ContainerError::Failed(format!("cannot isolate the task: {e}")))?;
        let limits = self.limits(ctx.task);
        let disk_limit_mb = self.disk_limit_mb(ctx.task);
        let cgroup = hierarchy
            .create(
                ctx.framework_id.as_str(),
                ctx.task.task_id.as_str(),
                &limits,
            )
            .map_err(|e| ContainerError::Failed(format!("cannot create the task's cgroup: {e}")))?;
        let spec = CommandSpec {
            argv,
            env,
            sandbox: ctx.sandbox,
            exit_file: ctx.exit_file,
            max_output_bytes: self.config.max_output_bytes,
            cgroup: &cgroup,
            max_file_bytes: disk_limit_mb.saturating_mul(1 << 20),
            isolation: &isolation,
        };
        let pid = match launcher::spawn(&spec) {
            Ok(pid) => pid,
            Err(e) => {
                let cg = cgroup.clone();
                let _ = tokio::task::spawn_blocking(move || cg.remove()).await;
                return Err(ContainerError::Failed(format!(
                    "cannot start the command: {e}"
                )));
            }
        };
        // The task has exec'd: from now on it gets its own CPU share.
        if let Err(e) = cgroup.limit_cpu(limits.millicpus) {
            let cg = cgroup.clone();
            let _ = tokio::task::spawn_blocking(move || cg.remove()).await;
            tokio::spawn(launcher::wait_exit(pid));
            return Err(ContainerError::Failed(format!(
                "cannot set the task's CPU quota: {e}"
            )));
        }
        // The supervisor is our child and cannot be reaped before we look, so this is its
        // start time, not a successor's.
        let start = launcher::process_start_time(pid).unwrap_or(0);
        let checkpoint = NativeCheckpoint {
            supervisor_pid: pid,
            supervisor_start: start,
            cgroup,
            exit_file: ctx.exit_file.to_path_buf(),
            memory_limit_mb: limits.memory_bytes >> 20,
            sandbox: ctx.sandbox.to_path_buf(),
            disk_limit_mb,
        };
        tracing::debug!(
            framework_id = %ctx.framework_id, task_id = %ctx.task.task_id, pid,
            "native task started"
        );
        let exit = Box::pin(watch(
            checkpoint.clone(),
            true,
            ctx.kill,
            self.watch_config(),
        ));
        Ok(Launched {
            checkpoint: ContainerCheckpoint::Native(checkpoint),
            exit,
            events: None,
        })
    }

    async fn recover(
        &self,
        checkpoint: &ContainerCheckpoint,
        task: &TaskInfo,
        kill: CancellationToken,
    ) -> ExitFuture {
        let ContainerCheckpoint::Native(ck) = checkpoint else {
            return Box::pin(std::future::ready(TaskExit::new(
                TaskState::Lost,
                "not a native task",
            )));
        };
        let alive = ck.supervisor_start != 0
            && launcher::process_start_time(ck.supervisor_pid) == Some(ck.supervisor_start)
            && launcher::process_alive(ck.supervisor_pid);
        tracing::debug!(
            task_id = %task.task_id, pid = ck.supervisor_pid, alive,
            "recovering native task"
        );
        Box::pin(watch(ck.clone(), alive, kill, self.watch_config()))
    }

    async fn shutdown_framework(&self, _framework_id: &FrameworkId) {}
}

/// What [`watch`] needs of the containerizer's settings.
#[derive(Clone, Copy, Debug)]
struct WatchConfig {
    grace: Duration,
    disk_interval: Duration,
    max_output_bytes: u64,
}

/// Waits for a native task to end (killing it when asked, or when its sandbox passes its disk
/// quota), then turns its recorded exit, its cgroup's OOM count and its disk usage into a
/// [`TaskExit`], removes the cgroup, and empties the sandbox of a task over its quota.
async fn watch(
    ck: NativeCheckpoint,
    supervisor_alive: bool,
    kill: CancellationToken,
    config: WatchConfig,
) -> TaskExit {
    let WatchConfig { grace, .. } = config;
    let pid = ck.supervisor_pid;
    let exited = async move {
        if supervisor_alive {
            launcher::wait_exit(pid).await;
        }
    };
    tokio::pin!(exited);
    let quota = ck.disk_limit_mb > 0 && !ck.sandbox.as_os_str().is_empty();
    let disk = async {
        if quota && supervisor_alive {
            disk_quota::watch(ck.sandbox.clone(), ck.disk_limit_mb, config.disk_interval).await
        } else {
            std::future::pending().await
        }
    };
    tokio::pin!(disk);
    let mut kill_note = None;
    let mut overrun = None;
    tokio::select! {
        () = &mut exited => {}
        over = &mut disk => {
            // As the OOM killer does: no grace, in which it would write on.
            ck.cgroup.signal_all(libc::SIGKILL);
            exited.as_mut().await;
            overrun = Some(over);
        }
        () = kill.cancelled() => {
            ck.cgroup.signal_all(libc::SIGTERM);
            tokio::select! {
                () = &mut exited => {
                    kill_note = Some("killed on request (SIGTERM)".to_string());
                }
                () = tokio::time::sleep(grace) => {
                    ck.cgroup.signal_all(libc::SIGKILL);
                    exited.as_mut().await;
                    kill_note = Some(format!(
                        "killed on request: it did not exit within {grace:?} of SIGTERM, so it \
                         was sent SIGKILL"
                    ));
                }
            }
        }
    }
    let record = ExitRecord::read(&ck.exit_file);
    let oom = ck.cgroup.oom_kills() > 0;
    let cgroup = ck.cgroup.clone();
    if tokio::task::spawn_blocking(move || cgroup.remove())
        .await
        .is_err()
    {
        tracing::warn!(pid, "cgroup cleanup thread failed");
    }
    let _ = std::fs::remove_file(&ck.exit_file);
    if quota && overrun.is_none() && kill_note.is_none() {
        overrun = final_disk_check(&ck, record).await;
    }
    if let Some(over) = &overrun {
        let sandbox = ck.sandbox.clone();
        // The supervisor writes at most the cap and the truncation marker to each.
        let keep = config.max_output_bytes.saturating_add(128);
        let left = tokio::task::spawn_blocking(move || disk_quota::free_space(&sandbox, keep))
            .await
            .unwrap_or_default();
        tracing::debug!(
            pid,
            used = over.used_bytes,
            left,
            "sandbox over its disk quota emptied"
        );
    }
    let exit = match overrun {
        Some(over) => TaskExit::new(TaskState::Failed, over.message()),
        None => classify(record, oom, kill_note, supervisor_alive, ck.memory_limit_mb),
    };
    tracing::debug!(pid, state = %exit.state, message = %exit.message, "native task ended");
    exit
}

/// The last look at an ended task's sandbox: over its quota, or killed by SIGXFSZ (a file
/// reached `RLIMIT_FSIZE`, which is the quota), it failed for its quota, whatever it exited
/// with.
async fn final_disk_check(ck: &NativeCheckpoint, record: Option<ExitRecord>) -> Option<Overrun> {
    let limit = ck.disk_limit_mb.saturating_mul(1 << 20);
    let sandbox = ck.sandbox.clone();
    let step = tokio::task::spawn_blocking(move || disk_quota::measure(&sandbox, limit))
        .await
        .ok()?;
    disk_verdict(record, step, ck.disk_limit_mb)
}

/// Whether an ended task with this exit and this last measure of its sandbox passed its quota.
fn disk_verdict(
    record: Option<ExitRecord>,
    step: disk_quota::Step,
    limit_mb: u64,
) -> Option<Overrun> {
    let (used_bytes, partial) = match step {
        disk_quota::Step::Done(b) => (b, false),
        disk_quota::Step::Partial(b) => (b, true),
    };
    let cause = if record == Some(ExitRecord::Signal(libc::SIGXFSZ)) {
        OverrunCause::FileSizeLimit
    } else if used_bytes > limit_mb.saturating_mul(1 << 20) {
        OverrunCause::MeasuredAtEnd
    } else {
        return None;
    };
    Some(Overrun {
        cause,
        used_bytes,
        partial,
        limit_mb,
    })
}

fn classify(
    record: Option<ExitRecord>,
    oom: bool,
    kill_note: Option<String>,
    supervisor_alive: bool,
    memory_limit_mb: u64,
) -> TaskExit {
    if let Some(note) = kill_note {
        return TaskExit::new(TaskState::Killed, note);
    }
    if oom {
        return TaskExit::new(
            TaskState::Failed,
            format!(
                "memory limit exceeded: the kernel's OOM killer ended the task at its limit of \
                 {memory_limit_mb} MiB"
            ),
        );
    }
    match record {
        Some(ExitRecord::Code(0)) => {
            TaskExit::new(TaskState::Finished, "command exited with code 0")
        }
        Some(ExitRecord::Code(125)) => TaskExit::new(
            TaskState::Failed,
            "the command could not join its cgroup (exit 125)",
        ),
        Some(ExitRecord::Code(127)) => TaskExit::new(
            TaskState::Failed,
            "the command could not be executed (exit 127)",
        ),
        Some(ExitRecord::Code(c)) => {
            TaskExit::new(TaskState::Failed, format!("command exited with code {c}"))
        }
        Some(ExitRecord::Signal(s)) => TaskExit::new(
            TaskState::Failed,
            format!("command was killed by signal {s} ({})", signal_name(s)),
        ),
        None if !supervisor_alive => TaskExit::new(
            TaskState::Lost,
            "agent restarted and the task's supervisor was gone without recording an exit; \
             its outcome is unknown",
        ),
        None => TaskExit::new(
            TaskState::Failed,
            "the task's supervisor ended without recording an exit",
        ),
    }
}

fn signal_name(s: i32) -> &'static str {
    match s {
        libc::SIGTERM => "SIGTERM",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGINT => "SIGINT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => "signal",
    }
}

/// Reads a task's cgroup from its checkpoint (for tests and usage).
pub fn task_cgroup(checkpoint: &ContainerCheckpoint) -> Option<&TaskCgroup> {
    match checkpoint {
        ContainerCheckpoint::Native(n) => Some(&n.cgroup),
        ContainerCheckpoint::Wasm { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmos_api::{AgentId, Resources, TaskId};

    #[tokio::test]
    async fn without_cgroups_native_tasks_are_refused_with_the_reason() {
        let why = "the agent is not running as root, so it cannot create cgroups";
        let dir = tempfile::tempdir().unwrap();
        let n = NativeContainerizer {
            config: NativeConfig::default(),
            hierarchy: Err(CgroupError::Unavailable(why.into()).to_string()),
            isolation: Isolation::new(IsolationConfig::none(), dir.path()),
        };
        let task = TaskInfo {
            task_id: TaskId::new("t").unwrap(),
            name: "t".into(),
            agent_id: AgentId::new("a").unwrap(),
            resources: Resources::new(0.1, 16, 0),
            kind: TaskKind::Command {
                argv: vec!["true".into()],
                env: vec![],
            },
        };
        let dir = tempfile::tempdir().unwrap();
        let fw = FrameworkId::new("fw").unwrap();
        let err = n
            .launch(LaunchContext {
                framework_id: &fw,
                role: "any",
                component: None,
                framework_budget: Default::default(),
                task: &task,
                sandbox: dir.path(),
                exit_file: &dir.path().join("exit"),
                kill: CancellationToken::new(),
            })
            .await
            .err()
            .unwrap();
        assert_eq!(err.state(), TaskState::Error);
        let msg = err.to_string();
        assert!(msg.contains("native task refused"), "{msg}");
        assert!(msg.contains(why), "{msg}");
        assert!(
            msg.contains("native (command) tasks are refused on this agent"),
            "{msg}"
        );
    }

    /// A checkpointed supervisor pid that now names another process (its start time differs)
    /// is not adopted: the task is reported lost at once and the process holding the pid is
    /// left alone. With the recorded start time the same pid is adopted and watched until it
    /// ends.
    #[tokio::test]
    async fn a_reused_pid_with_another_start_time_is_not_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let n = NativeContainerizer {
            config: NativeConfig::default(),
            hierarchy: Err("not needed to recover".into()),
            isolation: Isolation::new(IsolationConfig::none(), dir.path()),
        };
        let task = TaskInfo {
            task_id: TaskId::new("t").unwrap(),
            name: "t".into(),
            agent_id: AgentId::new("a").unwrap(),
            resources: Resources::new(0.1, 16, 0),
            kind: TaskKind::Command {
                argv: vec!["sleep".into(), "30".into()],
                env: vec![],
            },
        };
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let start = launcher::process_start_time(pid).unwrap();
        let checkpoint = |supervisor_start| {
            ContainerCheckpoint::Native(NativeCheckpoint {
                supervisor_pid: pid,
                supervisor_start,
                cgroup: TaskCgroup {
                    version: crate::cgroups::CgroupVersion::V2,
                    dirs: vec![dir.path().join("cgroup")],
                },
                exit_file: dir.path().join("exit"),
                memory_limit_mb: 16,
                sandbox: std::path::PathBuf::new(),
                disk_limit_mb: 0,
            })
        };
        let wait = Duration::from_secs(10);

        let other = n
            .recover(&checkpoint(start + 1), &task, CancellationToken::new())
            .await;
        let exit = tokio::time::timeout(wait, other)
            .await
            .expect("a process that is not the supervisor is not waited for");
        assert_eq!(exit.state, TaskState::Lost, "{}", exit.message);
        assert!(
            launcher::process_alive(pid),
            "the pid's process was left alone"
        );

        let mut adopted = n
            .recover(&checkpoint(start), &task, CancellationToken::new())
            .await;
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut adopted)
                .await
                .is_err(),
            "the supervisor is adopted: watched, not reported ended"
        );
        // SAFETY: kill takes a pid and a signal; `pid` is our child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let exit = tokio::time::timeout(wait, adopted)
            .await
            .expect("the watch sees the adopted process end");
        assert_ne!(exit.state, TaskState::Running, "{}", exit.message);
        drop(child);
    }

    #[test]
    fn exit_classification() {
        assert_eq!(
            classify(Some(ExitRecord::Code(0)), false, None, true, 1).state,
            TaskState::Finished
        );
        let e = classify(Some(ExitRecord::Code(3)), false, None, true, 1);
        assert_eq!(e.state, TaskState::Failed);
        assert!(e.message.contains("code 3"));
        let e = classify(Some(ExitRecord::Signal(9)), true, None, true, 32);
        assert!(e.message.contains("memory limit exceeded"), "{}", e.message);
        let e = classify(None, false, Some("killed".into()), true, 1);
        assert_eq!(e.state, TaskState::Killed);
        assert_eq!(classify(None, false, None, false, 1).state, TaskState::Lost);
    }

    #[test]
    fn an_ended_task_over_its_quota_or_killed_by_sigxfsz_failed_for_its_quota() {
        use disk_quota::Step;
        let code0 = Some(ExitRecord::Code(0));
        assert_eq!(disk_verdict(code0, Step::Done(1 << 20), 1), None);
        let over = disk_verdict(code0, Step::Done((1 << 20) + 1), 1).unwrap();
        assert_eq!(over.cause, OverrunCause::MeasuredAtEnd);
        assert!(
            over.message().contains("of its 1 MiB quota"),
            "{}",
            over.message()
        );
        // SIGXFSZ: a file reached the limit, even if the sandbox is under it (the file was
        // written elsewhere, or removed before the end).
        let xfsz = Some(ExitRecord::Signal(libc::SIGXFSZ));
        let over = disk_verdict(xfsz, Step::Done(4096), 8).unwrap();
        assert_eq!(over.cause, OverrunCause::FileSizeLimit);
        assert!(
            over.message().contains("RLIMIT_FSIZE"),
            "{}",
            over.message()
        );
        assert_eq!(
            disk_verdict(Some(ExitRecord::Signal(libc::SIGKILL)), Step::Done(4096), 8),
            None
        );
    }
}
