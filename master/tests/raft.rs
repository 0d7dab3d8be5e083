//! The master's Raft layer end to end: several masters in one process, each with its own data
//! dir, talking gRPC over loopback.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use wasmos_api::AgentId;
use wasmos_master::raft::{
    Applied, ProposeError, Proposer, RaftConfig, RaftNode, StartError, StoreError,
    store::STORE_FILE,
};
use wasmos_master::registry::{Command, Registry, RegistryError};

/// Generous: the machine running the tests may be busy building.
const DEADLINE: Duration = Duration::from_secs(30);
/// The longest a failover with the default timing may take on a busy machine.
const FAILOVER_BOUND: Duration = Duration::from_secs(4);

struct Cluster {
    dir: tempfile::TempDir,
    addrs: BTreeMap<u64, SocketAddr>,
    nodes: BTreeMap<u64, RaftNode>,
    config: RaftConfig,
}

fn peers(addrs: &BTreeMap<u64, SocketAddr>) -> BTreeMap<u64, String> {
    addrs.iter().map(|(id, a)| (*id, a.to_string())).collect()
}

impl Cluster {
    /// `n` masters (ids 1..=n) forming one cluster.
    async fn start(n: u64, config: RaftConfig) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            listeners.insert(id, TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addrs: BTreeMap<u64, SocketAddr> = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().unwrap()))
            .collect();
        let mut cluster = Cluster {
            dir,
            addrs,
            nodes: BTreeMap::new(),
            config,
        };
        let initial = peers(&cluster.addrs);
        for (id, listener) in listeners {
            let node = RaftNode::start_on(
                id,
                listener,
                initial.clone(),
                cluster.data_dir(id),
                cluster.config.clone(),
            )
            .await
            .unwrap();
            cluster.nodes.insert(id, node);
        }
        cluster
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("master-{id}"))
    }

    /// Starts master `id` again (or for the first time) on its address, with `peers` as its
    /// initial members.
    async fn start_node(&mut self, id: u64, peers: BTreeMap<u64, String>) {
        let addr = match self.addrs.get(&id) {
            Some(a) => *a,
            None => {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let a = l.local_addr().unwrap();
                drop(l);
                self.addrs.insert(id, a);
                a
            }
        };
        // The port was free a moment ago (its master was shut down); retry briefly in case the
        // kernel has not released it yet.
        let deadline = Instant::now() + DEADLINE;
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebinding {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot rebind {addr}: {e}"),
            }
        };
        let node = RaftNode::start_on(id, listener, peers, self.data_dir(id), self.config.clone())
            .await
            .unwrap();
        self.nodes.insert(id, node);
    }

    async fn stop(&mut self, id: u64) {
        self.nodes.remove(&id).unwrap().shutdown().await;
    }

    async fn stop_all(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }

    /// Waits until exactly one running master leads and every running voter of its membership
    /// names it (a master not yet added, or removed, may not know); returns its id.
    async fn leader(&self) -> u64 {
        wait_for("one leader the running masters agree on", || {
            let leaders: Vec<u64> = self
                .nodes
                .iter()
                .filter(|(_, n)| n.is_leader())
                .map(|(id, _)| *id)
                .collect();
            let [leader] = leaders[..] else {
                return None;
            };
            let voters = self.nodes[&leader].voters();
            self.nodes
                .iter()
                .filter(|(id, _)| voters.contains(id))
                .all(|(_, n)| n.metrics().borrow().current_leader == Some(leader))
                .then_some(leader)
        })
        .await
    }

    /// Proposes `command` to whichever master leads, retrying while leadership moves.
    async fn propose(&self, command: Command) -> Applied {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let leader = self.leader().await;
            match self.nodes[&leader].propose(command.clone()).await {
                Ok(applied) => return applied,
                Err(e @ (ProposeError::NotLeader { .. } | ProposeError::Unavailable(_)))
                    if Instant::now() < deadline =>
                {
                    eprintln!("retrying a proposal: {e}");
                }
                Err(e) => panic!("proposal failed: {e}"),
            }
        }
    }

    /// Waits until the running masters in `ids` have applied the same registry as `leader`.
    async fn converged(&self, leader: u64, ids: &[u64]) -> Registry {
        wait_for("the masters to apply the leader's registry", || {
            let want = self.nodes[&leader].registry();
            ids.iter()
                .all(|id| self.nodes[id].registry() == want)
                .then_some(want)
        })
        .await
    }
}

