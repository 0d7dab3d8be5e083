//! The one authorization layer: every call any API serves (the gRPC services now, the HTTP
//! API later) names an [`Action`] and asks [`Acl::authorize`], which authenticates the bearer
//! token, decides with [`decide`] (pure: the caller's rights, the action, the registry) and
//! writes the audit record. Nothing else in the master decides who may do what.
//!
//! Default deny: with enforcement on (every `wasmos master`; off only in a plain `wasmos
//! dev`), a call without a valid token is refused `UNAUTHENTICATED`, and one whose token lacks
//! the right `PERMISSION_DENIED` naming the rule. With enforcement off every call is allowed as
//! principal `anonymous` (mutating calls are still audited).
//!
//! Agents ([`Action::RegisterAgent`], [`Action::FetchComponent`]) authenticate either by their
//! certificate (on a TLS master, a peer whose verified certificate is an `agent` or `master`
//! one, see [`Acl::authorize_peer`]) or by a token whose policies grant `register_agents`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, oneshot, watch};
use tonic::metadata::MetadataMap;
use wasmos_api::FrameworkId;
use wasmos_api::identity::{PeerIdentity, Role};

use super::audit::{AuditLog, AuditRecord, Outcome, rfc3339};
use super::policy::Rights;
use super::tokens::hash_secret;
use crate::allocator::Millis;
use crate::registry::Registry;

/// The principal of calls made without enforcement, or without a valid token.
pub const ANONYMOUS: &str = "anonymous";

/// The peer named in audit records of calls a hosted scheduler makes (it has no address).
pub const HOSTED_PEER: &str = "hosted";

/// How often an open stream whose token expires re-checks it besides on every revocation (so
/// an expired token's stream ends within this). A stream whose token never expires re-checks
/// on revocations only: 50,000 agent sessions polling every half second took the core's lock
/// 100,000 times a second.
pub const RECHECK_INTERVAL: Duration = Duration::from_millis(500);

/// The limits a submit asks for its hosted scheduler (`SubmitFrameworkRequest.limits`):
/// `None` where it asks for none (the master's default, capped by the principal's limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedulerAsk {
    /// Fuel per callback.
    pub fuel: Option<u64>,
    /// Memory, in MiB.
    pub memory_mb: Option<u64>,
    /// Callback deadline, in milliseconds (rounded up).
    pub callback_deadline_ms: Option<u64>,
}

impl SchedulerAsk {
    /// What `limits` asks for: zero (and a deadline that is not a positive number) is no ask.
    pub fn of(limits: Option<&wasmos_api::proto::SchedulerLimits>) -> SchedulerAsk {
        let Some(l) = limits else {
            return SchedulerAsk::default();
        };
        let t = l.callback_timeout_seconds;
        SchedulerAsk {
            fuel: (l.fuel > 0).then_some(l.fuel),
            memory_mb: (l.memory_mb > 0).then_some(l.memory_mb),
            // `as` saturates: an absurd deadline asks for u64::MAX ms, which no limit allows.
            callback_deadline_ms: (t.is_finite() && t > 0.0).then(|| (t * 1000.0).ceil() as u64),
        }
    }
}

/// What a call asks to do, with the object it acts on.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create the first management token (allowed once, without a token).
    Bootstrap,
    /// Subscribe a framework under `role`; `framework` is set to fail over to a registered one.
    Subscribe {
        /// The role asked for.
        role: String,
        /// The framework re-subscribed, if any.
        framework: Option<FrameworkId>,
    },
    /// Submit a hosted framework under `role`, its scheduler asking for `ask`.
    SubmitFramework {
        /// The role asked for.
        role: String,
        /// The scheduler limits the submit asks for (checked against the principal's).
        ask: SchedulerAsk,
    },
    /// Launch native command tasks for `framework` (in its role).
    LaunchNative {
        /// The framework launching.
        framework: FrameworkId,
    },
    /// Upload a component of `size_bytes` (0 when asked before its bytes arrived: the right
    /// alone is checked).
    UploadComponent {
        /// Its size so far, in bytes.
        size_bytes: u64,
    },
    /// Delete a component.
    DeleteComponent {
        /// Its digest.
        sha256: String,
    },
    /// Read the cluster state (always allowed; filtered by [`Caller::sees_all`]).
    ReadState,
    /// Read the history of completed tasks and frameworks (listings are filtered to the
    /// caller's own frameworks without `see_all_frameworks`, never refused).
    ReadHistory,
    /// Read how a framework ended.
    ReadFrameworkResult {
        /// The framework.
        framework: FrameworkId,
    },
    /// Read a framework's stored state (`driver.state-put`).
    ReadFrameworkState {
        /// The framework.
        framework: FrameworkId,
    },
    /// Read a task's output or a hosted scheduler's log lines (`wasmos logs`): the
    /// framework's principal may, others need `see_all_frameworks`.
    ReadTaskLog {
        /// The task's framework.
        framework: FrameworkId,
    },
    /// Kill a task of these frameworks (all that have a live task of that id).
    KillTask {
        /// The task.
        task: String,
        /// Its frameworks.
        frameworks: Vec<FrameworkId>,
    },
    /// Tear a framework down.
    Teardown {
        /// The framework.
        framework: FrameworkId,
    },
    /// Set role weights.
    SetWeights {
        /// The roles.
        roles: Vec<String>,
    },
    /// Set or remove a role's quota.
    SetQuota {
        /// The role.
        role: String,
    },
    /// List the Raft members.
    ListMembers,
    /// Read the master's Prometheus metrics (`read_metrics`).
    ReadMetrics,
    /// Add a master to the Raft group.
    AddMember {
        /// Its id.
        id: u64,
    },
    /// Remove a master from the Raft group.
    RemoveMember {
        /// Its id.
        id: u64,
    },
    /// Create a token.
    CreateToken {
        /// For whom.
        principal: String,
    },
    /// List tokens.
    ListTokens,
    /// Revoke a token.
    RevokeToken {
        /// Its accessor.
        accessor: String,
    },
    /// Define or replace a policy.
    ApplyPolicy {
        /// Its name.
        name: String,
    },
    /// Open an agent's session (register, or re-register, an agent).
    RegisterAgent {
        /// The agent's host name (and id, once it has one), as it registers.
        agent: String,
    },
    /// Download a component as an agent does to run a framework's tasks.
    FetchComponent {
        /// Its digest.
        sha256: String,
    },
}

