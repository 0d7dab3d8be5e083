//! The agent's gRPC session against a stand-in `AgentService` on loopback: registration (and
//! re-registration with the assigned id), heartbeats, launching a command task, status updates
//! acknowledged by the master, and a master that goes away and comes back on the same address
//! while a task ends: its update waits on disk and arrives after the reconnect.
//!
//! Leader hints: a master that is not the leader points the agent at one it was not given, and
//! the agent registers there; two masters that point at each other do not make it spin.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use wasmos_agent::MemoryFetcher;
use wasmos_agent::session::{RunConfig, SessionConfig, run_until};
use wasmos_api::leader::not_leader_status;
use wasmos_api::proto as pb;
use wasmos_api::proto::agent_service_server::{AgentService, AgentServiceServer};
use wasmos_api::{Resources, TaskState};

#[derive(Default)]
struct Seen {
    registrations: Vec<pb::agent_message::Register>,
    updates: Vec<pb::AgentStatusUpdate>,
    heartbeats: usize,
    to_agent: Option<mpsc::Sender<Result<pb::MasterMessage, Status>>>,
}

#[derive(Clone, Default)]
struct StandIn {
    seen: Arc<Mutex<Seen>>,
    /// Cancelled to take this master down: its open sessions end with an error.
    down: CancellationToken,
}

impl StandIn {
    /// How many sessions an agent opened here (each starts with a registration).
    fn registrations(&self) -> usize {
        self.seen.lock().unwrap().registrations.len()
    }

    /// How many heartbeats arrived here.
    fn heartbeats(&self) -> usize {
        self.seen.lock().unwrap().heartbeats
    }
}

fn master_message(m: pb::master_message::Message) -> Result<pb::MasterMessage, Status> {
    Ok(pb::MasterMessage { message: Some(m) })
}

#[tonic::async_trait]
impl AgentService for StandIn {
    type SessionStream = ReceiverStream<Result<pb::MasterMessage, Status>>;
    type FetchComponentStream = ReceiverStream<Result<pb::ComponentChunk, Status>>;

    async fn fetch_component(
        &self,
        _request: Request<pb::FetchComponentRequest>,
    ) -> Result<Response<Self::FetchComponentStream>, Status> {
        Err(Status::unimplemented(
            "the stand-in master holds no components",
        ))
    }

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = request.into_inner();
        let Some(pb::AgentMessage {
            message: Some(pb::agent_message::Message::Register(reg)),
        }) = inbound.message().await?
        else {
            return Err(Status::invalid_argument("first message must be register"));
        };
        let (tx, rx) = mpsc::channel(64);
        {
            let mut seen = self.seen.lock().unwrap();
            seen.registrations.push(reg);
            seen.to_agent = Some(tx.clone());
        }
        let registered = pb::master_message::Registered {
            agent_id: "agent-7".into(),
            heartbeat_interval_seconds: 0.1,
        };
        let _ = tx
            .send(master_message(pb::master_message::Message::Registered(
                registered,
            )))
            .await;
        let seen = self.seen.clone();
        let down = self.down.clone();
        tokio::spawn(async move {
            loop {
                let m = tokio::select! {
                    m = inbound.message() => m,
                    () = down.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("the master went down"))).await;
                        seen.lock().unwrap().to_agent = None;
                        return;
                    }
                };
                let Ok(Some(m)) = m else { return };
                match m.message {
                    Some(pb::agent_message::Message::StatusUpdates(batch)) => {
                        let mut acks = Vec::new();
                        for u in batch.updates {
                            if let Some(s) = &u.status {
                                acks.push(pb::master_message::Ack {
                                    framework_id: u.framework_id.clone(),
                                    task_id: s.task_id.clone(),
                                    uuid: s.uuid.clone(),
                                });
                            }
                            seen.lock().unwrap().updates.push(u);
                        }
                        let ack = pb::master_message::Acknowledgements { acks };
                        let _ = tx
                            .send(master_message(
                                pb::master_message::Message::Acknowledgements(ack),
                            ))
                            .await;
                    }
                    Some(pb::agent_message::Message::Heartbeat(_)) => {
                        seen.lock().unwrap().heartbeats += 1
                    }
                    _ => {}
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A master that is not the leader: refuses every call with a hint to `leader` (when set).
#[derive(Clone, Default)]
struct Follower {
    leader: Arc<Mutex<Option<String>>>,
    sessions: Arc<AtomicUsize>,
}

impl Follower {
    fn hint(&self, leader: SocketAddr) {
        *self.leader.lock().unwrap() = Some(leader.to_string());
    }

    fn refusal(&self) -> Status {
        not_leader_status(self.leader.lock().unwrap().as_deref())
    }
}

#[tonic::async_trait]
impl AgentService for Follower {
    type SessionStream = ReceiverStream<Result<pb::MasterMessage, Status>>;
    type FetchComponentStream = ReceiverStream<Result<pb::ComponentChunk, Status>>;

    async fn fetch_component(
        &self,
        _request: Request<pb::FetchComponentRequest>,
    ) -> Result<Response<Self::FetchComponentStream>, Status> {
        Err(self.refusal())
    }

    async fn session(
        &self,
        _request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        self.sessions.fetch_add(1, Ordering::SeqCst);
        Err(self.refusal())
    }
}

async fn serve<S: AgentService>(
    addr: SocketAddr,
    service: S,
    stop: CancellationToken,
) -> SocketAddr {
    // The port may linger for a moment after the previous server on it stopped.
    let mut listener = None;
    for _ in 0..200 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                listener = Some(l);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
    let listener = listener.expect("cannot bind the stand-in master");
    let bound = listener.local_addr().unwrap();
    // No Nagle delay on the answers, so that attempts cost what they cost (the spin test
    // counts them).
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        conn.and_then(|c| {
            c.set_nodelay(true)?;
            Ok(c)
        })
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(service))
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned()),
    );
    bound
}

