//! `SchedulerService`: the stream an external (gRPC) framework scheduler subscribes with. The
//! first call must be `subscribe`; every later call goes to the core as it arrives, and the
//! core's events flow back on the bounded outbound queue. A hosted Wasm scheduler takes the
//! same core path without this file (`framework_host/`).
//!
//! The subscription is authorized (role, ownership of a re-subscribed framework) before the
//! core sees it; the framework's principal is the token's. A stream opened with a token is
//! closed with `UNAUTHENTICATED` within a second of the token's revocation or expiry.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;
use wasmos_api::FrameworkId;
use wasmos_api::proto as pb;
use wasmos_api::proto::scheduler_call::Call;
use wasmos_api::proto::scheduler_service_server::SchedulerService;

use crate::acl::layer::{Closable, watch_token};
use crate::acl::{Action, Caller};
use crate::allocator::Millis;

use super::status::ServiceError;
use super::{EventStream, FIRST_MESSAGE_TIMEOUT, Master};

#[tonic::async_trait]
impl SchedulerService for Master {
    type SubscribeStream = EventStream<pb::SchedulerEvent>;

    async fn subscribe(
        &self,
        request: Request<Streaming<pb::SchedulerCall>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.leading()?;
        let peer = request.remote_addr();
        let (metadata, _, mut calls) = request.into_parts();
        let first = tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, calls.message())
            .await
            .map_err(|_| ServiceError::FirstMessageTimeout {
                expected: "subscribe call",
            })??
            .ok_or(ServiceError::EndedBeforeFirst {
                expected: "subscribe",
            })?;
        let Some(pb::scheduler_call::Call::Subscribe(mut sub)) = first.call else {
            return Err(ServiceError::WrongFirst {
                rule: "call must be subscribe",
            }
            .into());
        };
        let action = {
            let info = sub.framework_info.as_ref();
            Action::Subscribe {
                role: info.map(|i| i.role.clone()).unwrap_or_default(),
                framework: info.and_then(|i| FrameworkId::new(i.id.clone()).ok()),
            }
        };
        let now = self.now();
        let verdict = self
            .acl()
            .authorize(&metadata, peer, &action, self.core().registry(), now);
        let caller = verdict.audited(self.acl()).map_err(ServiceError::Denied)?;
        if caller.authenticated()
            && let Some(info) = sub.framework_info.as_mut()
        {
            // A framework belongs to the principal of its token, whatever the client says.
            info.principal = caller.principal.clone();
        }
        let queue = self.core().config().connection_queue;
        let (tx, rx) = mpsc::channel(queue);
        // Weak: the stream still ends when the core drops its sender.
        let errors = tx.downgrade();
        let (framework, conn) = {
            let now = self.now();
            let mut core = self.core();
            let conn = core.new_conn();
            match core.subscribe(conn, tx, sub.framework_info, now) {
                Ok(fw) => (fw, conn),
                Err(message) => {
                    debug!(%message, "subscription refused");
                    return Err(ServiceError::Core(message).into());
                }
            }
        };
        self.committed().await?;
        let (close_tx, close_rx) = oneshot::channel();
        let stop = Arc::new(Notify::new());
        if caller.authenticated() {
            let master = self.clone();
            let caller = caller.clone();
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
                    next = calls.message() => next,
                    () = stop.notified() => break,
                };
                match next {
                    Ok(Some(call)) => {
                        let now = master.now();
                        let call = master
                            .native_launch_checked(&caller, &framework, &errors, call.call, now);
                        if !master.core().scheduler_call(&framework, conn, call, now) {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        debug!(framework_id = %framework, %status, "scheduler stream error");
                        break;
                    }
                }
            }
            let now = master.now();
            master.core().scheduler_disconnected(&framework, conn, now);
        });
        Ok(Response::new(Box::pin(Closable::new(
            ReceiverStream::new(rx),
            close_rx,
        ))))
    }
}

impl Master {
    /// An accept that launches native command tasks needs the `native_task_roles` right of
    /// the framework's role: without it the accept becomes a decline of its offers (so they
    /// return to the pool) and the scheduler gets a non-fatal error naming the rule.
    fn native_launch_checked(
        &self,
        caller: &Caller,
        framework: &FrameworkId,
        errors: &mpsc::WeakSender<Result<pb::SchedulerEvent, tonic::Status>>,
        call: Option<Call>,
        now: Millis,
    ) -> Option<Call> {
        let Some(Call::Accept(accept)) = &call else {
            return call;
        };
        let native = accept
            .launches
            .iter()
            .any(|t| matches!(t.kind, Some(pb::task_info::Kind::Command(_))));
        if !native || !self.acl().enforcing() {
            return call;
        }
        let action = Action::LaunchNative {
            framework: framework.clone(),
        };
        let verdict = self
            .acl()
            .recheck(caller, &action, self.core().registry(), now);
        let refused = verdict.audited(self.acl());
        match refused {
            Ok(()) => call,
            Err(denied) => {
                let _ = errors.upgrade().map(|tx| {
                    tx.try_send(Ok(pb::SchedulerEvent {
                        event: Some(pb::scheduler_event::Event::Error(
                            pb::scheduler_event::Error {
                                message: format!("accept refused, its offers declined: {denied}"),
                                fatal: false,
                            },
                        )),
                    }))
                });
                Some(Call::Decline(pb::scheduler_call::Decline {
                    offer_ids: accept.offer_ids.clone(),
                    filters: None,
                }))
            }
        }
    }
}
