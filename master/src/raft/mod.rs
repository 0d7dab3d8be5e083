//! The master's replication layer: the registry ([`crate::registry`]) as the state machine of
//! a Raft group of masters (openraft 0.9, storage v2), stored in one redb file per master and
//! carried between masters over the gRPC service `wasmos.v1.Raft`.
//!
//! - [`store`]: the redb-backed Raft log, vote, committed and purged markers, and the state
//!   machine that wraps [`Registry`] (snapshots are the serialized registry). Opening a store
//!   checks every record and refuses a corrupt one with [`StoreError::Corrupt`], and one that
//!   [`marker`] says held state but is now missing or empty with [`StoreError::Lost`].
//! - [`faults`]: [`StoreFaults`], a switch that fails the store's writes (tests of a full disk).
//! - [`marker`]: the file in the data dir that says it held a Raft store.
//! - [`network`]: openraft's `RaftNetworkFactory` over lazily connected, reconnecting tonic
//!   clients with per-call timeouts.
//! - [`service`]: the tonic server that hands the three Raft RPCs to the local [`openraft::Raft`].
//! - [`node`]: [`RaftNode`], the small facade the master uses: start, propose a [`Command`],
//!   ask who leads, change membership, read the registry.
//!
//! Every registry change is a [`Command`] proposed through [`RaftNode::propose`]; it is applied
//! (on every master, in log order) only once a majority has it on disk, and the proposer gets
//! the registry's own answer (`Ok` or the [`RegistryError`] that refused it).

pub mod codec;
pub mod faults;
pub mod marker;
pub mod network;
pub mod node;
pub mod service;
pub mod store;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::registry::{Command, Registry, RegistryError};

pub use faults::StoreFaults;
pub use node::{Applied, MemberError, ProposeError, Proposer, RaftConfig, RaftNode, StartError};
pub use store::{StoreError, open_store, open_store_with_faults};

/// A master's id in the Raft group (`wasmos master --id N`).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's type configuration for the master: the log carries registry [`Command`]s,
    /// applying one gives a [`CommandResult`], masters are numbered with [`NodeId`] and known
    /// by their address ([`openraft::BasicNode`]), and snapshots are in-memory byte buffers.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// What applying one log entry gave: the registry's answer to a [`Command`] (entries that are
/// not commands, such as membership changes, give `Ok`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandResult(
    /// `Ok`, or why the registry refused the command (it is unchanged then).
    pub Result<(), RegistryError>,
);

/// The openraft node type of the master.
pub type Raft = openraft::Raft<TypeConfig>;

/// Applies one command to `registry` and wraps the answer. The one place the replicated state
/// machine changes the registry.
pub(crate) fn apply_command(registry: &mut Registry, command: Command) -> CommandResult {
    CommandResult(registry.apply(command))
}
