//! A framework written in C (`examples-wasm-c/primes`, built by `scripts/build-examples.sh`) runs
//! like the Rust ones, with the real binary: `wasmos dev --run` and `wasmos submit` (to a separate
//! master and agent) reach its exact prime count, bad arguments fail the framework with its own
//! message, and `wasmos task run` runs its executor half alone.

use std::process::Output;

mod common;

use common::{MasterAndAgent, c_example, output, succeeded};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_the_c_framework_to_its_exact_count() {
    let primes = c_example("primes");
    // pi(2,000,000) = 148,933, split over 7 uneven ranges on two agents.
    let out = output(&[
        "dev", "--agents", "2", "--run", &primes, "--", "2000000", "7",
    ])
    .await;
    assert_result(&out, "primes below 2000000: 148933 (7 tasks)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_runs_the_c_framework_on_a_master_and_agent() {
    let cluster = MasterAndAgent::start().await;
    let addr = cluster.addr.as_str();

    // 30 tasks of 0.1 CPU do not fit in one offer of 2 CPUs: they run in several rounds, tasks
    // of one executor id one after another in the same instance.
    let primes = c_example("primes");
    let out = output(&["submit", &primes, "--master", addr, "--", "1000000", "30"]).await;
    assert_result(&out, "primes below 1000000: 78498 (30 tasks)");

    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_fails_the_c_framework_on_bad_arguments() {
    let primes = c_example("primes");
    for (args, reason) in [
        (
            &["many"][..],
            "primes: bad LIMIT \"many\": not a whole number",
        ),
        (&["10", "20"][..], "primes: TASKS 20 is more than LIMIT 10"),
        (&["10", "0"][..], "primes: TASKS 0 is out of range"),
        (&["1", "2", "3"][..], "primes: too many arguments (3)"),
    ] {
        let out = output(&[&["dev", "--run", &primes, "--"][..], args].concat()).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: stderr {stderr}");
        assert!(
            stderr.contains("the framework failed") && stderr.contains(reason),
            "{args:?}: expected {reason:?} in {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_run_counts_a_range_in_the_c_executor() {
    let primes = c_example("primes");
    let run = |payload: &'static str| {
        let primes = primes.clone();
        async move {
            output(&[
                "task",
                "run",
                &primes,
                "--executor-id",
                "primes-0",
                "--payload",
                payload,
            ])
            .await
        }
    };

    // 1,000,000 <= p < 1,100,000: pi(1.1e6) - pi(1e6) = 85,714 - 78,498.
    let out = run("1000000 1100000").await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "7216 1000000 1100000");

    let out = run("7 x").await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("payload \"7 x\" is not \"LO HI\""),
        "{stderr}"
    );

    let out = run("9 5").await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("[9, 5) is inverted"), "{stderr}");
}
