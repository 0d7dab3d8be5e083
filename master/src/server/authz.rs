//! The services' one way into the authorization layer: [`Master::authorize`] (called first
//! thing by every handler, after the leader check), the bodies of the token and policy calls
//! of `OperatorService`, and the filtering of listings to what a caller may see.

use std::collections::HashSet;

use tonic::{Request, Response, Status};
use wasmos_api::proto as pb;

use super::Master;
use super::status::ServiceError;
use crate::acl::tokens::mint;
use crate::acl::{Acl, Action, Caller, MANAGEMENT, Policy};
use crate::registry::Command;

/// Longest token lifetime accepted: 10 years.
const MAX_TTL_SECONDS: u64 = 10 * 365 * 86_400;

impl Master {
    /// The authorization layer.
    pub(super) fn acl(&self) -> &Acl {
        &self.acl
    }

    /// Authenticates `request`'s bearer token and decides `action` against the leader's
    /// registry; audits the outcome. The one call every handler makes before acting.
    pub(crate) fn authorize<T>(
        &self,
        request: &Request<T>,
        action: &Action,
    ) -> Result<Caller, Status> {
        let now = self.now();
        let verdict = self.acl.authorize(
            request.metadata(),
            request.remote_addr(),
            action,
            self.core().registry(),
            now,
        );
        verdict
            .audited(&self.acl)
            .map_err(|d| ServiceError::Denied(d).into())
    }

    /// Re-decides `action` for `caller`, authenticated earlier in the same call (an upload
    /// once its size is known), with its token's current rights; audits a refusal.
    pub(super) fn recheck(&self, caller: &Caller, action: &Action) -> Result<(), Status> {
        let now = self.now();
        let verdict = self
            .acl
            .recheck(caller, action, self.core().registry(), now);
        verdict
            .audited(&self.acl)
            .map_err(|d| ServiceError::Denied(d).into())
    }

    /// [`Master::authorize`] for an agent's call: a peer with an agent (or master)
    /// certificate (on a TLS master) needs no token.
    pub(super) fn authorize_agent<T>(
        &self,
        request: &Request<T>,
        action: &Action,
    ) -> Result<Caller, Status> {
        let now = self.now();
        let verdict = self.acl.authorize_peer(
            request.metadata(),
            request
                .extensions()
                .get::<wasmos_api::identity::PeerIdentity>(),
            request.remote_addr(),
            action,
            self.core().registry(),
            now,
        );
        verdict
            .audited(&self.acl)
            .map_err(|d| ServiceError::Denied(d).into())
    }

    /// Whether hosted framework `framework` may launch native command tasks (the framework
    /// host asks before each such accept): the layer decides with the rights of the token
    /// that submitted it; audits a refusal.
    pub(super) fn authorize_hosted_native(
        &self,
        framework: &wasmos_api::FrameworkId,
    ) -> Result<(), String> {
        let now = self.now();
        let verdict = self
            .acl
            .authorize_hosted_native(framework, self.core().registry(), now);
        verdict.audited(&self.acl).map_err(|d| d.to_string())
    }

    /// What `caller` may see of `state`: everything with `see_all_frameworks`, else its own
    /// frameworks and their tasks only (agents and roles stay: they are the cluster's).
    pub(crate) fn filter_state(caller: &Caller, mut state: pb::ClusterState) -> pb::ClusterState {
        if caller.sees_all() {
            return state;
        }
        state.frameworks.retain(|f| {
            f.info
                .as_ref()
                .is_some_and(|i| i.principal == caller.principal)
        });
        let mine: HashSet<String> = state
            .frameworks
            .iter()
            .filter_map(|f| f.info.as_ref().map(|i| i.id.clone()))
            .collect();
        state.tasks.retain(|t| mine.contains(&t.framework_id));
        state
    }

    fn token_secret(token: crate::acl::NewToken) -> pb::TokenSecret {
        pb::TokenSecret {
            accessor: token.record.accessor,
            secret: token.secret,
            principal: token.record.principal,
            policies: token.record.policies,
            expires_unix_ms: token.record.expires_ms.unwrap_or(0),
        }
    }

