//! wasmos's master: the registry (replicated state machine), the allocator (hierarchical DRF),
//! the offer and task books (soft state), and the gRPC services that schedulers, agents and
//! operators talk to.
//!
//! The pure core (`allocator`, `registry`, `offers`, `tasks`, `blobs`) has no I/O and no async and is
//! tested and benchmarked on its own; `core` drives them from the services' calls and the
//! timer; `server` puts tonic, leadership and replication around it; `framework_host` runs
//! frameworks' Wasm schedulers inside the master through the same path as gRPC schedulers,
//! seeing the master only through [`HostContext`] (it never depends on `server`).

#![warn(missing_docs)]

pub mod acl;
pub mod allocator;
pub mod blobs;
pub mod config;
pub mod core;
pub mod counters;
pub mod framework_host;
pub mod history;
pub mod http;
pub mod offers;
pub mod raft;
pub mod registry;
pub mod server;
pub mod sync;
pub mod tasks;

pub use config::{ConnectionConfig, MasterConfig};
pub use framework_host::{FrameworkHost, HostContext, HostError, HostedFramework};
pub use server::{Master, ServeError};
