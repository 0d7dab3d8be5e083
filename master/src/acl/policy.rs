//! Policies: named sets of rights that tokens are bound to, and the one function that says
//! whether a set of policies grants an [`Action`](super::Action).
//!
//! Default deny: a right not granted by any of a token's policies is refused. A policy is a
//! small JSON document (`wasmos acl policy apply NAME FILE`) whose every field is off by
//! default; the built-in policy [`MANAGEMENT`] grants everything and cannot be redefined.
//! Rights of several policies add up (the union).
//!
//! A policy may also set per-principal limits (`max_frameworks`, `max_upload_bytes`,
//! `max_scheduler_fuel`, `max_scheduler_memory_mb`, `max_callback_deadline_ms`). Unset, a
//! policy says nothing about that limit; a token's limit is the most permissive among its
//! policies that set it, and unlimited (beyond the master's own caps) when none does or when
//! it is bound to [`MANAGEMENT`]. So binding a token to one more policy that grants, say,
//! `upload_components` only never lifts the limits of its tenant policy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The built-in policy that grants every right (the bootstrap token's).
pub const MANAGEMENT: &str = "management";

/// Longest policy name accepted, in bytes.
pub const MAX_POLICY_NAME_LEN: usize = 64;

/// Most role patterns one policy may list in each of its role lists.
pub const MAX_ROLE_PATTERNS: usize = 256;

/// One policy: what the holder of a token bound to it may do. Every field is off (empty) by
/// default, so `{}` grants nothing beyond reading its own frameworks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Roles the holder may register (subscribe or submit) frameworks under. A pattern is a
    /// role name (`eng`), a role and everything below it (`eng/*`, which also matches `eng`),
    /// or `*` (every role). Default: none.
    pub roles: Vec<String>,
    /// Roles in which the holder's frameworks may launch native command tasks (same patterns;
    /// the master's `--command-task-roles` must allow the role too). Default: none.
    pub native_task_roles: Vec<String>,
    /// Whether the holder may upload (and delete) components. Default false.
    pub upload_components: bool,
    /// Whether listings (`GetState`) show other principals' frameworks and tasks, and whether
    /// the holder may read their results. Without it listings are filtered to its own
    /// frameworks, never refused. Default false.
    pub see_all_frameworks: bool,
    /// Whether the holder may kill tasks of and tear down frameworks it does not own (its own
    /// it always may). Default false.
    pub manage_all_frameworks: bool,
    /// Whether the holder may change role weights and quotas. Default false.
    pub weights_and_quotas: bool,
    /// Whether the holder may change the Raft membership (`operator members add|remove`).
    /// Default false.
    pub raft_membership: bool,
    /// Whether the holder may create, list and revoke tokens and apply policies. Default false.
    pub manage_tokens: bool,
    /// Whether the holder may register agents (open an agent session) and fetch components
    /// as an agent: the right of an agent token (`wasmos agent` with WASMOS_TOKEN). On a TLS
    /// master an agent certificate grants this without a token. Default false.
    pub register_agents: bool,
    /// Whether the holder may read the master's Prometheus metrics (`GET /metrics` on its
    /// HTTP address; readable without a token only under `--metrics-open`). Default false.
    pub read_metrics: bool,
    /// Most live (registered, connected or not) frameworks the principal may hold, counted
    /// over every framework it subscribed or submitted; one more is refused. Default: unset
    /// (no limit from this policy).
    pub max_frameworks: Option<u64>,
    /// Largest component the holder may upload in one call, in bytes (the master's own cap,
    /// `--max-component-mb`, applies too). Default: unset.
    pub max_upload_bytes: Option<u64>,
    /// Most fuel per callback the holder's hosted schedulers may ask for (`wasmos submit
    /// --fuel`); at least 1. A submit asking for more is refused; one asking for none gets the
    /// master's default (10^9) capped at this. Default: unset.
    pub max_scheduler_fuel: Option<u64>,
    /// Most memory, in MiB, the holder's hosted schedulers may ask for (`--memory-mb`); at
    /// least 1. Without an ask the master's default (128) capped at this. Default: unset.
    pub max_scheduler_memory_mb: Option<u64>,
    /// Longest callback deadline, in milliseconds, the holder's hosted schedulers may ask for
    /// (`--callback-timeout`); at least 1. Without an ask the master's default (10 s) capped
    /// at this. Default: unset.
    pub max_callback_deadline_ms: Option<u64>,
}

/// The per-principal limits of a token: the most permissive of its policies' (see the
/// module doc); `None` is no limit beyond the master's own caps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// [`Policy::max_frameworks`].
    pub max_frameworks: Option<u64>,
    /// [`Policy::max_upload_bytes`].
    pub max_upload_bytes: Option<u64>,
    /// [`Policy::max_scheduler_fuel`].
    pub max_scheduler_fuel: Option<u64>,
    /// [`Policy::max_scheduler_memory_mb`].
    pub max_scheduler_memory_mb: Option<u64>,
    /// [`Policy::max_callback_deadline_ms`].
    pub max_callback_deadline_ms: Option<u64>,
}

