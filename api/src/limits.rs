//! The size bounds of what tenants send, in one place.
//!
//! Every bound a tenant can reach (through gRPC, WIT or a file) is a constant here, so the
//! master, the agent and the Wasm executor check the same number, and the `.proto`/`.wit` docs
//! can name it. A bound that an input passes through several hops must fit on every hop.

/// The longest guest log line kept, in characters (a scheduler's or an executor's `log` call):
/// the rest of the line is dropped before it reaches the host's log.
pub const GUEST_LOG_LINE_MAX_CHARS: usize = 4096;