/// Serves `service` on a free loopback port until `stop`; returns the bound address.
async fn serve_any<S: AgentService>(service: S, stop: &CancellationToken) -> SocketAddr {
    serve("127.0.0.1:0".parse().unwrap(), service, stop.clone()).await
}

/// Asserts that `master` receives at least two heartbeats within 30 s.
async fn assert_heartbeats(master: &StandIn) {
    assert!(wait_until(Duration::from_secs(30), || master.heartbeats() >= 2).await);
}

/// Whether an update of `task` in `state` has reached the master that recorded `seen`.
fn reached(seen: &Mutex<Seen>, task: &str, state: TaskState) -> bool {
    task_updates(seen, task).iter().any(|(s, _)| *s == state)
}

/// Whether the part of a test that runs a native task cannot run here (no root or cgroups);
/// records the skip when it cannot (and fails under `WASMOS_REQUIRE_ROOT=1`).
fn task_part_skipped() -> bool {
    !wasmos_test_skip::met(
        "root and cgroups (cpu, memory, pids) for its task part",
        cgroups_unavailable(),
    )
}

fn task_updates(seen: &Mutex<Seen>, task: &str) -> Vec<(TaskState, String)> {
    seen.lock()
        .unwrap()
        .updates
        .iter()
        .filter_map(|u| u.status.as_ref())
        .filter(|s| s.task_id == task)
        .map(|s| {
            (
                wasmos_api::convert::task_state("s", s.state).unwrap(),
                s.uuid.clone(),
            )
        })
        .collect()
}

fn run_tasks(seen: &Mutex<Seen>, task: pb::TaskInfo) {
    let tx = seen.lock().unwrap().to_agent.clone().unwrap();
    let run = pb::master_message::RunTasks {
        framework_id: "fw-session".into(),
        tasks: vec![task],
        role: "*".into(),
        component_sha256: String::new(),
        ..Default::default()
    };
    tx.try_send(master_message(pb::master_message::Message::RunTasks(run)))
        .unwrap();
}

/// An agent session running in the background.
type AgentRun = tokio::task::JoinHandle<Result<(), wasmos_agent::session::RunError>>;

/// Runs an agent session with the test settings, working in `dir/work`, in the background;
/// cancel the token to stop it.
fn spawn_agent(dir: &Path, session: SessionConfig) -> (AgentRun, CancellationToken) {
    let config = RunConfig {
        agent: config(dir.join("work")),
        session,
        http: Default::default(),
    };
    let stop = CancellationToken::new();
    let agent = tokio::spawn(run_until(
        config,
        Arc::new(MemoryFetcher::new()),
        stop.clone(),
    ));
    (agent, stop)
}

/// Stops the agent, then the masters, and gives the agent up to 10 s to end.
async fn stop_all(agent: AgentRun, stop_agent: CancellationToken, stop_masters: CancellationToken) {
    stop_agent.cancel();
    stop_masters.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), agent).await;
}