impl Limits {
    /// No limit at all (a management token's, or an open master's caller's).
    pub const NONE: Limits = Limits {
        max_frameworks: None,
        max_upload_bytes: None,
        max_scheduler_fuel: None,
        max_scheduler_memory_mb: None,
        max_callback_deadline_ms: None,
    };

    /// The limits one policy sets.
    pub fn of(p: &Policy) -> Limits {
        Limits {
            max_frameworks: p.max_frameworks,
            max_upload_bytes: p.max_upload_bytes,
            max_scheduler_fuel: p.max_scheduler_fuel,
            max_scheduler_memory_mb: p.max_scheduler_memory_mb,
            max_callback_deadline_ms: p.max_callback_deadline_ms,
        }
    }

    /// The most permissive of two sets of limits, where an unset limit says nothing.
    fn loosest(self, o: Limits) -> Limits {
        fn max(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, None) => a,
                (None, b) => b,
            }
        }
        Limits {
            max_frameworks: max(self.max_frameworks, o.max_frameworks),
            max_upload_bytes: max(self.max_upload_bytes, o.max_upload_bytes),
            max_scheduler_fuel: max(self.max_scheduler_fuel, o.max_scheduler_fuel),
            max_scheduler_memory_mb: max(self.max_scheduler_memory_mb, o.max_scheduler_memory_mb),
            max_callback_deadline_ms: max(
                self.max_callback_deadline_ms,
                o.max_callback_deadline_ms,
            ),
        }
    }
}

impl Policy {
    /// The built-in [`MANAGEMENT`] policy: every right.
    pub fn management() -> Policy {
        Policy {
            roles: vec!["*".into()],
            native_task_roles: vec!["*".into()],
            upload_components: true,
            see_all_frameworks: true,
            manage_all_frameworks: true,
            weights_and_quotas: true,
            raft_membership: true,
            manage_tokens: true,
            register_agents: true,
            read_metrics: true,
            ..Policy::default()
        }
    }

