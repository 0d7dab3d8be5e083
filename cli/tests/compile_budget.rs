//! The CLI compiles components in a child process (`wasmos __compile`) under a memory and a
//! time budget: a component over either is refused with the budget named, and within them the
//! same path runs `pi` (`dev.rs`'s `dev_runs_pi_to_its_estimate` goes through it too).

mod common;

use common::{assert_pi, example, output};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_over_the_memory_budget_is_refused_naming_it() {
    let pi = example("pi");
    let out = output(&[
        "dev",
        "--agents",
        "1",
        "--compile-memory-mb",
        "16",
        "--run",
        &pi,
        "--",
        "2",
        "100",
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "pi compiled within 16 MiB: {stderr}");
    assert!(
        stderr.contains("memory budget of 16 MiB") && stderr.contains("--compile-memory-mb"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_over_the_time_budget_is_refused_naming_it() {
    let pi = example("pi");
    let out = output(&[
        "dev",
        "--agents",
        "1",
        "--compile-timeout",
        "0.001",
        "--run",
        &pi,
        "--",
        "2",
        "100",
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "pi compiled within 1 ms: {stderr}");
    assert!(stderr.contains("time budget of 1ms"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi_compiles_in_the_child_within_a_modest_budget_and_runs() {
    let pi = example("pi");
    let out = output(&[
        "dev",
        "--agents",
        "1",
        "--compile-memory-mb",
        "1024",
        "--run",
        &pi,
        "--",
        "8",
        "20000",
    ])
    .await;
    assert_pi(&out);
}
