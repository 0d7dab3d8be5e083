//! `MasterConfig`: every interval, timeout and policy knob of the master, with defaults.
//!
//! Defaults follow Mesos where its defaults served users well (15 s agent pings, 5 missed pings,
//! 5 s refuse filters) and differ where they did not: offers time out by default (Mesos's were
//! held forever), and the allocation interval is short because cycles are cheap. Tests shrink
//! the intervals to milliseconds.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::allocator::AllocatorConfig;
use crate::history::HistoryBounds;

/// How the master behaves. Build with `MasterConfig::default()` and change fields; `wasmos
/// master` keeps every default its flags do not override.
#[derive(Clone, Debug)]
pub struct MasterConfig {
    /// How often the allocator runs when nothing changes. A change (an agent registering,
    /// resources returned) also triggers a cycle right away; the periodic cycle picks up what
    /// no event announces, such as expired refuse filters. Each cycle costs one pass over the
    /// agents and frameworks. Must be above zero. Default 250 ms (`--allocation-interval`).
    pub allocation_interval: Duration,
    /// How long an offer may go unanswered before it is rescinded and its resources return to
    /// the allocator; `None` never rescinds, so a silent scheduler keeps its offers until it
    /// disconnects. Default 60 s (`--offer-timeout`, 0 for `None`).
    pub offer_timeout: Option<Duration>,
    /// How often agents should heartbeat (told to them at registration). Shorter intervals
    /// detect a lost agent sooner at the cost of one message per agent per interval. Must be
    /// above zero. Default 15 s, as Mesos (`--agent-heartbeat-interval`).
    pub agent_heartbeat_interval: Duration,
    /// How long without a heartbeat before an agent is marked unreachable and its tasks are
    /// reported `UNREACHABLE`. Must be longer than `agent_heartbeat_interval`. Default 75 s,
    /// Mesos's 5 missed 15 s pings (`--agent-unreachable-timeout`).
    pub agent_unreachable_timeout: Duration,
    /// How long an unreachable agent may take to re-register before it is removed and its
    /// tasks are reported `LOST`; an agent that re-registers before then reports its tasks,
    /// which take the state it reports. Default
    /// 10 min, Mesos's agent re-register timeout (`--agent-removal-timeout`).
    pub agent_removal_timeout: Duration,
    /// How long a task sent to an agent may stay `STAGING` or `STARTING` (the agent has not
    /// reported it `RUNNING` or ended) before the master reports it `TASK_LOST` (reason
    /// `launch_timeout`), frees its resources and tells the agent to kill it should it still
    /// start. Covers a launch lost on its way or an agent that accepts launches but cannot
    /// carry them out; long enough for a large component's fetch and compilation. `None`
    /// waits forever. Default 5 min (`--launch-timeout`, 0 for `None`).
    pub launch_timeout: Option<Duration>,
    /// How often schedulers receive a `heartbeat` event, so they can tell a quiet master from
    /// a lost connection (sent to them at subscription). Must be above zero. Default 15 s
    /// (`--scheduler-heartbeat-interval`).
    pub scheduler_heartbeat_interval: Duration,
    /// How long a status update waits for the scheduler's acknowledgement before it is sent
    /// again; updates are never dropped, only resent. Default 10 s (no flag).
    pub update_resend_interval: Duration,
    /// Roles frameworks may subscribe with; a subscription with another role is refused with
    /// `FAILED_PRECONDITION`.
    /// `None` allows every valid role. Default `None` (no flag).
    pub allowed_roles: Option<BTreeSet<String>>,
    /// Roles whose frameworks may launch native command tasks (processes on the agent,
    /// outside the Wasm sandbox); other roles may launch only Wasm tasks, and a command task
    /// of theirs is refused with `TASK_ERROR` naming the flag. `None` allows every role.
    /// Default: no role (`Some` of an empty set), since a native task is the one kind that
    /// leaves the Wasm sandbox; `wasmos master --command-task-roles ROLE,...` (or `*`).
    pub command_task_roles: Option<BTreeSet<String>>,
    /// Whether calls need a token whose policies grant them (`crate::acl`): default deny,
    /// `UNAUTHENTICATED` without a valid token, `PERMISSION_DENIED` naming the rule without
    /// the right; until `wasmos acl bootstrap` only that call is served. Default true: every
    /// `wasmos master` enforces. Off only in a plain `wasmos dev` (and in tests of other
    /// things), where every call is allowed as principal `anonymous`.
    pub enforce_acl: bool,
    /// Where the audit log is written (`DIR/audit.jsonl`, rotated at 16 MiB); `None` writes
    /// it to the tracing target `wasmos::audit` only. Default `None` (`wasmos master`
    /// uses its `--data-dir`).
    pub audit_dir: Option<std::path::PathBuf>,
    /// Events queued to one connection (scheduler, agent or hosted framework) before further
    /// ones are dropped (updates are resent; dropped offers time out). Bounds the memory a
    /// slow client can pin. Default 4096 (no flag).
    pub connection_queue: usize,
    /// Largest gRPC message accepted from (and sent to) schedulers and operators, in bytes; a
    /// larger one is refused by tonic before it is decoded, which bounds the memory one call
    /// can take. Component uploads are streamed in chunks, so this does not cap component size.
    /// By default [`wasmos_api::limits::MAX_MESSAGE_BYTES`] (16 MiB; no flag). Agents'
    /// sessions do not use it: both ends of those use
    /// [`wasmos_api::limits::AGENT_SESSION_MAX_MESSAGE_BYTES`].
    pub max_message_bytes: usize,
    /// Largest framework component the blob store takes, in bytes; a larger upload is refused
    /// with `RESOURCE_EXHAUSTED` as soon as it passes the cap. Default 64 MiB
    /// (`--max-component-mb`, which also raises `max_blob_store_bytes` to at least this).
    pub max_component_bytes: u64,
    /// Most bytes the blob store holds in all; an upload that would pass it is refused with
    /// `RESOURCE_EXHAUSTED`. Default 1 GiB (no flag).
    pub max_blob_store_bytes: u64,
    /// Most bytes of components that no registered framework references (fresh uploads, and
    /// components of ended frameworks not yet collected); an upload that would pass it is
    /// refused with `RESOURCE_EXHAUSTED`, so clients without a framework cannot fill the
    /// store. Default 256 MiB (no flag; raised to at least `max_component_bytes`).
    pub max_unreferenced_component_bytes: u64,
    /// How long a component no framework references is kept before the leader deletes it:
    /// time enough to upload and then subscribe. Default 10 minutes (no flag).
    pub unreferenced_component_grace: Duration,
    /// Allocator knobs; see [`AllocatorConfig`]. Default [`AllocatorConfig::default`] (role
    /// weights are set separately, with `--weight` or `OperatorService.SetWeights`).
    pub allocator: AllocatorConfig,
    /// Limits on the TCP connections the gRPC listener accepts; see [`ConnectionConfig`].
    /// Default [`ConnectionConfig::default`].
    pub connections: ConnectionConfig,
    /// How many completed tasks and frameworks the leader keeps in memory (soft state, see
    /// [`crate::history`]). Default [`HistoryBounds::default`]: 1,000 tasks per framework and
    /// 100 frameworks, as Mesos (`--max-completed-tasks-per-framework`,
    /// `--max-completed-frameworks`).
    pub history: HistoryBounds,
}

