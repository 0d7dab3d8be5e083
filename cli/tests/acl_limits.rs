//! Per-principal limits and the rights of hosted schedulers on real processes: a `wasmos
//! master` bootstrapped by the test helpers, tokens made with `wasmos tokens create`, and
//! one test per rule: `max_frameworks` and the scheduler limits on submit, `max_upload_bytes`,
//! a hosted scheduler's native tasks checked against its submitter's `native_task_roles` (and
//! refused once that token is revoked), and the result of a removed framework readable by its
//! owner only.

mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use common::scheduler::Scheduler;
use common::{WAIT, example, wasmos};
use tokio::process::Child;
use wasmos_api::proto as pb;

/// A master enforcing ACLs (`--command-task-roles default`) and its management secret.
struct Secure {
    master: Child,
    addr: String,
    dir: tempfile::TempDir,
    root: String,
}

impl Secure {
    async fn start() -> Secure {
        // Bootstrapped by the helper, which keeps the management token.
        let (master, addr) =
            common::start_master_with(&["--command-task-roles", "default"], Stdio::inherit()).await;
        let root = common::tokens_for(&addr)
            .expect("the helper bootstrapped the master")
            .root;
        Secure {
            master,
            addr,
            dir: tempfile::tempdir().unwrap(),
            root,
        }
    }

    /// Defines policy `name` as `json` and returns a token of `principal` bound to it.
    async fn token(&self, principal: &str, name: &str, json: &str) -> String {
        let file = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&file, json).unwrap();
        let root = Some(self.root.as_str());
        let apply = ["acl", "policy", "apply", name, file.to_str().unwrap()];
        common::succeeded(&run(&self.addr, root, &apply).await);
        let create = [
            "tokens",
            "create",
            "--principal",
            principal,
            "--policy",
            name,
        ];
        common::succeeded(&run(&self.addr, root, &create).await)
            .trim()
            .to_string()
    }

    /// Starts an agent of 2 CPUs and 2 GiB (with an agent token).
    fn agent(&self) -> Child {
        common::spawn_agent(
            &self.addr,
            &self.dir.path().join("work"),
            &["--resources", "cpus:2;mem:2048"],
        )
    }

    async fn op(&self) -> common::Operator {
        common::operator(&self.addr).await
    }
}

/// Runs `wasmos ARGS --master ADDR` (the flag before a `--` in ARGS) with `token` in
/// WASMOS_TOKEN.
async fn run(addr: &str, token: Option<&str>, args: &[&str]) -> Output {
    let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    let mut c = wasmos();
    c.args(&args[..split])
        .args(["--master", addr])
        .args(&args[split..])
        .env_remove("WASMOS_TOKEN");
    if let Some(t) = token {
        c.env("WASMOS_TOKEN", t);
    }
    tokio::time::timeout(WAIT, c.output())
        .await
        .expect("wasmos exits in time")
        .expect("wasmos runs")
}

fn refused_with(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{n:?} not in: {stderr}");
    }
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// The framework id `wasmos submit` printed (`submitted NAME as framework ID to ...`).
fn submitted_id(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .split_once(" as framework ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no framework id in: {stderr}"))
        .to_string()
}

#[tokio::test]
async fn a_principal_holds_at_most_max_frameworks_and_asks_within_its_scheduler_limits() {
    let s = Secure::start().await;
    let bob = s
        .token(
            "bob",
            "tenant",
            r#"{"roles": ["default"], "upload_components": true, "max_frameworks": 1,
                "max_scheduler_fuel": 2000000000, "max_scheduler_memory_mb": 64,
                "max_callback_deadline_ms": 5000}"#,
        )
        .await;
    let pi = example("pi");
    // Each ask one past its limit is refused, naming the limit and the value asked.
    for (flag, value, needles) in [
        (
            "--fuel",
            "2000000001",
            ["max_scheduler_fuel is 2000000000", "2000000001"],
        ),
        ("--memory-mb", "65", ["max_scheduler_memory_mb is 64", "65"]),
        (
            "--callback-timeout",
            "5.001",
            ["max_callback_deadline_ms is 5000", "5001"],
        ),
    ] {
        let out = run(&s.addr, Some(&bob), &["submit", &pi, flag, value]).await;
        refused_with(&out, &needles);
    }
    // The first framework is within the bound, a second one past it.
    let info = pb::FrameworkInfo {
        name: "first".into(),
        role: "default".into(),
        failover_timeout_seconds: 60.0,
        ..Default::default()
    };
    let _first = Scheduler::try_subscribe_as(&s.addr, info.clone(), &bob)
        .await
        .expect("the first framework is within max_frameworks");
    let err = Scheduler::try_subscribe_as(&s.addr, info, &bob)
        .await
        .err()
        .expect("a second framework is refused");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("max_frameworks is 1"), "{err:?}");
    let out = run(&s.addr, Some(&bob), &["submit", &pi]).await;
    refused_with(&out, &["max_frameworks is 1"]);
    drop(s.master);
}

