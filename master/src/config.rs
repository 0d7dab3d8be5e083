//! `MasterConfig`: every interval, timeout and policy knob of the master, with defaults.
//!
//! Defaults follow Mesos where its defaults served users well (15 s agent pings, 5 missed pings,
//! 5 s refuse filters) and differ where they did not: offers time out by default (Mesos's were
//! held forever), and the allocation interval is short because cycles are cheap. Tests shrink
//! the intervals to milliseconds.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::allocator::AllocatorConfig;

/// How the master behaves. Build with `MasterConfig::default()` and change fields.
#[derive(Clone, Debug)]
pub struct MasterConfig {
    /// How often the allocator runs when nothing changes. A change (an agent registering,
    /// resources returned) also triggers a cycle right away.
    pub allocation_interval: Duration,
    /// How long an offer may go unanswered before it is rescinded; `None` never rescinds.
    pub offer_timeout: Option<Duration>,
    /// How often agents should heartbeat (told to them at registration).
    pub agent_heartbeat_interval: Duration,
    /// How long without a heartbeat before an agent is marked unreachable and its tasks are
    /// reported `UNREACHABLE` (Mesos: 5 missed 15 s pings).
    pub agent_unreachable_timeout: Duration,
    /// How long an unreachable agent may take to re-register before it is removed and its
    /// tasks are reported `LOST` (Mesos's agent re-register timeout: 10 min).
    pub agent_removal_timeout: Duration,
    /// How often schedulers receive a `heartbeat` event.
    pub scheduler_heartbeat_interval: Duration,
    /// How long an update waits for the scheduler's acknowledgement before it is sent again.
    pub update_resend_interval: Duration,
    /// Roles frameworks may subscribe with; `None` allows every valid role.
    pub allowed_roles: Option<BTreeSet<String>>,
    /// Roles that may launch native command tasks; `None` allows every role.
    pub command_task_roles: Option<BTreeSet<String>>,
    /// Events queued to one connection before further ones are dropped (updates are resent;
    /// dropped offers time out). Bounds the memory a slow client can pin.
    pub connection_queue: usize,
    /// Largest gRPC message accepted from (and sent to) schedulers and operators, in bytes. By
    /// default [`wasmos_api::limits::MAX_MESSAGE_BYTES`] (16 MiB). Agents' sessions do not use
    /// it: both ends of those use [`wasmos_api::limits::AGENT_SESSION_MAX_MESSAGE_BYTES`].
    pub max_message_bytes: usize,
    /// Largest framework component the blob store takes, in bytes.
    pub max_component_bytes: u64,
    /// Most bytes the blob store holds in all (components stay until the Raft issue adds
    /// garbage collection of unreferenced ones).
    pub max_blob_store_bytes: u64,
    /// Allocator knobs.
    pub allocator: AllocatorConfig,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            allocation_interval: Duration::from_millis(250),
            offer_timeout: Some(Duration::from_secs(60)),
            agent_heartbeat_interval: Duration::from_secs(15),
            agent_unreachable_timeout: Duration::from_secs(75),
            agent_removal_timeout: Duration::from_secs(600),
            scheduler_heartbeat_interval: Duration::from_secs(15),
            update_resend_interval: Duration::from_secs(10),
            allowed_roles: None,
            command_task_roles: None,
            connection_queue: 4096,
            max_message_bytes: wasmos_api::limits::MAX_MESSAGE_BYTES,
            max_component_bytes: 64 << 20,
            max_blob_store_bytes: 1 << 30,
            allocator: AllocatorConfig::default(),
        }
    }
}
