//! Every gRPC status the master answers with, in one table: [`ServiceError`] names each way a
//! call can fail, and `From<ServiceError> for Status` maps it to its wire code.
//!
//! Handlers return `Result<_, Status>` (tonic's contract) and build their failures as a
//! `ServiceError`; a `Status` a handler passes on unchanged is one tonic produced itself (a
//! broken stream). Nothing else in `server/` calls `Status::new` or its shorthands.
//!
//! Codes, and why:
//! - The core's refusals (subscriptions, agent registrations, operator kills and teardowns,
//!   weights, quotas) are sorted by the core's own part of this table,
//!   [`crate::core::to_status`]: malformed `INVALID_ARGUMENT`, unknown `NOT_FOUND`, not
//!   valid now `FAILED_PRECONDITION`, a cap `RESOURCE_EXHAUSTED`, unreachable `UNAVAILABLE`.
//! - `FAILED_PRECONDITION`: the call does not fit the master's state (not the leader, not
//!   replicated, a wrong first message, a membership change refused, a component that does not
//!   load). The not-leader answer also carries the
//!   leader hint ([`wasmos_api::leader`]).
//! - `INVALID_ARGUMENT`: the request itself is malformed; sending it again cannot help.
//! - `NOT_FOUND`, `ALREADY_EXISTS`: the named object is absent or present.
//! - `RESOURCE_EXHAUSTED`: a size cap (component, blob store).
//! - `UNAVAILABLE`: retry later (no majority in time, replication stopped, an agent that does
//!   not answer).
//! - `DEADLINE_EXCEEDED`: a stream's first message did not come in time.
//! - `UNAUTHENTICATED`: no valid token on a master that enforces ACLs; `PERMISSION_DENIED`:
//!   the token's policies lack the right (the message names it).
//! - A task log read (`logs.rs`): no such task or no output `NOT_FOUND`, the agent not
//!   connected, busy or silent `UNAVAILABLE`, an ambiguous task id or the agent's refusal
//!   `FAILED_PRECONDITION`.
//! - `INTERNAL`: the master itself is misconfigured (the Wasm engine).

use tonic::Status;
use wasmos_api::FrameworkId;
use wasmos_api::convert::ConvertError;

use super::FIRST_MESSAGE_TIMEOUT;
use crate::blobs::BlobError;
use crate::core::CoreError;
use crate::framework_host::HostError;
use crate::raft::MemberError;

