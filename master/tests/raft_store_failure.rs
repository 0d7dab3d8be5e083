//! A replicated master whose Raft store cannot write (a full disk, simulated with
//! [`StoreFaults`]) stops serving and [`Master::serve`] returns
//! [`ServeError::RaftFailed`], rather than living on as a member that can never serve again;
//! another master takes over with the registry, the framework carries on there, and the failed
//! master, restarted on its data dir with the disk fixed, rejoins the group.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use wasmos_api::proto as pb;
use wasmos_api::proto::operator_service_client::OperatorServiceClient;
use wasmos_api::proto::scheduler_service_client::SchedulerServiceClient;
use wasmos_master::raft::{RaftConfig, RaftNode, StoreFaults};
use wasmos_master::server::ServeError;
use wasmos_master::{Master, MasterConfig};

const WAIT: Duration = Duration::from_secs(30);

struct Member {
    master: Master,
    serve: JoinHandle<Result<(), ServeError>>,
}

async fn start_member(
    id: u64,
    listener: TcpListener,
    peers: BTreeMap<u64, String>,
    dir: PathBuf,
    faults: StoreFaults,
) -> Member {
    let node = RaftNode::open_with_faults(id, peers, dir, RaftConfig::default(), Some(faults))
        .await
        .expect("the Raft member starts");
    // A test of the store, not of ACLs.
    let config = MasterConfig {
        enforce_acl: false,
        ..MasterConfig::default()
    };
    let master = Master::replicated(config, node, Duration::from_millis(200));
    let serve = tokio::spawn(master.clone().serve(listener, std::future::pending()));
    Member { master, serve }
}

async fn operator(addr: SocketAddr) -> OperatorServiceClient<tonic::transport::Channel> {
    OperatorServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("the operator API answers")
}

/// Waits until one of `members` (skipping `skip`) serves; returns its index.
async fn leader(members: &[Option<Member>], skip: Option<usize>) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        for (i, m) in members.iter().enumerate() {
            if Some(i) != skip && m.as_ref().is_some_and(|m| m.master.is_serving()) {
                return i;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no master serves");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Subscribes a framework (`id` empty for a new one) on the master that serves (skipping
/// `skip`), retrying while the leadership settles; returns the leader's index, the
/// framework's id and the call channel.
async fn subscribe_on_leader(
    members: &[Option<Member>],
    addrs: &[SocketAddr],
    skip: Option<usize>,
    id: &str,
) -> (usize, String, mpsc::Sender<pb::SchedulerCall>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let i = leader(members, skip).await;
        match subscribe(addrs[i], id).await {
            Ok((fw, tx)) => return (i, fw, tx),
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "no master accepts the subscription: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Subscribes a framework (`id` empty for a new one); returns its id and the call channel.
async fn subscribe(
    addr: SocketAddr,
    id: &str,
) -> Result<(String, mpsc::Sender<pb::SchedulerCall>), tonic::Status> {
    let mut client = SchedulerServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("the scheduler API answers");
    let (tx, rx) = mpsc::channel(8);
    tx.send(pb::SchedulerCall {
        call: Some(pb::scheduler_call::Call::Subscribe(
            pb::scheduler_call::Subscribe {
                framework_info: Some(pb::FrameworkInfo {
                    id: id.into(),
                    name: "steady".into(),
                    role: "analytics".into(),
                    failover_timeout_seconds: 3600.0,
                    ..Default::default()
                }),
            },
        )),
    })
    .await
    .unwrap();
    let mut events = client
        .subscribe(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let first = events.message().await?.expect("an event");
    let Some(pb::scheduler_event::Event::Subscribed(s)) = first.event else {
        panic!("expected Subscribed, got {first:?}");
    };
    Ok((s.framework_id, tx))
}

fn weight(w: f64) -> pb::SetWeightsRequest {
    pb::SetWeightsRequest {
        weights: vec![pb::RoleWeight {
            role: "analytics".into(),
            weight: w,
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_store_cannot_write_stops_and_rejoins_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(l.local_addr().unwrap());
        listeners.push(l);
    }
    let peers: BTreeMap<u64, String> = (1..=3u64)
        .map(|id| (id, addrs[id as usize - 1].to_string()))
        .collect();
    let faults: Vec<StoreFaults> = (0..3).map(|_| StoreFaults::new()).collect();
    let mut members: Vec<Option<Member>> = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        members.push(Some(
            start_member(
                id,
                l,
                peers.clone(),
                dir.path().join(id.to_string()),
                faults[i].clone(),
            )
            .await,
        ));
    }
    let (first, framework_id, _calls) = subscribe_on_leader(&members, &addrs, None, "").await;
    operator(addrs[first])
        .await
        .set_weights(weight(2.0))
        .await
        .expect("a healthy leader commits");

    // The leader's disk fills: its next write fails.
    faults[first].set_failing(true);
    let refused = tokio::time::timeout(WAIT, operator(addrs[first]).await.set_weights(weight(3.0)))
        .await
        .expect("the call on the failing leader is answered, not left hanging")
        .expect_err("a change the failing leader cannot store is not acknowledged");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    let Member {
        master: failed,
        serve,
    } = members[first].take().unwrap();
    let served = tokio::time::timeout(WAIT, serve)
        .await
        .expect("serve returns once the Raft store failed")
        .expect("serve did not panic");
    let err = served.expect_err("serve reports the store's failure");
    let msg = err.to_string();
    assert!(
        matches!(&err, ServeError::RaftFailed { id, .. } if *id == first as u64 + 1),
        "{err:?}"
    );
    assert!(
        msg.contains(&format!("the Raft store of master {} failed", first + 1))
            && msg.contains("the master stopped serving")
            && msg.contains("restart"),
        "{msg}"
    );
    assert!(!failed.is_serving());
    failed.shutdown_replication().await;
    drop(failed);

    // Another master leads with the registry; the framework carries on there.
    let (second, again, _calls2) =
        subscribe_on_leader(&members, &addrs, Some(first), &framework_id).await;
    assert_eq!(again, framework_id);
    operator(addrs[second])
        .await
        .set_weights(weight(4.0))
        .await
        .expect("the new leader commits");

    // The disk is fixed and the master restarted on its data dir: it rejoins and catches up.
    faults[first].set_failing(false);
    let listener = TcpListener::bind(addrs[first]).await.unwrap();
    let id = first as u64 + 1;
    let back = start_member(
        id,
        listener,
        peers.clone(),
        dir.path().join(id.to_string()),
        faults[first].clone(),
    )
    .await;
    let leader_node = members[second]
        .as_ref()
        .unwrap()
        .master
        .raft_node()
        .unwrap();
    let target = leader_node.raft().metrics().borrow().last_log_index;
    let mut metrics = back.master.raft_node().unwrap().raft().metrics();
    tokio::time::timeout(
        WAIT,
        metrics.wait_for(|m| m.running_state.is_ok() && m.last_applied.map(|l| l.index) >= target),
    )
    .await
    .expect("the restarted master catches up in time")
    .expect("its Raft runs");
    members[first] = Some(back);
    for m in members.into_iter().flatten() {
        m.serve.abort();
        m.master.shutdown_replication().await;
    }
}
