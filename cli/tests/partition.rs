//! A network partition between real `wasmos master` processes, each in its own network
//! namespace (`ip netns`) on one bridge: the leader is cut off from the other two, which elect
//! a new leader and carry on, while the cut-off master stops serving; healed, it follows the
//! new leader. Needs root (to create namespaces); skipped visibly otherwise (`wasmos_test_skip`).

use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use wasmos_api::proto as pb;
use wasmos_api::proto::operator_service_client::OperatorServiceClient;

mod common;

use common::WAIT;

/// Runs `ip ARGS`; returns whether it succeeded.
fn ip(args: &[&str]) -> bool {
    StdCommand::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must_ip(args: &[&str]) {
    assert!(ip(args), "ip {args:?} failed");
}

/// Three namespaces with one master address each, on a bridge in the test's own namespace
/// (which can reach every master). Removed on drop.
struct Net {
    tag: String,
    subnet: String,
}

impl Net {
    fn ns(&self, i: usize) -> String {
        format!("{}m{i}", self.tag)
    }
    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }
    fn host_veth(&self, i: usize) -> String {
        format!("{}v{i}", self.tag)
    }
    fn addr(&self, i: usize) -> String {
        format!("{}.{}:5050", self.subnet, i + 1)
    }

    /// Sets up the namespaces, or says why it cannot.
    fn setup() -> Result<Net, String> {
        let pid = std::process::id();
        let net = Net {
            tag: format!("wr{}", pid % 100_000),
            subnet: format!("10.{}.{}", 100 + (pid % 100), (pid / 100) % 250),
        };
        if !ip(&["netns", "add", &net.ns(0)]) {
            return Err("cannot create network namespaces (needs root and `ip`)".into());
        }
        for i in 1..3 {
            must_ip(&["netns", "add", &net.ns(i)]);
        }
        must_ip(&["link", "add", &net.bridge(), "type", "bridge"]);
        must_ip(&[
            "addr",
            "add",
            &format!("{}.254/24", net.subnet),
            "dev",
            &net.bridge(),
        ]);
        must_ip(&["link", "set", &net.bridge(), "up"]);
        for i in 0..3 {
            let (ns, veth) = (net.ns(i), net.host_veth(i));
            must_ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            must_ip(&["link", "set", &veth, "master", &net.bridge()]);
            must_ip(&["link", "set", &veth, "up"]);
            let ip_in = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &ns, "ip"];
                all.extend_from_slice(args);
                must_ip(&all);
            };
            ip_in(&["link", "set", "lo", "up"]);
            ip_in(&[
                "addr",
                "add",
                &format!("{}.{}/24", net.subnet, i + 1),
                "dev",
                "eth0",
            ]);
            ip_in(&["link", "set", "eth0", "up"]);
        }
        Ok(net)
    }

    /// Cuts (or restores) master `i`'s link to the bridge.
    fn set_link(&self, i: usize, up: bool) {
        must_ip(&[
            "link",
            "set",
            &self.host_veth(i),
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..3 {
            ip(&["link", "del", &self.host_veth(i)]);
            ip(&["netns", "del", &self.ns(i)]);
        }
        ip(&["link", "del", &self.bridge()]);
    }
}

/// Starts master `i` (id i+1) inside its namespace.
async fn start_master(net: &Net, dir: &std::path::Path, i: usize) -> Child {
    let peers: Vec<String> = (0..3)
        .map(|j| format!("{}={}", j + 1, net.addr(j)))
        .collect();
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.ns(i),
            env!("CARGO_BIN_EXE_wasmos"),
            "master",
        ])
        .args(["--listen", &net.addr(i), "--allocation-interval", "0.05"])
        // Namespace addresses are not loopback; this test is about partitions, not TLS.
        .arg("--insecure")
        .args(["--id", &(i + 1).to_string(), "--peers", &peers.join(",")])
        .arg("--data-dir")
        .arg(dir.join(format!("m{i}")))
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("wasmos master starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the master starts in time")
        .unwrap()
        .expect("a line on stdout");
    assert!(line.starts_with("wasmos master listening on"), "{line}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

/// What master `i` answers to `GetState`: `Ok` when it serves, else the leader it names.
async fn ask(net: &Net, i: usize) -> Result<(), Option<String>> {
    let endpoint = tonic::transport::Channel::from_shared(format!("http://{}", net.addr(i)))
        .unwrap()
        .connect_timeout(Duration::from_millis(300))
        .timeout(Duration::from_millis(1500));
    let Ok(channel) = endpoint.connect().await else {
        return Err(None);
    };
    match OperatorServiceClient::with_interceptor(channel, common::Bearer::root_of(&net.addr(i)))
        .get_state(pb::GetStateRequest {})
        .await
    {
        Ok(_) => Ok(()),
        Err(s) => Err(wasmos_api::leader::leader_hint(&s)),
    }
}

/// The longest a leader cut off from the majority may go on serving, on a busy machine: it
/// stops after 1.5 s unconfirmed, checked every 0.25 s with a 1 s confirmation timeout.
const STEP_DOWN_BOUND: Duration = Duration::from_secs(8);

/// How long until the master at `addr`, asked from inside its namespace `ns` with the token
/// `root`, refuses to serve (panics after `WAIT`): the time the first refused ask began. (A
/// refused `wasmos frameworks` looks for another leader for 5 s before it gives up; had the
/// master served when it first asked, it would have answered at once.)
async fn time_until_refusing(ns: String, addr: String, root: String) -> Duration {
    let started = tokio::time::Instant::now();
    loop {
        let asked = started.elapsed();
        let out = Command::new("ip")
            .args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_wasmos")])
            .args(["frameworks", "--master", &addr])
            .env("WASMOS_TOKEN", &root)
            .output()
            .await
            .unwrap();
        if !out.status.success() {
            return asked;
        }
        assert!(
            started.elapsed() < WAIT,
            "the cut-off leader still serves after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until `cond` holds, panicking with `what` after `WAIT`.
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An operator client of master `i`, with the group's management token.
async fn op(net: &Net, i: usize) -> Result<common::Operator, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", net.addr(i)))
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    Ok(OperatorServiceClient::with_interceptor(
        channel,
        common::Bearer::root_of(&net.addr(i)),
    ))
}

async fn set_weight(net: &Net, i: usize, role: &str, weight: f64) -> Result<(), tonic::Status> {
    let mut op = op(net, i).await?;
    op.set_weights(pb::SetWeightsRequest {
        weights: vec![pb::RoleWeight {
            role: role.into(),
            weight,
        }],
    })
    .await
    .map(|_| ())
}

async fn weight_at(net: &Net, i: usize, role: &str) -> Option<f64> {
    let mut op = op(net, i).await.ok()?;
    let state = op
        .get_state(pb::GetStateRequest {})
        .await
        .ok()?
        .into_inner();
    state
        .roles
        .iter()
        .find(|r| r.role == role)
        .map(|r| r.weight)
}

/// Sets a weight through whichever of `candidates` leads, retrying across leader changes;
/// returns the master that committed it.
async fn commit_weight(net: &Net, candidates: &[usize], role: &str, weight: f64) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let leader = leader_among(net, candidates).await;
        match set_weight(net, leader, role, weight).await {
            Ok(()) => return leader,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "weight {role}={weight} not committed in time: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn leader_among(net: &Net, candidates: &[usize]) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        for &i in candidates {
            if ask(net, i).await.is_ok() {
                return i;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no master of {candidates:?} serves in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_steps_down_and_the_majority_carries_on() {
    let net = match Net::setup() {
        Ok(n) => n,
        Err(why) => {
            wasmos_test_skip::require!("root and `ip netns`", Some(why));
            unreachable!("a missing precondition returns or fails");
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let mut masters = Vec::new();
    for i in 0..3 {
        masters.push(start_master(&net, dir.path(), i).await);
    }
    // One bootstrap for the group (through its leader); every call below carries the token.
    let all: Vec<String> = (0..3).map(|i| net.addr(i)).collect();
    let root = common::secure(&all.join(",")).await.root;
    let old = commit_weight(&net, &[0, 1, 2], "before", 2.0).await;

    net.set_link(old, false);
    // The cut-off master stops serving within seconds (a majority has not confirmed it for
    // 1.5 s): asked from inside its own namespace, it refuses. Watched from the cut on.
    let stepped_down = tokio::spawn(time_until_refusing(
        net.ns(old),
        net.addr(old),
        root.clone(),
    ));
    let rest: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let new = commit_weight(&net, &rest, "during", 3.0).await;
    assert_eq!(weight_at(&net, new, "before").await, Some(2.0));
    let took = stepped_down.await.unwrap();
    eprintln!(
        "the cut-off leader stopped serving {} ms after the cut",
        took.as_millis()
    );
    eprintln!(
        "the cut-off leader stopped serving {} ms after the cut",
        took.as_millis()
    );
    assert!(
        took < STEP_DOWN_BOUND,
        "the cut-off leader served for {} ms after the cut (bound {} ms)",
        took.as_millis(),
        STEP_DOWN_BOUND.as_millis()
    );

    // Healed, it follows the new leader.
    net.set_link(old, true);
    let leader_addr = net.addr(new);
    eventually("the healed master to name the new leader", || {
        let leader_addr = leader_addr.clone();
        let net = &net;
        async move { ask(net, old).await == Err(Some(leader_addr)) }
    })
    .await;
    // And it has the log: with the new leader gone, it and the third master carry the
    // whole registry on.
    masters[new].start_kill().unwrap();
    masters[new].wait().await.unwrap();
    let third: Vec<usize> = (0..3).filter(|&i| i != new).collect();
    let last = leader_among(&net, &third).await;
    assert_eq!(weight_at(&net, last, "before").await, Some(2.0));
    assert_eq!(weight_at(&net, last, "during").await, Some(3.0));
    drop(masters);
}
