//! wasmos's shared domain types: the ids every component speaks of, `Resources` with checked
//! arithmetic, the task state machine, and a framework component's digest and header check.
//!
//! This crate does no network I/O; its file operations are reading a member's TLS files ([`tls`]), a store marker's durable write
//! ([`marker`]) and a test switch that fails a store's writes ([`store_faults`]): the master, the agent and the Wasm executor all depend on it, so it stays small.
//! Wire formats (`.proto`, generated into [`proto`]) live beside these types, and [`convert`] turns wire messages into domain types, validating them on the way in.

#![warn(missing_docs)]

pub mod component;
pub mod component_contents;
pub mod convert;
pub mod identity;
pub mod ids;
pub mod launch;
pub mod leader;
pub mod limits;
pub mod marker;
pub mod proto;
pub mod resources;
pub mod store_faults;
pub mod task;
pub mod tls;

pub use component::{ComponentDigest, DigestError, DigestMismatch, WasmHeader};
pub use ids::{AgentId, ExecutorId, FrameworkId, IdError, OfferId, TaskId};
pub use launch::{Filters, Offer, SpecError, TaskInfo, TaskKind, TaskStatus, WasmBudget};
pub use resources::{Resources, ResourcesError};
pub use task::{TaskState, TransitionError};
