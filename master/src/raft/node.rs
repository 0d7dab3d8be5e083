//! [`RaftNode`]: one master's member of the Raft group, as the rest of the master sees it.
//!
//! It opens the store in the data dir (refusing a corrupt one), starts openraft, serves the
//! Raft RPCs on the listen address, and forms the cluster when the store is new and the
//! initial members include this master. Then callers [`RaftNode::propose`] registry commands,
//! ask [`RaftNode::leader`], change membership, and read the registry as applied here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, Config, RaftMetrics, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::faults::StoreFaults;
use super::network::NetworkFactory;
use super::service::RaftService;
use super::store::{RegistryHandle, StoreClosed, StoreError, open_store_with_faults};
use super::{NodeId, Raft};
use crate::registry::{Command, Registry, RegistryError};

/// Timing and compaction settings of the Raft group.
#[derive(Clone, Debug)]
pub struct RaftConfig {
    /// How often the leader sends heartbeats; also the deadline of one append or vote call.
    pub heartbeat: Duration,
    /// A follower that hears no leader for a random time between these two starts an
    /// election. openraft first waits out the old leader's lease, which is
    /// `election_timeout_max`, so a failover takes `election_timeout_max` plus a random
    /// election timeout plus up to 1.5 heartbeats (the election timer's tick): 0.6 to 0.9 s
    /// with the defaults (50 ms, 200 to 400 ms).
    pub election_timeout_min: Duration,
    /// See [`RaftConfig::election_timeout_min`].
    pub election_timeout_max: Duration,
    /// A snapshot is taken after this many entries were applied since the last one.
    pub snapshot_after_entries: u64,
    /// How many entries already in a snapshot stay in the log (the rest are purged), so that a
    /// follower a little behind catches up from the log instead of a whole snapshot.
    pub entries_kept_after_snapshot: u64,
    /// Largest chunk of a snapshot sent in one call, in bytes.
    pub snapshot_chunk_bytes: u64,
    /// Deadline of one snapshot chunk call.
    pub snapshot_chunk_timeout: Duration,
    /// The master's own TLS files (its master certificate is also its client certificate
    /// towards its peers), to dial peers over mutual TLS; `None` (the default): plain text.
    pub tls: Option<wasmos_api::tls::TlsMaterial>,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            heartbeat: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(200),
            election_timeout_max: Duration::from_millis(400),
            snapshot_after_entries: 5000,
            entries_kept_after_snapshot: 1000,
            snapshot_chunk_bytes: 1 << 20,
            snapshot_chunk_timeout: Duration::from_secs(2),
            tls: None,
        }
    }
}

impl RaftConfig {
    fn openraft(&self) -> Result<Config, StartError> {
        let ms = |d: Duration| d.as_millis().min(u64::MAX as u128) as u64;
        Config {
            cluster_name: "wasmos".into(),
            heartbeat_interval: ms(self.heartbeat),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            install_snapshot_timeout: ms(self.snapshot_chunk_timeout),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries),
            max_in_snapshot_log_to_keep: self.entries_kept_after_snapshot,
            snapshot_max_chunk_size: self.snapshot_chunk_bytes,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Config(e.to_string()))
    }
}

/// Why a master could not start its Raft member.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store in the data dir could not be opened or is corrupt.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The settings are inconsistent (e.g. an election timeout not above the heartbeat).
    #[error("invalid Raft settings: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why binding it failed.
        #[source]
        source: std::io::Error,
    },
    /// The initial members do not fit the store (e.g. it was formed with other members).
    #[error("cannot form the cluster: {0}")]
    Initialize(String),
    /// openraft stopped while starting.
    #[error("Raft failed to start: {0}")]
    Raft(String),
}

/// A command that was committed and applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// Its index in the Raft log.
    pub index: u64,
    /// The registry's answer: `Err` when it refused the command (the registry is unchanged).
    pub result: Result<(), RegistryError>,
}

/// Why a proposal was not committed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ProposeError {
    /// This master is not the leader; propose to the leader instead (when known).
    #[error("this master is not the leader{}", leader_suffix(.leader_id, .leader_addr))]
    NotLeader {
        /// The leader's id, when this master knows it.
        leader_id: Option<NodeId>,
        /// The leader's Raft address, when this master knows it.
        leader_addr: Option<String>,
    },
    /// The command cannot be replicated as it is: it does not encode, or does not decode back
    /// equal to itself (a weight that is not a number, which is unequal even to itself).
    #[error("the command cannot be replicated: {0}")]
    Invalid(String),
    /// Raft stopped, or lost the leadership while the command was in flight: whether it was
    /// committed is unknown; the caller may retry (commands are idempotent or refused).
    #[error("Raft is unavailable: {0}")]
    Unavailable(String),
}

