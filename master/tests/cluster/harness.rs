//! Test harness: a master on a loopback port, a Rust scheduler client and simulated agents,
//! all speaking the real gRPC API. Waits are bounded (generous, so a busy machine does not
//! flake) and wait for events, never for wall-clock durations.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use wasmos_api::proto as pb;
use wasmos_api::proto::agent_service_client::AgentServiceClient;
use wasmos_api::proto::operator_service_client::OperatorServiceClient;
use wasmos_api::proto::scheduler_service_client::SchedulerServiceClient;
use wasmos_master::{Master, MasterConfig};

pub use pb::master_message::Message as ToAgent;
pub use pb::scheduler_call::Call;
pub use pb::scheduler_event::Event;

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Fast intervals; timeouts that matter are set per test.
pub fn fast_config() -> MasterConfig {
    MasterConfig {
        allocation_interval: Duration::from_millis(20),
        offer_timeout: None,
        agent_heartbeat_interval: Duration::from_millis(50),
        agent_unreachable_timeout: Duration::from_secs(60),
        agent_removal_timeout: Duration::from_secs(600),
        scheduler_heartbeat_interval: Duration::from_secs(5),
        // Long, so that a resend never races a test's own ack; the resend test shortens it.
        update_resend_interval: Duration::from_secs(60),
        // These tests are of scheduling and the wire, not of ACLs (cli/tests/acl.rs are).
        enforce_acl: false,
        ..MasterConfig::default()
    }
}

pub async fn start_master(config: MasterConfig) -> (SocketAddr, Master) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let master = Master::new(config);
    tokio::spawn(master.clone().serve(listener, std::future::pending()));
    (addr, master)
}

pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

pub fn res(cpus: f64, mem: u64) -> pb::Resources {
    pb::Resources {
        millicpus: (cpus * 1000.0) as u64,
        mem_mb: mem,
        disk_mb: 0,
    }
}

pub fn framework_info(id: &str, role: &str, failover_seconds: f64) -> pb::FrameworkInfo {
    pb::FrameworkInfo {
        id: id.into(),
        name: "test-framework".into(),
        role: role.into(),
        principal: "tester".into(),
        failover_timeout_seconds: failover_seconds,
        component_sha256: String::new(),
        ..Default::default()
    }
}

pub fn wasm_task(id: &str, agent: &str, cpus: f64, mem: u64) -> pb::TaskInfo {
    pb::TaskInfo {
        task_id: id.into(),
        name: format!("task {id}"),
        agent_id: agent.into(),
        resources: Some(res(cpus, mem)),
        kind: Some(pb::task_info::Kind::Wasm(pb::WasmTask {
            executor_id: "exec-1".into(),
            payload: b"work".to_vec(),
            ..Default::default()
        })),
    }
}

/// A scheduler connected over gRPC.
pub struct Scheduler {
    pub id: String,
    tx: mpsc::Sender<pb::SchedulerCall>,
    events: Streaming<pb::SchedulerEvent>,
}

impl Scheduler {
    pub async fn subscribe(
        addr: SocketAddr,
        info: pb::FrameworkInfo,
    ) -> Result<Self, tonic::Status> {
        let mut client = SchedulerServiceClient::connect(url(addr)).await.unwrap();
        let (tx, rx) = mpsc::channel(64);
        tx.send(pb::SchedulerCall {
            call: Some(Call::Subscribe(pb::scheduler_call::Subscribe {
                framework_info: Some(info),
            })),
        })
        .await
        .unwrap();
        let mut events = client
            .subscribe(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let first = tokio::time::timeout(WAIT, events.message())
            .await
            .expect("subscribed in time")?
            .expect("an event");
        let Some(Event::Subscribed(s)) = first.event else {
            panic!("expected subscribed, got {first:?}")
        };
        Ok(Scheduler {
            id: s.framework_id,
            tx,
            events,
        })
    }

    pub async fn call(&self, call: Call) {
        self.tx
            .send(pb::SchedulerCall { call: Some(call) })
            .await
            .unwrap();
    }

    pub async fn send_raw(&self, call: pb::SchedulerCall) {
        self.tx.send(call).await.unwrap();
    }

    /// The next event other than a heartbeat.
    pub async fn next(&mut self) -> Event {
        loop {
            let msg = tokio::time::timeout(WAIT, self.events.message())
                .await
                .expect("an event in time")
                .expect("stream ok")
                .expect("stream open");
            match msg.event {
                Some(Event::Heartbeat(_)) | None => continue,
                Some(e) => return e,
            }
        }
    }

    /// Skips events until `f` picks one.
    pub async fn wait_for<T>(&mut self, mut f: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let e = tokio::time::timeout_at(deadline, self.next())
                .await
                .expect("awaited event in time");
            if let Some(t) = f(&e) {
                return t;
            }
        }
    }

