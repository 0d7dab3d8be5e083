//! Newtypes for the ids that cross component boundaries.
//!
//! An id is a non-empty string of at most [`MAX_ID_LEN`] bytes drawn from
//! `[A-Za-z0-9._-]`, so it is safe to use as a file name in a sandbox path and in a metric label.
//! Constructing one through [`std::str::FromStr`] or `new` validates it; nothing else does.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is the empty string.
    #[error("{kind} id is empty")]
    Empty {
        /// Which id (`agent`, `framework`, `task`, ...).
        kind: &'static str,
    },
    /// The id is longer than [`MAX_ID_LEN`] bytes.
    #[error("{kind} id is {len} bytes long; the limit is {MAX_ID_LEN}")]
    TooLong {
        /// Which id.
        kind: &'static str,
        /// Its length, in bytes.
        len: usize,
    },
    /// The id holds a character outside `[A-Za-z0-9._-]`, or is `.` or `..`.
    #[error(
        "{kind} id {id:?} contains {ch:?}; ids may use only letters, digits, '.', '_' and '-' \
         and may not be '.' or '..'"
    )]
    BadChar {
        /// Which id.
        kind: &'static str,
        /// The id as given.
        id: String,
        /// The first character refused.
        ch: char,
    },
}

fn validate(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { kind, len: s.len() });
    }
    if s == "." || s == ".." {
        return Err(IdError::BadChar {
            kind,
            id: s.to_string(),
            ch: '.',
        });
    }
    if let Some(ch) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(IdError::BadChar {
            kind,
            id: s.to_string(),
            ch,
        });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `s` and wraps it.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                validate($kind, &s)?;
                Ok(Self(s))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    /// A framework: one submitted component and its scheduler.
    FrameworkId, "framework"
);
id_type!(
    /// A machine that runs tasks.
    AgentId, "agent"
);
id_type!(
    /// A task, unique within its framework.
    TaskId, "task"
);
id_type!(
    /// An offer of one agent's resources to one framework.
    OfferId, "offer"
);
id_type!(
    /// An executor instance within a framework: tasks with the same executor id on one agent
    /// share one Wasm instance and therefore its memory.
    ExecutorId, "executor"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids() {
        assert_eq!(TaskId::new("task-1.a_b").unwrap().as_str(), "task-1.a_b");
    }

    #[test]
    fn rejects_path_tricks_and_empties() {
        assert!(matches!(TaskId::new(""), Err(IdError::Empty { .. })));
        assert!(matches!(
            ExecutorId::new(".."),
            Err(IdError::BadChar { .. })
        ));
        let err = ExecutorId::new("../etc").unwrap_err();
        assert!(err.to_string().contains("'/'"), "{err}");
        assert!(matches!(
            AgentId::new("a".repeat(129)),
            Err(IdError::TooLong { len: 129, .. })
        ));
    }

    #[test]
    fn serde_validates() {
        let ok: FrameworkId = serde_json::from_str("\"fw-1\"").unwrap();
        assert_eq!(ok.as_str(), "fw-1");
        assert!(serde_json::from_str::<FrameworkId>("\"a b\"").is_err());
    }
}