fn leader_suffix(id: &Option<NodeId>, addr: &Option<String>) -> String {
    match (id, addr) {
        (Some(id), Some(addr)) => format!("; the leader is master {id} at {addr}"),
        (Some(id), None) => format!("; the leader is master {id}"),
        _ => "; the leader is unknown".into(),
    }
}

/// Why a membership change failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MemberError {
    /// Only the leader changes membership.
    #[error("this master is not the leader{}", leader_suffix(.leader_id, .leader_addr))]
    NotLeader {
        /// The leader's id, when this master knows it.
        leader_id: Option<NodeId>,
        /// The leader's Raft address, when this master knows it.
        leader_addr: Option<String>,
    },
    /// openraft refused the change (e.g. another change is in progress, or the node is not
    /// a member).
    #[error("membership change refused: {0}")]
    Refused(String),
    /// Raft stopped.
    #[error("Raft is unavailable: {0}")]
    Unavailable(String),
}

/// One master's Raft member, running.
pub struct RaftNode {
    id: NodeId,
    raft: Raft,
    registry: RegistryHandle,
    closed: StoreClosed,
    durable_commits: Arc<AtomicU64>,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    local_addr: Option<SocketAddr>,
}

impl RaftNode {
    /// Opens the store in `data_dir`, starts Raft, serves the Raft RPCs on `listen`, and, if
    /// the store is new and `peers` (id to address, this master included) names this master,
    /// forms the cluster with `peers` as its voters. A master absent from `peers` starts empty
    /// and waits for the leader to add it ([`RaftNode::add_member`]).
    pub async fn start(
        id: NodeId,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, String>,
        data_dir: PathBuf,
        config: RaftConfig,
    ) -> Result<RaftNode, StartError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: listen,
                source,
            })?;
        Self::start_on(id, listener, peers, data_dir, config).await
    }

    /// [`RaftNode::start`] on a bound listener (tests bind port 0 and learn the port first).
    pub async fn start_on(
        id: NodeId,
        listener: TcpListener,
        peers: BTreeMap<NodeId, String>,
        data_dir: PathBuf,
        config: RaftConfig,
    ) -> Result<RaftNode, StartError> {
        let local_addr = listener.local_addr().ok();
        let mut node = Self::open(id, peers, data_dir, config).await?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let service = RaftService::server(node.raft.clone());
        let task = tokio::spawn(async move {
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stop_rx.await;
                })
                .await
            {
                tracing::error!(error = %e, "the Raft gRPC server failed");
            }
        });
        node.server = Some((stop_tx, task));
        node.local_addr = local_addr;
        Ok(node)
    }

    /// Opens the store and starts Raft without serving the RPCs: add
    /// [`RaftNode::service`] to the master's own gRPC server instead.
    pub async fn open(
        id: NodeId,
        peers: BTreeMap<NodeId, String>,
        data_dir: PathBuf,
        config: RaftConfig,
    ) -> Result<RaftNode, StartError> {
        Self::open_with_faults(id, peers, data_dir, config, None).await
    }

    /// [`RaftNode::open`], with the store's writes failing while `faults` is on (tests of a
    /// full or failing disk; see [`StoreFaults`]).
    pub async fn open_with_faults(
        id: NodeId,
        peers: BTreeMap<NodeId, String>,
        data_dir: PathBuf,
        config: RaftConfig,
        faults: Option<StoreFaults>,
    ) -> Result<RaftNode, StartError> {
        let raft_config = Arc::new(config.openraft()?);
        let opened = tokio::task::spawn_blocking(move || {
            open_store_with_faults(&data_dir, id, faults.as_ref())
        })
        .await
        .map_err(|e| StartError::Raft(e.to_string()))??;
        let durable_commits = opened.log.durable_commits_counter();
        let network = NetworkFactory::new(id, config.heartbeat, config.heartbeat)
            .with_tls(config.tls.clone());
        let raft = Raft::new(id, raft_config, network, opened.log, opened.state_machine)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let node = RaftNode {
            id,
            raft,
            registry: opened.registry,
            closed: opened.closed,
            durable_commits,
            server: None,
            local_addr: None,
        };
        if peers.contains_key(&id) {
            let members: BTreeMap<NodeId, BasicNode> = peers
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr)))
                .collect();
            match node.raft.initialize(members).await {
                Ok(()) => {}
                // Already formed (a restart, or the leader added this master): keep the store's
                // membership.
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => {
                    let _ = node.raft.shutdown().await;
                    return Err(StartError::Initialize(e.to_string()));
                }
            }
        }
        Ok(node)
    }

    /// The gRPC service that carries Raft to this master, for a tonic router.
    pub fn service(&self) -> wasmos_api::proto::raft_server::RaftServer<RaftService> {
        RaftService::server(self.raft.clone())
    }

    /// This master's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address the Raft RPCs are served on, when [`RaftNode::start`] serves them.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The underlying openraft node, for what this facade does not cover.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Commits `command` through Raft (a majority has it on disk) and applies it; returns the
    /// registry's answer. Only the leader accepts proposals.
    pub async fn propose(&self, command: Command) -> Result<Applied, ProposeError> {
        self.proposer().propose(command).await
    }

    /// A cheap, cloneable handle that proposes commands to this master (for tasks that outlive
    /// a borrow of the node).
    pub fn proposer(&self) -> Proposer {
        Proposer {
            raft: self.raft.clone(),
        }
    }

    /// How many fsync'd commits this master's log has made (appends that arrive while one is
    /// in progress share the next).
    pub fn durable_log_commits(&self) -> u64 {
        self.durable_commits.load(Ordering::Relaxed)
    }

    /// Whether this master believes it leads (its own view; a deposed leader learns it at the
    /// next heartbeat round).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// The leader as this master knows it: id and address.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())?;
        Some((id, addr))
    }

    /// The voters and learners of the current membership, with their addresses.
    pub fn members(&self) -> BTreeMap<NodeId, String> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    }

    /// The voting members of the current membership.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// Adds master `id` at `addr` as a voter: first as a learner until it has caught up, then
    /// promoted. Leader only.
    pub async fn add_member(&self, id: NodeId, addr: String) -> Result<(), MemberError> {
        self.raft
            .add_learner(id, BasicNode::new(addr), true)
            .await
            .map_err(member_error)?;
        self.raft
            .change_membership(
                ChangeMembers::AddVoterIds([id].into_iter().collect()),
                false,
            )
            .await
            .map_err(member_error)?;
        Ok(())
    }

    /// Removes master `id` from the group (it stops receiving the log). Leader only; removing
    /// the leader itself makes it step down once the change commits.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), MemberError> {
        self.raft
            .change_membership(
                ChangeMembers::RemoveVoters([id].into_iter().collect()),
                false,
            )
            .await
            .map_err(member_error)?;
        Ok(())
    }

    /// openraft's metrics, updated as they change (leader, term, log and applied indexes,
    /// snapshot, membership).
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<NodeId, BasicNode>> {
        self.raft.metrics()
    }

    /// Runs `f` on the registry as applied on this master (possibly behind the leader's).
    pub fn read_registry<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        self.registry.read(f)
    }

    /// A copy of the registry as applied on this master.
    pub fn registry(&self) -> Registry {
        self.registry.snapshot()
    }

    /// A copy of the registry as applied on this master, with the index of the last log entry
    /// applied to it (read together).
    pub fn registry_with_index(&self) -> (Option<u64>, Registry) {
        self.registry.snapshot_with_index()
    }

    /// Takes a snapshot now and purges the log it covers (beyond the entries kept).
    pub async fn snapshot(&self) -> Result<(), ProposeError> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| ProposeError::Unavailable(e.to_string()))
    }

    /// Stops Raft and the RPC server, and waits (up to 10 s) until the store file is closed so
    /// that the same data dir can be opened again.
    pub async fn shutdown(mut self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not stop cleanly");
        }
        if let Some((stop, task)) = self.server.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
        let Self {
            raft,
            registry,
            closed,
            ..
        } = self;
        drop(raft);
        drop(registry);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !closed.is_closed() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !closed.is_closed() {
            tracing::warn!("the Raft store is still open 10 s after shutdown");
        }
    }
}