/// How the master's listener guards its file descriptors against clients that connect and then
/// do nothing (or too much): every accepted connection holds one descriptor until it closes, so
/// these bound how many a peer can pin and for how long. A refused connection is accepted and
/// closed at once; refusals are counted in one rate-limited warning.
#[derive(Clone, Debug)]
pub struct ConnectionConfig {
    /// How long a new connection may take to complete its TLS handshake (on a TLS master) and send the HTTP/2 preface and its first frame (the
    /// client's SETTINGS); one that has not is closed. Bounds the descriptors a client that
    /// connects and stalls can hold. Must be above zero. Default 10 s
    /// (`--handshake-timeout`).
    pub handshake_timeout: Duration,
    /// How long a connection may go with no gRPC call open before it is closed; `None` keeps
    /// idle connections. Keepalive pings do not count as use, but an open call does, however
    /// quiet: agents' sessions and schedulers' subscriptions stay open for hours and are
    /// never cut by this. Clients reconnect on their next call. Default 5 min
    /// (`--idle-connection-timeout`, 0 for `None`).
    pub idle_timeout: Option<Duration>,
    /// How often the master sends an HTTP/2 PING on a connection it has heard nothing from;
    /// `None` sends none. A peer that does not answer within `keepalive_timeout` is closed,
    /// which frees the descriptors of peers that vanished without closing (a crashed host, a
    /// cut network) even while their streams are open. Default 30 s
    /// (`--http2-keepalive-interval`, 0 for `None`).
    pub keepalive_interval: Option<Duration>,
    /// How long the master waits for a PING's answer before closing the connection. Default
    /// 20 s (no flag).
    pub keepalive_timeout: Duration,
    /// Most connections open at once in all; one more is refused. `None` picks
    /// [`ConnectionConfig::default_max_connections`] from the process's file-descriptor limit
    /// (`RLIMIT_NOFILE`) at start, leaving room for the Raft store, peers and blobs; the
    /// master logs what it chose. Default `None` (`--max-connections`).
    pub max_connections: Option<usize>,
    /// Most connections open at once from one IP address; one more is refused, so one host
    /// cannot take every slot. Raise it when many clients share an address (NAT, a test
    /// host running many agents). Must be above zero. Default 1024
    /// (`--max-connections-per-ip`).
    pub max_connections_per_ip: usize,
}

