//! Weighted fairness with real processes: a `wasmos master --weight light=1 --weight heavy=3`,
//! two `wasmos agent`s, and two greedy frameworks (`hostile -- greedy:...`, which fill every
//! offer with short sleeping tasks, forever), one per role. Once the cluster is saturated, the
//! master's `GetState` shows the heavy role holding about three times the light role's
//! dominant share. Bad `--weight` values are refused before anything starts.

use std::process::Stdio;
use std::time::Duration;

use wasmos_api::proto as pb;

mod common;

use common::{
    WAIT, cluster_state, example, operator, output, spawn_agent, start_master_with,
    wait_for_agents, wasmos,
};

/// Each agent's declared resources: 4 CPUs and 4 GiB.
const AGENT_RESOURCES: &str = "cpus:4;mem:4096";
/// The greedy frameworks' tasks: 0.2 CPU and 128 MiB (CPU is the dominant resource: 1/40 of
/// the cluster's CPU, 1/64 of its memory), sleeping 200-600 ms (400 on average). 40 fit in the
/// cluster at once.
const GREEDY: &str = "greedy:200:128:400";
/// How many times the shares are sampled once the cluster is saturated, and how far apart.
const SAMPLES: usize = 16;
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

fn role<'a>(state: &'a pb::ClusterState, name: &str) -> Option<&'a pb::RoleSummary> {
    state.roles.iter().find(|r| r.role == name)
}

/// A role's dominant share: the larger of its CPU and memory fractions of the cluster.
fn dominant_share(state: &pb::ClusterState, name: &str) -> f64 {
    let total = state.total.unwrap_or_default();
    let Some(held) = role(state, name).and_then(|r| r.allocated) else {
        return 0.0;
    };
    let frac = |used: u64, all: u64| {
        if all == 0 {
            0.0
        } else {
            used as f64 / all as f64
        }
    };
    frac(held.millicpus, total.millicpus).max(frac(held.mem_mb, total.mem_mb))
}

/// The fraction of the cluster's CPU that the roles hold together.
fn cpu_in_use(state: &pb::ClusterState) -> f64 {
    let total = state.total.unwrap_or_default().millicpus;
    let held: u64 = state
        .roles
        .iter()
        .filter_map(|r| r.allocated.map(|a| a.millicpus))
        .sum();
    if total == 0 {
        0.0
    } else {
        held as f64 / total as f64
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_weighted_one_and_three_share_a_saturated_cluster_about_one_to_three() {
    let (mut master, addr) = start_master_with(
        &["--weight", "light=1", "--weight", "heavy=3"],
        Stdio::inherit(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut agents = Vec::new();
    for i in 0..2 {
        agents.push(spawn_agent(
            &addr,
            &dir.path().join(format!("agent-{i}")),
            &["--resources", AGENT_RESOURCES],
        ));
    }
    let mut op = operator(&addr).await;

    // Both agents registered before the frameworks start, so that neither framework gets a
    // head start on a half-sized cluster.
    wait_for_agents(&mut op, 2).await;

    let hostile = example("hostile");
    let mut frameworks = Vec::new();
    for name in ["light", "heavy"] {
        frameworks.push(
            wasmos()
                .args(["submit", &hostile, "--master", &addr, "--name", name])
                .args(["--role", name, "--", GREEDY])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("wasmos submit starts"),
        );
    }

    // The weights from the command line are the allocator's.
    let state = cluster_state(&mut op).await;
    assert_eq!(role(&state, "light").map(|r| r.weight), Some(1.0));
    assert_eq!(role(&state, "heavy").map(|r| r.weight), Some(3.0));

    // Saturated: both roles hold resources and together at least 90% of the CPU. Then give the
    // allocator a few task lifetimes (400 ms on average) of churn to move from whatever split the
    // first offers made towards the weighted one, by waiting until the heavy role holds more.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state = cluster_state(&mut op).await;
        let (light, heavy) = (
            dominant_share(&state, "light"),
            dominant_share(&state, "heavy"),
        );
        if cpu_in_use(&state) >= 0.9 && light > 0.0 && heavy > 1.5 * light {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cluster did not saturate with the heavy role ahead in time: light {light:.3}, \
             heavy {heavy:.3}, CPU in use {:.3}",
            cpu_in_use(&state)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Sampled, not waited on: the shares move with every task that ends (about 100 a
    // second), so one reading says little; the mean over several seconds says how the
    // allocator shares the cluster.
    let (mut light_sum, mut heavy_sum) = (0.0, 0.0);
    let mut samples = Vec::new();
    for _ in 0..SAMPLES {
        tokio::time::sleep(SAMPLE_EVERY).await;
        let state = cluster_state(&mut op).await;
        let (light, heavy) = (
            dominant_share(&state, "light"),
            dominant_share(&state, "heavy"),
        );
        samples.push((light, heavy, cpu_in_use(&state)));
        light_sum += light;
        heavy_sum += heavy;
    }
    let ratio = heavy_sum / light_sum;
    eprintln!(
        "heavy/light dominant share ratio {ratio:.2}; samples (light, heavy, CPU in use): {samples:.3?}"
    );
    // Why 2.2..4.0 and not 3 exactly: a task is 1/40 of the cluster's CPU, so the ideal split
    // is 10 light and 30 heavy tasks, and one task more or less for the light role moves a
    // sample's ratio to 2.6 or 3.5. An offer is all of an agent's free resources, given to
    // whichever role is furthest below its weighted share at that moment, so the tasks that
    // ended on an agent within one allocation interval change hands together and a sample can
    // swing by several tasks (the greedy tasks' spread durations keep those batches small).
    // Outstanding offers count as held, so a leftover offer not yet declined shows for a
    // moment too. Measured on a 2-core machine, the mean over 8 s is 2.9-3.0 with weights and
    // about 1 with both weights at 1; the bounds leave room for a loaded machine without
    // letting an allocator that ignores weights pass.
    assert!(
        (2.2..=4.0).contains(&ratio),
        "heavy/light dominant share ratio {ratio:.2}, not close to 3; samples (light, heavy, \
         CPU in use): {samples:.3?}"
    );

    for mut child in frameworks.into_iter().chain(agents) {
        child.kill().await.expect("kill a child");
    }
    master.kill().await.expect("kill the master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_weights_are_refused_before_anything_starts() {
    for (command, weight, says) in [
        ("master", "heavy", "is not ROLE=WEIGHT"),
        ("master", "heavy=0", "above zero"),
        ("master", "=2", "names no role"),
        ("dev", "heavy=many", "not a number"),
        ("dev", "heavy=inf", "above zero"),
    ] {
        let out = output(&[command, "--weight", weight]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{command} --weight {weight}: {stderr}"
        );
        assert!(
            stderr.contains("--weight") && stderr.contains(says),
            "{command} --weight {weight}: {stderr}"
        );
    }
}
