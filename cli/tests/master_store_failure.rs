//! `wasmos master` whose Raft store cannot write (simulated with the hidden
//! `--store-faults-while-exists FILE`) exits non-zero saying why, and, restarted on its data
//! dir once the disk is fixed, serves its registry again. It makes its data dir mode 0700.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use wasmos_api::proto as pb;

mod common;

use common::{WAIT, operator, start_master_with};

fn weight(w: f64) -> pb::SetWeightsRequest {
    pb::SetWeightsRequest {
        weights: vec![pb::RoleWeight {
            role: "analytics".into(),
            weight: w,
        }],
    }
}

/// Polls `GetState` at `addr` until the master serves.
async fn wait_serving(addr: &str) -> pb::ClusterState {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(s) = operator(addr).await.get_state(pb::GetStateRequest {}).await {
            return s.into_inner();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_whose_raft_store_cannot_write_exits_non_zero_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fault = dir.path().join("disk-full");
    let flags = [
        "--data-dir",
        data.to_str().unwrap(),
        "--store-faults-while-exists",
        fault.to_str().unwrap(),
    ];
    // A data dir open to other users is made the owner's only.
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (mut master, addr) = start_master_with(&flags, Stdio::piped()).await;
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the data dir's mode is {mode:o}");
    let mut stderr = master.stderr.take().expect("piped stderr");
    // Read all along, so that the master never blocks on a full pipe.
    let said = tokio::spawn(async move {
        let mut said = String::new();
        let _ = stderr.read_to_string(&mut said).await;
        said
    });
    wait_serving(&addr).await;
    operator(&addr)
        .await
        .set_weights(weight(2.0))
        .await
        .expect("a healthy master commits");

    std::fs::write(&fault, b"").unwrap();
    let refused = tokio::time::timeout(WAIT, operator(&addr).await.set_weights(weight(3.0)))
        .await
        .expect("answered, not left hanging")
        .expect_err("not acknowledged");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let status = tokio::time::timeout(WAIT, master.wait())
        .await
        .expect("the master exits once its store failed")
        .unwrap();
    assert!(!status.success(), "{status:?}");
    let said = said.await.unwrap();
    assert!(
        said.contains("the Raft store of master 1 failed")
            && said.contains("the master stopped serving"),
        "{said}"
    );

    // The disk is fixed: restarted on its data dir, it serves what it had committed.
    std::fs::remove_file(&fault).unwrap();
    // Bootstrapped before: its tokens are in the registry it restarts from.
    let (_master, addr) = common::start_master_unsecured(&flags, Stdio::inherit()).await;
    let state = wait_serving(&addr).await;
    let analytics = state
        .roles
        .iter()
        .find(|r| r.role == "analytics")
        .expect("the weight survived");
    assert_eq!(analytics.weight, 2.0);
}
