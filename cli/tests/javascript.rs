//! A framework written in JavaScript (`examples-js/squares`, built with `guest-sdk-js` by
//! `scripts/build-examples.sh`: StarlingMonkey and the code in one component of about 12 MB)
//! runs like the Rust and C ones, with the real binary: `wasmos dev --run` and `wasmos submit`
//! (to a separate master and agent) reach its exact sum, bad arguments fail the framework with
//! its own message, an exception in a scheduler callback fails the framework with the
//! exception's name and message, and `wasmos task run` runs its executor half alone.
//!
//! Compiling the engine is the cost of a JavaScript framework: about 9 MB of code, which a
//! debug-built `wasmos` on a busy 2-core machine compiled in 60 to 100 s, against the default
//! budget of 60 s (a release build on a quiet machine: see `bench/README.md`, `component`).
//! So every master and agent here gets `--compile-timeout` [`COMPILE_TIMEOUT`], and each
//! `wasmos` run [`LONG_WAIT`] instead of `common::WAIT`.

use std::process::{Output, Stdio};
use std::time::Duration;

mod common;

use common::{spawn_agent, start_master_with, succeeded, wasmos};

/// The compile budget of the masters and agents of these tests (see the module doc).
const COMPILE_TIMEOUT: &str = "600s";
const COMPILE: [&str; 2] = ["--compile-timeout", COMPILE_TIMEOUT];

/// Bound on one `wasmos` run here: a compile within [`COMPILE_TIMEOUT`] on the master and
/// one on each agent, and the run itself.
const LONG_WAIT: Duration = Duration::from_secs(1500);

/// Runs `wasmos ARGS` to its end within [`LONG_WAIT`].
async fn output(args: &[&str]) -> Output {
    tokio::time::timeout(LONG_WAIT, wasmos().args(args).output())
        .await
        .unwrap_or_else(|_| panic!("wasmos {args:?} did not exit within {LONG_WAIT:?}"))
        .expect("wasmos runs")
}

/// `wasmos dev` with the longer compile budget, running `squares` with `args`.
async fn dev(agents: &str, args: &[&str]) -> Output {
    let squares = js_example("squares");
    let mut all = vec!["dev", "--agents", agents, "--run", &squares];
    all.extend(COMPILE);
    all.push("--");
    all.extend(args);
    output(&all).await
}

/// A component built by `examples-js/build.sh`, as a path string for command lines.
fn js_example(name: &str) -> String {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples-js/target")
        .join(format!("{name}.wasm"));
    assert!(
        p.is_file(),
        "{} is missing: run scripts/build-examples.sh (scripts/test.sh does) before the tests",
        p.display()
    );
    p.to_str().expect("a UTF-8 path").to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Checks that the framework finished with `result` on stdout.
fn assert_result(out: &Output, result: &str) {
    let stdout = succeeded(out);
    let stderr = text(&out.stderr);
    assert!(
        stdout.contains(result),
        "expected {result:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
}

/// Checks that the framework failed with `reason` in what `wasmos` printed.
fn assert_failed(out: &Output, reason: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("the framework failed") && stderr.contains(reason),
        "expected {reason:?} in {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_the_js_framework_to_its_exact_sum() {
    // 1^2 + ... + 100000^2 = n(n+1)(2n+1)/6, in 7 uneven ranges on two agents.
    let out = dev("2", &["100000", "7"]).await;
    assert_result(&out, "sum of squares 1..100000 = 333338333350000 (7 tasks)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_runs_the_js_framework_on_a_master_and_agent() {
    let (mut master, addr) = start_master_with(&COMPILE, Stdio::inherit()).await;
    let addr = addr.as_str();
    let dir = tempfile::tempdir().unwrap();
    let mut agent = spawn_agent(
        addr,
        &dir.path().join("work"),
        &["--resources", "cpus:2;mem:2048", COMPILE[0], COMPILE[1]],
    );

    // 30 tasks of 0.1 CPU do not fit in one offer of 2 CPUs: they run in several rounds, tasks
    // of one executor id one after another in the same instance. The sum passes 2^53: exact
    // only because the example adds BigInts.
    let squares = js_example("squares");
    let out = output(&["submit", &squares, "--master", addr, "--", "1000000", "30"]).await;
    assert_result(
        &out,
        "sum of squares 1..1000000 = 333333833333500000 (30 tasks)",
    );

    agent.kill().await.expect("kill the agent");
    master.kill().await.expect("kill the master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_fails_the_js_framework_on_bad_arguments() {
    // Two of the example's refusals: each run compiles the engine on its master, and the
    // others take the same path (a plain Error thrown by the constructor).
    for (args, reason) in [
        (&["many"][..], "squares: bad N \"many\": not a whole number"),
        (
            &["10", "20"][..],
            "squares: TASKS 20 is out of range (1 to 10)",
        ),
    ] {
        let out = dev("1", args).await;
        assert_failed(&out, reason);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_in_a_js_scheduler_callback_fails_the_framework_with_its_message() {
    let out = dev("1", &["10", "2", "raise-in-status-update"]).await;
    assert_failed(
        &out,
        "scheduler.status-update raised TypeError: asked to raise on the status of range-",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_run_sums_a_range_in_the_js_executor() {
    let squares = js_example("squares");
    // Compiled once: the later runs load it from the cache.
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().to_str().expect("a UTF-8 path").to_string();
    let run = |payload: &'static str| {
        let squares = squares.clone();
        let cache = cache.clone();
        async move {
            output(&[
                "task",
                "run",
                &squares,
                "--executor-id",
                "squares-0",
                "--payload",
                payload,
                "--cache-dir",
                &cache,
            ])
            .await
        }
    };

    // 1 + 4 + 9 + ... + 100 = 385.
    let out = run("1 11").await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "385 1 11");

    let out = run("7 x").await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("Error: payload \"7 x\" is not \"LO HI\""),
        "{stderr}"
    );

    let out = run("9 5").await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("[9, 5) is inverted"), "{stderr}");
}