impl Action {
    /// The action's name in audit records.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Bootstrap => "acl.bootstrap",
            Action::Subscribe { .. } => "framework.subscribe",
            Action::SubmitFramework { .. } => "framework.submit",
            Action::LaunchNative { .. } => "task.launch_native",
            Action::UploadComponent { .. } => "component.upload",
            Action::DeleteComponent { .. } => "component.delete",
            Action::ReadState => "state.read",
            Action::ReadHistory => "history.read",
            Action::ReadFrameworkResult { .. } => "framework.result",
            Action::ReadFrameworkState { .. } => "framework.state",
            Action::ReadTaskLog { .. } => "task.log",
            Action::KillTask { .. } => "task.kill",
            Action::Teardown { .. } => "framework.teardown",
            Action::SetWeights { .. } => "role.weights",
            Action::SetQuota { .. } => "role.quota",
            Action::ListMembers => "members.list",
            Action::ReadMetrics => "metrics.read",
            Action::AddMember { .. } => "members.add",
            Action::RemoveMember { .. } => "members.remove",
            Action::CreateToken { .. } => "tokens.create",
            Action::ListTokens => "tokens.list",
            Action::RevokeToken { .. } => "tokens.revoke",
            Action::ApplyPolicy { .. } => "acl.policy_apply",
            Action::RegisterAgent { .. } => "agent.register",
            Action::FetchComponent { .. } => "component.fetch",
        }
    }

    /// What it acts on, for audit records.
    pub fn object(&self) -> String {
        match self {
            Action::Subscribe { role, framework } => match framework {
                Some(f) => format!("role {role} framework {f}"),
                None => format!("role {role}"),
            },
            Action::SubmitFramework { role, .. } => format!("role {role}"),
            Action::LaunchNative { framework }
            | Action::ReadFrameworkResult { framework }
            | Action::ReadFrameworkState { framework }
            | Action::ReadTaskLog { framework }
            | Action::Teardown { framework } => format!("framework {framework}"),
            Action::DeleteComponent { sha256 } | Action::FetchComponent { sha256 } => {
                format!("component {sha256}")
            }
            Action::RegisterAgent { agent } => format!("agent {agent}"),
            Action::KillTask { task, frameworks } => {
                let fws: Vec<String> = frameworks.iter().map(|f| f.to_string()).collect();
                format!("task {task} of {}", fws.join(","))
            }
            Action::SetWeights { roles } => format!("roles {}", roles.join(",")),
            Action::SetQuota { role } => format!("role {role}"),
            Action::AddMember { id } | Action::RemoveMember { id } => format!("member {id}"),
            Action::CreateToken { principal } => format!("principal {principal}"),
            Action::RevokeToken { accessor } => format!("token {accessor}"),
            Action::ApplyPolicy { name } => format!("policy {name}"),
            Action::UploadComponent { size_bytes } if *size_bytes > 0 => {
                format!("{size_bytes} bytes")
            }
            Action::Bootstrap
            | Action::UploadComponent { .. }
            | Action::ReadState
            | Action::ReadHistory
            | Action::ListMembers
            | Action::ReadMetrics
            | Action::ListTokens => String::new(),
        }
    }

    /// Whether it changes something (audited when allowed too; reads only when refused).
    pub fn mutating(&self) -> bool {
        !matches!(
            self,
            Action::ReadState
                | Action::ReadHistory
                | Action::ReadFrameworkResult { .. }
                | Action::ReadFrameworkState { .. }
                | Action::ReadTaskLog { .. }
                | Action::ListMembers
                | Action::ReadMetrics
                | Action::ListTokens
                | Action::FetchComponent { .. }
        )
    }

    /// Whether it is an agent's call, which an agent certificate authenticates by itself.
    pub fn by_agent(&self) -> bool {
        matches!(
            self,
            Action::RegisterAgent { .. } | Action::FetchComponent { .. }
        )
    }
}

/// Who is calling, once authenticated.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's principal ([`ANONYMOUS`] without enforcement).
    pub principal: String,
    /// The token's accessor (empty without enforcement).
    pub accessor: String,
    /// The hash of the token's secret, to check later that it is still valid.
    secret_sha256: Option<String>,
    /// The rights of the token's policies (every right without enforcement).
    pub rights: Rights,
    /// The caller's address, when known.
    pub peer: String,
}

impl Caller {
    /// Whether listings show this caller other principals' frameworks.
    pub fn sees_all(&self) -> bool {
        self.rights.merged.see_all_frameworks
    }

    /// Whether enforcement authenticated this caller by a token (false: open master).
    pub fn authenticated(&self) -> bool {
        self.secret_sha256.is_some()
    }
}

