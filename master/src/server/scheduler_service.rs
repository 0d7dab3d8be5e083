//! `SchedulerService`: the stream an external (gRPC) framework scheduler subscribes with. The
//! first call must be `subscribe`; every later call goes to the core as it arrives, and the
//! core's events flow back on the bounded outbound queue. A hosted Wasm scheduler takes the
//! same core path without this file (`framework_host/`).

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info};
use wasmos_api::proto as pb;
use wasmos_api::proto::scheduler_service_server::SchedulerService;

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
        let mut calls = request.into_inner();
        let first = tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, calls.message())
            .await
            .map_err(|_| ServiceError::FirstMessageTimeout {
                expected: "subscribe call",
            })??
            .ok_or(ServiceError::EndedBeforeFirst {
                expected: "subscribe",
            })?;
        let Some(pb::scheduler_call::Call::Subscribe(sub)) = first.call else {
            return Err(ServiceError::WrongFirst {
                rule: "call must be subscribe",
            }
            .into());
        };
        let queue = self.core().config().connection_queue;
        let (tx, rx) = mpsc::channel(queue);
        let (framework, conn) = {
            let now = self.now();
            let mut core = self.core();
            let conn = core.new_conn();
            match core.subscribe(conn, tx, sub.framework_info, now) {
                Ok(fw) => (fw, conn),
                Err(message) => {
                    info!(%message, "subscription refused");
                    return Err(ServiceError::Core(message).into());
                }
            }
        };
        self.committed().await?;
        let master = self.clone();
        tokio::spawn(async move {
            loop {
                match calls.message().await {
                    Ok(Some(call)) => {
                        let now = master.now();
                        if !master
                            .core()
                            .scheduler_call(&framework, conn, call.call, now)
                        {
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
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
