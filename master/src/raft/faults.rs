//! [`StoreFaults`] for the Raft store: the switch shared with the agent's store
//! ([`wasmos_api::store_faults`]), re-exported where the master's callers look for it.

pub use wasmos_api::store_faults::StoreFaults;
