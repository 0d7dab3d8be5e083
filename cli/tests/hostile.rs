//! Hostile schedulers against real `wasmos master` and `wasmos agent` processes: a scheduler
//! that spins inside `resource-offers`, one that allocates without bound there, one that
//! launches onto an offer id it invented and one that launches more than its offer holds are
//! each failed with a reason naming what they did, seen by `wasmos submit` (exit 1), while `pi`
//! submitted beside them on the same master completes with its estimate. A scheduler failed
//! while its native task runs has that task killed. A component of another world is refused at
//! upload (exit 2), saying what it lacks.

mod common;

use common::{
    MasterAndAgent, NATIVE_DEFAULT_ROLE, assert_pi, example, framework_named_in, framework_pids,
    output, output_watching_framework, start_master, succeeded, vm_hwm_kib, wait_until,
};

/// One hostile scheduler: its `init` argument, extra `wasmos submit` flags, and the texts its
/// failure must contain.
struct Case {
    mode: &'static str,
    flags: &'static [&'static str],
    reason: &'static [&'static str],
}

const CASES: [Case; 5] = [
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
        // 1,024 tasks whose payloads all name one 4 MiB region: 4 GiB for a host that copied
        // each; the call stops at MAX_GUEST_CALL_BYTES instead.
        mode: "alias-launch:1024",
        flags: &[],
        reason: &[
            "scheduler resource-offers failed",
            "too much data is being copied",
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
    let cluster = MasterAndAgent::start().await;
    let addr = cluster.addr.as_str();

    let hostile = example("hostile");
    let pi = example("pi");
    // Everything is submitted at once, so the hostile schedulers share the master (and the
    // agent's offers) with pi while they misbehave.
    let mut runs = Vec::new();
    for case in &CASES {
        let mut args: Vec<String> = ["submit", &hostile, "--master", addr, "--name"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(format!("hostile-{}", case.mode));
        args.extend(case.flags.iter().map(|s| s.to_string()));
        args.extend(["--".to_string(), case.mode.to_string()]);
        runs.push(tokio::spawn(async move { output(&args).await }));
    }
    let pi_args: Vec<String> = ["submit", &pi, "--master", addr, "--", "8", "20000"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let pi_run = tokio::spawn(async move { output(&pi_args).await });

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

    assert_pi(&pi_run.await.expect("the pi submit task"));
    let peak_mib = vm_hwm_kib(cluster.master.id().unwrap()) >> 10;
    eprintln!("the master's peak VmHWM: {peak_mib} MiB");
    assert!(
        peak_mib < MASTER_PEAK_BOUND_MIB,
        "the master's memory peaked at {peak_mib} MiB"
    );

    cluster.stop().await;
}

/// The master's peak resident memory while the hostile schedulers and pi run (MiB).
const MASTER_PEAK_BOUND_MIB: u64 = 512;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_of_another_world_is_refused_at_upload() {
    let (mut master, addr) = start_master().await;
    let wrong = example("wrongworld");
    let out = output(&["submit", &wrong, "--master", &addr]).await;
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

/// A scheduler that fails while one of its tasks runs has that task killed: `running-loop`
/// launches a native `sleep 600`, then spins in the `status-update` that says it runs. The
/// master fails it for fuel, and the task's processes must be gone soon after, not left
/// running for ten minutes. The budget (2 * 10^9 units, a few hundred milliseconds of
/// spinning, well inside the 10 s callback deadline) gives the watcher time to see the task's
/// process before the scheduler fails: with 10^8 it spun ~10 ms and a busy machine missed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_failed_while_its_task_runs_has_the_task_killed() {
    require_cgroups!();
    let cluster = MasterAndAgent::start_with(&NATIVE_DEFAULT_ROLE).await;
    let hostile = example("hostile");
    let (out, seen) = output_watching_framework(&[
        "submit",
        &hostile,
        "--master",
        &cluster.addr,
        "--fuel",
        "2000000000",
        "--",
        "running-loop",
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("scheduler status-update failed") && stderr.contains("ran out of fuel"),
        "the scheduler should fail in the status-update that reported its task running: {stderr}"
    );
    let framework =
        framework_named_in(&stderr).unwrap_or_else(|| panic!("no framework id in {stderr:?}"));
    // The task's processes were seen in the framework's cgroups while it ran (so an empty
    // list below means they are gone, not that the cgroup pattern missed them).
    assert!(
        !seen.is_empty(),
        "no process was ever seen in framework {framework}'s task cgroups"
    );
    assert!(
        wait_until(|| framework_pids(&framework).is_empty()).await,
        "framework {framework}'s task still has processes: {:?}",
        framework_pids(&framework)
    );
    cluster.stop().await;
}

/// A hosted scheduler gives one Wasm task its own fuel budget or deadline through the WIT task
/// record (`wasm-task.fuel`, `wasm-task.timeout-seconds`): a spinning task with 10^8 fuel
/// runs out of it, one with a 1 s deadline (and the default fuel, minutes of work) fails at
/// the deadline, each naming the task's own field; fuel 0 is refused at launch, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_schedulers_task_budget_is_its_own() {
    let cluster = MasterAndAgent::start().await;
    let addr = cluster.addr.clone();
    let hostile = example("hostile");
    let run = |mode: &str| {
        let args: Vec<String> = ["submit", &hostile, "--master", &addr, "--", mode]
            .iter()
            .map(|s| s.to_string())
            .collect();
        tokio::spawn(async move { output(&args).await })
    };
    let fuel = run("budget:100000000:-:loop");
    let deadline = run("budget:-:1:loop");
    let zero = run("budget:0:-:loop");

    let out = fuel.await.unwrap();
    let stdout = succeeded(&out);
    assert!(
        stdout.contains("budget task failed")
            && stdout.contains("ran out of fuel (budget 100000000 units, set by the task's"),
        "{stdout}"
    );
    let out = deadline.await.unwrap();
    let stdout = succeeded(&out);
    assert!(
        stdout.contains("budget task failed")
            && stdout.contains("exceeded its deadline of 1 s, set by the task's"),
        "{stdout}"
    );
    let out = zero.await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("hostile launch refused") && stderr.contains("fuel"),
        "{stderr}"
    );
    cluster.stop().await;
}