/// Proposes registry commands to one master; see [`RaftNode::propose`].
#[derive(Clone)]
pub struct Proposer {
    raft: Raft,
}

impl Proposer {
    /// Commits `command` through Raft (a majority has it on disk) and applies it; returns the
    /// registry's answer. Only the leader accepts proposals.
    pub async fn propose(&self, command: Command) -> Result<Applied, ProposeError> {
        // What cannot be decoded back would poison every replica's log: refuse it here.
        let encoded =
            super::codec::to_vec(&command).map_err(|e| ProposeError::Invalid(e.to_string()))?;
        match super::codec::from_slice::<Command>(&encoded) {
            Ok(back) if back == command => {}
            Ok(_) => {
                return Err(ProposeError::Invalid(
                    "it changes when serialized (a number that is not finite?)".into(),
                ));
            }
            Err(e) => return Err(ProposeError::Invalid(e.to_string())),
        }
        match self.raft.client_write(command).await {
            Ok(resp) => Ok(Applied {
                index: resp.log_id.index,
                result: resp.data.0,
            }),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader {
                    leader_addr: f.leader_node.map(|n| n.addr),
                    leader_id: f.leader_id,
                })
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(ProposeError::Unavailable(e.to_string()))
            }
            Err(RaftError::Fatal(f)) => Err(ProposeError::Unavailable(f.to_string())),
        }
    }
}

fn member_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> MemberError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => MemberError::NotLeader {
            leader_addr: f.leader_node.map(|n| n.addr),
            leader_id: f.leader_id,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            MemberError::Refused(e.to_string())
        }
        RaftError::Fatal(f) => MemberError::Unavailable(f.to_string()),
    }
}
