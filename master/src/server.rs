//! The gRPC edge: `SchedulerService`, `AgentService` and `OperatorService` over one
//! [`MasterCore`], plus the timer task that runs allocation cycles and timeouts. Components go
//! in through `OperatorService.UploadComponent` and out to agents through
//! `AgentService.FetchComponent`, streamed in chunks. `OperatorService.SubmitFramework` starts a
//! hosted framework in the [`FrameworkHost`]; `KillTask` and `TeardownFramework` go through the
//! same core paths as a scheduler's own kill and teardown calls.
//!
//! Each stream gets a reader task that feeds calls into the core under a short, never-awaited
//! lock, and a bounded outbound queue that the core fills. `Master::serve` binds nothing
//! itself: it takes a `TcpListener`, so tests can use port 0.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};
use wasmos_api::convert;
use wasmos_api::proto as pb;
use wasmos_api::proto::agent_service_server::{AgentService, AgentServiceServer};
use wasmos_api::proto::operator_service_server::{OperatorService, OperatorServiceServer};
use wasmos_api::proto::scheduler_service_server::{SchedulerService, SchedulerServiceServer};
use wasmos_api::{FrameworkId, TaskId};

use crate::allocator::{Millis, Quota};
use crate::blobs::{BlobError, Digest};
use crate::config::MasterConfig;
use crate::core::{MasterCore, OperatorError};
use crate::framework_host::{FrameworkHost, HostError};
use crate::registry::FrameworkOutcome;

/// Errors starting or running the master.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The master: shared core, clock, and the handle to wake the allocation loop.
#[derive(Clone)]
pub struct Master {
    core: Arc<Mutex<MasterCore>>,
    start: Instant,
    wake: Arc<Notify>,
    /// Runs hosted schedulers; created on the first `SubmitFramework` unless given.
    host: Arc<Mutex<Option<FrameworkHost>>>,
    /// Frameworks whose hosted scheduler is running (started by `SubmitFramework`, not yet
    /// stopped), for `GetState`.
    hosted: Arc<Mutex<HashSet<FrameworkId>>>,
}

impl Master {
    /// A master with an empty registry.
    pub fn new(config: MasterConfig) -> Self {
        let wake = Arc::new(Notify::new());
        let epoch = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        );
        let core = MasterCore::new(config, &epoch, wake.clone());
        Master {
            core: Arc::new(Mutex::new(core)),
            start: Instant::now(),
            wake,
            host: Arc::new(Mutex::new(None)),
            hosted: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Uses `host` (and its Wasm runtime) for hosted frameworks instead of creating one.
    pub fn with_framework_host(self, host: FrameworkHost) -> Self {
        *self.host.lock().unwrap_or_else(|p| p.into_inner()) = Some(host);
        self
    }

    /// The framework host, created with on-demand allocation on first use (scheduler
    /// instances are long-lived, so the pooling allocator's fast instantiation buys little).
    pub fn framework_host(&self) -> Result<FrameworkHost, HostError> {
        let mut host = self.host.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = host.as_ref() {
            return Ok(h.clone());
        }
        let h = FrameworkHost::new(wasmos_wasm_executor::RuntimeConfig {
            pooling: None,
            ..Default::default()
        })?;
        *host = Some(h.clone());
        Ok(h)
    }

    fn hosted(&self) -> MutexGuard<'_, HashSet<FrameworkId>> {
        self.hosted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Milliseconds since this master started.
    pub fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    /// Locks the core. A panic while holding the lock would poison it; the core is still
    /// consistent between calls, so the poison is cleared rather than taking the master down.
    pub fn core(&self) -> MutexGuard<'_, MasterCore> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the allocation/timeout loop until the process ends: a cycle every
    /// `allocation_interval`, and right after any change that asks for one.
    pub async fn run_timers(self) {
        let interval = self.core().config().allocation_interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.wake.notified() => {}
            }
            let now = self.now();
            let mut core = self.core();
            core.tick(now);
            core.allocate(now);
        }
    }

    /// Serves the three gRPC services on `listener` and runs the timers, until the server
    /// fails or `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let max = self.core().config().max_message_bytes;
        let timers = tokio::spawn(self.clone().run_timers());
        let result = tonic::transport::Server::builder()
            .add_service(
                SchedulerServiceServer::new(self.clone())
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                AgentServiceServer::new(self.clone())
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                OperatorServiceServer::new(self.clone())
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .serve_with_incoming_shutdown(
                // Small answers (acks, offers) must not wait for Nagle's algorithm: without
                // TCP_NODELAY each one waited ~40 ms for a delayed ACK on loopback.
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown,
            )
            .await;
        timers.abort();
        result.map_err(ServeError::from)
    }
}

/// Size of the chunks a component is streamed to agents in.
const COMPONENT_CHUNK_BYTES: usize = 1 << 20;

