//! The generated gRPC code for `proto/wasmos/v1/*.proto` (package `wasmos.v1`): messages,
//! `*_client` and `*_server` modules for `SchedulerService`, `AgentService`, `OperatorService`
//! and `Raft` (the masters' replication between themselves).
//!
//! Code outside the wire edges should not hold these types: convert them with
//! [`crate::convert`], which validates what came off the network, and work with the domain
//! types.

// No `missing_docs` allowance: prost and tonic copy the `.proto` comments into docs, and the
// `.proto` files comment every message, field, enum value, oneof case and RPC. Keep it so.
#![allow(clippy::all, clippy::pedantic)]

tonic::include_proto!("wasmos.v1");