/// Why a call to one of the master's gRPC services failed. Each variant's message is the
/// status message the caller reads.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServiceError {
    /// A master kept in memory that does not serve (it always does; kept for completeness).
    #[error("the master is not serving")]
    NotServing,
    /// The Raft store of this replicated master failed: it stopped serving and is about to
    /// exit (another master takes over).
    #[error("the Raft store of this master failed; it stopped serving; retry on another master")]
    StoreFailed,
    /// This master does not lead; `leader` is the leader's address when known. The status
    /// message is [`wasmos_api::leader::not_leader_status`]'s.
    #[error("this master is not the leader")]
    NotLeader { leader: Option<String> },
    /// The replicator stopped while a call waited for its change to commit.
    #[error("replication stopped")]
    ReplicationStopped,
    /// A change did not commit within the commit timeout.
    #[error("the change was not committed in time (no majority of masters?)")]
    CommitTimeout,
    /// A membership call to a master kept in memory.
    #[error("this master's registry is not replicated (start it with --data-dir)")]
    NotReplicated,
    /// A stream's first message did not arrive in time (`expected` is e.g. "subscribe call").
    #[error("no {expected} within {} s", FIRST_MESSAGE_TIMEOUT.as_secs())]
    FirstMessageTimeout { expected: &'static str },
    /// A stream ended before its first message (`expected` is e.g. "subscribe").
    #[error("the stream ended before {expected}")]
    EndedBeforeFirst { expected: &'static str },
    /// A stream's first message is of the wrong kind (`rule` is e.g. "call must be subscribe").
    #[error("the first {rule}")]
    WrongFirst { rule: &'static str },
    /// The core refused a call (a subscription, an agent's registration, an operator's kill
    /// or teardown, a weight or quota setting); its kind picks the code
    /// ([`crate::core::to_status`], the core's part of this table).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A field of the request is malformed (an id, a missing field).
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// `SubmitFramework` without `info`.
    #[error("submit: info is missing")]
    SubmitWithoutInfo,
    /// `SubmitFramework` with `info.id` set.
    #[error("submit: info.id must be empty; the master assigns one")]
    SubmitWithId,
    /// `GetFrameworkResult` for a framework the registry never held (or `GetFrameworkState`
    /// for one it does not hold).
    #[error("framework {0} is not known")]
    UnknownFramework(FrameworkId),
    /// `GetFrameworkState` for a key the framework has not stored.
    #[error("framework {framework} has stored no key {key:?}; without a key, every key is shown")]
    UnknownStateKey {
        /// The framework.
        framework: FrameworkId,
        /// The key asked for.
        key: String,
    },
    /// `GetFrameworkState` for a key longer than any a framework can store.
    #[error("a state key is at most {max} bytes; this one has {0}", max = crate::registry::MAX_STATE_KEY_BYTES)]
    StateKeyTooLong(usize),
    /// `AddMember` with id 0.
    #[error("master ids start at 1")]
    MemberIdZero,
    /// `AddMember` with an address that is not `host:port`.
    #[error("{0:?} is not a host:port address")]
    MemberAddress(String),
    /// `AddMember` of a master that is already a member.
    #[error("master {0} is already a member")]
    MemberExists(u64),
    /// `RemoveMember` of a master that is not a member.
    #[error("master {0} is not a member")]
    NotAMember(u64),
    /// `RemoveMember` of the last voter.
    #[error("cannot remove the last voting master")]
    LastVoter,
    /// The blob store refused a component or does not hold it.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// Raft refused a membership change.
    #[error(transparent)]
    Member(#[from] MemberError),
    /// A hosted framework could not be started.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The authorization layer refused the call (`crate::acl`): no valid token
    /// (`UNAUTHENTICATED`) or a right its policies do not grant (`PERMISSION_DENIED`, the
    /// message names the rule).
    #[error(transparent)]
    Denied(#[from] crate::acl::Denied),
    /// A token or policy request that is malformed (a TTL too long, a policy that does not
    /// parse).
    #[error("{0}")]
    AclRequest(String),
    /// A history listing's page token that this master did not give.
    #[error("{0}")]
    PageToken(String),
    /// A task's output could not be read (`ReadTaskLog`); its kind picks the code
    /// ([`super::logs::LogError::code`]).
    #[error(transparent)]
    Log(#[from] super::logs::LogError),
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        use ServiceError as E;
        let message = e.to_string();
        match e {
            E::NotLeader { leader } => wasmos_api::leader::not_leader_status(leader.as_deref()),
            E::Member(MemberError::NotLeader { leader_addr, .. }) => {
                wasmos_api::leader::not_leader_status(leader_addr.as_deref())
            }
            E::Core(c) => crate::core::to_status(&c),
            E::NotServing | E::StoreFailed | E::ReplicationStopped | E::CommitTimeout => {
                Status::unavailable(message)
            }
            // Raft's own words, without this table's prefix.
            E::Member(MemberError::Unavailable(m)) => Status::unavailable(m),
            E::Member(MemberError::Refused(m)) => Status::failed_precondition(m),
            E::FirstMessageTimeout { .. } => Status::deadline_exceeded(message),
            // The core's kind decides the code; the message keeps the host's prefix.
            E::Host(HostError::Subscribe(c)) => {
                Status::new(crate::core::to_status(&c).code(), message)
            }
            E::NotReplicated
            | E::WrongFirst { .. }
            | E::LastVoter
            | E::Host(HostError::Load(_) | HostError::Instantiate(_)) => {
                Status::failed_precondition(message)
            }
            E::EndedBeforeFirst { .. }
            | E::Convert(_)
            | E::SubmitWithoutInfo
            | E::SubmitWithId
            | E::MemberIdZero
            | E::StateKeyTooLong(_)
            | E::MemberAddress(_)
            | E::Host(HostError::NoComponent) => Status::invalid_argument(message),
            E::UnknownFramework(_) | E::UnknownStateKey { .. } | E::NotAMember(_) => {
                Status::not_found(message)
            }
            E::MemberExists(_) => Status::already_exists(message),
            E::Host(HostError::Engine(_)) => Status::internal(message),
            E::Blob(b) | E::Host(HostError::Blob(b)) => blob_status(b),
            E::Denied(crate::acl::Denied::Unauthenticated(_)) => Status::unauthenticated(message),
            E::Denied(crate::acl::Denied::Forbidden(_)) => Status::permission_denied(message),
            E::AclRequest(_) | E::PageToken(_) => Status::invalid_argument(message),
            E::Log(l) => Status::new(l.code(), message),
        }
    }
}

/// The blob store's refusals: unknown is not found, a cap is resource exhausted, a bad
/// digest or a component that is not a framework is an invalid argument.
fn blob_status(e: BlobError) -> Status {
    match e {
        BlobError::Unknown(_) => Status::not_found(e.to_string()),
        BlobError::TooLarge { .. }
        | BlobError::StoreFull { .. }
        | BlobError::UnreferencedFull { .. } => Status::resource_exhausted(e.to_string()),
        BlobError::BadDigest { .. }
        | BlobError::NotAComponent
        | BlobError::NotAFramework(_)
        | BlobError::Contents(_)
        | BlobError::DigestMismatch { .. } => Status::invalid_argument(e.to_string()),
    }
}
