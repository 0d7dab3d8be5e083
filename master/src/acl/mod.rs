//! Principals, tokens, policies and the audit log: who may do what on this cluster.
//!
//! - `tokens.rs`: minting tokens (secrets shown once, stored only as sha256) and the
//!   replicated [`AclState`] the registry keeps;
//! - `policy.rs`: policy documents and the union of a token's rights ([`Rights`]);
//! - `layer.rs`: the one authorization layer every API calls ([`Acl::authorize`] with an
//!   [`Action`]) and the pure [`decide`] it uses;
//! - `audit.rs`: the audit log (`audit.jsonl` in the data dir, tracing target
//!   `wasmos::audit`).
//!
//! The gRPC services call the layer through one helper (`Master::authorize` in
//! `server/authz.rs`); no handler decides on its own.

pub mod audit;
pub mod layer;
pub mod policy;
pub mod tokens;

pub use layer::{Acl, Action, Caller, Denied, SchedulerAsk, decide};
pub use policy::{Limits, MANAGEMENT, Policy, Rights};
pub use tokens::{AclState, AclStateError, NewToken, TokenRecord};
