//! The generated gRPC code for `proto/wasmos/v1/*.proto` (package `wasmos.v1`): messages,
//! `*_client` and `*_server` modules for `SchedulerService`, `AgentService`, `OperatorService`
//! and `Raft` (the masters' replication between themselves).
//!
//! Code outside the wire edges should not hold these types: convert them with
//! [`crate::convert`], which validates what came off the network, and work with the domain
//! types.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("wasmos.v1");