impl ConnectionConfig {
    /// The total cap in force: `max_connections`, or else
    /// [`Self::default_max_connections`] of this process's soft `RLIMIT_NOFILE` now, which is
    /// returned too (`None` when unlimited or unreadable).
    pub fn effective_max_connections(&self) -> (usize, Option<u64>) {
        let nofile = crate::server::nofile_soft_limit();
        let cap = self
            .max_connections
            .unwrap_or_else(|| Self::default_max_connections(nofile));
        (cap, nofile)
    }

    /// Descriptors kept free below `RLIMIT_NOFILE` for everything but connections: the
    /// Raft store, connections to peers, blob files, Wasm compilation. At least this many, or
    /// a quarter of the limit if that is more.
    pub const FD_HEADROOM: u64 = 128;

    /// The total cap used when `max_connections` is `None`: the soft `RLIMIT_NOFILE` less
    /// the larger of [`Self::FD_HEADROOM`] and a quarter of it (at least 1); with no limit
    /// known (`None`), 1024 less the headroom. A soft limit of 1024 gives 768.
    pub fn default_max_connections(nofile_soft_limit: Option<u64>) -> usize {
        let limit = nofile_soft_limit.unwrap_or(1024);
        let headroom = Self::FD_HEADROOM.max(limit / 4);
        usize::try_from(limit.saturating_sub(headroom).max(1)).unwrap_or(usize::MAX)
    }
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(300)),
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(20),
            max_connections: None,
            max_connections_per_ip: 1024,
        }
    }
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            allocation_interval: Duration::from_millis(250),
            offer_timeout: Some(Duration::from_secs(60)),
            agent_heartbeat_interval: Duration::from_secs(15),
            agent_unreachable_timeout: Duration::from_secs(75),
            agent_removal_timeout: Duration::from_secs(600),
            launch_timeout: Some(Duration::from_secs(300)),
            scheduler_heartbeat_interval: Duration::from_secs(15),
            update_resend_interval: Duration::from_secs(10),
            allowed_roles: None,
            command_task_roles: Some(BTreeSet::new()),
            enforce_acl: true,
            audit_dir: None,
            connection_queue: 4096,
            max_message_bytes: wasmos_api::limits::MAX_MESSAGE_BYTES,
            max_component_bytes: 64 << 20,
            max_blob_store_bytes: 1 << 30,
            max_unreferenced_component_bytes: 256 << 20,
            unreferenced_component_grace: Duration::from_secs(600),
            allocator: AllocatorConfig::default(),
            connections: ConnectionConfig::default(),
            history: HistoryBounds::default(),
        }
    }
}