/// Polls `f` until it gives `Some`, for at most [`DEADLINE`].
async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn weight(role: &str, w: f64) -> Command {
    Command::SetWeight {
        role: role.into(),
        weight: w,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_masters_replicate_fail_over_and_catch_up() {
    let mut c = Cluster::start(3, RaftConfig::default()).await;
    let leader = c.leader().await;

    // A follower refuses proposals and names the leader.
    let follower = *c.nodes.keys().find(|id| **id != leader).unwrap();
    match c.nodes[&follower].propose(weight("x", 1.0)).await {
        Err(ProposeError::NotLeader {
            leader_id,
            leader_addr,
        }) => {
            assert_eq!(leader_id, Some(leader));
            assert_eq!(leader_addr, Some(c.addrs[&leader].to_string()));
        }
        other => panic!("a follower accepted a proposal: {other:?}"),
    }
    let want = Some((leader, c.addrs[&leader].to_string()));
    wait_for("the follower to name the leader", || {
        (c.nodes[&follower].leader() == want).then_some(())
    })
    .await;

    for i in 0..20 {
        let applied = c.propose(weight(&format!("r{i}"), 1.0 + i as f64)).await;
        assert_eq!(applied.result, Ok(()));
    }
    // A command the registry refuses is committed and answered with the refusal.
    let refused = c
        .propose(Command::RemoveAgent {
            id: AgentId::new("nobody").unwrap(),
        })
        .await;
    assert!(matches!(
        refused.result,
        Err(RegistryError::UnknownAgent(_))
    ));
    let reg = c.converged(leader, &[1, 2, 3]).await;
    assert_eq!(reg.weights.len(), 20);
    assert_eq!(reg.weight("r19"), 20.0);

    // The leader goes away: the others elect a new one and take proposals.
    let stopping_at = Instant::now();
    c.stop(leader).await;
    let stopped_at = Instant::now();
    let new_leader = c.leader().await;
    eprintln!(
        "failover: new leader {new_leader} {} ms after the old one stopped ({} ms after its \
         shutdown began)",
        stopped_at.elapsed().as_millis(),
        stopping_at.elapsed().as_millis()
    );
    assert_ne!(new_leader, leader);
    // The defaults fail over in 0.6 to 0.9 s (`RaftConfig::election_timeout_min`); a busy
    // machine may add a second or two, an election timeout several times too long more.
    assert!(
        stopped_at.elapsed() < FAILOVER_BOUND,
        "the new leader took {} ms (bound {} ms)",
        stopped_at.elapsed().as_millis(),
        FAILOVER_BOUND.as_millis()
    );
    for i in 20..30 {
        c.propose(weight(&format!("r{i}"), 1.0)).await;
    }
    let others: Vec<u64> = c.nodes.keys().copied().collect();
    c.converged(new_leader, &others).await;

    // The old leader restarts from its data dir and catches up.
    c.start_node(leader, peers(&c.addrs)).await;
    let reg = c.converged(new_leader, &[1, 2, 3]).await;
    assert_eq!(reg.weights.len(), 30);
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarting_every_master_brings_back_the_registry() {
    let mut c = Cluster::start(3, RaftConfig::default()).await;
    for i in 0..10 {
        c.propose(weight(&format!("r{i}"), 2.0)).await;
    }
    let leader = c.leader().await;
    let before = c.converged(leader, &[1, 2, 3]).await;
    c.stop_all().await;
    let all = peers(&c.addrs);
    for id in 1..=3 {
        c.start_node(id, all.clone()).await;
    }
    // Every master applies its committed log again on start, before any new proposal.
    wait_for("every restarted master to restore the registry", || {
        c.nodes
            .values()
            .all(|n| n.registry() == before)
            .then_some(())
    })
    .await;
    // And the cluster works on.
    c.propose(weight("after", 3.0)).await;
    let leader = c.leader().await;
    let reg = c.converged(leader, &[1, 2, 3]).await;
    assert_eq!(reg.weights.len(), 11);
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lagging_master_is_sent_a_snapshot_after_compaction() {
    let config = RaftConfig {
        snapshot_after_entries: 10,
        entries_kept_after_snapshot: 0,
        ..RaftConfig::default()
    };
    let mut c = Cluster::start(3, config).await;
    let leader = c.leader().await;
    c.propose(weight("first", 1.0)).await;
    let lagging = *c.nodes.keys().find(|id| **id != leader).unwrap();
    c.converged(leader, &[1, 2, 3]).await;
    let lagging_last = c.nodes[&lagging].metrics().borrow().last_log_index.unwrap();
    c.stop(lagging).await;

    for i in 0..60 {
        c.propose(weight(&format!("r{i}"), 1.0)).await;
    }
    let leader = c.leader().await;
    // The leader snapshotted and purged its log past what the stopped master has.
    let purged = wait_for("the leader to compact its log", || {
        let m = c.nodes[&leader].metrics().borrow().clone();
        let purged = m.purged?.index;
        (m.snapshot.is_some() && purged > lagging_last).then_some(purged)
    })
    .await;
    eprintln!("leader purged its log up to {purged}; the lagging master had {lagging_last}");

    c.start_node(lagging, peers(&c.addrs)).await;
    let reg = c.converged(leader, &[1, 2, 3]).await;
    assert_eq!(reg.weights.len(), 61);
    let m = c.nodes[&lagging].metrics().borrow().clone();
    let installed = m.snapshot.expect("the lagging master has a snapshot").index;
    assert!(
        installed > lagging_last,
        "its snapshot (up to {installed}) came from the leader"
    );
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fourth_master_joins_and_one_leaves() {
    let mut c = Cluster::start(3, RaftConfig::default()).await;
    for i in 0..5 {
        c.propose(weight(&format!("r{i}"), 1.0)).await;
    }
    // Master 4 starts empty: the initial members do not include it, so it waits to be added.
    let existing = peers(&c.addrs);
    c.start_node(4, existing).await;
    assert!(c.nodes[&4].registry().weights.is_empty());
    let leader = c.leader().await;
    c.nodes[&leader]
        .add_member(4, c.addrs[&4].to_string())
        .await
        .unwrap();
    assert_eq!(
        c.nodes[&leader].voters(),
        [1, 2, 3, 4].into_iter().collect()
    );
    c.propose(weight("with-four", 1.0)).await;
    let reg = c.converged(leader, &[1, 2, 3, 4]).await;
    assert_eq!(reg.weights.len(), 6);

    // Remove a follower other than the new one.
    let leaving = *c
        .nodes
        .keys()
        .find(|id| **id != leader && **id != 4)
        .unwrap();
    c.nodes[&leader].remove_member(leaving).await.unwrap();
    let voters = c.nodes[&leader].voters();
    assert!(
        !voters.contains(&leaving) && voters.len() == 3,
        "{voters:?}"
    );
    c.propose(weight("after-leave", 1.0)).await;
    let staying: Vec<u64> = voters.iter().copied().collect();
    let reg = c.converged(leader, &staying).await;
    assert_eq!(reg.weights.len(), 7);
    assert!(
        !c.nodes[&leaving]
            .registry()
            .weights
            .contains_key("after-leave"),
        "a removed master no longer receives the log"
    );
    c.stop_all().await;
}

/// Garbles 16 bytes in every 4 KiB page after the first (redb's header), where the pages of
/// its trees are.
fn damage(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    for page in bytes.chunks_mut(4096).skip(1) {
        for b in page.iter_mut().skip(64).take(16) {
            *b ^= 0xa5;
        }
    }
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_with_a_corrupt_store_refuses_to_start() {
    let mut c = Cluster::start(1, RaftConfig::default()).await;
    for i in 0..20 {
        c.propose(weight(&format!("r{i}"), 1.0)).await;
    }
    c.stop_all().await;
    let path = c.data_dir(1).join(STORE_FILE);
    damage(&path);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = match RaftNode::start_on(
        1,
        listener,
        peers(&c.addrs),
        c.data_dir(1),
        RaftConfig::default(),
    )
    .await
    {
        Ok(_) => panic!("a master started on a damaged store"),
        Err(e) => e,
    };
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(
        matches!(err, StartError::Store(StoreError::Corrupt { .. })),
        "{err:?}"
    );
    assert!(msg.contains("refuses to start"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_proposals_commit_and_unreplicable_ones_are_refused() {
    let mut c = Cluster::start(3, RaftConfig::default()).await;
    let leader = c.leader().await;
    let node = &c.nodes[&leader];

    // A weight that is not a number would not survive the log's encoding: refused up front.
    match node.propose(weight("nan", f64::NAN)).await {
        Err(ProposeError::Invalid(why)) => eprintln!("refused: {why}"),
        other => panic!("a NaN weight was proposed: {other:?}"),
    }

    const N: usize = 200;
    let before = node.durable_log_commits();
    let started = Instant::now();
    // Every master's proposer: on a busy machine leadership may move mid-test, and a proposal
    // refused by a former leader is retried on the one it names (`SetWeight` is idempotent).
    let proposers: Arc<HashMap<u64, Proposer>> =
        Arc::new(c.nodes.iter().map(|(id, n)| (*id, n.proposer())).collect());
    let mut set = tokio::task::JoinSet::new();
    for i in 0..N {
        let proposers = proposers.clone();
        set.spawn(async move {
            let deadline = Instant::now() + DEADLINE;
            let mut target = leader;
            loop {
                match proposers[&target]
                    .propose(weight(&format!("c{i}"), 1.0))
                    .await
                {
                    Ok(applied) => return applied,
                    Err(ProposeError::NotLeader { leader_id, .. }) if Instant::now() < deadline => {
                        match leader_id {
                            Some(id) => target = id,
                            None => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                    Err(ProposeError::Unavailable(_)) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("proposal c{i} failed: {e}"),
                }
            }
        });
    }
    let mut indexes = Vec::new();
    while let Some(r) = set.join_next().await {
        let applied = r.unwrap();
        assert_eq!(applied.result, Ok(()));
        indexes.push(applied.index);
    }
    let commits = node.durable_log_commits() - before;
    eprintln!(
        "{N} concurrent proposals: {} ms, {commits} fsync'd log commits on the leader",
        started.elapsed().as_millis()
    );
    // At most one fsync per proposal on the leader (a few more if leadership moved). They do
    // not share one there: openraft 0.9 waits for each append's flush before it takes the
    // next client write. A follower's batch of entries is one fsync (see the store's
    // `an_append_of_many_entries_is_one_fsync`).
    assert!(
        commits <= (N + N / 10) as u64,
        "{N} concurrent proposals took {commits} fsync'd log commits on the leader; at most \
         one each"
    );
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), N, "each proposal has its own log index");
    let reg = c.converged(leader, &[1, 2, 3]).await;
    assert_eq!(reg.weights.len(), N);
    c.stop_all().await;
}
