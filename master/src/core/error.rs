//! [`CoreError`]: why the core refused a call, sorted by what the caller can do about it, and
//! [`to_status`], the one table from those kinds to gRPC status codes.
//!
//! Each variant carries the message the caller sees, word for word; the variant only says
//! which kind of refusal it is. Refusals that are not returned but sent on a stream (a bad
//! `Accept`, an unknown task in `Kill`) are events, not errors, and do not live here.
//! Errors of the pure books (`RegistryError`, `AllocatorError`) are sorted into kinds by the
//! `From` conversions below, so a new variant there must be placed here too.

use tonic::Status;
use wasmos_api::convert::ConvertError;

use crate::allocator::AllocatorError;
use crate::registry::RegistryError;

/// Why the core refused a call. The `Display` text is the message for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// The call is malformed whatever the cluster's state: a field is missing, too long, out
    /// of range or does not parse. The caller must change the call. gRPC `INVALID_ARGUMENT`.
    #[error("{0}")]
    Invalid(String),
    /// The call names a framework, task, agent or component the master does not know.
    /// gRPC `NOT_FOUND`.
    #[error("{0}")]
    NotFound(String),
    /// The call is well formed but not valid in the current state: the task already ended,
    /// an id is ambiguous, a re-subscription would change what cannot change, the cluster
    /// does not allow it. gRPC `FAILED_PRECONDITION`.
    #[error("{0}")]
    Precondition(String),
    /// A limit is used up (a framework's stored state, the cluster's countable total).
    /// gRPC `RESOURCE_EXHAUSTED`.
    #[error("{0}")]
    Exhausted(String),
    /// Something the call needs cannot be reached now (a task's agent is unreachable); the
    /// same call may succeed later. gRPC `UNAVAILABLE`.
    #[error("{0}")]
    Unavailable(String),
    /// The master broke one of its own rules (an id it minted does not parse, its books
    /// disagree). Not the caller's fault; worth a bug report. gRPC `INTERNAL`.
    #[error("{0}")]
    Internal(String),
}

/// The gRPC status a client sees for `e`: the one table from kind to code, with the message
/// unchanged.
pub fn to_status(e: &CoreError) -> Status {
    match e {
        CoreError::Invalid(m) => Status::invalid_argument(m.clone()),
        CoreError::NotFound(m) => Status::not_found(m.clone()),
        CoreError::Precondition(m) => Status::failed_precondition(m.clone()),
        CoreError::Exhausted(m) => Status::resource_exhausted(m.clone()),
        CoreError::Unavailable(m) => Status::unavailable(m.clone()),
        CoreError::Internal(m) => Status::internal(m.clone()),
    }
}

impl From<CoreError> for Status {
    fn from(e: CoreError) -> Self {
        to_status(&e)
    }
}

/// A field that does not parse is a malformed call.
impl From<ConvertError> for CoreError {
    fn from(e: ConvertError) -> Self {
        CoreError::Invalid(e.to_string())
    }
}

impl From<RegistryError> for CoreError {
    fn from(e: RegistryError) -> Self {
        let m = e.to_string();
        match e {
            RegistryError::InvalidRole { .. }
            | RegistryError::InvalidWeight { .. }
            | RegistryError::GuaranteeAboveLimit { .. }
            | RegistryError::ComponentDigest { .. }
            | RegistryError::NotAnAgentChange(_) => CoreError::Invalid(m),
            RegistryError::UnknownFramework(_)
            | RegistryError::FrameworkTornDown(_)
            | RegistryError::UnknownAgent(_) => CoreError::NotFound(m),
            RegistryError::FrameworkExists(_) | RegistryError::ComponentInUse { .. } => {
                CoreError::Precondition(m)
            }
            RegistryError::StateTooLarge(_) => CoreError::Exhausted(m),
            RegistryError::Acl(crate::acl::AclStateError::Invalid(_)) => CoreError::Invalid(m),
            RegistryError::Acl(crate::acl::AclStateError::Conflict(_)) => {
                CoreError::Precondition(m)
            }
            RegistryError::Acl(crate::acl::AclStateError::Exhausted(_)) => CoreError::Exhausted(m),
        }
    }
}

impl From<AllocatorError> for CoreError {
    fn from(e: AllocatorError) -> Self {
        let m = e.to_string();
        match e {
            AllocatorError::InvalidWeight { .. } | AllocatorError::GuaranteeAboveLimit { .. } => {
                CoreError::Invalid(m)
            }
            AllocatorError::UnknownAgent(_) | AllocatorError::UnknownFramework(_) => {
                CoreError::NotFound(m)
            }
            AllocatorError::DuplicateAgent(_) | AllocatorError::DuplicateFramework(_) => {
                CoreError::Precondition(m)
            }
            AllocatorError::ClusterTotal { .. } => CoreError::Exhausted(m),
            AllocatorError::Resources { .. } => CoreError::Internal(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn code_and_message(e: CoreError) -> (Code, String) {
        let s = Status::from(e);
        (s.code(), s.message().to_string())
    }

    #[test]
    fn a_malformed_call_is_invalid_argument() {
        let e = CoreError::Invalid("framework name must be 1..256 bytes".into());
        assert_eq!(
            code_and_message(e),
            (
                Code::InvalidArgument,
                "framework name must be 1..256 bytes".into()
            )
        );
    }

    #[test]
    fn an_unknown_object_is_not_found() {
        let e = CoreError::NotFound("framework fw-1 is not known".into());
        assert_eq!(
            code_and_message(e),
            (Code::NotFound, "framework fw-1 is not known".into())
        );
    }

    #[test]
    fn a_call_the_state_forbids_is_failed_precondition() {
        let e = CoreError::Precondition("task t of framework f has already ended".into());
        assert_eq!(code_and_message(e).0, Code::FailedPrecondition);
    }

    #[test]
    fn an_exhausted_limit_is_resource_exhausted() {
        let e = CoreError::Exhausted("framework state: too large".into());
        assert_eq!(code_and_message(e).0, Code::ResourceExhausted);
    }

    #[test]
    fn an_unreachable_dependency_is_unavailable() {
        let e = CoreError::Unavailable("agent a is unreachable".into());
        assert_eq!(code_and_message(e).0, Code::Unavailable);
    }

    #[test]
    fn a_broken_rule_of_the_master_is_internal() {
        let e = CoreError::Internal("books disagree".into());
        assert_eq!(code_and_message(e).0, Code::Internal);
    }

    #[test]
    fn registry_errors_keep_their_message_and_get_a_kind() {
        let e = RegistryError::InvalidWeight {
            role: "r".into(),
            weight: -1.0,
        };
        let text = e.to_string();
        assert_eq!(CoreError::from(e), CoreError::Invalid(text));
        let e = RegistryError::StateTooLarge("too big".into());
        assert!(matches!(CoreError::from(e), CoreError::Exhausted(_)));
    }
}