/// Why a call was refused; [`Denied::Unauthenticated`] maps to `UNAUTHENTICATED`,
/// [`Denied::Forbidden`] to `PERMISSION_DENIED`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No token, a malformed header, or a token the cluster does not know (revoked, expired).
    #[error("{0}")]
    Unauthenticated(String),
    /// The token is valid but lacks the right; the message names the rule.
    #[error("{0}")]
    Forbidden(String),
}

/// Reads the bearer secret from `authorization: Bearer <secret>`.
pub fn bearer(metadata: &MetadataMap) -> Result<Option<&str>, Denied> {
    let Some(v) = metadata.get("authorization") else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| Denied::Unauthenticated("the authorization header is not text".into()))?;
    match v.strip_prefix("Bearer ") {
        Some(s) if !s.trim().is_empty() => Ok(Some(s.trim())),
        _ => Err(Denied::Unauthenticated(
            "the authorization header must be `Bearer <token>`".into(),
        )),
    }
}

fn forbid(c: &Caller, rule: &str, what: String) -> Result<(), Denied> {
    Err(Denied::Forbidden(format!(
        "principal {:?} may not {what}: none of its policies grants `{rule}`",
        c.principal
    )))
}

fn owner<'r>(registry: &'r Registry, fw: &FrameworkId) -> Option<&'r str> {
    registry.frameworks.get(fw).map(|f| f.principal.as_str())
}

/// Who may read what a framework left: its principal while registered, the principal kept
/// with its outcome once removed. `Some("")` (nobody's: only `see_all_frameworks` reads it)
/// for an outcome kept without one (a framework removed before owners were kept).
fn result_owner<'r>(registry: &'r Registry, fw: &FrameworkId) -> Option<&'r str> {
    owner(registry, fw)
        .or_else(|| registry.acl.ended_owners.get(fw).map(String::as_str))
        .or_else(|| registry.outcomes.contains_key(fw).then_some(""))
}

/// Refuses one more framework of `caller`'s principal past its `max_frameworks`.
fn framework_count_fits(caller: &Caller, registry: &Registry) -> Result<(), Denied> {
    let Some(max) = caller.rights.limits.max_frameworks else {
        return Ok(());
    };
    let held = registry
        .frameworks
        .values()
        .filter(|f| f.principal == caller.principal)
        .count() as u64;
    if held < max {
        return Ok(());
    }
    Err(Denied::Forbidden(format!(
        "principal {:?} may not register another framework: it holds {held}, and its \
         policies' max_frameworks is {max}; tear one down first (`wasmos teardown`)",
        caller.principal
    )))
}

/// Refuses a scheduler limit asked above the principal's.
fn within(
    caller: &Caller,
    what: &str,
    field: &str,
    ask: Option<u64>,
    max: Option<u64>,
) -> Result<(), Denied> {
    match (ask, max) {
        (Some(a), Some(m)) if a > m => Err(Denied::Forbidden(format!(
            "principal {:?} may not ask for {what} {a} for its hosted scheduler: its \
             policies' {field} is {m}; ask for at most that",
            caller.principal
        ))),
        _ => Ok(()),
    }
}