    /// Parses a policy document (JSON), checking its role patterns.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let policy: Policy =
            serde_json::from_str(text).map_err(|e| format!("the policy is not valid: {e}"))?;
        policy.validate()?;
        Ok(policy)
    }

    /// Checks the role patterns (each is `*`, a valid role name, or a valid role name
    /// followed by `/*`; at most [`MAX_ROLE_PATTERNS`] per list) and the scheduler limits
    /// (at least 1 when set: a hosted scheduler cannot run on none).
    pub fn validate(&self) -> Result<(), String> {
        for (field, v) in [
            ("max_scheduler_fuel", self.max_scheduler_fuel),
            ("max_scheduler_memory_mb", self.max_scheduler_memory_mb),
            ("max_callback_deadline_ms", self.max_callback_deadline_ms),
        ] {
            if v == Some(0) {
                return Err(format!(
                    "{field} is 0, which no hosted scheduler can run on; to keep a principal \
                     from submitting frameworks, leave its role out of `roles` (or set \
                     max_frameworks to 0)"
                ));
            }
        }
        for (field, list) in [
            ("roles", &self.roles),
            ("native_task_roles", &self.native_task_roles),
        ] {
            if list.len() > MAX_ROLE_PATTERNS {
                return Err(format!(
                    "{field} lists {} patterns; at most {MAX_ROLE_PATTERNS} are allowed",
                    list.len()
                ));
            }
            for p in list {
                if p == "*" {
                    continue;
                }
                let role = p.strip_suffix("/*").unwrap_or(p);
                crate::registry::validate_role(role)
                    .map_err(|e| format!("{field} pattern {p:?}: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Checks a policy name: 1 to [`MAX_POLICY_NAME_LEN`] bytes of `[A-Za-z0-9._-]`.
pub fn validate_policy_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_POLICY_NAME_LEN {
        return Err(format!(
            "policy name {name:?} must be 1..{MAX_POLICY_NAME_LEN} bytes"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!(
            "policy name {name:?}: only letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// Whether `pattern` (see [`Policy::roles`]) matches `role`.
pub fn role_matches(pattern: &str, role: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix("/*") {
        Some(prefix) => {
            role == prefix
                || role
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        }
        None => pattern == role,
    }
}

/// The rights of a token: the union of its policies' (unknown names grant nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rights {
    /// The union of the policies, as one policy (its limit fields are unused: see
    /// [`Rights::limits`]).
    pub merged: Policy,
    /// The token's per-principal limits: the most permissive of its policies' that set them,
    /// none when bound to [`MANAGEMENT`]. Default: none.
    pub limits: Limits,
}

impl Rights {
    /// The union of the policies named, looked up in `defined` (plus the built-in
    /// [`MANAGEMENT`]).
    pub fn of(names: &[String], defined: &BTreeMap<String, Policy>) -> Rights {
        let mut m = Policy::default();
        let mut limits = Limits::default();
        let mut unlimited = false;
        for name in names {
            let p = if name == MANAGEMENT {
                unlimited = true;
                Policy::management()
            } else {
                match defined.get(name) {
                    Some(p) => p.clone(),
                    None => continue,
                }
            };
            limits = limits.loosest(Limits::of(&p));
            m.roles.extend(p.roles);
            m.native_task_roles.extend(p.native_task_roles);
            m.upload_components |= p.upload_components;
            m.see_all_frameworks |= p.see_all_frameworks;
            m.manage_all_frameworks |= p.manage_all_frameworks;
            m.weights_and_quotas |= p.weights_and_quotas;
            m.raft_membership |= p.raft_membership;
            m.manage_tokens |= p.manage_tokens;
            m.register_agents |= p.register_agents;
            m.read_metrics |= p.read_metrics;
        }
        if unlimited {
            limits = Limits::NONE;
        }
        Rights { merged: m, limits }
    }

    /// Whether frameworks may be registered under `role`.
    pub fn may_register(&self, role: &str) -> bool {
        self.merged.roles.iter().any(|p| role_matches(p, role))
    }

    /// Whether native command tasks may be launched in `role`.
    pub fn may_run_native(&self, role: &str) -> bool {
        self.merged
            .native_task_roles
            .iter()
            .any(|p| role_matches(p, role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_patterns() {
        assert!(role_matches("*", "x/y"));
        assert!(role_matches("eng", "eng"));
        assert!(!role_matches("eng", "eng/batch"));
        assert!(role_matches("eng/*", "eng"));
        assert!(role_matches("eng/*", "eng/batch"));
        assert!(!role_matches("eng/*", "engineering"));
    }

    #[test]
    fn policies_parse_deny_by_default_and_add_up() {
        let p = Policy::parse(r#"{"roles": ["eng/*"]}"#).unwrap();
        assert!(!p.upload_components && !p.manage_tokens);
        assert!(Policy::parse(r#"{"roles": ["../x"]}"#).is_err());
        assert!(Policy::parse(r#"{"rolez": []}"#).is_err());
        let defined: BTreeMap<_, _> = [
            ("a".to_string(), p),
            (
                "b".to_string(),
                Policy {
                    upload_components: true,
                    ..Default::default()
                },
            ),
        ]
        .into();
        let r = Rights::of(&["a".into(), "b".into(), "missing".into()], &defined);
        assert!(r.may_register("eng/x") && !r.may_register("ops"));
        assert!(r.merged.upload_components && !r.may_run_native("eng"));
        assert!(
            Rights::of(&[MANAGEMENT.into()], &defined)
                .merged
                .manage_tokens
        );
    }

    #[test]
    fn limits_are_the_loosest_of_the_policies_that_set_them() {
        let p = Policy::parse(
            r#"{"max_frameworks": 1, "max_upload_bytes": 2, "max_scheduler_fuel": 3,
                "max_scheduler_memory_mb": 4, "max_callback_deadline_ms": 5}"#,
        )
        .unwrap();
        let five = Limits {
            max_frameworks: Some(1),
            max_upload_bytes: Some(2),
            max_scheduler_fuel: Some(3),
            max_scheduler_memory_mb: Some(4),
            max_callback_deadline_ms: Some(5),
        };
        assert_eq!(Limits::of(&p), five);
        let defined: BTreeMap<_, _> = [
            ("tenant".to_string(), p),
            (
                "uploader".to_string(),
                Policy {
                    upload_components: true,
                    ..Default::default()
                },
            ),
            (
                "bigger".to_string(),
                Policy {
                    max_frameworks: Some(10),
                    ..Default::default()
                },
            ),
        ]
        .into();
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // A policy that does not set a limit does not lift another's.
        assert_eq!(
            Rights::of(&names(&["tenant", "uploader"]), &defined).limits,
            five
        );
        assert_eq!(
            Rights::of(&names(&["tenant", "bigger"]), &defined)
                .limits
                .max_frameworks,
            Some(10)
        );
        assert_eq!(
            Rights::of(&names(&["tenant", MANAGEMENT]), &defined).limits,
            Limits::NONE
        );
        assert_eq!(
            Rights::of(&names(&["uploader"]), &defined).limits,
            Limits::NONE
        );
        for field in [
            "max_scheduler_fuel",
            "max_scheduler_memory_mb",
            "max_callback_deadline_ms",
        ] {
            let err = Policy::parse(&format!(r#"{{"{field}": 0}}"#)).unwrap_err();
            assert!(err.contains(field), "{err}");
        }
        assert!(Policy::parse(r#"{"max_frameworks": 0}"#).is_ok());
        assert!(Policy::parse(r#"{"max_frameworks": -1}"#).is_err());
    }
}
