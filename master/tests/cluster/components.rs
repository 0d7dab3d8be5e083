//! Components by digest: an uploaded component is served back to agents in chunks, a
//! framework that names it gets its role and digest into every `RunTasks`, and a
//! re-subscription cannot swap the component.

use crate::harness::*;
use wasmos_api::proto as pb;
use wasmos_api::proto::agent_service_client::AgentServiceClient;

/// A fake component: the component preamble (all the master checks) and `size` more bytes,
/// spanning several 1 MiB chunks.
fn fake_component(size: usize, seed: u8) -> Vec<u8> {
    let mut b = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    b.extend((0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    b
}

async fn upload(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let chunks: Vec<_> = bytes
        .chunks(300_000)
        .map(|c| pb::UploadComponentChunk {
            expected_sha256: String::new(),
            data: c.to_vec(),
        })
        .collect();
    operator(addr)
        .await
        .upload_component(tokio_stream::iter(chunks))
        .await
        .expect("upload accepted")
        .into_inner()
        .sha256
}

#[tokio::test]
async fn run_tasks_carry_the_role_and_digest_and_agents_fetch_the_bytes() {
    let (addr, _master) = start_master(fast_config()).await;
    let bytes = fake_component(2_500_000, 7);
    let digest = upload(addr, &bytes).await;
    assert_eq!(digest.len(), 64);
    assert_eq!(upload(addr, &bytes).await, digest, "uploads are idempotent");

    let mut agent = SimAgent::register(addr, "", res(2.0, 1024), vec![]).await;
    let mut info = framework_info("", "analytics/batch", 60.0);
    info.component_sha256 = digest.clone();
    let mut sched = Scheduler::subscribe(addr, info.clone()).await.unwrap();
    let offers = sched.offers().await;
    sched
        .accept(
            vec![offers[0].id.clone()],
            vec![wasm_task("t1", &agent.id, 1.0, 128)],
        )
        .await;
    let run = agent
        .wait_for(|m| match m {
            ToAgent::RunTasks(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(run.role, "analytics/batch");
    assert_eq!(run.component_sha256, digest);

    let mut client = AgentServiceClient::connect(url(addr)).await.unwrap();
    let mut stream = client
        .fetch_component(pb::FetchComponentRequest {
            sha256: digest.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let (mut fetched, mut chunks) = (Vec::new(), 0);
    while let Some(c) = stream.message().await.unwrap() {
        fetched.extend_from_slice(&c.data);
        chunks += 1;
    }
    assert_eq!(fetched, bytes);
    assert!(chunks > 1, "a 2.5 MB component comes in several chunks");

    let state = wait_state(addr, |s| !s.frameworks.is_empty()).await;
    let listed = state.frameworks[0].info.clone().unwrap();
    assert_eq!(listed.component_sha256, digest);

    // Re-subscribing as the same framework with another component is refused.
    let other = upload(addr, &fake_component(10, 9)).await;
    info.id = sched.id.clone();
    info.component_sha256 = other.clone();
    let e = Scheduler::subscribe(addr, info).await.err().unwrap();
    assert!(
        e.message().contains("cannot change it") && e.message().contains(&other),
        "{e}"
    );
}

#[tokio::test]
async fn unknown_and_malformed_digests_are_refused() {
    let (addr, _master) = start_master(fast_config()).await;
    let mut client = AgentServiceClient::connect(url(addr)).await.unwrap();
    let e = client
        .fetch_component(pb::FetchComponentRequest {
            sha256: "ab".repeat(32),
        })
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(e.message().contains("upload it first"), "{e}");
    let e = client
        .fetch_component(pb::FetchComponentRequest {
            sha256: "not-a-digest".into(),
        })
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("64 hex digits"), "{e}");

    let mut info = framework_info("", "web", 0.0);
    info.component_sha256 = "cd".repeat(32);
    let e = Scheduler::subscribe(addr, info).await.err().unwrap();
    assert!(
        e.message().contains("not in the master's blob store"),
        "{e}"
    );
}