/// Decides `action` for `caller`: the rules, in one place. Pure.
pub fn decide(caller: &Caller, action: &Action, registry: &Registry) -> Result<(), Denied> {
    let r = &caller.rights.merged;
    let me = caller.principal.as_str();
    match action {
        Action::Bootstrap | Action::ReadState | Action::ReadHistory | Action::ListMembers => Ok(()),
        Action::ReadMetrics if r.read_metrics => Ok(()),
        Action::ReadMetrics => forbid(caller, "read_metrics", "read the metrics".into()),
        Action::Subscribe { role, framework } => {
            if !caller.rights.may_register(role) {
                return forbid(
                    caller,
                    "roles",
                    format!("register frameworks under role {role:?}"),
                );
            }
            match framework
                .as_ref()
                .and_then(|f| owner(registry, f).map(|o| (f, o)))
            {
                Some((f, o)) if o != me => Err(Denied::Forbidden(format!(
                    "principal {me:?} may not re-subscribe framework {f}: it belongs to {o:?}"
                ))),
                // Its own registered framework failing over: not one more.
                Some(_) => Ok(()),
                None => framework_count_fits(caller, registry),
            }
        }
        Action::SubmitFramework { role, ask } => {
            if !caller.rights.may_register(role) {
                return forbid(
                    caller,
                    "roles",
                    format!("register frameworks under role {role:?}"),
                );
            }
            let l = &caller.rights.limits;
            within(
                caller,
                "fuel per callback",
                "max_scheduler_fuel",
                ask.fuel,
                l.max_scheduler_fuel,
            )?;
            within(
                caller,
                "memory (MiB)",
                "max_scheduler_memory_mb",
                ask.memory_mb,
                l.max_scheduler_memory_mb,
            )?;
            within(
                caller,
                "a callback deadline (ms)",
                "max_callback_deadline_ms",
                ask.callback_deadline_ms,
                l.max_callback_deadline_ms,
            )?;
            framework_count_fits(caller, registry)
        }
        Action::LaunchNative { framework } => {
            let role = registry
                .frameworks
                .get(framework)
                .map(|f| f.role.as_str())
                .unwrap_or_default();
            if caller.rights.may_run_native(role) {
                Ok(())
            } else {
                forbid(
                    caller,
                    "native_task_roles",
                    format!("launch native command tasks in role {role:?}"),
                )
            }
        }
        Action::UploadComponent { .. } | Action::DeleteComponent { .. } if !r.upload_components => {
            forbid(
                caller,
                "upload_components",
                "upload or delete components".into(),
            )
        }
        Action::UploadComponent { size_bytes } => match caller.rights.limits.max_upload_bytes {
            Some(max) if *size_bytes > max => Err(Denied::Forbidden(format!(
                "principal {me:?} may not upload a component of more than {max} bytes (its \
                 policies' max_upload_bytes); this one reached {size_bytes} bytes"
            ))),
            _ => Ok(()),
        },
        Action::DeleteComponent { .. } => Ok(()),
        Action::ReadFrameworkResult { framework } => match result_owner(registry, framework) {
            Some(o) if o != me && !r.see_all_frameworks => forbid(
                caller,
                "see_all_frameworks",
                format!("read framework {framework}, which belongs to {o:?}"),
            ),
            _ => Ok(()),
        },
        Action::ReadFrameworkState { framework } => match owner(registry, framework) {
            Some(o) if o != me && !r.see_all_frameworks => forbid(
                caller,
                "see_all_frameworks",
                format!("read the state of framework {framework}, which belongs to {o:?}"),
            ),
            _ => Ok(()),
        },
        // A finished framework's tasks are read too: its owner is kept with its outcome.
        Action::ReadTaskLog { framework } => match result_owner(registry, framework) {
            Some(o) if o != me && !r.see_all_frameworks => forbid(
                caller,
                "see_all_frameworks",
                format!("read the logs of framework {framework}, which belongs to {o:?}"),
            ),
            _ => Ok(()),
        },
        Action::KillTask { frameworks, .. } => {
            for f in frameworks {
                if let Some(o) = owner(registry, f)
                    && o != me
                    && !r.manage_all_frameworks
                {
                    return forbid(
                        caller,
                        "manage_all_frameworks",
                        format!("kill tasks of framework {f}, which belongs to {o:?}"),
                    );
                }
            }
            Ok(())
        }
        Action::Teardown { framework } => match owner(registry, framework) {
            Some(o) if o != me && !r.manage_all_frameworks => forbid(
                caller,
                "manage_all_frameworks",
                format!("tear down framework {framework}, which belongs to {o:?}"),
            ),
            _ => Ok(()),
        },
        Action::SetWeights { .. } | Action::SetQuota { .. } => {
            if r.weights_and_quotas {
                Ok(())
            } else {
                forbid(
                    caller,
                    "weights_and_quotas",
                    "change role weights or quotas".into(),
                )
            }
        }
        Action::AddMember { .. } | Action::RemoveMember { .. } => {
            if r.raft_membership {
                Ok(())
            } else {
                forbid(
                    caller,
                    "raft_membership",
                    "change the Raft membership".into(),
                )
            }
        }
        Action::CreateToken { .. }
        | Action::ListTokens
        | Action::RevokeToken { .. }
        | Action::ApplyPolicy { .. } => {
            if r.manage_tokens {
                Ok(())
            } else {
                forbid(caller, "manage_tokens", "manage tokens or policies".into())
            }
        }
        Action::RegisterAgent { .. } | Action::FetchComponent { .. } => {
            if r.register_agents {
                Ok(())
            } else {
                forbid(
                    caller,
                    "register_agents",
                    "register agents or fetch components as one (an agent needs an agent \
                     certificate or a token whose policy grants it)"
                        .into(),
                )
            }
        }
    }
}

/// The authorization layer of one master: whether it enforces, its audit log, and the
/// revocation signal open streams watch.
#[derive(Debug)]
pub struct Acl {
    enforce: bool,
    audit: AuditLog,
    revocations: watch::Sender<u64>,
}

impl Acl {
    /// A layer that enforces (or not) and audits to `audit_dir/audit.jsonl` (and the tracing
    /// target `wasmos::audit`).
    pub fn new(enforce: bool, audit_dir: Option<&std::path::Path>) -> Acl {
        Acl {
            enforce,
            audit: AuditLog::new(audit_dir),
            revocations: watch::channel(0).0,
        }
    }

    /// Whether calls need a token.
    pub fn enforcing(&self) -> bool {
        self.enforce
    }

    /// Authenticates the call's token (with enforcement) and decides `action`; the verdict
    /// carries the audit record (a refusal always, an allowed call when it is mutating),
    /// written by [`Verdict::audited`] once the caller has let go of the registry's lock.
    pub fn authorize(
        &self,
        metadata: &MetadataMap,
        peer: Option<SocketAddr>,
        action: &Action,
        registry: &Registry,
        now: Millis,
    ) -> Verdict<Caller> {
        self.authorize_peer(metadata, None, peer, action, registry, now)
    }