/// A session offering 2 cpus, 1024 MB of memory and 1000 MB of disk to `masters`,
/// reconnecting after `initial` and backing off up to `max`.
fn session_config(masters: Vec<String>, initial: Duration, max: Duration) -> SessionConfig {
    let mut session = SessionConfig::new(masters);
    session.resources = Some(Resources::new(2.0, 1024, 1000));
    session.reconnect_initial = initial;
    session.reconnect_max = max;
    session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_registers_runs_tasks_and_catches_a_returning_master_up() {
    let dir = tempfile::tempdir().unwrap();
    let first = StandIn::default();
    let stop_first = CancellationToken::new();
    let addr = serve_any(first.clone(), &stop_first).await;

    let session = session_config(
        vec![addr.to_string()],
        Duration::from_millis(50),
        Duration::from_millis(200),
    );
    let (agent, stop_agent) = spawn_agent(dir.path(), session);

    assert!(wait_until(Duration::from_secs(30), || first.registrations() == 1).await);
    {
        let seen = first.seen.lock().unwrap();
        let info = seen.registrations[0].info.clone().unwrap();
        assert_eq!(info.id, "", "a new agent registers without an id");
        assert_eq!(info.resources.unwrap().millicpus, 2000);
    }
    assert_heartbeats(&first).await;

    if task_part_skipped() {
        stop_agent.cancel();
        stop_first.cancel();
        return;
    }
    let wait_go = "while [ ! -f go ]; do sleep 0.05; done";
    let task = command_task("t1", wait_go, Resources::new(0.1, 32, 0));
    run_tasks(&first.seen, pb::TaskInfo::from(&task));
    assert!(
        wait_until(Duration::from_secs(30), || !task_updates(&first.seen, "t1")
            .is_empty())
        .await,
        "no RUNNING update"
    );
    assert_eq!(task_updates(&first.seen, "t1")[0].0, TaskState::Running);

    // The master goes away; the task ends meanwhile.
    first.down.cancel();
    stop_first.cancel();
    let sandbox = dir.path().join("work/sandboxes/fw-session/t1");
    std::fs::write(sandbox.join("go"), "").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // It comes back on the same address: the agent re-registers with its id, and the
    // FINISHED update that waited on disk arrives.
    let second = StandIn::default();
    let stop_second = CancellationToken::new();
    serve(addr, second.clone(), stop_second.clone()).await;
    assert!(
        wait_until(Duration::from_secs(60), || reached(
            &second.seen,
            "t1",
            TaskState::Finished
        ))
        .await,
        "the FINISHED update never reached the returning master"
    );
    assert!(
        task_updates(&first.seen, "t1")
            .iter()
            .all(|(s, _)| *s == TaskState::Running),
        "the task ended after the first master went down"
    );
    let reg = second.seen.lock().unwrap().registrations[0].clone();
    assert_eq!(
        reg.info.unwrap().id,
        "agent-7",
        "re-registers with the id it was given"
    );
    let finished: Vec<_> = task_updates(&second.seen, "t1");
    assert!(
        finished
            .iter()
            .all(|(s, uuid)| *s == TaskState::Finished && !uuid.is_empty())
    );

    stop_all(agent, stop_agent, stop_second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_follows_a_leader_hint_to_a_master_it_was_not_given() {
    let dir = tempfile::tempdir().unwrap();
    let stop_masters = CancellationToken::new();
    let leader = StandIn::default();
    let leader_addr = serve_any(leader.clone(), &stop_masters).await;
    let follower = Follower::default();
    follower.hint(leader_addr);
    let follower_addr = serve_any(follower.clone(), &stop_masters).await;

    // Only the follower is given, with a backoff long enough that registering within it
    // shows the hint was followed at once.
    let session = session_config(
        vec![follower_addr.to_string()],
        Duration::from_secs(20),
        Duration::from_secs(20),
    );
    let (agent, stop_agent) = spawn_agent(dir.path(), session);

    assert!(
        wait_until(Duration::from_secs(15), || leader.registrations() == 1).await,
        "the agent never registered with the hinted leader"
    );
    assert_eq!(follower.sessions.load(Ordering::SeqCst), 1);
    assert_heartbeats(&leader).await;

    if !task_part_skipped() {
        let task = command_task("t-hint", "exit 0", Resources::new(0.1, 32, 0));
        run_tasks(&leader.seen, pb::TaskInfo::from(&task));
        assert!(
            wait_until(Duration::from_secs(30), || reached(
                &leader.seen,
                "t-hint",
                TaskState::Finished
            ))
            .await,
            "the task launched by the hinted leader never finished there"
        );
        assert!(reached(&leader.seen, "t-hint", TaskState::Running));
    }
    // Still one session with each: the agent stayed with the leader.
    assert_eq!(leader.registrations(), 1);
    assert_eq!(follower.sessions.load(Ordering::SeqCst), 1);

    stop_all(agent, stop_agent, stop_masters).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_masters_hinting_at_each_other_do_not_make_the_agent_spin() {
    let dir = tempfile::tempdir().unwrap();
    let stop_masters = CancellationToken::new();
    let a = Follower::default();
    let b = Follower::default();
    let a_addr = serve_any(a.clone(), &stop_masters).await;
    let b_addr = serve_any(b.clone(), &stop_masters).await;
    a.hint(b_addr);
    b.hint(a_addr);

    let session = session_config(
        vec![a_addr.to_string()],
        Duration::from_millis(200),
        Duration::from_millis(400),
    );
    let (agent, stop_agent) = spawn_agent(dir.path(), session);
    let attempts = || a.sessions.load(Ordering::SeqCst) + b.sessions.load(Ordering::SeqCst);

    // The hint is followed: both masters see the agent.
    assert!(
        wait_until(Duration::from_secs(15), || a
            .sessions
            .load(Ordering::SeqCst)
            >= 1
            && b.sessions.load(Ordering::SeqCst) >= 1)
        .await,
        "the agent did not follow the hint from A to B"
    );
    // Over two seconds, a few hops per backoff pause (at least 200 ms each) make a few dozen
    // attempts at most; following hints without a cap would make thousands.
    let start = attempts();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = attempts() - start;
    assert!(
        during <= 100,
        "{during} session attempts in 2 s: the agent spins between the two masters"
    );
    // And it keeps trying.
    assert!(
        wait_until(Duration::from_secs(15), || attempts() > start + during).await,
        "the agent stopped trying"
    );

    stop_all(agent, stop_agent, stop_masters).await;
}