    /// Waits for an offers event and returns its offers.
    pub async fn offers(&mut self) -> Vec<pb::Offer> {
        self.wait_for(|e| match e {
            Event::Offers(o) => Some(o.offers.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for an error event and returns it.
    pub async fn error(&mut self) -> pb::scheduler_event::Error {
        self.wait_for(|e| match e {
            Event::Error(e) => Some(e.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for an update of `task` and returns its status.
    pub async fn update_of(&mut self, task: &str) -> pb::TaskStatus {
        self.wait_for(|e| match e {
            Event::Update(u) => u.status.clone().filter(|s| s.task_id == task),
            _ => None,
        })
        .await
    }

    pub async fn accept(&self, offer_ids: Vec<String>, launches: Vec<pb::TaskInfo>) {
        self.call(Call::Accept(pb::scheduler_call::Accept {
            offer_ids,
            launches,
            filters: Some(pb::Filters {
                refuse_seconds: Some(0.0),
            }),
        }))
        .await
    }

    pub async fn decline(&self, offer_ids: Vec<String>, refuse_seconds: f64) {
        self.call(Call::Decline(pb::scheduler_call::Decline {
            offer_ids,
            filters: Some(pb::Filters {
                refuse_seconds: Some(refuse_seconds),
            }),
        }))
        .await
    }

    pub async fn ack(&self, status: &pb::TaskStatus) {
        self.call(Call::Acknowledge(pb::scheduler_call::Acknowledge {
            agent_id: status.agent_id.clone(),
            task_id: status.task_id.clone(),
            uuid: status.uuid.clone(),
        }))
        .await
    }

    /// Returns once the master has processed every call sent before: calls on one stream are
    /// handled in order, so the answer to a reconciliation of a made-up task marks the point.
    pub async fn sync(&mut self) {
        self.reconcile(&["sync-probe"]).await;
        self.update_of("sync-probe").await;
    }

    pub async fn reconcile(&self, tasks: &[&str]) {
        self.call(Call::Reconcile(pb::scheduler_call::Reconcile {
            tasks: tasks
                .iter()
                .map(|t| pb::scheduler_call::reconcile::Task {
                    task_id: t.to_string(),
                    agent_id: String::new(),
                })
                .collect(),
        }))
        .await
    }
}

/// A simulated agent: registers, heartbeats from a background task, and lets the test read
/// the master's commands and send status updates.
pub struct SimAgent {
    pub id: String,
    tx: mpsc::Sender<pb::AgentMessage>,
    rx: Streaming<pb::MasterMessage>,
    heartbeat: Option<JoinHandle<()>>,
    next_uuid: u64,
}

impl SimAgent {
    pub async fn register(
        addr: SocketAddr,
        id: &str,
        resources: pb::Resources,
        tasks: Vec<pb::RunningTask>,
    ) -> Self {
        // The limits the real agent sets.
        let mut client = AgentServiceClient::connect(url(addr))
            .await
            .unwrap()
            .max_decoding_message_size(wasmos_api::limits::AGENT_SESSION_MAX_MESSAGE_BYTES)
            .max_encoding_message_size(wasmos_api::limits::AGENT_SESSION_MAX_MESSAGE_BYTES);
        let (tx, rx) = mpsc::channel(64);
        tx.send(pb::AgentMessage {
            message: Some(pb::agent_message::Message::Register(
                pb::agent_message::Register {
                    info: Some(pb::AgentInfo {
                        id: id.into(),
                        hostname: format!("host-{id}"),
                        address: String::new(),
                        resources: Some(resources),
                        attributes: vec![pb::Attribute {
                            key: "rack".into(),
                            value: "r1".into(),
                        }],
                    }),
                    tasks,
                    unhealthy_reason: String::new(),
                    isolation: vec![],
                    isolation_warning: String::new(),
                },
            )),
        })
        .await
        .unwrap();
        let mut stream = client
            .session(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let first = tokio::time::timeout(WAIT, stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Some(ToAgent::Registered(r)) = first.message else {
            panic!("expected registered, got {first:?}")
        };
        let hb_tx = tx.clone();
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let hb = pb::AgentMessage {
                    message: Some(pb::agent_message::Message::Heartbeat(
                        pb::agent_message::Heartbeat::default(),
                    )),
                };
                if hb_tx.send(hb).await.is_err() {
                    break;
                }
            }
        });
        SimAgent {
            id: r.agent_id,
            tx,
            rx: stream,
            heartbeat: Some(heartbeat),
            next_uuid: 0,
        }
    }

    /// Stops heartbeating but keeps the stream open (a hung agent).
    pub fn stop_heartbeats(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    /// The next command from the master.
    pub async fn next(&mut self) -> ToAgent {
        let msg = tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("a master message in time")
            .expect("stream ok")
            .expect("stream open");
        msg.message.expect("a message")
    }

    pub async fn wait_for<T>(&mut self, mut f: impl FnMut(&ToAgent) -> Option<T>) -> T {
        loop {
            let m = self.next().await;
            if let Some(t) = f(&m) {
                return t;
            }
        }
    }

    /// Waits for a `RunTasks` command and returns it.
    pub async fn run_tasks(&mut self) -> pb::master_message::RunTasks {
        self.wait_for(|m| match m {
            ToAgent::RunTasks(r) => Some(r.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for a `ShutdownFramework` command and returns it.
    pub async fn shutdown_framework(&mut self) -> pb::master_message::ShutdownFramework {
        self.wait_for(|m| match m {
            ToAgent::ShutdownFramework(s) => Some(s.clone()),
            _ => None,
        })
        .await
    }

    /// Sends a status update with a fresh uuid and returns the uuid.
    pub async fn update(
        &mut self,
        framework: &str,
        task: &str,
        state: pb::TaskState,
        data: Option<Vec<u8>>,
    ) -> String {
        self.next_uuid += 1;
        let uuid = format!("{}-u{}", self.id, self.next_uuid);
        self.send_update(framework, task, state, data, &uuid).await;
        uuid
    }

    pub async fn send_update(
        &self,
        framework: &str,
        task: &str,
        state: pb::TaskState,
        data: Option<Vec<u8>>,
        uuid: &str,
    ) {
        let status = pb::TaskStatus {
            task_id: task.into(),
            agent_id: self.id.clone(),
            state: state as i32,
            message: String::new(),
            data,
            uuid: uuid.into(),
            reason: String::new(),
        };
        self.tx
            .send(pb::AgentMessage {
                message: Some(pb::agent_message::Message::StatusUpdates(
                    pb::agent_message::StatusUpdates {
                        updates: vec![pb::AgentStatusUpdate {
                            framework_id: framework.into(),
                            status: Some(status),
                        }],
                    },
                )),
            })
            .await
            .unwrap();
    }

    /// Waits for the acknowledgement of `uuid`; returns the other commands received before it.
    pub async fn wait_ack_noting(&mut self, uuid: &str) -> Vec<ToAgent> {
        let mut others = Vec::new();
        loop {
            match self.next().await {
                ToAgent::Acknowledgements(a) if a.acks.iter().any(|k| k.uuid == uuid) => {
                    return others;
                }
                m => others.push(m),
            }
        }
    }

    /// The commands received within `window` (the stream staying open).
    pub async fn received_within(&mut self, window: Duration) -> Vec<ToAgent> {
        let deadline = tokio::time::Instant::now() + window;
        let mut got = Vec::new();
        while let Ok(msg) = tokio::time::timeout_at(deadline, self.rx.message()).await {
            let msg = msg.expect("stream ok").expect("stream open");
            got.extend(msg.message);
        }
        got
    }

    /// Waits for the acknowledgement of `uuid`.
    pub async fn wait_ack(&mut self, uuid: &str) {
        self.wait_for(|m| match m {
            ToAgent::Acknowledgements(a) => a.acks.iter().any(|k| k.uuid == uuid).then_some(()),
            _ => None,
        })
        .await
    }
}

impl Drop for SimAgent {
    fn drop(&mut self) {
        self.stop_heartbeats();
    }
}

/// A master's address, the master, one simulated agent and one subscribed scheduler.
pub type Cluster = (SocketAddr, Master, SimAgent, Scheduler);

/// Starts a master with `config`, registers one simulated agent with `resources` (the master
/// assigns its id), then subscribes a scheduler with `info`, in that order.
pub async fn start_cluster(
    config: MasterConfig,
    resources: pb::Resources,
    info: pb::FrameworkInfo,
) -> Cluster {
    let (addr, master) = start_master(config).await;
    let agent = SimAgent::register(addr, "", resources, vec![]).await;
    let sched = Scheduler::subscribe(addr, info).await.unwrap();
    (addr, master, agent, sched)
}

/// Accepts the next offer with one Wasm task `task` of `cpus` and `mem` MB on `agent`, and
/// returns the `RunTasks` the agent then receives.
pub async fn launch_one(
    sched: &mut Scheduler,
    agent: &mut SimAgent,
    task: &str,
    cpus: f64,
    mem: u64,
) -> pb::master_message::RunTasks {
    let offer = sched.offers().await.remove(0);
    sched
        .accept(vec![offer.id], vec![wasm_task(task, &agent.id, cpus, mem)])
        .await;
    agent.run_tasks().await
}

/// Subscribes with `info` where the master must refuse; returns the refusal.
pub async fn refused_subscription(addr: SocketAddr, info: pb::FrameworkInfo) -> tonic::Status {
    Scheduler::subscribe(addr, info)
        .await
        .err()
        .expect("the subscription is refused")
}

/// Uploads `bytes` through the operator API in chunks of `chunk_size` bytes; returns the
/// digest the master answers with, or its refusal.
pub async fn upload_component(
    addr: SocketAddr,
    bytes: &[u8],
    chunk_size: usize,
) -> Result<String, tonic::Status> {
    let chunks: Vec<_> = bytes
        .chunks(chunk_size)
        .map(|c| pb::UploadComponentChunk {
            expected_sha256: String::new(),
            data: c.to_vec(),
        })
        .collect();
    Ok(operator(addr)
        .await
        .upload_component(tokio_stream::iter(chunks))
        .await?
        .into_inner()
        .sha256)
}

pub async fn operator(addr: SocketAddr) -> OperatorServiceClient<tonic::transport::Channel> {
    OperatorServiceClient::connect(url(addr)).await.unwrap()
}

/// The bytes of an example component built by `scripts/build-examples.sh` into
/// `examples-wasm/target/wasm32-wasip2/release/NAME.wasm`; panics, saying how to build it,
/// when it is missing.
pub fn example_bytes(name: &str) -> Vec<u8> {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples-wasm/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): run scripts/build-examples.sh (scripts/test.sh does) before \
             the tests",
            p.display()
        )
    })
}

/// Polls the cluster state until `f` holds (bounded by [`WAIT`]).
pub async fn wait_state(
    addr: SocketAddr,
    mut f: impl FnMut(&pb::ClusterState) -> bool,
) -> pb::ClusterState {
    let mut op = operator(addr).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = op
            .get_state(pb::GetStateRequest {})
            .await
            .unwrap()
            .into_inner();
        if f(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "state never matched: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
