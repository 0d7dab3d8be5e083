//! Frameworks written in Python (`guest-sdk-python/`, `examples-python/`, built by
//! `scripts/build-examples.sh` with componentize-py) run like the Rust ones, with the real
//! binary:
//!
//! * the SDK's own unit tests pass on the host's Python against the generated bindings;
//! * `logmining` reaches the reference counts (a plain scan of the same data by the host's
//!   Python) in `wasmos dev` and via `wasmos submit` to a separate master and agent, where
//!   every partition is parsed once, in the first query, and later queries find it cached;
//! * hostile Python guests are contained as the Rust ones are (`hostile.rs`): a scheduler
//!   that raises fails its framework with the exception's message (`ValueError: bad input
//!   42`, quoted from its traceback on stderr, not a bare trap code), one that writes 64 MiB to
//!   stderr is failed with the end of it while the master's memory stays bounded, loops and
//!   memory bombs in the scheduler or the executor are stopped by fuel and the memory cap, and
//!   `pi` submitted beside them completes.

mod common;

use std::ffi::OsStr;
use std::fmt::Debug;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{
    assert_pi, example, python_example, spawn_agent, start_master_with, succeeded, vm_hwm_kib,
    wasmos,
};

/// The compile budget the Python tests give the master and agents. A Python component carries
/// CPython (13,000 functions, 6.6 MB of code): a release build compiles it in about 7 s of CPU,
/// this debug build in about 18 s, and on a 2-core machine running other tests beside these
/// that took over the default 60 s of wall time. With [`shared_cache`] a component is compiled
/// once, by the first test that needs it; the assertions are about behaviour, not time.
const COMPILE_TIMEOUT: &str = "600s";

/// The compiled-component cache every master and agent of these tests shares (`wasmos master
/// --compiled-cache-dir`; an agent's WORK_DIR/compiled and `wasmos dev`'s are made links to
/// it), so that each Python component is compiled once per engine configuration and build of
/// it, not once per process and test.
fn shared_cache() -> PathBuf {
    let dir = root().join("target/python-guest/compiled");
    std::fs::create_dir_all(&dir).expect("create the shared compiled-component cache");
    dir
}

/// Makes `dir/compiled` a link to [`shared_cache`].
fn link_cache(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).expect("create the directory");
    std::os::unix::fs::symlink(shared_cache(), dir.join("compiled")).expect("link the cache");
}

/// Bound on one `wasmos` command of these tests: its compiles under load (see
/// [`COMPILE_TIMEOUT`]) and then the framework's own run.
const WAIT: Duration = Duration::from_secs(600);

