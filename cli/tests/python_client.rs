//! The Python client of the scheduler API (`clients/python/`, package `wasmos-client`): its
//! package type-checks (`mypy --strict`) and passes its unit tests against scripted masters
//! (pytest), and its example external scheduler runs native command tasks to completion on
//! real `wasmos master` (a Raft group of three) and `wasmos agent` processes while the leader
//! is killed, re-subscribing to the new leader as the same framework.
//!
//! The Python environment is `target/python-client-venv`, made by
//! `scripts/install-guest-toolchain.sh` (which `scripts/test.sh` runs).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use wasmos_api::proto as pb;

mod common;

use common::{WAIT, operator, wasmos};

/// Where the Python package lives.
fn package_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients/python")
}

/// The venv's interpreter, which must exist.
fn python() -> PathBuf {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/python-client-venv/bin/python");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/install-guest-toolchain.sh (scripts/test.sh does) before the tests",
        p.display()
    );
    p
}

/// Runs the venv's python with `args` in the package's folder to its end (within `WAIT`).
async fn run_python(args: &[&str]) -> Output {
    tokio::time::timeout(
        WAIT,
        Command::new(python())
            .args(args)
            .current_dir(package_dir())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("python {args:?} did not end within {WAIT:?}"))
    .expect("python runs")
}

fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_package_type_checks_and_passes_its_unit_tests() {
    let cache =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/python-client-venv/mypy-cache");
    let cache = cache.to_str().expect("a UTF-8 path");
    let mypy = run_python(&["-m", "mypy", "--cache-dir", cache, "src", "examples"]).await;
    assert_ok("mypy --strict (pyproject.toml) on src and examples", &mypy);
    let pytest = run_python(&["-m", "pytest", "-q", "-p", "no:cacheprovider"]).await;
    assert_ok("pytest", &pytest);
    let summary = String::from_utf8_lossy(&pytest.stdout);
    assert!(summary.contains(" passed"), "{summary}");
    assert!(!summary.contains("skipped"), "{summary}");
}

/// Starts `wasmos master` on `listen` with `extra` flags; returns it and its address.
async fn start_master(listen: &str, extra: &[String]) -> (Child, String) {
    let mut master = wasmos()
        .args([
            "master",
            "--listen",
            listen,
            "--allocation-interval",
            "0.05",
        ])
        .args(common::NATIVE_DEFAULT_ROLE)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("wasmos master starts");
    let line = common::first_line(&mut master, "the master says where it listens").await;
    let addr = line
        .strip_prefix("wasmos master listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from the master: {line:?}"))
        .to_string();
    (master, addr)
}

/// Three masters as one Raft group on free loopback ports, data under `dir`.
async fn start_group(dir: &Path) -> Vec<(Child, String)> {
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().expect("an address").to_string())
        .collect();
    drop(listeners);
    let peers: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect();
    let mut group = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let data = dir.join(format!("m{}", i + 1));
        let flags = [
            "--data-dir".to_string(),
            data.to_str().expect("a UTF-8 path").to_string(),
            "--id".to_string(),
            (i + 1).to_string(),
            "--peers".to_string(),
            peers.join(","),
        ];
        group.push(start_master(addr, &flags).await);
    }
    group
}

/// The index of the one master of `addrs` (less `skip`) that serves `GetState`.
async fn find_leader(addrs: &[String], skip: Option<usize>) -> usize {
    common::until("one master leads", || async {
        let mut serving = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            if Some(i) == skip {
                continue;
            }
            if let Some(mut op) = common::try_operator(addr).await
                && op.get_state(pb::GetStateRequest {}).await.is_ok()
            {
                serving.push(i);
            }
        }
        (serving.len() == 1).then(|| serving[0])
    })
    .await
}

/// The frameworks named `name` in `state`.
fn named<'a>(state: &'a pb::ClusterState, name: &str) -> Vec<&'a pb::FrameworkSummary> {
    state
        .frameworks
        .iter()
        .filter(|f| f.info.as_ref().is_some_and(|i| i.name == name))
        .collect()
}