    /// [`Acl::authorize`] for a call whose TLS peer is `identity` (from the request's
    /// extensions; `None` on a plain-text master). An agent's call
    /// ([`Action::by_agent`]) from a peer whose certificate is an `agent` or a `master` one is
    /// authenticated by that certificate, as principal `agent:NAME` (or `master:NAME`) with
    /// only the `register_agents` right, and needs no token; every other call needs its token
    /// as [`Acl::authorize`] says.
    pub fn authorize_peer(
        &self,
        metadata: &MetadataMap,
        identity: Option<&PeerIdentity>,
        peer: Option<SocketAddr>,
        action: &Action,
        registry: &Registry,
        now: Millis,
    ) -> Verdict<Caller> {
        let peer = peer.map(|p| p.to_string()).unwrap_or_default();
        let result = match certified_agent(identity, action, &peer) {
            // Until bootstrapped, only the bootstrap is served, to agents too.
            Some(caller) if self.enforce && registry.acl.bootstrapped => Ok(caller),
            _ => self.authenticate(metadata, &peer, action, registry, now),
        }
        .and_then(|caller| {
            if !self.enforce {
                // An open master allows everything, re-subscriptions included.
                return Ok(caller);
            }
            decide(&caller, action, registry).map(|()| caller)
        });
        let record = match &result {
            Ok(c) => action.mutating().then(|| {
                record(
                    now,
                    &c.principal,
                    &c.accessor,
                    action,
                    Outcome::Allowed,
                    "",
                    &peer,
                )
            }),
            Err(d) => {
                let (principal, accessor) = self.who(metadata, registry);
                Some(record(
                    now,
                    &principal,
                    &accessor,
                    action,
                    Outcome::Denied,
                    &d.to_string(),
                    &peer,
                ))
            }
        };
        Verdict { result, record }
    }

    /// Re-decides `action` for a caller authenticated earlier (a call on an open stream),
    /// with its token's current rights; the verdict carries the record of a refusal.
    pub fn recheck(
        &self,
        caller: &Caller,
        action: &Action,
        registry: &Registry,
        now: Millis,
    ) -> Verdict<()> {
        let Some(hash) = &caller.secret_sha256 else {
            return Verdict {
                result: Ok(()),
                record: None,
            };
        };
        let result = match registry.acl.by_hash(hash).filter(|t| t.live_at(now)) {
            None => Err(Denied::Unauthenticated(format!(
                "token {} was revoked or expired",
                caller.accessor
            ))),
            Some(t) => {
                let mut fresh = caller.clone();
                fresh.rights = Rights::of(&t.policies, &registry.acl.policies);
                decide(&fresh, action, registry)
            }
        };
        let record = result.as_ref().err().map(|d| {
            record(
                now,
                &caller.principal,
                &caller.accessor,
                action,
                Outcome::Denied,
                &d.to_string(),
                &caller.peer,
            )
        });
        Verdict { result, record }
    }

    /// Decides whether `framework`, a hosted framework, may launch native command tasks: its
    /// scheduler acts with the current rights of the token that submitted it
    /// ([`AclState::submitted_with`](super::AclState::submitted_with)), so a principal without
    /// `native_task_roles` cannot launch them through a hosted scheduler either, and once that
    /// token is revoked or expired no more are launched (its Wasm tasks carry on: they need no
    /// right past the submit). Without enforcement everything is allowed. The verdict carries
    /// the record of a refusal (peer `hosted`).
    pub fn authorize_hosted_native(
        &self,
        framework: &FrameworkId,
        registry: &Registry,
        now: Millis,
    ) -> Verdict<()> {
        let action = Action::LaunchNative {
            framework: framework.clone(),
        };
        if !self.enforce {
            return Verdict {
                result: Ok(()),
                record: None,
            };
        }
        let accessor = registry.acl.submitted_with.get(framework);
        let token = accessor.and_then(|a| registry.acl.tokens.get(a));
        let result = match (accessor, token.filter(|t| t.live_at(now))) {
            (None, _) => Err(Denied::Forbidden(format!(
                "framework {framework} has no submitting token on record (it was submitted to \
                 a master that did not enforce ACLs), so its hosted scheduler may not launch \
                 native command tasks; submit it again with a token"
            ))),
            (Some(a), None) => Err(Denied::Unauthenticated(format!(
                "token {a}, which submitted framework {framework}, was revoked or expired: \
                     its hosted scheduler may launch no more native command tasks"
            ))),
            (Some(_), Some(t)) => {
                let caller = Caller {
                    principal: t.principal.clone(),
                    accessor: t.accessor.clone(),
                    secret_sha256: Some(t.secret_sha256.clone()),
                    rights: Rights::of(&t.policies, &registry.acl.policies),
                    peer: HOSTED_PEER.to_string(),
                };
                decide(&caller, &action, registry)
            }
        };
        let record = result.as_ref().err().map(|d| {
            let (principal, accessor) = token.map_or((ANONYMOUS, ""), |t| {
                (t.principal.as_str(), t.accessor.as_str())
            });
            record(
                now,
                principal,
                accessor,
                &action,
                Outcome::Denied,
                &d.to_string(),
                HOSTED_PEER,
            )
        });
        Verdict { result, record }
    }

    /// Whether `caller`'s token is still accepted (always, without enforcement).
    /// Whether the caller's token has an expiry (a caller without a token has none).
    pub fn expires(&self, caller: &Caller, registry: &Registry) -> bool {
        caller
            .secret_sha256
            .as_ref()
            .and_then(|h| registry.acl.by_hash(h))
            .is_some_and(|t| t.expires_ms.is_some())
    }

    /// Whether the caller's token is still known and not expired (a caller without a token
    /// always is).
    pub fn still_valid(&self, caller: &Caller, registry: &Registry, now: Millis) -> bool {
        match &caller.secret_sha256 {
            None => true,
            Some(h) => registry.acl.by_hash(h).is_some_and(|t| t.live_at(now)),
        }
    }

    /// Tells open streams that a token was revoked, so that they re-check theirs at once.
    pub fn revoked(&self) {
        self.revocations.send_modify(|n| *n += 1);
    }

