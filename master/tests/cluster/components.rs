//! Components by digest: an uploaded component is served back to agents in chunks, a
//! framework that names it gets its role and digest into every `RunTasks`, and a
//! re-subscription cannot swap the component; a component of another world is refused at
//! upload, naming what it lacks.

use crate::harness::*;
use wasmos_api::proto as pb;
use wasmos_api::proto::agent_service_client::AgentServiceClient;

fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A real framework component (`pi`) with a custom section of `size` bytes appended: still a
/// component of the `wasmos:framework` world, as large as wanted (spanning several 1 MiB
/// chunks), and with a digest of its own for each `seed`.
fn padded_component(size: usize, seed: u8) -> Vec<u8> {
    let mut b = example_bytes("pi");
    let mut content = Vec::new();
    let name = b"padding";
    leb128(name.len(), &mut content);
    content.extend_from_slice(name);
    content.extend((0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    b.push(0); // custom section id
    leb128(content.len(), &mut b);
    b.extend_from_slice(&content);
    b
}

async fn upload(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    upload_component(addr, bytes, 300_000)
        .await
        .expect("upload accepted")
}

#[tokio::test]
async fn run_tasks_carry_the_role_and_digest_and_agents_fetch_the_bytes() {
    let (addr, _master) = start_master(fast_config()).await;
    let bytes = padded_component(2_500_000, 7);
    let digest = upload(addr, &bytes).await;
    assert_eq!(digest.len(), 64);
    assert_eq!(upload(addr, &bytes).await, digest, "uploads are idempotent");

    let mut agent = SimAgent::register(addr, "", res(2.0, 1024), vec![]).await;
    let mut info = framework_info("", "analytics/batch", 60.0);
    info.component_sha256 = digest.clone();
    let mut sched = Scheduler::subscribe(addr, info.clone()).await.unwrap();
    let run = launch_one(&mut sched, &mut agent, "t1", 1.0, 128).await;
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
    let other = upload(addr, &padded_component(10, 9)).await;
    info.id = sched.id.clone();
    info.component_sha256 = other.clone();
    let e = refused_subscription(addr, info).await;
    assert!(
        e.message().contains("cannot change it") && e.message().contains(&other),
        "{e}"
    );
}

#[tokio::test]
async fn a_component_of_another_world_is_refused_at_upload() {
    let (addr, _master) = start_master(fast_config()).await;
    let bytes = example_bytes("wrongworld");
    let e = upload_component(addr, &bytes, bytes.len())
        .await
        .expect_err("wrongworld is refused");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("not a wasmos framework")
            && e.message()
                .contains("does not export wasmos:framework/scheduler@0.1.0")
            && e.message().contains("greet"),
        "{e}"
    );
    // Nothing was stored under its digest.
    let digest = wasmos_master::blobs::Digest::of(&bytes);
    let mut client = AgentServiceClient::connect(url(addr)).await.unwrap();
    let e = client
        .fetch_component(pb::FetchComponentRequest {
            sha256: digest.to_string(),
        })
        .await
        .expect_err("the refused component is not served");
    assert_eq!(e.code(), tonic::Code::NotFound);
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
    let e = refused_subscription(addr, info).await;
    assert!(
        e.message().contains("not in the master's blob store"),
        "{e}"
    );
}