/// Lines of `child`'s stderr, collected in the background (and echoed, for a failing run).
fn collect_stderr(child: &mut Child) -> tokio::task::JoinHandle<Vec<String>> {
    let stderr = child.stderr.take().expect("piped stderr");
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut all = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{line}");
            all.push(line);
        }
        all
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_runs_command_tasks_to_their_end_across_a_leader_failover() {
    if let Some(why) = common::cgroups_unavailable() {
        eprintln!("SKIPPED: this test needs root and cgroups (cpu, memory, pids): {why}");
        return;
    }
    let python = python();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut masters = start_group(dir.path()).await;
    let addrs: Vec<String> = masters.iter().map(|(_, a)| a.clone()).collect();
    let tokens = common::secure(&addrs.join(",")).await;
    let leader = find_leader(&addrs, None).await;
    // The leader last: the client starts at a follower and must follow its hint.
    let mut order: Vec<String> = addrs.clone();
    order.swap(leader, 2);
    let all = order.join(",");
    let mut agents = Vec::new();
    for i in 0..2 {
        let work = dir.path().join(format!("agent{i}"));
        std::fs::create_dir_all(&work).expect("an agent work dir");
        agents.push(common::spawn_agent(
            &all,
            &work,
            &[
                "--hostname",
                &format!("host{i}"),
                "--resources",
                "cpus:2;mem:2048",
            ],
        ));
    }
    let mut op = operator(&addrs[leader]).await;
    common::wait_for_agents(&mut op, 2).await;

    // 16 tasks of half a CPU on 4 CPUs: two rounds of eight, each task 2 s long, so the
    // leader dies with tasks running and others not launched yet.
    let (tasks, name) = (16, "python-failover");
    let started = std::time::Instant::now();
    let mut example = Command::new(&python)
        .arg(package_dir().join("examples/command_scheduler.py"))
        .args(["--master", &all, "--name", name, "--cpus", "0.5"])
        .args(["--tasks", &tasks.to_string(), "--"])
        .args(["sh", "-c", "sleep 2; echo task $WASMOS_TASK_INDEX"])
        .env("WASMOS_TOKEN", &tokens.root)
        .env_remove("WASMOS_TLS_CA")
        .env_remove("WASMOS_TLS_CERT")
        .env_remove("WASMOS_TLS_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the example starts");
    let stderr = collect_stderr(&mut example);
    let stdout = example.stdout.take().expect("piped stdout");
    let result = tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let mut all = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push(line);
        }
        all
    });

    let framework_id = common::wait_for_state(&mut op, "the example's tasks running", |s| {
        let fw = named(s, name);
        let running = s
            .tasks
            .iter()
            .filter(|t| {
                t.status
                    .as_ref()
                    .is_some_and(|st| st.state == pb::TaskState::Running as i32)
            })
            .count();
        (fw.len() == 1 && running > 0).then(|| fw[0].info.as_ref().map(|i| i.id.clone()))
    })
    .await
    .expect("the framework has an id");
    masters[leader].0.start_kill().expect("kill the leader");
    masters[leader].0.wait().await.expect("the leader is gone");
    let next = find_leader(&addrs, Some(leader)).await;

    // The new leader sees the one framework back, connected under its id (or already ended
    // and removed, on a fast run), never a second one.
    let mut op = operator(&addrs[next]).await;
    common::wait_for_state(
        &mut op,
        "the framework re-subscribed to the new leader",
        |s| {
            let fw = named(s, name);
            assert!(fw.len() <= 1, "two frameworks named {name}: {fw:#?}");
            match fw.first() {
                Some(f) => {
                    let id = f.info.as_ref().map(|i| i.id.as_str());
                    assert_eq!(id, Some(framework_id.as_str()));
                    f.connected.then_some(())
                }
                None => Some(()),
            }
        },
    )
    .await;

    let status = tokio::time::timeout(WAIT, example.wait())
        .await
        .expect("the example ends in time")
        .expect("the example ran");
    let elapsed = started.elapsed();
    let stdout = result.await.expect("stdout collected").join("\n");
    let stderr = stderr.await.expect("stderr collected").join("\n");
    assert!(
        status.success(),
        "the example failed ({status}): {stdout}\n{stderr}"
    );
    let subscriptions: u32 = stdout
        .strip_prefix(&format!(
            "{tasks} of {tasks} tasks finished (framework {framework_id}, "
        ))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no result line: {stdout}\n{stderr}"));
    // One at the first leader, one at the next (more only if that one changed too).
    assert!(subscriptions >= 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "subscribed as framework {framework_id} at {}",
            addrs[leader]
        )) && stderr.contains(&format!(
            "re-subscribed as framework {framework_id} at {}",
            addrs[next]
        )),
        "{stderr}"
    );
    // It tore itself down: the new leader holds it among the completed frameworks, once.
    let completed = op
        .list_completed_frameworks(pb::ListCompletedFrameworksRequest::default())
        .await
        .expect("ListCompletedFrameworks answers")
        .into_inner();
    let ended: Vec<&pb::CompletedFramework> = completed
        .frameworks
        .iter()
        .filter(|f| f.name == name)
        .collect();
    assert_eq!(ended.len(), 1, "{completed:#?}");
    assert_eq!(ended[0].framework_id, framework_id);
    let state = common::cluster_state(&mut op).await;
    assert!(named(&state, name).is_empty(), "{:#?}", state.frameworks);
    eprintln!("the example ran {tasks} tasks across the failover in {elapsed:?}");

    for mut a in agents {
        let _ = a.kill().await;
    }
    for (m, _) in &mut masters {
        let _ = m.kill().await;
    }
}