/// Runs `wasmos ARGS` to its end within [`WAIT`], capturing stdout and stderr.
async fn output<S: AsRef<OsStr> + Debug>(args: &[S]) -> Output {
    tokio::time::timeout(WAIT, wasmos().args(args).output())
        .await
        .unwrap_or_else(|_| panic!("wasmos {args:?} did not exit within {WAIT:?}"))
        .expect("wasmos runs")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python that `scripts/install-guest-toolchain.sh` set up (componentize-py's venv).
fn python() -> PathBuf {
    let p = root().join("target/python-guest/venv/bin/python");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/build-examples.sh (scripts/test.sh does) before the tests",
        p.display()
    );
    p
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn sdk_unit_tests_pass() {
    let bindings = root().join("examples-python/target/bindings");
    assert!(
        bindings.is_dir(),
        "{} is missing: run scripts/build-examples.sh",
        bindings.display()
    );
    let out = Command::new(python())
        .args(["-m", "unittest", "discover", "-s"])
        .arg(root().join("guest-sdk-python/tests"))
        .env(
            "PYTHONPATH",
            format!(
                "{}:{}",
                bindings.display(),
                root().join("guest-sdk-python").display()
            ),
        )
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python runs");
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "the SDK's unit tests failed:\n{stderr}"
    );
    assert!(stderr.contains("OK"), "{stderr}");
}

/// `logmining`'s counts for `terms` over `partitions` x `lines`, by the host's Python scanning
/// the text (`logdata.py`'s `reference_count`), as `TERM=COUNT TERM=COUNT ...`.
fn reference(partitions: u32, lines: u32, terms: &[&str]) -> String {
    let out = Command::new(python())
        .arg(root().join("examples-python/logmining/logdata.py"))
        .args([partitions.to_string(), lines.to_string()])
        .args(terms)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let counts = text(&out.stdout).trim().to_string();
    assert_eq!(counts.split(' ').count(), terms.len(), "{counts}");
    counts
}

/// Checks that `out` is logmining's success with the reference counts; returns its result.
fn assert_logmining(out: &Output, partitions: u32, lines: u32, terms: &[&str]) -> String {
    let stdout = succeeded(out);
    let want = format!(
        "logmining: {} over {partitions} partitions x {lines} lines",
        reference(partitions, lines, terms)
    );
    assert!(stdout.contains(&want), "expected {want:?} in {stdout}");
    assert!(
        stdout.contains(&format!(
            "partitions parsed: {partitions} in the first query"
        )),
        "{stdout}"
    );
    stdout
}

const TERMS: [&str; 4] = ["hdfs", "timeout", "disk", "mysql"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_logmining_to_the_reference_counts() {
    let logmining = python_example("logmining");
    let data = tempfile::tempdir().expect("a temporary directory");
    link_cache(data.path());
    link_cache(&data.path().join("agent-0"));
    let out = output(&[
        "dev",
        "--agents",
        "1",
        "--data-dir",
        data.path().to_str().expect("a UTF-8 path"),
        "--compile-timeout",
        COMPILE_TIMEOUT,
        "--run",
        &logmining,
        "--",
        "4",
        "5000",
        &TERMS.join(","),
    ])
    .await;
    assert_logmining(&out, 4, 5000, &TERMS);
}

/// A `wasmos master` and one `wasmos agent` (2 CPUs, 2 GiB), both with [`COMPILE_TIMEOUT`].
struct Cluster {
    master: tokio::process::Child,
    agent: tokio::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let cache = shared_cache();
        let flags = [
            "--compile-timeout",
            COMPILE_TIMEOUT,
            "--compiled-cache-dir",
            cache.to_str().expect("a UTF-8 path"),
        ];
        let (master, addr) = start_master_with(&flags, Stdio::inherit()).await;
        let dir = tempfile::tempdir().expect("a temporary directory");
        link_cache(&dir.path().join("work"));
        let agent = spawn_agent(
            &addr,
            &dir.path().join("work"),
            &[
                "--resources",
                "cpus:2;mem:2048",
                "--compile-timeout",
                COMPILE_TIMEOUT,
            ],
        );
        Cluster {
            master,
            agent,
            addr,
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        self.agent.kill().await.expect("kill the agent");
        self.master.kill().await.expect("kill the master");
    }
}

/// One master and agent for everything else, so that each component is compiled once by each:
/// logmining's bad arguments (each a framework that fails in `init`), logmining to its counts
/// with every partition parsed once, then the hostile frameworks beside pi.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_frameworks_on_a_master_and_agent() {
    let cluster = Cluster::start().await;
    let addr = cluster.addr.as_str();
    let logmining = python_example("logmining");

    for (args, reason) in [
        (
            &["many"][..],
            "ValueError: logmining: bad PARTITIONS 'many'",
        ),
        (
            &["65"][..],
            "ValueError: logmining: PARTITIONS 65 is out of range 1..64",
        ),
        (
            &["4", "1000001"][..],
            "LINES 1000001 is out of range 1..1000000",
        ),
        (&["1", "2", "a b"][..], "bad term 'a b'"),
    ] {
        let out =
            output(&[&["submit", &logmining, "--master", addr, "--"][..], args].concat()).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: stderr {stderr}");
        assert!(
            stderr.contains("the framework failed")
                && stderr.contains("scheduler init failed")
                && stderr.contains(reason),
            "{args:?}: expected {reason:?} in {stderr}"
        );
    }

    let out = output(&[
        "submit",
        &logmining,
        "--master",
        addr,
        "--",
        "4",
        "20000",
        &TERMS.join(","),
    ])
    .await;
    // One agent: every later query runs where its partition was parsed.
    let result = assert_logmining(&out, 4, 20000, &TERMS);
    assert!(result.contains("in the first query, 0 later"), "{result}");
    eprintln!("{result}");

    hostile_python_frameworks_are_contained_while_pi_completes(&cluster).await;
    cluster.stop().await;
}

/// One hostile Python framework: its mode, extra `wasmos submit` flags, and the texts its
/// failure must contain.
struct Case {
    mode: &'static str,
    flags: &'static [&'static str],
    reason: &'static [&'static str],
}

