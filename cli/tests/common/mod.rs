//! Shared helpers for the tests that run the real `wasmos` binary: locating the example
//! components, running `wasmos` commands to their end, starting `wasmos master` and `wasmos
//! agent` processes, and watching the master through its `OperatorService`; a framework's
//! `SchedulerService` client is in [`scheduler`].
//!
//! Every master enforces ACLs, so [`start_master_with`] (or [`secure`], for a Raft group
//! started by hand) bootstraps it and keeps its management token and an agent token (a policy
//! granting only `register_agents`) for the test: [`wasmos`] commands carry the management
//! token in WASMOS_TOKEN, [`spawn_agent`] the agent token, and the gRPC clients ([`operator`],
//! [`scheduler::Scheduler`]) the token of the master they dial. Tests of ACLs themselves
//! (`acl.rs`) make their own principals.
//!
//! Each test binary compiles this module whole and uses a part of it, hence `dead_code` is
//! allowed here (and in the submodules).

#![allow(dead_code)]

pub mod scheduler;

use std::ffi::OsStr;
use std::fmt::Debug;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use wasmos_api::proto as pb;
use wasmos_api::proto::operator_service_client::OperatorServiceClient;

/// Bound on any one wait for a `wasmos` process (generous for a busy 2-core machine).
pub const WAIT: Duration = Duration::from_secs(120);

/// A component built by `scripts/build-examples.sh` from `examples-wasm/` (a Rust guest), as a
/// path string for command lines.
pub fn example(name: &str) -> String {
    built("../examples-wasm/target/wasm32-wasip2/release", name)
}

/// A component built by `scripts/build-examples.sh` from `examples-wasm-c/` (a C guest), as a
/// path string for command lines.
pub fn c_example(name: &str) -> String {
    built("../examples-wasm-c/target", name)
}

/// A component built by `scripts/build-examples.sh` from `examples-python/` (a Python guest,
/// componentize-py), as a path string for command lines.
pub fn python_example(name: &str) -> String {
    built("../examples-python/target", name)
}

/// `NAME.wasm` in `dir` (relative to this crate), which must exist.
fn built(dir: &str, name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .join(format!("{name}.wasm"));
    assert!(
        p.is_file(),
        "{} is missing: run scripts/build-examples.sh (scripts/test.sh does) before the tests",
        p.display()
    );
    p.to_str().expect("a UTF-8 path").to_string()
}

/// The tokens of the masters this test bootstrapped: per address (every address of a Raft
/// group), its management token and its agent token. One test per process (nextest), so
/// this holds one test's masters.
static TOKENS: Mutex<Vec<Tokens>> = Mutex::new(Vec::new());

/// A bootstrapped master's (or Raft group's) tokens.
#[derive(Clone, Debug)]
pub struct Tokens {
    /// Its addresses.
    pub addrs: Vec<String>,
    /// Its management token (every right).
    pub root: String,
    /// A token of principal `agent` whose policy grants only `register_agents`.
    pub agent: String,
}

/// The tokens of the master at `addr` (one of a group's addresses, or the comma-separated
/// list), else those of the master bootstrapped last; `None` before any.
pub fn tokens_for(addr: &str) -> Option<Tokens> {
    let all = TOKENS.lock().unwrap_or_else(|p| p.into_inner());
    let first = addr.split(',').next().unwrap_or(addr).trim();
    let first = first.strip_prefix("http://").unwrap_or(first);
    all.iter()
        .rev()
        .find(|t| t.addrs.iter().any(|a| a == first))
        .or(all.last())
        .cloned()
}

/// The management token of the master bootstrapped last, if any.
pub fn root_token() -> Option<String> {
    tokens_for("").map(|t| t.root)
}

/// The `wasmos` binary, killed when the handle is dropped, with no stdin, carrying the
/// management token of the master bootstrapped last (if any) in WASMOS_TOKEN.
pub fn wasmos() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wasmos"));
    c.kill_on_drop(true).stdin(Stdio::null());
    match root_token() {
        Some(t) => c.env("WASMOS_TOKEN", t),
        None => c.env_remove("WASMOS_TOKEN"),
    };
    c
}

