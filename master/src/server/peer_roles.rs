//! Which certificate role may call which gRPC service, checked on every call of a TLS master
//! before the call reaches its service (so before any Raft message is decoded):
//!
//! | service            | master | agent | client |
//! |--------------------|--------|-------|--------|
//! | `Raft`             | yes    | no    | no     |
//! | `AgentService`     | yes    | yes   | no     |
//! | `SchedulerService` | yes    | no    | yes    |
//! | `OperatorService`  | yes    | no    | yes    |
//!
//! Any other path is refused. A refused call is answered `PERMISSION_DENIED` naming the
//! certificate's role and what it would need. The peer's [`PeerIdentity`] is put into the
//! request's extensions by `conn_limits::TrackCalls`, an outer layer; a plain-text master
//! (no identity on any call) is not checked here.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::{Request, Response};
use wasmos_api::identity::{PeerIdentity, Role};

/// Whether a peer of `role` may call the gRPC method at `path` (`/wasmos.v1.Raft/Vote`).
pub(crate) fn allowed(role: Role, path: &str) -> bool {
    let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let roles: &[Role] = match service {
        "wasmos.v1.Raft" => &[Role::Master],
        "wasmos.v1.AgentService" => &[Role::Master, Role::Agent],
        "wasmos.v1.SchedulerService" | "wasmos.v1.OperatorService" => &[Role::Master, Role::Client],
        _ => &[],
    };
    roles.contains(&role)
}

/// Refuses calls whose peer certificate's role may not call the service (see the module
/// doc). `tls` says whether the listener is TLS: then a call without an identity is refused
/// too.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerRolesLayer {
    /// Whether the master serves TLS (every call must then carry a [`PeerIdentity`]).
    pub(crate) tls: bool,
}

impl<S> tower_layer::Layer<S> for PeerRolesLayer {
    type Service = PeerRoles<S>;

    fn layer(&self, inner: S) -> PeerRoles<S> {
        PeerRoles {
            inner,
            tls: self.tls,
        }
    }
}

/// The service [`PeerRolesLayer`] makes.
#[derive(Clone, Debug)]
pub(crate) struct PeerRoles<S> {
    inner: S,
    tls: bool,
}

impl<S> Service<Request<Body>> for PeerRoles<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if self.tls {
            let path = req.uri().path();
            let refusal = match req.extensions().get::<PeerIdentity>() {
                None => Some(format!(
                    "{path} needs a client certificate from this cluster's CA"
                )),
                Some(peer) if !allowed(peer.role, path) => Some(format!(
                    "a {} certificate ({:?}) may not call {path}; it needs a certificate of a \
                     role allowed to (`wasmos certs issue`)",
                    peer.role, peer.name
                )),
                Some(_) => None,
            };
            if let Some(message) = refusal {
                // Per call, so not above debug: a flood of refused calls must not flood the log.
                tracing::debug!(%message, "refused a call by certificate role");
                let response = tonic::Status::permission_denied(message).into_http();
                return Box::pin(async move { Ok(response) });
            }
        }
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_masters_speak_raft_and_agents_only_the_agent_service() {
        assert!(allowed(Role::Master, "/wasmos.v1.Raft/AppendEntries"));
        assert!(!allowed(Role::Agent, "/wasmos.v1.Raft/AppendEntries"));
        assert!(!allowed(Role::Client, "/wasmos.v1.Raft/Vote"));
        assert!(allowed(Role::Agent, "/wasmos.v1.AgentService/Session"));
        assert!(!allowed(Role::Agent, "/wasmos.v1.OperatorService/GetState"));
        assert!(!allowed(
            Role::Agent,
            "/wasmos.v1.SchedulerService/Subscribe"
        ));
        assert!(!allowed(Role::Client, "/wasmos.v1.AgentService/Session"));
        assert!(allowed(Role::Client, "/wasmos.v1.OperatorService/GetState"));
        assert!(!allowed(Role::Master, "/grpc.health.v1.Health/Check"));
    }
}