const CASES: [Case; 8] = [
    Case {
        mode: "raise-init",
        flags: &[],
        reason: &["scheduler init failed: ValueError: bad input 42"],
    },
    Case {
        // Not caught by the SDK: the instance traps; the traceback's end is quoted.
        mode: "raise-offers",
        flags: &[],
        reason: &[
            "scheduler resource-offers failed",
            "guest stderr:",
            "in resource_offers",
            "ValueError: bad input 42",
        ],
    },
    Case {
        mode: "stderr-flood",
        // 64 Ki writes take more than the default 10^9 fuel.
        flags: &["--fuel", "20000000000", "--callback-timeout", "60"],
        reason: &[
            "scheduler resource-offers failed",
            "ValueError: after the flood",
        ],
    },
    Case {
        mode: "offers-loop",
        flags: &["--fuel", "100000000"],
        reason: &["scheduler resource-offers failed", "ran out of fuel"],
    },
    Case {
        mode: "offers-membomb",
        flags: &["--memory-mb", "64"],
        reason: &[
            "scheduler resource-offers failed",
            "exceeded its memory limit of 64 MiB",
        ],
    },
    Case {
        mode: "task-loop",
        flags: &["--task-fuel", "200000000"],
        reason: &["task ended failed", "ran out of fuel"],
    },
    Case {
        mode: "task-membomb",
        flags: &[],
        reason: &["task ended failed", "exceeded its memory limit of 64 MiB"],
    },
    Case {
        mode: "task-raise",
        flags: &[],
        reason: &["task ended failed", "ValueError: bad task input 7"],
    },
];

/// The master's peak resident memory after logmining and while the hostile Python frameworks
/// and pi run (MiB):
/// eight CPython scheduler instances (about 13 MiB of linear memory each) and their compiled
/// code, far less than what the 64 MiB stderr flood would take if it were kept.
const MASTER_PEAK_BOUND_MIB: u64 = 768;

async fn hostile_python_frameworks_are_contained_while_pi_completes(cluster: &Cluster) {
    let addr = cluster.addr.as_str();
    let hostile = python_example("hostile");

    // Upload the component once first, so that the eight submits share its compilation.
    let first = output(&["submit", &hostile, "--master", addr, "--", "raise-init"]).await;
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stderr));

    let mut runs = Vec::new();
    for case in &CASES {
        let mut args: Vec<String> = ["submit", &hostile, "--master", addr, "--name"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(format!("hostile-py-{}", case.mode));
        args.extend(case.flags.iter().map(|s| s.to_string()));
        args.extend(["--".to_string(), case.mode.to_string()]);
        runs.push(tokio::spawn(async move { output(&args).await }));
    }
    let pi_args: Vec<String> = [
        "submit",
        &example("pi"),
        "--master",
        addr,
        "--",
        "8",
        "20000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let pi_run = tokio::spawn(async move { output(&pi_args).await });

    for (case, run) in CASES.iter().zip(runs) {
        let out = run.await.expect("the submit task");
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: a failed framework exits 1; stderr: {stderr}",
            case.mode
        );
        assert!(
            stderr.contains("the framework failed"),
            "{}: {stderr}",
            case.mode
        );
        for want in case.reason {
            assert!(
                stderr.contains(want),
                "{}: the reason should contain {want:?}; stderr: {stderr}",
                case.mode
            );
        }
        if case.mode == "stderr-flood" {
            // The quoted tail is bounded (2 KiB), not the 64 MiB written.
            assert!(stderr.len() < 8 << 10, "{} bytes of stderr", stderr.len());
        }
    }
    assert_pi(&pi_run.await.expect("the pi submit task"));
    let peak_mib = vm_hwm_kib(cluster.master.id().expect("the master's pid")) >> 10;
    eprintln!("the master's peak VmHWM: {peak_mib} MiB");
    assert!(
        peak_mib < MASTER_PEAK_BOUND_MIB,
        "the master's memory peaked at {peak_mib} MiB"
    );
}