fn blob_status(e: BlobError) -> Status {
    match e {
        BlobError::Unknown(_) => Status::not_found(e.to_string()),
        BlobError::TooLarge { .. } | BlobError::StoreFull { .. } => {
            Status::resource_exhausted(e.to_string())
        }
        BlobError::BadDigest { .. }
        | BlobError::NotAComponent
        | BlobError::NotAFramework(_)
        | BlobError::DigestMismatch { .. } => Status::invalid_argument(e.to_string()),
    }
}

fn operator_status(e: OperatorError) -> Status {
    match e {
        OperatorError::NotFound(m) => Status::not_found(m),
        OperatorError::Conflict(m) => Status::failed_precondition(m),
        OperatorError::Unavailable(m) => Status::unavailable(m),
    }
}

/// How long a new stream may take to send its first message (subscribe or register).
const FIRST_MESSAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl SchedulerService for Master {
    type SubscribeStream = EventStream<pb::SchedulerEvent>;

    async fn subscribe(
        &self,
        request: Request<Streaming<pb::SchedulerCall>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let mut calls = request.into_inner();
        let first = tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, calls.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no subscribe call within 30 s"))??
            .ok_or_else(|| Status::invalid_argument("the stream ended before subscribe"))?;
        let Some(pb::scheduler_call::Call::Subscribe(sub)) = first.call else {
            return Err(Status::failed_precondition(
                "the first call must be subscribe",
            ));
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
                    return Err(Status::failed_precondition(message));
                }
            }
        };
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

#[tonic::async_trait]
impl AgentService for Master {
    type SessionStream = EventStream<pb::MasterMessage>;
    type FetchComponentStream = EventStream<pb::ComponentChunk>;