#[tokio::test]
async fn uploads_past_the_principals_max_upload_bytes_are_refused() {
    let s = Secure::start().await;
    let bytes = std::fs::read(example("pi")).unwrap();
    let size = bytes.len();
    let policy =
        |max: usize| format!(r#"{{"upload_components": true, "max_upload_bytes": {max}}}"#);
    let exact = s.token("carol", "exact", &policy(size)).await;
    let short = s.token("dave", "short", &policy(size - 1)).await;
    let upload = |token: String, bytes: Vec<u8>| {
        let addr = s.addr.clone();
        async move {
            let mut op = common::operator(&addr).await;
            // Two chunks, so that the refusal comes from the size reached, not one chunk's.
            let half = bytes.len() / 2;
            let chunks = vec![
                pb::UploadComponentChunk {
                    data: bytes[..half].to_vec(),
                    ..Default::default()
                },
                pb::UploadComponentChunk {
                    data: bytes[half..].to_vec(),
                    ..Default::default()
                },
            ];
            op.upload_component(with_token(tokio_stream::iter(chunks), &token))
                .await
        }
    };
    let err = upload(short, bytes.clone())
        .await
        .expect_err("one byte past the limit");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains(&format!(
            "more than {} bytes (its policies' max_upload_bytes)",
            size - 1
        )),
        "{err:?}"
    );
    let stored = upload(exact, bytes)
        .await
        .expect("at the limit")
        .into_inner();
    assert_eq!(stored.size_bytes, size as u64);
    drop(s.master);
}

#[tokio::test]
async fn a_hosted_scheduler_launches_native_tasks_with_its_submitters_rights_only() {
    require_cgroups!();
    let s = Secure::start().await;
    let mut agent = s.agent();
    let bob = s
        .token(
            "bob",
            "tenant",
            r#"{"roles": ["default"], "upload_components": true}"#,
        )
        .await;
    let carol = s
        .token(
            "carol",
            "native",
            r#"{"roles": ["default"], "upload_components": true,
                "native_task_roles": ["default"]}"#,
        )
        .await;
    let service = example("service");
    let args = ["--for", "1", "1", "0.1", "16", "--", "sleep", "30"];
    let submit = |token: String| {
        let addr = s.addr.clone();
        let service = service.clone();
        async move {
            let mut c = vec!["submit", service.as_str(), "--"];
            c.extend(args);
            run(&addr, Some(&token), &c).await
        }
    };
    // The master allows native tasks in `default`, but bob's policies do not.
    let out = submit(bob).await;
    refused_with(&out, &["was refused", "bob", "native_task_roles"]);
    // Carol's do: her instance runs for its second and the framework finishes.
    let out = submit(carol.clone()).await;
    common::succeeded(&out);

    // A revoked submitting token launches no more native tasks: carol's next service keeps
    // one instance; once her token is revoked and its process killed, the relaunch is an
    // ERROR, which fails the framework with the reason.
    let mut c = wasmos();
    c.args(["submit", &service, "--master", &s.addr, "--"])
        .args(["1", "0.1", "16", "--", "sleep", "600"])
        .env("WASMOS_TOKEN", &carol)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut follower = c.spawn().unwrap();
    let mut op = s.op().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let (fw, task) = loop {
        let state = op
            .get_state(with_token(pb::GetStateRequest {}, &s.root))
            .await
            .unwrap()
            .into_inner();
        if let Some((fw, st)) = state.tasks.iter().find_map(|t| {
            let st = t.status.as_ref()?;
            (st.state == pb::TaskState::Running as i32).then_some((&t.framework_id, st))
        }) {
            break (fw.clone(), st.task_id.clone());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no running task: {state:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let pids = common::task_pids(&fw, &task);
    assert!(!pids.is_empty(), "no process in {task}'s cgroup");
    let list = common::succeeded(&run(&s.addr, Some(&s.root), &["tokens", "list", "--json"]).await);
    let accessor = serde_json::from_str::<serde_json::Value>(&list)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["principal"] == "carol")
        .and_then(|t| t["accessor"].as_str().map(str::to_string))
        .expect("carol's token is listed");
    common::succeeded(&run(&s.addr, Some(&s.root), &["tokens", "revoke", &accessor]).await);
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let result = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "framework {fw} did not end"
        );
        let r = op
            .get_framework_result(with_token(
                pb::GetFrameworkResultRequest {
                    framework_id: fw.clone(),
                },
                &s.root,
            ))
            .await
            .unwrap()
            .into_inner();
        if r.ended {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!result.succeeded, "{result:?}");
    assert!(
        result.result.contains("was refused") && result.result.contains("revoked or expired"),
        "{result:?}"
    );
    let _ = follower.kill().await;
    agent.kill().await.unwrap();
    drop(s.master);
}

#[tokio::test]
async fn a_removed_frameworks_result_stays_readable_by_its_owner_only() {
    let s = Secure::start().await;
    let mut agent = s.agent();
    let tenant = r#"{"roles": ["default"], "upload_components": true}"#;
    let alice = s.token("alice", "tenant", tenant).await;
    let bob = s.token("bob", "tenant-b", tenant).await;
    let out = run(
        &s.addr,
        Some(&alice),
        &["submit", &example("pi"), "--", "2", "1000"],
    )
    .await;
    common::assert_pi(&out);
    let fw = submitted_id(&out);
    let mut op = s.op().await;
    let state = op
        .get_state(with_token(pb::GetStateRequest {}, &s.root))
        .await
        .unwrap()
        .into_inner();
    assert!(
        state
            .frameworks
            .iter()
            .all(|f| f.info.as_ref().is_some_and(|i| i.id != fw)),
        "the finished framework was removed"
    );
    let read = |token: &str| {
        with_token(
            pb::GetFrameworkResultRequest {
                framework_id: fw.clone(),
            },
            token,
        )
    };
    let err = op
        .get_framework_result(read(&bob))
        .await
        .expect_err("another tenant reads a removed framework's result");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("see_all_frameworks") && err.message().contains("alice"),
        "{err:?}"
    );
    let mine = op
        .get_framework_result(read(&alice))
        .await
        .expect("its owner reads it")
        .into_inner();
    assert!(mine.ended && mine.succeeded && !mine.registered, "{mine:?}");
    agent.kill().await.unwrap();
    drop(s.master);
}
