//! `AgentService`: an agent's session stream (the first message must be `register`; then
//! heartbeats, status updates and usage go to the core as they arrive) and the streamed fetch
//! of a framework's component by digest.
//!
//! A `log_chunk` (the answer to a `ReadLog`) goes to the waiting read (`logs.rs`), not the
//! core.
//!
//! Both are authorized first ([`Action::RegisterAgent`], [`Action::FetchComponent`]): by the
//! peer's agent certificate on a TLS master, else by a token granting `register_agents`. A
//! session opened with a token is closed with `UNAUTHENTICATED` within a second of the
//! token's revocation or expiry (the agent is then unreachable until it registers again).

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};
use wasmos_api::proto as pb;
use wasmos_api::proto::agent_service_server::AgentService;

use super::status::ServiceError;
use super::{EventStream, FIRST_MESSAGE_TIMEOUT, Master};
use crate::acl::Action;
use crate::acl::layer::{Closable, watch_token};
use crate::blobs::Digest;

/// Size of the chunks a component is streamed to agents in.
const COMPONENT_CHUNK_BYTES: usize = 1 << 20;

#[tonic::async_trait]
impl AgentService for Master {
    type SessionStream = EventStream<pb::MasterMessage>;
    type FetchComponentStream = EventStream<pb::ComponentChunk>;

    async fn fetch_component(
        &self,
        request: Request<pb::FetchComponentRequest>,
    ) -> Result<Response<Self::FetchComponentStream>, Status> {
        self.leading()?;
        let action = Action::FetchComponent {
            sha256: request.get_ref().sha256.clone(),
        };
        self.authorize_agent(&request, &action)?;
        let digest = Digest::parse(&request.into_inner().sha256)
            .map_err(|e| ServiceError::Blob(e.into()))?;
        let blob = self.core().blobs().get(&digest).map_err(|e| {
            debug!(component = %digest, "fetch of an unknown component");
            ServiceError::Blob(e)
        })?;
        let chunks = (0..blob.len().div_ceil(COMPONENT_CHUNK_BYTES)).map(move |i| {
            let end = ((i + 1) * COMPONENT_CHUNK_BYTES).min(blob.len());
            Ok(pb::ComponentChunk {
                data: blob[i * COMPONENT_CHUNK_BYTES..end].to_vec(),
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        self.leading()?;
        let peer = request.remote_addr();
        let (metadata, extensions, mut messages) = request.into_parts();
        let first = tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, messages.message())
            .await
            .map_err(|_| ServiceError::FirstMessageTimeout {
                expected: "register message",
            })??
            .ok_or(ServiceError::EndedBeforeFirst {
                expected: "register",
            })?;
        // It may have stopped serving while the first message came: then its registry (and
        // its tokens) are not there to judge the call by, and the agent should try the leader.
        self.leading()?;
        let Some(pb::agent_message::Message::Register(mut reg)) = first.message else {
            return Err(ServiceError::WrongFirst {
                rule: "message must be register",
            }
            .into());
        };
        // An agent that names no address (`wasmos agent` names none: it serves nothing) is
        // shown at the address its session comes from, so that `wasmos agents` says which
        // machine it is.
        if let (Some(info), Some(peer)) = (reg.info.as_mut(), peer)
            && info.address.is_empty()
        {
            info.address = peer.to_string();
        }
        let action = Action::RegisterAgent {
            agent: match reg.info.as_ref() {
                Some(i) if !i.id.is_empty() => format!("{} ({})", i.id, i.hostname),
                Some(i) => i.hostname.clone(),
                None => String::new(),
            },
        };
        let now = self.now();
        let verdict = self.acl().authorize_peer(
            &metadata,
            extensions.get::<wasmos_api::identity::PeerIdentity>(),
            peer,
            &action,
            self.core().registry(),
            now,
        );
        let caller = verdict.audited(self.acl()).map_err(|d| {
            // Stepped down between the check above and the verdict: judged by the empty
            // registry of a master that does not serve, which is no verdict.
            if !self.is_serving() {
                return self.not_leader();
            }
            debug!(peer = ?peer, reason = %d, "agent registration refused");
            ServiceError::Denied(d)
        })?;
        let queue = self.core().config().connection_queue;
        let (tx, rx) = mpsc::channel(queue);
        let (agent, conn) = {
            let now = self.now();
            let mut core = self.core();
            let conn = core.new_conn();
            match core.agent_register(conn, tx, reg, now) {
                Ok(a) => (a, conn),
                Err(message) => {
                    warn!(%message, "agent registration refused");
                    return Err(ServiceError::Core(message).into());
                }
            }
        };
        self.committed().await?;
        let (close_tx, close_rx) = oneshot::channel();
        let stop = Arc::new(Notify::new());
        if caller.authenticated() {
            let master = self.clone();
            let expires = self.acl().expires(&caller, self.core().registry());
            tokio::spawn(watch_token(
                self.acl().watch_revocations(),
                close_tx,
                stop.clone(),
                expires,
                move || {
                    // A master that stopped serving closes its streams itself (as not-leader);
                    // its emptied registry says nothing of the token.
                    let now = master.now();
                    !master.is_serving()
                        || master
                            .acl()
                            .still_valid(&caller, master.core().registry(), now)
                },
            ));
        }
        let master = self.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = messages.message() => next,
                    () = stop.notified() => break,
                };
                match next {
                    Ok(Some(pb::AgentMessage {
                        message: Some(pb::agent_message::Message::LogChunk(chunk)),
                    })) => master.log_proxy().answer(&agent, chunk),
                    Ok(Some(m)) => {
                        let now = master.now();
                        if !master.core().agent_message(&agent, conn, m.message, now) {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        debug!(agent_id = %agent, %status, "agent stream error");
                        break;
                    }
                }
            }
            let now = master.now();
            master.core().agent_disconnected(&agent, conn, now);
        });
        Ok(Response::new(Box::pin(Closable::new(
            ReceiverStream::new(rx),
            close_rx,
        ))))
    }
}