    async fn fetch_component(
        &self,
        request: Request<pb::FetchComponentRequest>,
    ) -> Result<Response<Self::FetchComponentStream>, Status> {
        let digest = Digest::parse(&request.into_inner().sha256).map_err(blob_status)?;
        let blob = self.core().blobs().get(&digest).map_err(|e| {
            debug!(component = %digest, "fetch of an unknown component");
            blob_status(e)
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
        let mut messages = request.into_inner();
        let first = tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, messages.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no register message within 30 s"))??
            .ok_or_else(|| Status::invalid_argument("the stream ended before register"))?;
        let Some(pb::agent_message::Message::Register(reg)) = first.message else {
            return Err(Status::failed_precondition(
                "the first message must be register",
            ));
        };
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
                    return Err(Status::failed_precondition(message));
                }
            }
        };
        let master = self.clone();
        tokio::spawn(async move {
            loop {
                match messages.message().await {
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
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[tonic::async_trait]
impl OperatorService for Master {
    async fn get_state(
        &self,
        _request: Request<pb::GetStateRequest>,
    ) -> Result<Response<pb::ClusterState>, Status> {
        let mut state = self.core().cluster_state();
        let hosted = self.hosted();
        for f in &mut state.frameworks {
            f.hosted = f
                .info
                .as_ref()
                .and_then(|i| FrameworkId::new(i.id.clone()).ok())
                .is_some_and(|id| hosted.contains(&id));
        }
        state.hosted_schedulers = hosted.len() as u32;
        Ok(Response::new(state))
    }

    async fn kill_task(
        &self,
        request: Request<pb::KillTaskRequest>,
    ) -> Result<Response<pb::KillTaskResponse>, Status> {
        let r = request.into_inner();
        let task: TaskId = convert::id("task_id", &r.task_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let framework: Option<FrameworkId> = convert::opt_id("framework_id", &r.framework_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let now = self.now();
        let kill = self
            .core()
            .operator_kill_task(framework.as_ref(), &task, now)
            .map_err(operator_status)?;
        Ok(Response::new(pb::KillTaskResponse {
            framework_id: kill.framework.to_string(),
            agent_id: kill.agent.to_string(),
            state: pb::TaskState::from(kill.state) as i32,
        }))
    }

    async fn teardown_framework(
        &self,
        request: Request<pb::TeardownFrameworkRequest>,
    ) -> Result<Response<pb::TeardownFrameworkResponse>, Status> {
        let raw = request.into_inner().framework_id;
        let fw: FrameworkId = convert::id("framework_id", &raw)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Read first: a hosted scheduler leaves the set as soon as it has stopped.
        let hosted = self.hosted().contains(&fw);
        let now = self.now();
        // The core closes the scheduler's stream with a fatal error; a hosted scheduler's
        // driving task sees it and stops (then leaves `hosted`).
        let done = self
            .core()
            .operator_teardown(&fw, now)
            .map_err(operator_status)?;
        info!(framework_id = %fw, tasks = done.tasks_killed, hosted, "framework torn down by an operator");
        Ok(Response::new(pb::TeardownFrameworkResponse {
            tasks_killed: done.tasks_killed,
            agents: done.agents,
            hosted,
        }))
    }

    async fn set_weights(
        &self,
        request: Request<pb::SetWeightsRequest>,
    ) -> Result<Response<pb::SetWeightsResponse>, Status> {
        let weights = request
            .into_inner()
            .weights
            .into_iter()
            .map(|w| (w.role, w.weight))
            .collect();
        self.core()
            .set_weights(weights)
            .map_err(Status::invalid_argument)?;
        Ok(Response::new(pb::SetWeightsResponse {}))
    }

    async fn upload_component(
        &self,
        request: Request<Streaming<pb::UploadComponentChunk>>,
    ) -> Result<Response<pb::UploadComponentResponse>, Status> {
        let mut chunks = request.into_inner();
        let limit = self.core().blobs().max_blob_bytes();
        let mut bytes = Vec::new();
        let mut expected = None;
        let mut first = true;
        while let Some(chunk) = chunks.message().await? {
            if first && !chunk.expected_sha256.is_empty() {
                expected = Some(Digest::parse(&chunk.expected_sha256).map_err(blob_status)?);
            }
            first = false;
            let size = bytes.len() as u64 + chunk.data.len() as u64;
            if size > limit {
                return Err(blob_status(BlobError::TooLarge { size, limit }));
            }
            bytes.extend_from_slice(&chunk.data);
        }
        self.core().blobs().check(&bytes).map_err(blob_status)?;
        let digest = Digest::of(&bytes);
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(blob_status(BlobError::DigestMismatch {
                expected,
                actual: digest,
            }));
        }
        let size_bytes = bytes.len() as u64;
        self.core()
            .put_component(digest, bytes)
            .map_err(blob_status)?;
        Ok(Response::new(pb::UploadComponentResponse {
            sha256: digest.to_string(),
            size_bytes,
        }))
    }

    async fn submit_framework(
        &self,
        request: Request<pb::SubmitFrameworkRequest>,
    ) -> Result<Response<pb::SubmitFrameworkResponse>, Status> {
        let r = request.into_inner();
        let info = r
            .info
            .ok_or_else(|| Status::invalid_argument("submit: info is missing"))?;
        if !info.id.is_empty() {
            return Err(Status::invalid_argument(
                "submit: info.id must be empty; the master assigns one",
            ));
        }
        let limits = FrameworkHost::limits_from(r.limits);
        let host = self
            .framework_host()
            .map_err(|e| Status::internal(e.to_string()))?;
        let hosted = host
            .start(self, info, r.args, limits)
            .await
            .map_err(|e| match e {
                HostError::NoComponent => Status::invalid_argument(e.to_string()),
                HostError::Blob(b) => blob_status(b),
                HostError::Engine(_) => Status::internal(e.to_string()),
                HostError::Load(_) | HostError::Instantiate(_) | HostError::Subscribe(_) => {
                    Status::failed_precondition(e.to_string())
                }
            })?;
        let framework_id = hosted.framework_id.clone();
        self.hosted().insert(framework_id.clone());
        let master = self.clone();
        let id = framework_id.clone();
        let task = hosted.task;
        tokio::spawn(async move {
            // Ends when the framework finishes, fails or is torn down.
            let _ = task.await;
            master.hosted().remove(&id);
        });
        Ok(Response::new(pb::SubmitFrameworkResponse {
            framework_id: framework_id.to_string(),
        }))
    }

    async fn get_framework_result(
        &self,
        request: Request<pb::GetFrameworkResultRequest>,
    ) -> Result<Response<pb::GetFrameworkResultResponse>, Status> {
        let raw = request.into_inner().framework_id;
        let fw: wasmos_api::FrameworkId = convert::id("framework_id", &raw)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let core = self.core();
        let registered = core.registry().frameworks.contains_key(&fw);
        let (ended, succeeded, result) = match core.framework_outcome(&fw) {
            Some(FrameworkOutcome::Succeeded(r)) => (true, true, r.clone()),
            Some(FrameworkOutcome::Failed(e)) => (true, false, e.clone()),
            None if registered || core.registry().removed_frameworks.contains(&fw) => {
                (false, false, String::new())
            }
            None => return Err(Status::not_found(format!("framework {fw} is not known"))),
        };
        Ok(Response::new(pb::GetFrameworkResultResponse {
            ended,
            succeeded,
            result,
            registered,
        }))
    }

    async fn set_quota(
        &self,
        request: Request<pb::SetQuotaRequest>,
    ) -> Result<Response<pb::SetQuotaResponse>, Status> {
        let r = request.into_inner();
        let quota = (!r.remove).then(|| Quota {
            guarantee: convert::resources(r.guarantee),
            limit: r.limit.map(Into::into),
        });
        self.core()
            .set_quota(r.role, quota)
            .map_err(Status::invalid_argument)?;
        Ok(Response::new(pb::SetQuotaResponse {}))
    }
}
