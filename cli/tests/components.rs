//! Components by digest, end to end in one process: a component uploaded to a real master
//! (`OperatorService.UploadComponent`) is fetched by a real agent session over
//! `AgentService.FetchComponent` and a Wasm task of a framework that names it runs to FINISHED;
//! a corrupt upload, an unknown digest at subscription and a fetch of an unknown digest are
//! refused with errors that say what is wrong.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmos_agent::{AgentConfig, ComponentFetcher, MasterFetcher, RunConfig, SessionConfig};
use wasmos_api::Resources;
use wasmos_api::proto as pb;
use wasmos_api::proto::operator_service_client::OperatorServiceClient;
use wasmos_master::{Master, MasterConfig};
use wasmos_wasm_executor::{ComponentDigest, PoolingConfig, RuntimeConfig};

mod common;

use common::WAIT;
use common::scheduler::Scheduler;

/// The framework of these tests, naming component `component_sha256`.
fn framework(component_sha256: &str) -> pb::FrameworkInfo {
    pb::FrameworkInfo {
        name: "components-test".into(),
        role: "tests".into(),
        component_sha256: component_sha256.into(),
        ..Default::default()
    }
}

fn hostile_bytes() -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples-wasm/target/wasm32-wasip2/release/hostile.wasm");
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): run scripts/build-examples.sh (scripts/test.sh does) before the tests",
            p.display()
        )
    })
}

async fn start_master() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = MasterConfig {
        allocation_interval: Duration::from_millis(20),
        agent_heartbeat_interval: Duration::from_millis(200),
        // An in-process master testing the component store, not ACLs (acl.rs does).
        enforce_acl: false,
        ..MasterConfig::default()
    };
    tokio::spawn(Master::new(config).serve(listener, std::future::pending()));
    addr
}

async fn upload(
    addr: SocketAddr,
    bytes: &[u8],
    expected_sha256: &str,
) -> Result<pb::UploadComponentResponse, tonic::Status> {
    let mut op = OperatorServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut chunks: Vec<_> = bytes
        .chunks(256 << 10)
        .map(|c| pb::UploadComponentChunk {
            expected_sha256: String::new(),
            data: c.to_vec(),
        })
        .collect();
    chunks[0].expected_sha256 = expected_sha256.into();
    op.upload_component(tokio_stream::iter(chunks))
        .await
        .map(|r| r.into_inner())
}

fn agent_config(work_dir: PathBuf, master: SocketAddr) -> RunConfig {
    let mut agent = AgentConfig::new(work_dir);
    // A small pool so that the test fits beside others in one machine's address space.
    agent.runtime = RuntimeConfig {
        pooling: Some(PoolingConfig {
            total_component_instances: 8,
            total_memories: 32,
            total_tables: 64,
            max_memory_bytes: 1 << 30,
        }),
        ..RuntimeConfig::default()
    };
    let mut session = SessionConfig::new(vec![master.to_string()]);
    session.resources = Some(Resources::new(2.0, 1024, 1000));
    session.reconnect_initial = Duration::from_millis(50);
    session.reconnect_max = Duration::from_millis(500);
    RunConfig {
        agent,
        session,
        http: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_component_is_fetched_by_the_agent_and_its_task_finishes() {
    let addr = start_master().await;
    let bytes = hostile_bytes();
    let digest = ComponentDigest::of(&bytes).to_hex();

    let stored = upload(addr, &bytes, &digest)
        .await
        .expect("upload accepted");
    assert_eq!(stored.sha256, digest);
    assert_eq!(stored.size_bytes, bytes.len() as u64);

    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let config = agent_config(dir.path().join("work"), addr);
    let agent = tokio::spawn(wasmos_agent::run_until_stopped(config, stop.clone()));

    let mut scheduler = Scheduler::try_subscribe(&addr.to_string(), framework(&digest))
        .await
        .expect("subscription with an uploaded component");
    let offer = scheduler.offer().await;
    let task = pb::TaskInfo {
        task_id: "echo-1".into(),
        name: "echo".into(),
        agent_id: offer.agent_id.clone(),
        resources: Some(Resources::new(0.1, 64, 0).into()),
        kind: Some(pb::task_info::Kind::Wasm(pb::WasmTask {
            executor_id: "exec-1".into(),
            payload: b"echo:hi".to_vec(),
            ..Default::default()
        })),
    };
    scheduler.accept(&offer, vec![task], None).await;
    let mut seen = Vec::new();
    let terminal = loop {
        let status = scheduler.next_update().await;
        scheduler.ack(&status).await;
        let state = pb::TaskState::try_from(status.state).unwrap();
        seen.push(state);
        if !matches!(
            state,
            pb::TaskState::Staging | pb::TaskState::Starting | pb::TaskState::Running
        ) {
            break status;
        }
    };
    assert_eq!(
        pb::TaskState::try_from(terminal.state).unwrap(),
        pb::TaskState::Finished,
        "the task ended {:?}: {} (states {seen:?})",
        terminal.state,
        terminal.message
    );
    assert_eq!(terminal.data.as_deref(), Some(&b"hi"[..]));
    assert!(
        dir.path()
            .join(format!("work/components/{digest}.wasm"))
            .is_file(),
        "the agent keeps the fetched component on disk"
    );

    stop.cancel();
    let _ = tokio::time::timeout(WAIT, agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_and_unknown_digests_are_refused_clearly() {
    let addr = start_master().await;
    let bytes = hostile_bytes();
    let wrong = ComponentDigest::of(b"something else").to_hex();

    let e = upload(addr, &bytes, &wrong).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("not to the expected") && e.message().contains(&wrong),
        "{e}"
    );

    let e = upload(addr, b"\0asm\x01\0\0\0 a core module", "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("not a Wasm component"), "{e}");

    let unknown = ComponentDigest::of(&bytes).to_hex();
    let e = Scheduler::try_subscribe(&addr.to_string(), framework(&unknown))
        .await
        .err()
        .expect("subscription with a component never uploaded is refused");
    assert!(
        e.message().contains(&unknown) && e.message().contains("upload it first"),
        "{e}"
    );

    let fetcher = MasterFetcher::new(vec![addr.to_string()]);
    let e = fetcher
        .fetch(&ComponentDigest::of(&bytes))
        .await
        .unwrap_err();
    assert!(
        e.0.contains("not in the master's blob store") && e.0.contains(&unknown),
        "{e}"
    );
}
