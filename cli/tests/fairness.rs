//! Weighted fairness with real processes: a `wasmos master --weight light=1 --weight heavy=3`,
//! two `wasmos agent`s, and two greedy frameworks (`hostile -- greedy:...`, which fill every
//! offer with short sleeping tasks, forever), one per role. Once the cluster is saturated, the
//! master's `GetState` shows the heavy role holding about three times the light role's
//! dominant share. Bad `--weight` values are refused before anything starts.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tonic::transport::Channel;
use wasmos_api::proto as pb;
use wasmos_api::proto::operator_service_client::OperatorServiceClient;

mod common;

use common::{WAIT, example, wasmos};

/// Each agent's declared resources: 4 CPUs and 4 GiB.
const AGENT_RESOURCES: &str = "cpus:4;mem:4096";
/// The greedy frameworks' tasks: 0.2 CPU and 128 MiB (CPU is the dominant resource: 1/40 of
/// the cluster's CPU, 1/64 of its memory), sleeping 200-600 ms (400 on average). 40 fit in the
/// cluster at once.
const GREEDY: &str = "greedy:200:128:400";
/// How many times the shares are sampled once the cluster is saturated, and how far apart.
const SAMPLES: usize = 16;
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// Starts `wasmos master` on a free port with `extra` flags; returns it and its address.
async fn start_master_with(extra: &[&str]) -> (Child, String) {
    let mut master = wasmos()
        .args(["master", "--listen", "127.0.0.1:0"])
        .args(["--allocation-interval", "0.05"])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("wasmos master starts");
    let stdout = master.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the master says where it listens in time")
        .expect("stdout readable")
        .expect("a line on stdout");
    let addr = line
        .strip_prefix("wasmos master listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from the master: {line:?}"))
        .to_string();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (master, addr)
}

async fn get_state(op: &mut OperatorServiceClient<Channel>) -> pb::ClusterState {
    op.get_state(pb::GetStateRequest {})
        .await
        .expect("GetState")
        .into_inner()
}

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
    let (mut master, addr) =
        start_master_with(&["--weight", "light=1", "--weight", "heavy=3"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut agents = Vec::new();
    for i in 0..2 {
        agents.push(
            wasmos()
                .args(["agent", "--master", &addr, "--work-dir"])
                .arg(dir.path().join(format!("agent-{i}")))
                .args(["--resources", AGENT_RESOURCES])
                .spawn()
                .expect("wasmos agent starts"),
        );
    }
    let mut op = OperatorServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to the master");

    // Both agents registered before the frameworks start, so that neither framework gets a
    // head start on a half-sized cluster.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state = get_state(&mut op).await;
        if state.agents.iter().filter(|a| a.reachable).count() == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agents did not register in time: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

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
    let state = get_state(&mut op).await;
    assert_eq!(role(&state, "light").map(|r| r.weight), Some(1.0));
    assert_eq!(role(&state, "heavy").map(|r| r.weight), Some(3.0));

    // Saturated: both roles hold resources and together at least 90% of the CPU. Then give the
    // allocator a few task lifetimes (400 ms on average) of churn to move from whatever split the
    // first offers made towards the weighted one, by waiting until the heavy role holds more.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state = get_state(&mut op).await;
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
        let state = get_state(&mut op).await;
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
        let out = tokio::time::timeout(
            WAIT,
            wasmos()
                .args([command, "--weight", weight])
                .stdout(Stdio::null())
                .output(),
        )
        .await
        .expect("wasmos exits in time")
        .expect("wasmos runs");
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