/// Bootstraps the ACLs of the master (or Raft group) at `addrs` (comma-separated, as
/// `--master` takes them) with `wasmos acl bootstrap`, defines policy `agent` (only
/// `register_agents`) and a token of it, and keeps both tokens for the test's later
/// commands, agents and clients. `env` is added to each command (TLS files).
pub async fn secure_with(addrs: &str, env: &[(&str, &Path)]) -> Tokens {
    let run = |args: Vec<String>, token: Option<String>| leader_run(addrs, env, args, token);
    if addrs.contains(',') {
        stable_leader(addrs, env).await;
    }
    let root = run(vec!["acl".into(), "bootstrap".into()], None).await;
    let policy = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(policy.path(), r#"{"register_agents": true}"#).expect("write the policy");
    let path = policy.path().to_str().expect("a UTF-8 path").to_string();
    run(
        vec![
            "acl".into(),
            "policy".into(),
            "apply".into(),
            "agent".into(),
            path,
        ],
        Some(root.clone()),
    )
    .await;
    let agent = run(
        [
            "tokens",
            "create",
            "--principal",
            "agent",
            "--policy",
            "agent",
        ]
        .map(String::from)
        .to_vec(),
        Some(root.clone()),
    )
    .await;
    let tokens = Tokens {
        addrs: addrs
            .split(',')
            .map(|a| a.trim().trim_start_matches("http://").to_string())
            .collect(),
        root,
        agent,
    };
    TOKENS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(tokens.clone());
    tokens
}

/// A new token of `principal` bound to `policy` (defined, or `management`), made with the
/// management token of the master at `addr`.
pub async fn token_of(addr: &str, principal: &str, policy: &str) -> String {
    let root = tokens_for(addr).expect("a bootstrapped master").root;
    let out = tokio::time::timeout(
        WAIT,
        wasmos()
            .args(["tokens", "create", "--principal", principal])
            .args(["--policy", policy, "--master", addr])
            .env("WASMOS_TOKEN", root)
            .output(),
    )
    .await
    .expect("wasmos tokens create exits in time")
    .expect("wasmos runs");
    succeeded(&out).trim().to_string()
}

/// Runs `wasmos ARGS --master ADDRS` with `env` and `token` in WASMOS_TOKEN until it succeeds
/// or fails for another reason than a missing leader (a new group may elect, or change, its
/// leader meanwhile); returns its stdout, trimmed, after checking that it succeeded.
async fn leader_run(
    addrs: &str,
    env: &[(&str, &Path)],
    args: Vec<String>,
    token: Option<String>,
) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut c = wasmos();
        c.args(&args).args(["--master", addrs]);
        for (k, v) in env {
            c.env(k, v);
        }
        match &token {
            Some(t) => c.env("WASMOS_TOKEN", t),
            None => c.env_remove("WASMOS_TOKEN"),
        };
        let out = tokio::time::timeout(WAIT, c.output())
            .await
            .unwrap_or_else(|_| panic!("wasmos {args:?} did not exit within {WAIT:?}"))
            .expect("wasmos runs");
        let leaderless = String::from_utf8_lossy(&out.stderr).contains("leader");
        if out.status.success() || !leaderless || tokio::time::Instant::now() >= deadline {
            return succeeded(&out).trim().to_string();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until a leader of the new group at `addrs` has answered three probes in a row, 200
/// ms apart (a call without a token, which only the leader answers, by asking for the
/// bootstrap): a bootstrap whose answer is lost to a change of leader would be committed but
/// its token never seen.
async fn stable_leader(addrs: &str, env: &[(&str, &Path)]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut in_row = 0;
    while in_row < 3 {
        let mut c = wasmos();
        c.args(["agents", "--master", addrs])
            .env_remove("WASMOS_TOKEN");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = tokio::time::timeout(WAIT, c.output())
            .await
            .expect("wasmos agents exits in time")
            .expect("wasmos runs");
        let led = String::from_utf8_lossy(&out.stderr).contains("acl bootstrap");
        in_row = if led { in_row + 1 } else { 0 };
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group at {addrs} has no stable leader"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// [`secure_with`] for a plain-text master or group.
pub async fn secure(addrs: &str) -> Tokens {
    secure_with(addrs, &[]).await
}

/// Runs `wasmos ARGS` to its end, capturing stdout and stderr; panics when it has not exited
/// within `WAIT`.
pub async fn output<S: AsRef<OsStr> + Debug>(args: &[S]) -> Output {
    tokio::time::timeout(WAIT, wasmos().args(args).output())
        .await
        .unwrap_or_else(|_| panic!("wasmos {args:?} did not exit within {WAIT:?}"))
        .expect("wasmos runs")
}

/// Runs `wasmos ARGS` to its end as [`output`] does, and while it runs watches the processes
/// in the task cgroups of the framework it names on stderr (`... as framework ID ...`);
/// returns the output and every pid seen there. A test that checks that no process is left
/// in a framework's cgroups first checks with these that [`framework_pids`] saw them run.
pub async fn output_watching_framework<S: AsRef<OsStr> + Debug>(args: &[S]) -> (Output, Vec<u32>) {
    let mut child = wasmos()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wasmos runs");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let err_text = std::sync::Arc::new(Mutex::new(String::new()));
    let collect = err_text.clone();
    let err_reader = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = collect.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    let out_reader = tokio::spawn(async move {
        let mut bytes = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut bytes).await;
        bytes
    });
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = std::collections::BTreeSet::new();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for wasmos") {
            break status;
        }
        let fw = framework_named_in(&err_text.lock().unwrap());
        if let Some(fw) = fw {
            seen.extend(framework_pids(&fw));
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "wasmos {args:?} did not exit within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let stdout = out_reader.await.expect("stdout read");
    err_reader.await.expect("stderr read");
    let stderr = err_text.lock().unwrap().clone().into_bytes();
    let out = Output {
        status,
        stdout,
        stderr,
    };
    (out, seen.into_iter().collect())
}

/// The framework id in `wasmos submit`'s (or `wasmos dev --run`'s) `... as framework ID ...`.
pub fn framework_named_in(stderr: &str) -> Option<String> {
    stderr
        .split(" as framework ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
}

/// The stdout of a `wasmos` run, after checking that it exited 0 (else panics, showing both
/// streams).
pub fn succeeded(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    stdout
}

/// The estimate in `pi`'s result `pi ~= 3.14159x (...)`.
pub fn pi_estimate(stdout: &str) -> f64 {
    let rest = stdout
        .split("pi ~= ")
        .nth(1)
        .unwrap_or_else(|| panic!("no estimate in {stdout:?}"));
    rest.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no number in {stdout:?}"))
}

/// Checks that a run of the `pi` example succeeded with an estimate within 0.05 of pi.
/// Submits the pi example to `addr` with `tasks` tasks of 20,000 samples, waits for its end
/// and checks its estimate; returns what `wasmos submit` printed.
pub async fn submit_pi(addr: &str, tasks: u32) -> Output {
    let tasks = tasks.to_string();
    let out = output(&[
        "submit",
        &example("pi"),
        "--master",
        addr,
        "--",
        &tasks,
        "20000",
    ])
    .await;
    assert_pi(&out);
    out
}

pub fn assert_pi(out: &Output) {
    let pi = pi_estimate(&succeeded(out));
    assert!(
        (pi - std::f64::consts::PI).abs() < 0.05,
        "{pi} is not close to pi"
    );
}

/// Reads the first line `child` prints on its (piped) stdout, panicking when none comes
/// within `WAIT` (`what` says what the line was awaited for); the rest of its stdout is
/// drained in the background, so the child never blocks on a full pipe.
pub async fn first_line(child: &mut Child, what: &str) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("no line on stdout within {WAIT:?}: {what}"))
        .expect("stdout readable")
        .expect("a line on stdout");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    line
}

/// Starts `wasmos master` on a free loopback port; returns the process and its address.
pub async fn start_master() -> (Child, String) {
    start_master_with(&[], Stdio::inherit()).await
}

/// Master flags letting frameworks of the default role (that of `wasmos submit`) run native
/// command tasks, which no role may by default.
pub const NATIVE_DEFAULT_ROLE: [&str; 2] = ["--command-task-roles", "default"];

/// Starts `wasmos master` on a free loopback port with `extra` flags (e.g. shorter agent
/// timeouts, `--weight`), its stderr sent to `stderr`, and bootstraps its ACLs ([`secure`]);
/// returns the process and its address.
pub async fn start_master_with(extra: &[&str], stderr: Stdio) -> (Child, String) {
    let (master, addr) = start_master_unsecured(extra, stderr).await;
    secure(&addr).await;
    (master, addr)
}

/// [`start_master_with`] without the bootstrap: a master that serves only `wasmos acl
/// bootstrap` until a test bootstraps it (a TLS master, with its client certificate).
pub async fn start_master_unsecured(extra: &[&str], stderr: Stdio) -> (Child, String) {
    let mut master = wasmos()
        .args(["master", "--listen", "127.0.0.1:0"])
        .args(["--allocation-interval", "0.05"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("wasmos master starts");
    let line = first_line(&mut master, "the master says where it listens").await;
    let addr = line
        .strip_prefix("wasmos master listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from the master: {line:?}"))
        .to_string();
    (master, addr)
}

/// Starts `wasmos agent` for the master at `addr`, working in `work_dir`, with `flags` after
/// those (e.g. `["--resources", "cpus:1;mem:1024", "--hostname", "a1"]`: a host name lets a
/// test tell its agents apart in `GetState`). It carries the master's agent token.
pub fn spawn_agent(addr: &str, work_dir: &Path, flags: &[&str]) -> Child {
    let mut c = wasmos();
    if let Some(t) = tokens_for(addr) {
        c.env("WASMOS_TOKEN", t.agent);
    }
    c.args(["agent", "--master", addr, "--work-dir"])
        .arg(work_dir)
        .args(flags)
        .spawn()
        .expect("wasmos agent starts")
}

/// A `wasmos master` with one `wasmos agent` of 2 CPUs and 2 GiB, the cluster most tests of
/// one framework at a time run on.
pub struct MasterAndAgent {
    /// The master process.
    pub master: Child,
    /// The agent process.
    pub agent: Child,
    /// The master's address.
    pub addr: String,
    /// A temporary directory, removed when dropped; the agent works in `dir/work`.
    pub dir: tempfile::TempDir,
}

impl MasterAndAgent {
    /// Starts the master, then the agent (without waiting for it to register: a framework
    /// gets offers once it does).
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// As [`MasterAndAgent::start`], with `master_flags` for the master (e.g.
    /// `["--command-task-roles", "default"]` for a framework that runs native tasks).
    pub async fn start_with(master_flags: &[&str]) -> Self {
        let (master, addr) = start_master_with(master_flags, Stdio::inherit()).await;
        let dir = tempfile::tempdir().unwrap();
        let agent = spawn_agent(
            &addr,
            &dir.path().join("work"),
            &["--resources", "cpus:2;mem:2048"],
        );
        MasterAndAgent {
            master,
            agent,
            addr,
            dir,
        }
    }

    /// Kills the agent, then the master.
    pub async fn stop(mut self) {
        self.agent.kill().await.expect("kill the agent");
        self.master.kill().await.expect("kill the master");
    }
}

/// A client of a master's `OperatorService`, carrying a token.
pub type Operator = OperatorServiceClient<InterceptedService<Channel, Bearer>>;

/// Puts `authorization: Bearer TOKEN` on each call that has no `authorization` yet (a test
/// may set another token on one request).
#[derive(Clone, Debug, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// Carries `token`; none when `None`.
    pub fn new(token: Option<&str>) -> Bearer {
        Bearer(token.map(|t| format!("Bearer {t}").parse().expect("an ASCII token")))
    }

    /// Carries the management token of the master at `addr` (see [`tokens_for`]).
    pub fn root_of(addr: &str) -> Bearer {
        Bearer::new(tokens_for(addr).map(|t| t.root).as_deref())
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0
            && !r.metadata().contains_key("authorization")
        {
            r.metadata_mut().insert("authorization", v.clone());
        }
        Ok(r)
    }
}

/// A client of the master's `OperatorService` at `addr`, with its management token.
pub async fn operator(addr: &str) -> Operator {
    try_operator(addr).await.expect("the operator API answers")
}

/// [`operator`], or `None` when the master cannot be reached.
pub async fn try_operator(addr: &str) -> Option<Operator> {
    let addr = addr.strip_prefix("http://").unwrap_or(addr);
    let channel = Channel::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    Some(
        OperatorServiceClient::with_interceptor(channel, Bearer::root_of(addr))
            .max_decoding_message_size(16 << 20),
    )
}

/// The master's `GetState` answer.
pub async fn cluster_state(op: &mut Operator) -> pb::ClusterState {
    op.get_state(pb::GetStateRequest {})
        .await
        .expect("GetState answers")
        .into_inner()
}

/// Polls the master's `GetState` every 20 ms until `check` returns `Some`, and returns that;
/// panics, naming `what` and showing the last state, when `WAIT` passes first.
pub async fn wait_for_state<T>(
    op: &mut Operator,
    what: &str,
    mut check: impl FnMut(&pb::ClusterState) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state = cluster_state(op).await;
        if let Some(found) = check(&state) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}; last state: {state:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the master counts `n` reachable agents.
pub async fn wait_for_agents(op: &mut Operator, n: usize) {
    wait_for_state(op, &format!("{n} reachable agents"), |s| {
        (s.agents.iter().filter(|a| a.reachable).count() == n).then_some(())
    })
    .await
}

/// Runs `wasmos ARGS --master ADDR` to its end.
pub async fn run(addr: &str, args: &[&str]) -> Output {
    output(&[args, &["--master", addr]].concat()).await
}

/// Runs a command that must succeed; returns its stdout.
pub async fn ok(addr: &str, args: &[&str]) -> String {
    let out = run(addr, args).await;
    assert!(
        out.status.success(),
        "wasmos {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Polls `f` until it returns `Some`, failing the test after [`WAIT`].
pub async fn until<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    until_within(what, WAIT, f).await
}

/// Polls `f` until it returns `Some`, failing the test after `bound`: for what should
/// happen soon (a published view catching up), so that a broken rule fails in seconds.
pub async fn until_within<T, F, Fut>(what: &str, bound: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {bound:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `cond` every 20 ms until it holds; false when `WAIT` passes first.
pub async fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pids of the processes in the cgroup of native task `task_id` of `framework_id` (on any
/// agent of this machine), read from every process's `/proc/PID/cgroup`.
pub fn task_pids(framework_id: &str, task_id: &str) -> Vec<u32> {
    let suffix = format!("/{framework_id}/{task_id}");
    pids_where(|line| line.ends_with(&suffix))
}

/// Pids of the processes in any task cgroup of `framework_id` on this machine.
pub fn framework_pids(framework_id: &str) -> Vec<u32> {
    let part = format!("/{framework_id}/");
    pids_where(|line| line.contains(&part))
}

fn pids_where(matches: impl Fn(&str) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // A process may exit between listing and reading: then it matches nothing.
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .map(|text| text.lines().any(&matches))
                .unwrap_or(false)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Why native (cgroup) tasks cannot run on this machine, or `None` when they can: the same
/// detection the agent does.
pub fn cgroups_unavailable() -> Option<String> {
    wasmos_agent::cgroups::CgroupHierarchy::detect("wasmos")
        .err()
        .map(|e| e.to_string())
}

/// What a native-task test needs, as the skip log says it.
pub const NEEDS_CGROUPS: &str = "root and cgroups (cpu, memory, pids)";

/// Skips (returns from) the calling test when native tasks cannot run here, visibly: see
/// `wasmos_test_skip` (under `WASMOS_REQUIRE_ROOT=1` the test fails instead).
#[macro_export]
macro_rules! require_cgroups {
    () => {
        wasmos_test_skip::require!(common::NEEDS_CGROUPS, common::cgroups_unavailable())
    };
}

/// The resident set size of process `pid` in KiB (`VmRSS` in `/proc/PID/status`).
pub fn vm_rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS")
}

/// The peak resident memory of process `pid` so far, in KiB (`VmHWM` in `/proc/PID/status`).
#[allow(dead_code)]
pub fn vm_hwm_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM")
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}