    pub(super) async fn bootstrap_acl_call(
        &self,
        request: Request<pb::BootstrapAclRequest>,
    ) -> Result<Response<pb::TokenSecret>, Status> {
        self.leading()?;
        let caller = self.authorize(&request, &Action::Bootstrap)?;
        let chosen = request.into_inner().secret;
        let secret = if chosen.is_empty() {
            crate::acl::tokens::new_secret()
        } else {
            crate::acl::tokens::check_secret(&chosen).map(|()| chosen)
        }
        .map_err(|e| ServiceError::AclRequest(e.to_string()))?;
        // A repeat of a bootstrap that committed but whose answer was lost: the same token.
        let made = self
            .core()
            .registry()
            .acl
            .by_hash(&crate::acl::tokens::hash_secret(&secret))
            .filter(|t| t.policies == [MANAGEMENT])
            .cloned();
        if let Some(record) = made {
            self.committed().await?;
            return Ok(Response::new(Self::token_secret(crate::acl::NewToken {
                record,
                secret,
            })));
        }
        let token = crate::acl::tokens::mint_with(
            secret,
            "management",
            vec![MANAGEMENT.into()],
            self.now(),
            None,
        )
        .map_err(|e| ServiceError::AclRequest(e.to_string()))?;
        self.core()
            .acl_command(Command::AclBootstrap(token.record.clone()))
            .map_err(ServiceError::Core)?;
        self.committed().await?;
        tracing::info!(accessor = %token.record.accessor, peer = %caller.peer, "ACLs bootstrapped");
        Ok(Response::new(Self::token_secret(token)))
    }

    pub(super) async fn create_token_call(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::TokenSecret>, Status> {
        self.leading()?;
        let action = Action::CreateToken {
            principal: request.get_ref().principal.clone(),
        };
        self.authorize(&request, &action)?;
        let r = request.into_inner();
        if r.ttl_seconds > MAX_TTL_SECONDS {
            return Err(ServiceError::AclRequest(format!(
                "ttl of {} s is longer than the most allowed, {MAX_TTL_SECONDS} s (10 years)",
                r.ttl_seconds
            ))
            .into());
        }
        let now = self.now();
        let expires = (r.ttl_seconds > 0).then(|| now + r.ttl_seconds * 1000);
        let token = mint(&r.principal, r.policies, now, expires)
            .map_err(|e| ServiceError::AclRequest(e.to_string()))?;
        self.core()
            .acl_command(Command::PutToken(token.record.clone()))
            .map_err(ServiceError::Core)?;
        self.committed().await?;
        Ok(Response::new(Self::token_secret(token)))
    }

    pub(super) async fn list_tokens_call(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        self.leading()?;
        self.authorize(&request, &Action::ListTokens)?;
        let tokens = self
            .core()
            .registry()
            .acl
            .tokens
            .values()
            .map(|t| pb::TokenSummary {
                accessor: t.accessor.clone(),
                principal: t.principal.clone(),
                policies: t.policies.clone(),
                created_unix_ms: t.created_ms,
                expires_unix_ms: t.expires_ms.unwrap_or(0),
            })
            .collect();
        Ok(Response::new(pb::ListTokensResponse { tokens }))
    }

    pub(super) async fn revoke_token_call(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        self.leading()?;
        let accessor = request.get_ref().accessor.clone();
        self.authorize(
            &request,
            &Action::RevokeToken {
                accessor: accessor.clone(),
            },
        )?;
        // Applied on the leader at once: calls with the token are refused from here on.
        self.core()
            .acl_command(Command::RevokeToken { accessor })
            .map_err(ServiceError::Core)?;
        self.acl.revoked();
        self.committed().await?;
        Ok(Response::new(pb::RevokeTokenResponse {}))
    }

    pub(super) async fn apply_policy_call(
        &self,
        request: Request<pb::ApplyPolicyRequest>,
    ) -> Result<Response<pb::ApplyPolicyResponse>, Status> {
        self.leading()?;
        let name = request.get_ref().name.clone();
        self.authorize(&request, &Action::ApplyPolicy { name: name.clone() })?;
        let policy =
            Policy::parse(&request.get_ref().policy_json).map_err(ServiceError::AclRequest)?;
        self.core()
            .acl_command(Command::PutPolicy { name, policy })
            .map_err(ServiceError::Core)?;
        self.committed().await?;
        Ok(Response::new(pb::ApplyPolicyResponse {}))
    }
}
