//! End-to-end tests of the master over real gRPC in one process: a Rust scheduler client and
//! simulated agents (and, in `host_context`, the framework host against a bare core). One file
//! per behaviour.

mod harness;

mod agent_loss;
mod components;
mod connections;
mod failover;
mod host_context;
mod hosted;
mod large_launches;
mod launch;
mod offers;
mod validation;
mod wire_limits;