    /// Receives a change on every revocation.
    pub fn watch_revocations(&self) -> watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// The principal and accessor of the call's token if it is a known one (for auditing a
    /// refusal), else [`ANONYMOUS`].
    fn who(&self, metadata: &MetadataMap, registry: &Registry) -> (String, String) {
        match bearer(metadata)
            .ok()
            .flatten()
            .and_then(|s| registry.acl.by_hash(&hash_secret(s)))
        {
            Some(t) => (t.principal.clone(), t.accessor.clone()),
            None => (ANONYMOUS.to_string(), String::new()),
        }
    }

    fn authenticate(
        &self,
        metadata: &MetadataMap,
        peer: &str,
        action: &Action,
        registry: &Registry,
        now: Millis,
    ) -> Result<Caller, Denied> {
        let open = Caller {
            principal: ANONYMOUS.to_string(),
            accessor: String::new(),
            secret_sha256: None,
            rights: Rights::of(
                &[super::policy::MANAGEMENT.to_string()],
                &Default::default(),
            ),
            peer: peer.to_string(),
        };
        if !self.enforce || *action == Action::Bootstrap {
            return Ok(open);
        }
        if !registry.acl.bootstrapped {
            return Err(Denied::Unauthenticated(
                "this master enforces ACLs and has no token yet: create the first management \
                 token with `wasmos acl bootstrap`"
                    .into(),
            ));
        }
        let secret = bearer(metadata)?.ok_or_else(|| {
            Denied::Unauthenticated(if action.by_agent() {
                "this master enforces ACLs: an agent needs an agent certificate (TLS) or a \
                 token whose policy grants `register_agents`, passed with --token or \
                 WASMOS_TOKEN"
                    .into()
            } else {
                "this master enforces ACLs: pass a token with --token or WASMOS_TOKEN".into()
            })
        })?;
        let hash = hash_secret(secret);
        let token = registry
            .acl
            .by_hash(&hash)
            .ok_or_else(|| Denied::Unauthenticated("the token is not known (revoked?)".into()))?;
        if !token.live_at(now) {
            return Err(Denied::Unauthenticated(format!(
                "token {} expired; ask for a new one",
                token.accessor
            )));
        }
        Ok(Caller {
            principal: token.principal.clone(),
            accessor: token.accessor.clone(),
            secret_sha256: Some(hash),
            rights: Rights::of(&token.policies, &registry.acl.policies),
            peer: peer.to_string(),
        })
    }
}

/// The caller an agent certificate makes of an agent's call: a verified `agent` (or `master`)
/// certificate is the agent's credential, with the `register_agents` right only. `None` for
/// any other call or peer.
fn certified_agent(identity: Option<&PeerIdentity>, action: &Action, peer: &str) -> Option<Caller> {
    let id = identity?;
    if !action.by_agent() || !matches!(id.role, Role::Agent | Role::Master) {
        return None;
    }
    Some(Caller {
        principal: format!("{}:{}", id.role, id.name),
        accessor: String::new(),
        secret_sha256: None,
        rights: Rights {
            merged: super::policy::Policy {
                register_agents: true,
                ..Default::default()
            },
            // It may register nothing that a limit counts.
            limits: super::policy::Limits::NONE,
        },
        peer: peer.to_string(),
    })
}

/// A decision and the audit record it leaves: call [`Verdict::audited`] to write the record
/// (outside any lock) and get the decision.
#[must_use = "a verdict must be audited"]
#[derive(Debug)]
pub struct Verdict<T> {
    result: Result<T, Denied>,
    record: Option<AuditRecord>,
}

impl<T> Verdict<T> {
    /// Writes the audit record, if any, to `acl`'s log and returns the decision.
    pub fn audited(self, acl: &Acl) -> Result<T, Denied> {
        if let Some(r) = &self.record {
            acl.audit.record(r);
        }
        self.result
    }
}

fn record(
    now: Millis,
    principal: &str,
    accessor: &str,
    action: &Action,
    outcome: Outcome,
    reason: &str,
    peer: &str,
) -> AuditRecord {
    AuditRecord {
        time_ms: now,
        time: rfc3339(now),
        principal: principal.to_string(),
        accessor: accessor.to_string(),
        action: action.name().to_string(),
        object: action.object(),
        outcome,
        reason: reason.to_string(),
        peer: peer.to_string(),
    }
}

