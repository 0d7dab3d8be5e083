//! ACLs on real processes: a `wasmos master` (replicated, with a data dir; `--acl` is still
//! accepted), tokens made with `wasmos acl bootstrap` and `wasmos tokens create`, and one test
//! per rule of the authorization layer (roles, native tasks, others' frameworks, listings,
//! Raft membership, agent registration, revocation), plus the secret never showing in the
//! master's log, its audit log or its registry on disk.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::scheduler::Scheduler;
use common::{WAIT, wasmos};
use tokio::process::Child;
use wasmos_api::proto as pb;

use pb::scheduler_call::Call;
use pb::scheduler_event::Event;

/// A master enforcing ACLs, its data dir and its bootstrap (management) secret.
struct Secure {
    master: Child,
    addr: String,
    dir: tempfile::TempDir,
    root: String,
}

impl Secure {
    async fn start() -> Secure {
        let dir = tempfile::tempdir().unwrap();
        let stderr = std::fs::File::create(dir.path().join("master.stderr")).unwrap();
        let data = dir.path().join("data");
        let mut master = wasmos()
            .args(["master", "--listen", "127.0.0.1:0", "--acl"])
            .args(["--allocation-interval", "0.05", "--command-task-roles", "*"])
            .arg("--data-dir")
            .arg(&data)
            .env("WASMOS_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap();
        let line = common::first_line(&mut master, "the master says where it listens").await;
        let addr = line
            .strip_prefix("wasmos master listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let out = run(&addr, None, &["acl", "bootstrap"]).await;
        let root = common::succeeded(&out).trim().to_string();
        assert!(root.starts_with("wasmos_"), "{root:?}");
        Secure {
            master,
            addr,
            dir,
            root,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Defines policy `name` as `json` and returns a token of `principal` bound to it.
    async fn token(&self, principal: &str, name: &str, json: &str) -> String {
        let file = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&file, json).unwrap();
        let f = file.to_str().unwrap();
        common::succeeded(
            &run(
                &self.addr,
                Some(&self.root),
                &["acl", "policy", "apply", name, f],
            )
            .await,
        );
        let out = run(
            &self.addr,
            Some(&self.root),
            &[
                "tokens",
                "create",
                "--principal",
                principal,
                "--policy",
                name,
                "--ttl",
                "30d",
            ],
        )
        .await;
        common::succeeded(&out).trim().to_string()
    }

    async fn op(&self) -> common::Operator {
        common::operator(&self.addr).await
    }

    /// Starts `wasmos agent` for this master with `token` in WASMOS_TOKEN (none: without),
    /// its stderr in `dir/NAME.stderr` (returned).
    fn agent(&self, name: &str, token: Option<&str>) -> (Child, PathBuf) {
        let log = self.dir.path().join(format!("{name}.stderr"));
        let mut c = wasmos();
        c.args(["agent", "--master", &self.addr, "--work-dir"])
            .arg(self.dir.path().join(name))
            .args(["--resources", "cpus:2;mem:2048", "--hostname", name])
            .env_remove("WASMOS_TOKEN")
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        if let Some(t) = token {
            c.env("WASMOS_TOKEN", t);
        }
        (c.spawn().expect("wasmos agent starts"), log)
    }

    /// The agents the master lists (read with the management token).
    async fn agents(&self) -> Vec<pb::AgentSummary> {
        self.op()
            .await
            .get_state(with_token(pb::GetStateRequest {}, &self.root))
            .await
            .unwrap()
            .into_inner()
            .agents
    }

    /// Polls until `check` holds of the agent list; panics after [`WAIT`].
    async fn wait_for_agents(&self, what: &str, check: impl Fn(&[pb::AgentSummary]) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let agents = self.agents().await;
            if check(&agents) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: {agents:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits until the file at `path` contains `needle`, and returns its text; panics, showing
/// the text, after [`WAIT`].
async fn wait_for_text(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} not in {}: {text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `wasmos ARGS --master ADDR` with `token` in WASMOS_TOKEN.
async fn run(addr: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut c = wasmos();
    c.args(args)
        .args(["--master", addr])
        .env_remove("WASMOS_TOKEN");
    if let Some(t) = token {
        c.env("WASMOS_TOKEN", t);
    }
    tokio::time::timeout(WAIT, c.output())
        .await
        .expect("wasmos exits in time")
        .expect("wasmos runs")
}

fn refused_with(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

fn info(role: &str, claimed_principal: &str) -> pb::FrameworkInfo {
    pb::FrameworkInfo {
        name: "acl-test".into(),
        role: role.into(),
        principal: claimed_principal.into(),
        failover_timeout_seconds: 60.0,
        ..Default::default()
    }
}

fn grep(path: &Path, secret: &str) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.windows(secret.len()).any(|w| w == secret.as_bytes())
}

const TENANT: &str = r#"{"roles": ["team-a"]}"#;

#[tokio::test]
async fn bootstrap_happens_once_and_secrets_never_reach_logs_audit_or_registry() {
    let mut s = Secure::start().await;
    refused_with(
        &run(&s.addr, None, &["acl", "bootstrap"]).await,
        "already bootstrapped",
    );
    refused_with(
        &run(&s.addr, None, &["frameworks"]).await,
        "--token or WASMOS_TOKEN",
    );
    refused_with(
        &run(&s.addr, Some("wasmos_bogus"), &["frameworks"]).await,
        "not known",
    );
    let alice = s.token("alice", "tenant", TENANT).await;
    // Used, and refused once: both land in the audit log.
    refused_with(
        &run(
            &s.addr,
            Some(&alice),
            &["operator", "members", "add", "7", "127.0.0.1:1"],
        )
        .await,
        "raft_membership",
    );
    let list = common::succeeded(&run(&s.addr, Some(&s.root), &["tokens", "list", "--json"]).await);
    let tokens: serde_json::Value = serde_json::from_str(&list).unwrap();
    let accessors: Vec<&str> = tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["accessor"].as_str().unwrap())
        .collect();
    assert_eq!(accessors.len(), 2, "{list}");
    let audit = common::succeeded(
        &common::output(&[
            "audit",
            "--data-dir",
            s.data().to_str().unwrap(),
            "--since",
            "1h",
            "--json",
        ])
        .await,
    );
    assert!(
        audit.contains("\"members.add\"") && audit.contains("\"denied\""),
        "{audit}"
    );
    assert!(audit.contains("\"tokens.create\""), "{audit}");
    s.master.kill().await.unwrap();
    let _ = s.master.wait().await;
    let files = [
        s.dir.path().join("master.stderr"),
        s.data().join("audit.jsonl"),
        s.data().join("raft.redb"),
    ];
    for f in &files {
        assert!(f.is_file(), "{} missing", f.display());
    }
    // The grep can see: the accessors are in the registry and the audit log names alice.
    assert!(accessors.iter().all(|a| grep(&files[2], a)));
    assert!(grep(&files[1], "alice"));
    for secret in [&s.root, &alice] {
        let random = &secret["wasmos_".len()..];
        assert!(!list.contains(random) && !audit.contains(random));
        for f in &files {
            assert!(!grep(f, random), "a secret is in {}", f.display());
        }
    }
}

#[tokio::test]
async fn a_principal_cannot_subscribe_under_a_role_it_lacks_and_owns_what_it_registers() {
    let s = Secure::start().await;
    let alice = s.token("alice", "tenant", TENANT).await;
    let err = Scheduler::try_subscribe_as(&s.addr, info("team-b", "alice"), &alice)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("`roles`") && err.message().contains("team-b"),
        "{err:?}"
    );
    let fw = Scheduler::try_subscribe_as(&s.addr, info("team-a", "mallory"), &alice)
        .await
        .expect("subscribed under its role");
    let state = s
        .op()
        .await
        .get_state(with_token(pb::GetStateRequest {}, &s.root))
        .await
        .unwrap()
        .into_inner();
    let mine = state
        .frameworks
        .iter()
        .find(|f| f.info.as_ref().unwrap().id == fw.id)
        .unwrap();
    assert_eq!(
        mine.info.as_ref().unwrap().principal,
        "alice",
        "set from the token"
    );
}

#[tokio::test]
async fn native_tasks_need_the_native_right() {
    let s = Secure::start().await;
    let alice = s.token("alice", "tenant", TENANT).await;
    let bob = s
        .token(
            "bob",
            "native",
            r#"{"roles": ["team-a"], "native_task_roles": ["team-a"]}"#,
        )
        .await;
    let accept = || {
        Call::Accept(pb::scheduler_call::Accept {
            offer_ids: vec!["no-such-offer".into()],
            launches: vec![pb::TaskInfo {
                task_id: "t1".into(),
                name: "sh".into(),
                agent_id: "no-such-agent".into(),
                resources: Some(pb::Resources {
                    millicpus: 100,
                    mem_mb: 16,
                    disk_mb: 0,
                }),
                kind: Some(pb::task_info::Kind::Command(pb::CommandTask {
                    argv: vec!["true".into()],
                    env: vec![],
                })),
            }],
            filters: None,
        })
    };
    // The answer to the accept: a refusal naming the rule, or the core's own verdict (here
    // TASK_ERROR: the offer is unknown).
    async fn answer(mut fw: Scheduler, call: Call) -> String {
        fw.call(call).await;
        fw.wait_for(|e| match e {
            Event::Error(e) => Some(format!("error: {}", e.message)),
            Event::Update(u) => Some(format!("update: {:?}", u.status)),
            _ => None,
        })
        .await
    }
    let a = Scheduler::try_subscribe_as(&s.addr, info("team-a", ""), &alice)
        .await
        .unwrap();
    let refused = answer(a, accept()).await;
    assert!(
        refused.starts_with("error:") && refused.contains("native_task_roles"),
        "{refused}"
    );
    let b = Scheduler::try_subscribe_as(&s.addr, info("team-a", ""), &bob)
        .await
        .unwrap();
    let allowed = answer(b, accept()).await;
    assert!(
        allowed.starts_with("update:") && !allowed.contains("native_task_roles"),
        "{allowed}"
    );
}

#[tokio::test]
async fn others_frameworks_cannot_be_killed_or_torn_down_and_listings_are_filtered() {
    let s = Secure::start().await;
    let alice = s.token("alice", "tenant", TENANT).await;
    let bob = s.token("bob", "tenant2", TENANT).await;
    let fw = Scheduler::try_subscribe_as(&s.addr, info("team-a", ""), &alice)
        .await
        .unwrap();
    let mut op = s.op().await;
    let kill = |t: &str| {
        with_token(
            pb::KillTaskRequest {
                task_id: "t1".into(),
                framework_id: fw.id.clone(),
            },
            t,
        )
    };
    let e = op.kill_task(kill(&bob)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("manage_all_frameworks"), "{e:?}");
    // Its owner gets past the layer to the core's answer: no such task.
    let e = op.kill_task(kill(&alice)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let teardown = |t: &str| {
        with_token(
            pb::TeardownFrameworkRequest {
                framework_id: fw.id.clone(),
            },
            t,
        )
    };
    let e = op.teardown_framework(teardown(&bob)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("manage_all_frameworks"), "{e:?}");
    // A re-subscription under alice's framework id is a hijack.
    let mut hijack = info("team-a", "");
    hijack.id = fw.id.clone();
    let e = Scheduler::try_subscribe_as(&s.addr, hijack, &bob)
        .await
        .err()
        .unwrap();
    assert!(e.message().contains("belongs to"), "{e:?}");
    // Listings: bob sees none of alice's, alice and the operator see hers.
    let ids = |out: Output| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&common::succeeded(&out)).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(ids(run(&s.addr, Some(&bob), &["frameworks", "--json"]).await).is_empty());
    assert_eq!(
        ids(run(&s.addr, Some(&alice), &["frameworks", "--json"]).await),
        [fw.id.clone()]
    );
    assert_eq!(
        ids(run(&s.addr, Some(&s.root), &["frameworks", "--json"]).await),
        [fw.id.clone()]
    );
    op.teardown_framework(teardown(&alice))
        .await
        .expect("its owner tears it down");
}

#[tokio::test]
async fn members_add_needs_the_membership_right() {
    let s = Secure::start().await;
    let alice = s.token("alice", "tenant", TENANT).await;
    let out = run(
        &s.addr,
        Some(&alice),
        &["operator", "members", "add", "2", "127.0.0.1:1"],
    )
    .await;
    refused_with(&out, "raft_membership");
    let list = run(&s.addr, Some(&alice), &["operator", "members", "list"]).await;
    assert_eq!(
        common::succeeded(&list).lines().count(),
        1,
        "the group is unchanged"
    );
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once_and_its_stream_closed() {
    let s = Secure::start().await;
    let alice = s.token("alice", "tenant", TENANT).await;
    let mut fw = Scheduler::try_subscribe_as(&s.addr, info("team-a", ""), &alice)
        .await
        .unwrap();
    let list = common::succeeded(&run(&s.addr, Some(&s.root), &["tokens", "list", "--json"]).await);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let accessor = v
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["principal"] == "alice")
        .unwrap()["accessor"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked_at = Instant::now();
    common::succeeded(&run(&s.addr, Some(&s.root), &["tokens", "revoke", &accessor]).await);
    refused_with(
        &run(&s.addr, Some(&alice), &["frameworks"]).await,
        "not known",
    );
    let end = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match fw.events.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the stream ends");
    let status = end.expect_err("the stream ends with a status");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    eprintln!(
        "the stream closed {:?} after the revocation was asked for",
        revoked_at.elapsed()
    );
}

const AGENT: &str = r#"{"register_agents": true}"#;

#[tokio::test]
async fn an_agent_needs_a_token_granting_register_agents_and_one_with_it_runs_pi() {
    let s = Secure::start().await;
    let (mut bare, bare_log) = s.agent("bare", None);
    let text = wait_for_text(&bare_log, "refused").await;
    assert!(
        text.contains("register_agents") && text.contains("WASMOS_TOKEN"),
        "the refusal names the right and the variable: {text}"
    );
    let tenant = s.token("alice", "tenant", TENANT).await;
    let (mut lacking, lacking_log) = s.agent("lacking", Some(&tenant));
    wait_for_text(
        &lacking_log,
        "none of its policies grants `register_agents`",
    )
    .await;
    assert!(
        s.agents().await.is_empty(),
        "a refused agent was registered"
    );
    bare.kill().await.unwrap();
    lacking.kill().await.unwrap();
    let agent = s.token("agent", "agent", AGENT).await;
    let (mut good, _) = s.agent("good", Some(&agent));
    s.wait_for_agents("the agent with an agent token registers", |a| {
        a.iter().any(|a| a.reachable)
    })
    .await;
    let pi = common::example("pi");
    let out = tokio::time::timeout(
        WAIT,
        wasmos()
            .args(["submit", &pi, "--master", &s.addr, "--", "4", "20000"])
            .env("WASMOS_TOKEN", &s.root)
            .output(),
    )
    .await
    .expect("the submit ends in time")
    .unwrap();
    common::assert_pi(&out);
    good.kill().await.unwrap();
}

#[tokio::test]
async fn a_revoked_agent_token_ends_the_agents_session() {
    let s = Secure::start().await;
    let agent = s.token("agent", "agent", AGENT).await;
    let (mut a, log) = s.agent("a1", Some(&agent));
    s.wait_for_agents("the agent registers", |a| a.iter().any(|a| a.reachable))
        .await;
    let list = common::succeeded(&run(&s.addr, Some(&s.root), &["tokens", "list", "--json"]).await);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let accessor = v
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["principal"] == "agent")
        .unwrap()["accessor"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked_at = Instant::now();
    common::succeeded(&run(&s.addr, Some(&s.root), &["tokens", "revoke", &accessor]).await);
    s.wait_for_agents("the agent's session ends", |a| {
        a.iter().all(|a| !a.reachable)
    })
    .await;
    eprintln!(
        "the agent was unreachable {:?} after the revocation was asked for",
        revoked_at.elapsed()
    );
    // It tries again, and is refused: the token is gone.
    wait_for_text(&log, "not known").await;
    assert!(s.agents().await.iter().all(|a| !a.reachable));
    a.kill().await.unwrap();
}

/// A bootstrap with a secret the caller chose is safe to repeat (its answer may be lost when
/// the leader changes while it commits): the same secret gets the same token back, another is
/// refused, and a secret of another shape is refused as invalid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_with_a_chosen_secret_can_be_repeated() {
    let (mut master, addr) = common::start_master_unsecured(&[], Stdio::inherit()).await;
    let mut op = common::operator(&addr).await;
    let secret = format!("wasmos_{}", "ab".repeat(32));
    let boot = |secret: &str| pb::BootstrapAclRequest {
        secret: secret.to_string(),
    };
    let malformed = op.bootstrap_acl(boot("wasmos_short")).await.unwrap_err();
    assert_eq!(
        malformed.code(),
        tonic::Code::InvalidArgument,
        "{malformed:?}"
    );
    let first = op.bootstrap_acl(boot(&secret)).await.unwrap().into_inner();
    assert_eq!(first.secret, secret);
    let again = op.bootstrap_acl(boot(&secret)).await.unwrap().into_inner();
    assert_eq!(
        (again.accessor.as_str(), again.secret.as_str()),
        (first.accessor.as_str(), secret.as_str())
    );
    let other = op
        .bootstrap_acl(boot(&format!("wasmos_{}", "cd".repeat(32))))
        .await
        .unwrap_err();
    assert!(
        other.message().contains("already bootstrapped"),
        "{other:?}"
    );
    // The chosen secret is a working management token.
    let mut req = tonic::Request::new(pb::ListTokensRequest {});
    req.metadata_mut()
        .insert("authorization", format!("Bearer {secret}").parse().unwrap());
    let listed = op.list_tokens(req).await.unwrap().into_inner();
    assert_eq!(listed.tokens.len(), 1);
    master.kill().await.unwrap();
}

/// `GetFrameworkState`'s key is bounded before anything is looked up: at the bound (1 KiB) the
/// call goes on (to NOT_FOUND for an unknown framework), one past and far past it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_key_past_its_bound_is_refused() {
    let (mut master, addr) = common::start_master_with(&[], Stdio::inherit()).await;
    let mut op = common::operator(&addr).await;
    for (len, code) in [
        (1024, tonic::Code::NotFound),
        (1025, tonic::Code::InvalidArgument),
        (1 << 20, tonic::Code::InvalidArgument),
    ] {
        let err = op
            .get_framework_state(pb::GetFrameworkStateRequest {
                framework_id: "fw-unknown".into(),
                key: "k".repeat(len),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "key of {len} bytes: {err:?}");
        assert!(
            err.message().len() < 512,
            "the refusal does not echo the key"
        );
    }
    // The master still serves.
    common::cluster_state(&mut op).await;
    master.kill().await.unwrap();
}
