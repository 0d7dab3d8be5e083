//! End-to-end tests of the master over real gRPC in one process: a Rust scheduler client and
//! simulated agents. One file per behaviour.

mod harness;

mod agent_loss;
mod components;
mod failover;
mod hosted;
mod launch;
mod offers;
mod validation;
