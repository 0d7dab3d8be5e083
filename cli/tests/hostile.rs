//! Hostile schedulers against real `wasmos master` and `wasmos agent` processes: a scheduler
//! that spins inside `resource-offers`, one that allocates without bound there, one that
//! launches onto an offer id it invented and one that launches more than its offer holds are
//! each failed with a reason naming what they did, seen by `wasmos submit` (exit 1), while `pi`
//! submitted beside them on the same master completes with its estimate. A component of
//! another world is refused at upload (exit 2), saying what it lacks.

use std::process::Output;

mod common;

use common::{WAIT, example, start_master, wasmos};

async fn output(args: Vec<String>) -> Output {
    tokio::time::timeout(WAIT, wasmos().args(&args).output())
        .await
        .unwrap_or_else(|_| panic!("wasmos {args:?} did not exit within {WAIT:?}"))
        .expect("wasmos runs")
}

/// The estimate in `pi ~= 3.14159x (...)`.
fn estimate(stdout: &str) -> f64 {
    let rest = stdout
        .split("pi ~= ")
        .nth(1)
        .unwrap_or_else(|| panic!("no estimate in {stdout:?}"));
    rest.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no number in {stdout:?}"))
}

/// One hostile scheduler: its `init` argument, extra `wasmos submit` flags, and the texts its
/// failure must contain.
struct Case {
    mode: &'static str,
    flags: &'static [&'static str],
    reason: &'static [&'static str],
}

const CASES: [Case; 4] = [
    Case {
        mode: "offers-loop",
        // A small budget so that fuel, not the 10 s callback deadline, stops it.
        flags: &["--fuel", "100000000"],
        reason: &["scheduler resource-offers failed", "ran out of fuel"],
    },
    Case {
        mode: "offers-membomb",
        flags: &["--memory-mb", "32"],
        reason: &[
            "scheduler resource-offers failed",
            "exceeded its memory limit of 32 MiB",
        ],
    },
    Case {
        mode: "foreign-offer",
        flags: &[],
        reason: &[
            "hostile launch refused",
            "-invented-by-hostile",
            "unknown or no longer valid",
        ],
    },
    Case {
        mode: "overcommit",
        flags: &[],
        reason: &[
            "hostile launch refused",
            "the tasks need",
            "the offers hold",
        ],
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_schedulers_fail_with_clear_reasons_while_pi_completes() {
    let (mut master, addr) = start_master().await;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = wasmos()
        .args(["agent", "--master", &addr, "--work-dir"])
        .arg(dir.path().join("work"))
        .args(["--resources", "cpus:2;mem:2048"])
        .spawn()
        .expect("wasmos agent starts");

    let hostile = example("hostile");
    let pi = example("pi");
    // Everything is submitted at once, so the hostile schedulers share the master (and the
    // agent's offers) with pi while they misbehave.
    let mut runs = Vec::new();
    for case in &CASES {
        let mut args: Vec<String> = ["submit", &hostile, "--master", &addr, "--name"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(format!("hostile-{}", case.mode));
        args.extend(case.flags.iter().map(|s| s.to_string()));
        args.extend(["--".to_string(), case.mode.to_string()]);
        runs.push(tokio::spawn(output(args)));
    }
    let pi_args = ["submit", &pi, "--master", &addr, "--", "8", "20000"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let pi_run = tokio::spawn(output(pi_args));

    for (case, run) in CASES.iter().zip(runs) {
        let out = run.await.expect("the submit task");
        let stderr = String::from_utf8_lossy(&out.stderr);
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
        for text in case.reason {
            assert!(
                stderr.contains(text),
                "{}: the reason should contain {text:?}; stderr: {stderr}",
                case.mode
            );
        }
    }

    let out = pi_run.await.expect("the pi submit task");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pi exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let estimate = estimate(&stdout);
    assert!(
        (estimate - std::f64::consts::PI).abs() < 0.05,
        "{estimate} is not close to pi"
    );

    agent.kill().await.expect("kill the agent");
    master.kill().await.expect("kill the master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_of_another_world_is_refused_at_upload() {
    let (mut master, addr) = start_master().await;
    let wrong = example("wrongworld");
    let out = output(
        ["submit", &wrong, "--master", &addr]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("refused the component")
            && stderr.contains("not a wasmos framework")
            && stderr.contains("does not export wasmos:framework/scheduler@0.1.0")
            && stderr.contains("greet"),
        "{stderr}"
    );
    master.kill().await.expect("kill the master");
}