/// Ends an open stream when its caller's token is revoked or expires: `close` gets the
/// status to end the outbound stream with, and `stop` wakes the stream's reader. Runs until
/// then or until the outbound stream is dropped. `valid` re-checks the token: on every
/// revocation, and every [`RECHECK_INTERVAL`] only when `expires` (the token has an expiry).
pub async fn watch_token(
    mut revocations: watch::Receiver<u64>,
    mut close: oneshot::Sender<tonic::Status>,
    stop: Arc<Notify>,
    expires: bool,
    valid: impl Fn() -> bool,
) {
    loop {
        let recheck = async {
            if expires {
                tokio::time::sleep(RECHECK_INTERVAL).await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            _ = revocations.changed() => {}
            () = recheck => {}
            () = close.closed() => return,
        }
        if !valid() {
            let _ = close.send(tonic::Status::unauthenticated(
                "the token of this stream was revoked or expired; the stream is closed",
            ));
            stop.notify_one();
            return;
        }
    }
}

/// An outbound stream that ends with the status [`watch_token`] sends.
pub struct Closable<S> {
    inner: S,
    close: Option<oneshot::Receiver<tonic::Status>>,
    done: bool,
}

impl<S> Closable<S> {
    /// Wraps `inner`, ending it with the status received on `close`.
    pub fn new(inner: S, close: oneshot::Receiver<tonic::Status>) -> Self {
        Closable {
            inner,
            close: Some(close),
            done: false,
        }
    }
}

impl<T, S> futures_util::Stream for Closable<S>
where
    S: futures_util::Stream<Item = Result<T, tonic::Status>> + Unpin,
{
    type Item = Result<T, tonic::Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::future::Future;
        use std::task::Poll;
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(c) = self.close.as_mut() {
            match std::pin::Pin::new(c).poll(cx) {
                Poll::Ready(Ok(status)) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(Err(_)) => self.close = None,
                Poll::Pending => {}
            }
        }
        std::pin::Pin::new(&mut self.inner).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::policy::Policy;
    use crate::registry::{FrameworkRecord, FrameworkState};

    fn caller(name: &str, p: Policy) -> Caller {
        Caller {
            principal: name.into(),
            accessor: String::new(),
            secret_sha256: Some(String::new()),
            rights: Rights {
                limits: crate::acl::Limits::of(&p),
                merged: p,
            },
            peer: String::new(),
        }
    }

    fn registry_with(fw: &str, principal: &str) -> (Registry, FrameworkId) {
        let id = FrameworkId::new(fw).unwrap();
        let mut reg = Registry::default();
        reg.frameworks.insert(
            id.clone(),
            FrameworkRecord {
                id: id.clone(),
                name: "n".into(),
                role: "eng".into(),
                principal: principal.into(),
                failover_timeout_ms: 0,
                state: FrameworkState::Connected,
                component_sha256: None,
                wasm_budget: Default::default(),
            },
        );
        (reg, id)
    }

    #[test]
    fn default_deny_names_the_rule() {
        let (reg, fw) = registry_with("f1", "alice");
        let bob = caller("bob", Policy::default());
        for (action, rule) in [
            (
                Action::Subscribe {
                    role: "eng".into(),
                    framework: None,
                },
                "roles",
            ),
            (
                Action::LaunchNative {
                    framework: fw.clone(),
                },
                "native_task_roles",
            ),
            (
                Action::UploadComponent { size_bytes: 0 },
                "upload_components",
            ),
            (
                Action::Teardown {
                    framework: fw.clone(),
                },
                "manage_all_frameworks",
            ),
            (
                Action::KillTask {
                    task: "t".into(),
                    frameworks: vec![fw.clone()],
                },
                "manage_all_frameworks",
            ),
            (
                Action::ReadFrameworkResult {
                    framework: fw.clone(),
                },
                "see_all_frameworks",
            ),
            (
                Action::ReadFrameworkState {
                    framework: fw.clone(),
                },
                "see_all_frameworks",
            ),
            (
                Action::SetQuota { role: "eng".into() },
                "weights_and_quotas",
            ),
            (Action::AddMember { id: 2 }, "raft_membership"),
            (Action::ListTokens, "manage_tokens"),
        ] {
            let err = decide(&bob, &action, &reg).unwrap_err();
            assert!(err.to_string().contains(rule), "{action:?}: {err}");
        }
        let alice = caller("alice", Policy::default());
        assert!(
            decide(
                &alice,
                &Action::Teardown {
                    framework: fw.clone()
                },
                &reg
            )
            .is_ok()
        );
        let other = caller(
            "bob",
            Policy {
                roles: vec!["eng".into()],
                ..Default::default()
            },
        );
        let hijack = Action::Subscribe {
            role: "eng".into(),
            framework: Some(fw),
        };
        assert!(
            decide(&other, &hijack, &reg)
                .unwrap_err()
                .to_string()
                .contains("belongs to")
        );
    }

    fn limited(name: &str, json: &str) -> Caller {
        caller(name, Policy::parse(json).unwrap())
    }

    fn submit(ask: SchedulerAsk) -> Action {
        Action::SubmitFramework {
            role: "eng".into(),
            ask,
        }
    }

    #[test]
    fn max_frameworks_counts_the_principals_registered_frameworks() {
        let (reg, fw) = registry_with("f1", "alice");
        let new = Action::Subscribe {
            role: "eng".into(),
            framework: None,
        };
        let one = limited("alice", r#"{"roles": ["eng"], "max_frameworks": 1}"#);
        for action in [&new, &submit(SchedulerAsk::default())] {
            let err = decide(&one, action, &reg).unwrap_err().to_string();
            assert!(err.contains("max_frameworks is 1"), "{err}");
        }
        // Failing over its own registered framework is not one more.
        let again = Action::Subscribe {
            role: "eng".into(),
            framework: Some(fw),
        };
        assert!(decide(&one, &again, &reg).is_ok());
        // At the bound: the second of two.
        let two = limited("alice", r#"{"roles": ["eng"], "max_frameworks": 2}"#);
        assert!(decide(&two, &new, &reg).is_ok());
        // Others' frameworks do not count.
        let bob = limited("bob", r#"{"roles": ["eng"], "max_frameworks": 1}"#);
        assert!(decide(&bob, &new, &reg).is_ok());
    }

    #[test]
    fn a_submit_asking_past_the_principals_scheduler_limits_is_refused() {
        let reg = Registry::default();
        let c = limited(
            "alice",
            r#"{"roles": ["eng"], "max_scheduler_fuel": 1000, "max_scheduler_memory_mb": 64,
                "max_callback_deadline_ms": 2000}"#,
        );
        let at_bound = SchedulerAsk {
            fuel: Some(1000),
            memory_mb: Some(64),
            callback_deadline_ms: Some(2000),
        };
        assert!(decide(&c, &submit(at_bound), &reg).is_ok());
        assert!(decide(&c, &submit(SchedulerAsk::default()), &reg).is_ok());
        for (ask, needle) in [
            (
                SchedulerAsk {
                    fuel: Some(1001),
                    ..at_bound
                },
                "fuel per callback 1001 for its hosted scheduler: its policies' max_scheduler_fuel is 1000",
            ),
            (
                SchedulerAsk {
                    memory_mb: Some(65),
                    ..at_bound
                },
                "max_scheduler_memory_mb is 64",
            ),
            (
                SchedulerAsk {
                    callback_deadline_ms: Some(2001),
                    ..at_bound
                },
                "a callback deadline (ms) 2001",
            ),
        ] {
            let err = decide(&c, &submit(ask), &reg).unwrap_err();
            assert!(matches!(err, Denied::Forbidden(_)), "{err:?}");
            assert!(err.to_string().contains(needle), "{needle:?} not in {err}");
        }
        // Seconds become milliseconds rounded up, so 2.0001 s is past 2000 ms.
        let pb_limits = wasmos_api::proto::SchedulerLimits {
            fuel: 0,
            memory_mb: 0,
            callback_timeout_seconds: 2.0001,
        };
        let ask = SchedulerAsk::of(Some(&pb_limits));
        assert_eq!((ask.fuel, ask.callback_deadline_ms), (None, Some(2001)));
    }

    #[test]
    fn uploads_past_the_principals_limit_are_refused() {
        let reg = Registry::default();
        let c = limited(
            "alice",
            r#"{"upload_components": true, "max_upload_bytes": 100}"#,
        );
        let up = |size_bytes| Action::UploadComponent { size_bytes };
        assert!(decide(&c, &up(100), &reg).is_ok());
        let err = decide(&c, &up(101), &reg).unwrap_err().to_string();
        assert!(
            err.contains("max_upload_bytes") && err.contains("101"),
            "{err}"
        );
        let unlimited = limited("alice", r#"{"upload_components": true}"#);
        assert!(decide(&unlimited, &up(u64::MAX), &reg).is_ok());
    }

    #[test]
    fn a_removed_frameworks_kept_result_stays_its_owners() {
        let (mut reg, fw) = registry_with("f1", "alice");
        reg.apply(crate::registry::Command::RecordOutcome {
            id: fw.clone(),
            outcome: crate::registry::FrameworkOutcome::Succeeded("3.14".into()),
        })
        .unwrap();
        reg.apply(crate::registry::Command::RemoveFramework { id: fw.clone() })
            .unwrap();
        assert!(!reg.frameworks.contains_key(&fw));
        let read = Action::ReadFrameworkResult {
            framework: fw.clone(),
        };
        let err = decide(&caller("bob", Policy::default()), &read, &reg).unwrap_err();
        assert!(err.to_string().contains("see_all_frameworks"), "{err}");
        assert!(decide(&caller("alice", Policy::default()), &read, &reg).is_ok());
        // An outcome kept without its owner (removed before owners were kept) is nobody's.
        reg.acl.ended_owners.clear();
        assert!(decide(&caller("alice", Policy::default()), &read, &reg).is_err());
        let all = Policy {
            see_all_frameworks: true,
            ..Default::default()
        };
        assert!(decide(&caller("alice", all), &read, &reg).is_ok());
    }

    #[test]
    fn a_hosted_scheduler_launches_native_tasks_with_its_submitters_rights() {
        use crate::acl::tokens::mint;
        let (mut reg, fw) = registry_with("f1", "alice");
        let acl = Acl::new(true, None);
        let native = |reg: &Registry| {
            acl.authorize_hosted_native(&fw, reg, 10)
                .audited(&acl)
                .map_err(|d| d.to_string())
        };
        // Submitted on an open master: no token on record.
        let err = native(&reg).unwrap_err();
        assert!(err.contains("no submitting token"), "{err}");
        reg.acl
            .put_policy(
                "tenant".into(),
                Policy::parse(r#"{"roles": ["eng"]}"#).unwrap(),
            )
            .unwrap();
        reg.acl
            .put_policy(
                "native".into(),
                Policy::parse(r#"{"roles": ["eng"], "native_task_roles": ["eng"]}"#).unwrap(),
            )
            .unwrap();
        let tenant = mint("alice", vec!["tenant".into()], 0, None)
            .unwrap()
            .record;
        reg.acl.put_token(tenant.clone()).unwrap();
        reg.apply(crate::registry::Command::SetSubmitter {
            id: fw.clone(),
            accessor: tenant.accessor.clone(),
        })
        .unwrap();
        let err = native(&reg).unwrap_err();
        assert!(err.contains("native_task_roles"), "{err}");
        let with_right = mint("alice", vec!["native".into()], 0, None)
            .unwrap()
            .record;
        reg.acl.put_token(with_right.clone()).unwrap();
        reg.acl
            .submitted_with
            .insert(fw.clone(), with_right.accessor.clone());
        assert_eq!(native(&reg), Ok(()));
        // Open masters decide nothing.
        let open = Acl::new(false, None);
        assert!(
            open.authorize_hosted_native(&fw, &Registry::default(), 10)
                .audited(&open)
                .is_ok()
        );
        reg.apply(crate::registry::Command::RevokeToken {
            accessor: with_right.accessor,
        })
        .unwrap();
        let err = native(&reg).unwrap_err();
        assert!(err.contains("revoked or expired"), "{err}");
        // Removing the framework drops its submitter.
        reg.apply(crate::registry::Command::RemoveFramework { id: fw.clone() })
            .unwrap();
        assert!(reg.acl.submitted_with.is_empty());
    }
}