/// Subscribes framework `tls-py` at `addr` with the environment `env` (TLS files, token),
/// prints its id and tears it down; gives up after 5 s without a leader.
const SUBSCRIBE_ONCE: &str = r#"
import sys
from wasmos_client import FrameworkInfo, Scheduler, Subscribed
with Scheduler(sys.argv[1], FrameworkInfo("tls-py"), reconnect_timeout=5) as s:
    for e in s.events():
        if isinstance(e, Subscribed):
            print(e.framework_id, flush=True)
            s.teardown()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_subscribes_to_a_tls_master_with_its_client_certificate() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ca = dir.path().join("ca");
    let ca_dir = ca.to_str().expect("a UTF-8 path");
    common::succeeded(&common::output(&["certs", "init", "--dir", ca_dir]).await);
    let master_cert = [
        "certs",
        "issue",
        "master",
        "m1",
        "--host",
        "127.0.0.1",
        "--dir",
        ca_dir,
    ];
    common::succeeded(&common::output(&master_cert).await);
    common::succeeded(&common::output(&["certs", "issue", "client", "c1", "--dir", ca_dir]).await);
    let file = |name: &str| ca.join(name);
    let master_flags = [
        "--tls-cert".to_string(),
        file("master-m1.pem").display().to_string(),
        "--tls-key".to_string(),
        file("master-m1-key.pem").display().to_string(),
        "--tls-ca".to_string(),
        file("ca.pem").display().to_string(),
    ];
    let flags: Vec<&str> = master_flags.iter().map(String::as_str).collect();
    let (mut master, addr) = common::start_master_unsecured(&flags, Stdio::inherit()).await;
    let env = [
        ("WASMOS_TLS_CERT", file("client-c1.pem")),
        ("WASMOS_TLS_KEY", file("client-c1-key.pem")),
        ("WASMOS_TLS_CA", file("ca.pem")),
    ];
    let env_refs: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let tokens = common::secure_with(&addr, &env_refs).await;

    let subscribe = |tls: bool| {
        let mut c = Command::new(python());
        c.args(["-c", SUBSCRIBE_ONCE, &addr])
            .env("WASMOS_TOKEN", &tokens.root)
            .env_remove("WASMOS_TLS_CERT")
            .env_remove("WASMOS_TLS_KEY")
            .env_remove("WASMOS_TLS_CA")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if tls {
            for (k, v) in &env {
                c.env(k, v);
            }
        }
        async move {
            tokio::time::timeout(WAIT, c.output())
                .await
                .expect("the client ends in time")
                .expect("python runs")
        }
    };
    let out = subscribe(true).await;
    assert_ok("a subscription over TLS", &out);
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!id.is_empty(), "no framework id printed");

    // In plain text the TLS master cannot be reached: the client says so and gives up.
    let out = subscribe(false).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a plain-text client subscribed to a TLS master"
    );
    assert!(
        stderr.contains("NoLeader") && stderr.contains(&addr) && stderr.contains("UNAVAILABLE"),
        "{stderr}"
    );
    master.kill().await.expect("kill the master");
}
