//! The replicated master as real `wasmos master` processes: the registry survives a restart
//! from the data dir, a group of three masters elects one leader that serves while the others
//! point callers at it, work carries on after the leader is killed, and a group restarted
//! whole keeps its registry.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;
use wasmos_api::proto as pb;

mod common;

use common::scheduler::Scheduler;
use common::{WAIT, operator, wasmos};
use pb::scheduler_call::Call;

/// Starts `wasmos master` on `listen` with `extra` flags; returns the process and the
/// address it listens on.
async fn start(listen: &str, extra: &[String]) -> (Child, String) {
    let mut master = wasmos()
        .args([
            "master",
            "--listen",
            listen,
            "--allocation-interval",
            "0.05",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("wasmos master starts");
    let stdout = master.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the master says where it listens in time")
        .expect("stdout readable")
        .expect("a line on stdout");
    let addr = line
        .strip_prefix("wasmos master listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from the master: {line:?}"))
        .to_string();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (master, addr)
}

fn data_dir_flags(dir: &Path) -> Vec<String> {
    vec!["--data-dir".into(), dir.to_str().unwrap().into()]
}

/// Polls `GetState` at `addr` until it answers (the master leads and serves).
async fn wait_serving(addr: &str) -> pb::ClusterState {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut op = operator(addr).await;
        match op.get_state(pb::GetStateRequest {}).await {
            Ok(s) => return s.into_inner(),
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "the master at {addr} did not serve in time: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Subscribes an external framework of role `analytics` (kept for an hour when disconnected)
/// and returns its id and the open call channel; its event stream is dropped.
async fn subscribe(addr: &str, name: &str) -> (String, mpsc::Sender<pb::SchedulerCall>) {
    let info = pb::FrameworkInfo {
        name: name.into(),
        role: "analytics".into(),
        failover_timeout_seconds: 3600.0,
        ..Default::default()
    };
    let s = Scheduler::subscribe(addr, info).await;
    (s.id, s.tx)
}

async fn upload(addr: &str, bytes: Vec<u8>) -> String {
    let mut op = operator(addr).await;
    let chunk = pb::UploadComponentChunk {
        expected_sha256: String::new(),
        data: bytes,
    };
    op.upload_component(tokio_stream::iter(vec![chunk]))
        .await
        .expect("upload")
        .into_inner()
        .sha256
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_restarted_from_its_data_dir_keeps_its_registry() {
    let dir = tempfile::tempdir().unwrap();
    let mut flags = data_dir_flags(dir.path());
    flags.extend(["--weight".to_string(), "analytics=3".to_string()]);
    let (mut master, addr) = start("127.0.0.1:0", &flags).await;
    common::secure(&addr).await;
    let mut op = operator(&addr).await;
    // `--weight` is committed once the master leads.
    wait_serving(&addr).await;
    common::wait_for_state(&mut op, "the --weight flag applied", |s| {
        s.roles
            .iter()
            .any(|r| r.role == "analytics" && r.weight == 3.0)
            .then_some(())
    })
    .await;
    let (framework_id, _calls) = subscribe(&addr, "kept").await;
    let component = std::fs::read(common::example("pi")).unwrap();
    let sha256 = upload(&addr, component.clone()).await;
    let mut op = operator(&addr).await;
    op.set_weights(pb::SetWeightsRequest {
        weights: vec![pb::RoleWeight {
            role: "web".into(),
            weight: 0.5,
        }],
    })
    .await
    .expect("weights set");

    // Acknowledged changes are on disk: a killed master loses none of them.
    master.start_kill().unwrap();
    master.wait().await.unwrap();
    let (_again, addr) = start("127.0.0.1:0", &data_dir_flags(dir.path())).await;
    let state = wait_serving(&addr).await;
    let fw = state
        .frameworks
        .iter()
        .find(|f| f.info.as_ref().is_some_and(|i| i.id == framework_id))
        .unwrap_or_else(|| panic!("framework {framework_id} is gone: {state:#?}"));
    assert_eq!(fw.info.as_ref().unwrap().name, "kept");
    assert!(
        !fw.connected,
        "its scheduler is not connected to the new master"
    );
    let weight = |role: &str| {
        state
            .roles
            .iter()
            .find(|r| r.role == role)
            .map(|r| r.weight)
    };
    assert_eq!(weight("analytics"), Some(3.0), "{:#?}", state.roles);
    assert_eq!(weight("web"), Some(0.5), "{:#?}", state.roles);
    // The component is back too: agents can fetch it.
    assert!(
        fetch(&addr, &sha256).await == component,
        "the fetched component differs"
    );
}

/// Fetches component `sha256` from the master at `addr` as an agent does.
async fn fetch(addr: &str, sha256: &str) -> Vec<u8> {
    let mut agent_api = wasmos_api::proto::agent_service_client::AgentServiceClient::connect(
        format!("http://{addr}"),
    )
    .await
    .unwrap()
    .max_decoding_message_size(64 << 20);
    // With the agent token, as an agent fetches.
    let mut request = tonic::Request::new(pb::FetchComponentRequest {
        sha256: sha256.to_string(),
    });
    let token = common::tokens_for(addr)
        .expect("a bootstrapped master")
        .agent;
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut chunks = agent_api
        .fetch_component(request)
        .await
        .expect("the component is still stored")
        .into_inner();
    let mut fetched = Vec::new();
    while let Some(c) = chunks.message().await.unwrap() {
        fetched.extend(c.data);
    }
    fetched
}

/// Starts `n` agents of 2 CPUs and 2 GiB (hosts `host0`, `host1`, ...) given every master's
/// address in `masters`, each with its own work dir under `dir`.
fn spawn_agents(dir: &Path, masters: &str, n: usize) -> Vec<Child> {
    (0..n)
        .map(|i| {
            let work = dir.join(format!("agent{i}"));
            std::fs::create_dir_all(&work).unwrap();
            common::spawn_agent(
                masters,
                &work,
                &[
                    "--hostname",
                    &format!("host{i}"),
                    "--resources",
                    "cpus:2;mem:2048",
                ],
            )
        })
        .collect()
}

/// Free loopback addresses for `n` masters.
fn free_addrs(n: usize) -> Vec<String> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

/// Starts masters 1..=n as one group, each with its own data dir under `dir`.
async fn start_group(dir: &Path, addrs: &[String]) -> Vec<(Child, String)> {
    let peers: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect();
    let mut out = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        out.push(start_member(dir, i as u64 + 1, addr, &peers.join(",")).await);
    }
    out
}

async fn start_member(dir: &Path, id: u64, addr: &str, peers: &str) -> (Child, String) {
    let mut flags = data_dir_flags(&dir.join(format!("m{id}")));
    flags.extend([
        "--id".to_string(),
        id.to_string(),
        "--peers".to_string(),
        peers.to_string(),
    ]);
    start(addr, &flags).await
}

/// The master at `addr`'s answer to `GetState`; `None` when it cannot be reached at all.
async fn state_at(addr: &str) -> Option<Result<pb::ClusterState, tonic::Status>> {
    let mut op = common::try_operator(addr).await?;
    Some(
        op.get_state(pb::GetStateRequest {})
            .await
            .map(|r| r.into_inner()),
    )
}

/// What the masters (but `skip`) know of framework `id`'s outcome, from the first that serves;
/// leader changes in between are fine.
async fn framework_result(
    addrs: &[String],
    skip: usize,
    id: &str,
) -> pb::GetFrameworkResultResponse {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        for (i, addr) in addrs.iter().enumerate() {
            if i == skip {
                continue;
            }
            let Some(mut op) = common::try_operator(addr).await else {
                continue;
            };
            let request = pb::GetFrameworkResultRequest {
                framework_id: id.into(),
            };
            if let Ok(r) = op.get_framework_result(request).await {
                return r.into_inner();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no master answered for framework {id}'s outcome in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls every address until exactly one serves; returns its index. The others must answer
/// with the not-leader status naming it.
async fn find_leader(addrs: &[String], skip: &[usize]) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut serving = Vec::new();
        let mut hints = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            if skip.contains(&i) {
                continue;
            }
            let Some(state) = state_at(addr).await else {
                continue;
            };
            match state {
                Ok(_) => serving.push(i),
                Err(status) => hints.push(wasmos_api::leader::leader_hint(&status)),
            }
        }
        if serving.len() == 1 {
            let leader = &addrs[serving[0]];
            if hints.iter().all(|h| h.as_deref() == Some(leader.as_str())) {
                return serving[0];
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no single leader in time: serving {serving:?}, hints {hints:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_masters_elect_one_leader_and_a_new_one_when_it_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = free_addrs(3);
    let mut masters = start_group(dir.path(), &addrs).await;
    // One bootstrap for the group; the registry (tokens included) is replicated.
    common::secure(&addrs.join(",")).await;
    let leader = find_leader(&addrs, &[]).await;
    let (framework_id, _calls) = subscribe(&addrs[leader], "survivor").await;
    let mut op = operator(&addrs[leader]).await;
    op.set_weights(pb::SetWeightsRequest {
        weights: vec![pb::RoleWeight {
            role: "analytics".into(),
            weight: 4.0,
        }],
    })
    .await
    .expect("weights set");

    masters[leader].0.start_kill().unwrap();
    masters[leader].0.wait().await.unwrap();
    let next = find_leader(&addrs, &[leader]).await;
    assert_ne!(next, leader);
    let state = wait_serving(&addrs[next]).await;
    assert!(
        state
            .frameworks
            .iter()
            .any(|f| f.info.as_ref().is_some_and(|i| i.id == framework_id)),
        "the new leader lost framework {framework_id}: {state:#?}"
    );
    assert_eq!(
        state
            .roles
            .iter()
            .find(|r| r.role == "analytics")
            .map(|r| r.weight),
        Some(4.0)
    );

    // The killed master comes back as a follower and points at the leader.
    let peers: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect();
    masters[leader] = start_member(
        dir.path(),
        leader as u64 + 1,
        &addrs[leader],
        &peers.join(","),
    )
    .await;
    assert_eq!(find_leader(&addrs, &[]).await, next);
}

/// Every master of the group SIGKILLed at once, then restarted from its data dir: the group
/// elects a leader again and the registry (framework, weight, component) is all there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_all_three_masters_keeps_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = free_addrs(3);
    let mut masters = start_group(dir.path(), &addrs).await;
    // One bootstrap for the group; the registry (tokens included) is replicated.
    common::secure(&addrs.join(",")).await;
    let leader = find_leader(&addrs, &[]).await;
    let (framework_id, _calls) = subscribe(&addrs[leader], "whole-group").await;
    let component = std::fs::read(common::example("pi")).unwrap();
    let sha256 = upload(&addrs[leader], component.clone()).await;
    let mut op = operator(&addrs[leader]).await;
    op.set_weights(pb::SetWeightsRequest {
        weights: vec![pb::RoleWeight {
            role: "analytics".into(),
            weight: 2.5,
        }],
    })
    .await
    .expect("weights set");

    for (master, _) in &mut masters {
        master.start_kill().unwrap();
    }
    for (master, _) in &mut masters {
        master.wait().await.unwrap();
    }
    let _restarted = start_group(dir.path(), &addrs).await;
    let leader = find_leader(&addrs, &[]).await;
    let state = wait_serving(&addrs[leader]).await;
    assert!(
        state
            .frameworks
            .iter()
            .any(|f| f.info.as_ref().is_some_and(|i| i.id == framework_id)),
        "framework {framework_id} is gone after restarting every master: {state:#?}"
    );
    assert_eq!(
        state
            .roles
            .iter()
            .find(|r| r.role == "analytics")
            .map(|r| r.weight),
        Some(2.5),
        "{:#?}",
        state.roles
    );
    assert!(
        fetch(&addrs[leader], &sha256).await == component,
        "the component differs after restarting every master"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi_submitted_to_three_masters_finishes_when_the_leader_is_killed_midway() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = free_addrs(3);
    let mut masters = start_group(dir.path(), &addrs).await;
    // One bootstrap for the group; the registry (tokens included) is replicated.
    common::secure(&addrs.join(",")).await;
    let leader = find_leader(&addrs, &[]).await;
    let all = addrs.join(",");
    let _agents = spawn_agents(dir.path(), &all, 2);
    // 60 tasks of 3 * 10^6 samples each: long enough to be cut in the middle.
    let (tasks, samples) = (60u64, 3_000_000u64);
    let submit = wasmos()
        .args(["submit", &common::example("pi"), "--master", &all, "--"])
        .args([tasks.to_string(), samples.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    let submit = tokio::spawn(submit);

    // Kill the leader once some tasks have finished and others still run.
    let mut op = operator(&addrs[leader]).await;
    common::wait_for_state(&mut op, "pi under way", |s| {
        let running = s
            .tasks
            .iter()
            .filter(|t| {
                t.status
                    .as_ref()
                    .is_some_and(|s| s.state == pb::TaskState::Running as i32)
            })
            .count();
        (running > 0 && s.frameworks.iter().any(|f| f.hosted)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    masters[leader].0.start_kill().unwrap();
    masters[leader].0.wait().await.unwrap();
    let next = find_leader(&addrs, &[leader]).await;
    assert_ne!(next, leader);

    let out = tokio::time::timeout(WAIT, submit)
        .await
        .expect("wasmos submit ends in time")
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pi failed across the failover: {stdout}\n{stderr}"
    );
    // Every index counted exactly once: the sample total is exact.
    assert!(
        stdout.contains(&format!("({} samples in {tasks} tasks", tasks * samples)),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.starts_with("pi ~= 3.14"), "{stdout}");
    assert!(
        stderr.contains("following framework"),
        "submit did not follow the new leader: {stderr}"
    );
}

/// Runs `wasmos operator members ARGS --master MASTERS`; returns stdout, panicking on failure.
async fn members(masters: &str, args: &[&str]) -> String {
    let out = tokio::time::timeout(
        WAIT,
        wasmos()
            .args(["operator", "members"])
            .args(args)
            .args(["--master", masters])
            .output(),
    )
    .await
    .expect("wasmos operator members ends in time")
    .unwrap();
    assert!(
        out.status.success(),
        "members {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_master_is_added_and_the_leader_removed_without_losing_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let mut addrs = free_addrs(4);
    let fourth = addrs.pop().unwrap();
    let mut masters = start_group(dir.path(), &addrs).await;
    // One bootstrap for the group; the registry (tokens included) is replicated.
    common::secure(&addrs.join(",")).await;
    let leader = find_leader(&addrs, &[]).await;
    let (framework_id, calls) = subscribe(&addrs[leader], "member-change").await;
    // It takes no offers: they go to the framework that runs.
    calls
        .send(pb::SchedulerCall {
            call: Some(Call::Suppress(pb::scheduler_call::Suppress {})),
        })
        .await
        .unwrap();
    let peers: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect();
    // Work runs through the change: agents and the submitter know all four addresses.
    let every = format!("{},{fourth}", addrs.join(","));
    let _agents = spawn_agents(dir.path(), &every, 2);
    let pi = tokio::spawn(
        wasmos()
            .args(["submit", &common::example("pi"), "--master", &every])
            .args(["--", "40", "3000000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output(),
    );
    let mut op = operator(&addrs[leader]).await;
    common::wait_for_state(&mut op, "pi under way", |s| {
        s.tasks
            .iter()
            .any(|t| {
                t.status
                    .as_ref()
                    .is_some_and(|st| st.state == pb::TaskState::Running as i32)
            })
            .then_some(())
    })
    .await;
    // Not named in its peers: it starts empty and waits to be added.
    let new = start_member(dir.path(), 4, &fourth, &peers.join(",")).await;
    let list = members(&addrs.join(","), &["add", "4", &fourth]).await;
    assert!(list.contains(&format!("4\t{fourth}\tvoter")), "{list}");

    let gone = leader as u64 + 1;
    let list = members(&addrs.join(","), &["remove", &gone.to_string()]).await;
    assert!(!list.contains(&addrs[leader]), "{list}");
    masters[leader].0.start_kill().unwrap();
    masters.push(new);
    let mut all = addrs.clone();
    all.push(fourth.clone());
    let next = find_leader(&all, &[leader]).await;
    let state = wait_serving(&all[next]).await;
    assert!(
        state
            .frameworks
            .iter()
            .any(|f| f.info.as_ref().is_some_and(|i| i.id == framework_id)),
        "framework {framework_id} lost across the membership change: {state:#?}"
    );
    let listed = members(&all[next], &["list"]).await;
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(listed.contains(&format!("4\t{fourth}\tvoter")), "{listed}");

    // The operator commands find the leader among the masters given.
    let frameworks = wasmos()
        .args(["frameworks", "--json", "--master", &every])
        .output()
        .await
        .unwrap();
    assert!(frameworks.status.success(), "{frameworks:?}");
    assert!(
        String::from_utf8_lossy(&frameworks.stdout).contains(&framework_id),
        "{frameworks:?}"
    );

    let out = tokio::time::timeout(WAIT, pi)
        .await
        .expect("pi finishes in time")
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("(120000000 samples in 40 tasks"),
        "pi across the membership change: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_with_a_corrupt_store_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut master, addr) = start("127.0.0.1:0", &data_dir_flags(dir.path())).await;
    common::secure(&addr).await;
    wait_serving(&addr).await;
    master.start_kill().unwrap();
    master.wait().await.unwrap();
    let store = dir.path().join("raft.redb");
    let len = std::fs::metadata(&store).unwrap().len() as usize;
    std::fs::write(&store, vec![0x5a; len]).unwrap();
    let out = tokio::time::timeout(
        WAIT,
        wasmos()
            .args(["master", "--listen", "127.0.0.1:0"])
            .args(data_dir_flags(dir.path()))
            .output(),
    )
    .await
    .expect("the master exits in time")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a corrupt store was accepted");
    assert!(
        stderr.contains("is corrupt") && stderr.contains("refuses to start"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "it served before refusing"
    );
}

/// Runs `wasmos master` on `dir` expecting it to refuse; returns its stderr.
async fn refused_on(dir: &Path) -> String {
    let out = tokio::time::timeout(
        WAIT,
        wasmos()
            .args(["master", "--listen", "127.0.0.1:0"])
            .args(data_dir_flags(dir))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the master exits in time")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the master started: {stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "it served before refusing"
    );
    stderr
}

/// A data dir that held a registry never starts as a new, empty group: a master whose
/// `raft.redb` was truncated to 0 bytes or removed refuses, naming the file and the way out;
/// a brand-new data dir starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_whose_store_file_was_lost_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut master, addr) = start("127.0.0.1:0", &data_dir_flags(&data)).await;
    common::secure(&addr).await;
    wait_serving(&addr).await;
    master.start_kill().unwrap();
    master.wait().await.unwrap();
    let store = data.join("raft.redb");

    std::fs::File::create(&store).unwrap(); // truncated to 0 bytes
    let stderr = refused_on(&data).await;
    eprintln!("{stderr}");
    for want in [
        store.to_str().unwrap(),
        "is empty (0 bytes)",
        "refuses to start",
        "restore",
        "remove the data dir",
    ] {
        assert!(stderr.contains(want), "no {want:?} in: {stderr}");
    }

    std::fs::remove_file(&store).unwrap();
    let stderr = refused_on(&data).await;
    assert!(
        stderr.contains(store.to_str().unwrap()) && stderr.contains("is missing"),
        "{stderr}"
    );

    // The way out: a fresh data dir starts a new group.
    std::fs::remove_dir_all(&data).unwrap();
    let (mut master, addr) = start("127.0.0.1:0", &data_dir_flags(&data)).await;
    common::secure(&addr).await;
    wait_serving(&addr).await;
    master.start_kill().unwrap();
    master.wait().await.unwrap();
}

/// Each framework (as the master shows it) and each task's framework, state and message: what
/// a timed-out wait shows.
fn summary(s: &pb::ClusterState) -> String {
    let fws: Vec<String> = s.frameworks.iter().map(|f| format!("{f:?}")).collect();
    let tasks: Vec<String> = s
        .tasks
        .iter()
        .map(|t| {
            let st = t.status.as_ref();
            format!(
                "{}/{} {:?} {}",
                t.framework_id,
                st.map_or("", |s| s.task_id.as_str()),
                st.map(|s| s.state),
                st.map_or("", |s| s.message.as_str())
            )
        })
        .collect();
    format!("frameworks {fws:?}; tasks {tasks:?}")
}

/// Polls the masters (but `skip`) until one serves a state that `check` accepts; leader
/// changes in between are fine.
async fn wait_state<T>(
    addrs: &[String],
    skip: Option<usize>,
    what: &str,
    check: impl FnMut(&pb::ClusterState) -> Option<T>,
) -> T {
    wait_state_showing(addrs, skip, what, String::new, check).await
}

/// As [`wait_state`]; a wait that times out also shows what `context` returns then (e.g. the
/// logs of processes the test started).
async fn wait_state_showing<T>(
    addrs: &[String],
    skip: Option<usize>,
    what: &str,
    context: impl Fn() -> String,
    mut check: impl FnMut(&pb::ClusterState) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    loop {
        for (i, addr) in addrs.iter().enumerate() {
            if Some(i) == skip {
                continue;
            }
            if let Some(Ok(s)) = state_at(addr).await {
                if let Some(found) = check(&s) {
                    return found;
                }
                last = Some(s);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; the last state served: {}\n{}",
            last.as_ref().map_or("none".to_string(), summary),
            context()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `accuracy 0.9590 on ...` → `0.9590`, as printed.
fn logreg_accuracy(result: &str) -> String {
    result
        .split("logreg: accuracy ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no accuracy in {result:?}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logreg_and_pi_finish_with_their_results_across_a_killed_leader() {
    let logreg = common::example("logreg");
    let args = ["4", "5000", "120", "300"];
    let baseline = wasmos()
        .args(["dev", "--agents", "2", "--run", &logreg, "--"])
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(baseline.status.success(), "{baseline:?}");
    let expected = logreg_accuracy(&String::from_utf8_lossy(&baseline.stdout));

    let dir = tempfile::tempdir().unwrap();
    let addrs = free_addrs(3);
    let mut masters = start_group(dir.path(), &addrs).await;
    // One bootstrap for the group; the registry (tokens included) is replicated.
    common::secure(&addrs.join(",")).await;
    find_leader(&addrs, &[]).await;
    let all = addrs.join(",");
    let _agents = spawn_agents(dir.path(), &all, 3);
    wait_state(&addrs, None, "3 agents", |s| {
        (s.agents.iter().filter(|a| a.reachable).count() == 3).then_some(())
    })
    .await;
    // Each submit's stderr goes to a file, so that a wait that times out can show it.
    let stderr_file = |name: &str| dir.path().join(format!("{name}.stderr"));
    let submit = |name: &str, component: String, args: Vec<String>| {
        let file = std::fs::File::create(stderr_file(name)).unwrap();
        tokio::spawn(
            wasmos()
                .args(["submit", &component, "--master", &all, "--"])
                .args(args)
                .env("RUST_LOG", "wasmos=debug,info")
                .stdout(Stdio::piped())
                .stderr(file)
                .output(),
        )
    };
    let submit_stderr = |name: &str| std::fs::read_to_string(stderr_file(name)).unwrap_or_default();
    // Frameworks whose tasks run in a state: their ids.
    let running_frameworks = |s: &pb::ClusterState| -> std::collections::HashSet<String> {
        s.tasks
            .iter()
            .filter(|t| {
                t.status
                    .as_ref()
                    .is_some_and(|st| st.state == pb::TaskState::Running as i32)
            })
            .map(|t| t.framework_id.clone())
            .collect()
    };
    // logreg first, until one of its tasks runs (it compiles and loads its data, which can
    // take long on a busy machine), then pi, until one of pi's runs too: so the leader is
    // killed while both are under way. Submitted together, a busy machine could let pi
    // finish before logreg's first task ran, and both be gone from the state before the
    // wait saw them running together.
    let logreg_run = submit(
        "logreg",
        logreg.clone(),
        args.iter().map(|a| a.to_string()).collect(),
    );
    let logreg_id = wait_state_showing(
        &addrs,
        None,
        "logreg running a task",
        || format!("logreg's stderr so far:\n{}", submit_stderr("logreg")),
        |s| {
            if logreg_run.is_finished() {
                return Some(None);
            }
            running_frameworks(s).into_iter().next().map(Some)
        },
    )
    .await;
    let Some(logreg_id) = logreg_id else {
        let out = logreg_run.await.unwrap().unwrap();
        panic!(
            "logreg ended before it ran a task: {:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            submit_stderr("logreg")
        );
    };
    let pi_run = submit(
        "pi",
        common::example("pi"),
        vec!["40".into(), "3000000".into()],
    );
    let submits_so_far = || {
        format!(
            "logreg's stderr so far:\n{}\npi's stderr so far:\n{}",
            submit_stderr("logreg"),
            submit_stderr("pi")
        )
    };
    let submit_ended = wait_state_showing(&addrs, None, "pi running a task", submits_so_far, |s| {
        if logreg_run.is_finished() || pi_run.is_finished() {
            return Some(true);
        }
        running_frameworks(s)
            .iter()
            .any(|id| *id != logreg_id)
            .then_some(false)
    })
    .await;
    if submit_ended {
        // A submit that ends before both run failed, or pi outran every poll: show why.
        for (name, run) in [("logreg", logreg_run), ("pi", pi_run)] {
            if run.is_finished() {
                let out = run.await.unwrap().unwrap();
                panic!(
                    "{name} ended before pi was seen running: {:?}\nstdout: {}\nstderr: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    submit_stderr(name)
                );
            }
        }
        unreachable!("a submit ended");
    }
    let leader = find_leader(&addrs, &[]).await;
    let before = wait_state(&addrs, None, "the state before the kill", |s| {
        Some(s.clone())
    })
    .await;
    masters[leader].0.start_kill().unwrap();
    masters[leader].0.wait().await.unwrap();

    // No framework or agent registration is lost: the new leader knows every framework
    // still running and every agent, which all come back.
    let running: Vec<String> = before
        .frameworks
        .iter()
        .map(|f| f.info.as_ref().unwrap().id.clone())
        .collect();
    let after = wait_state(&addrs, Some(leader), "the 3 agents back", |s| {
        (s.agents.iter().filter(|a| a.reachable).count() == 3).then(|| s.clone())
    })
    .await;
    assert_eq!(after.agents.len(), 3, "{:#?}", after.agents);
    for id in &running {
        let known = after
            .frameworks
            .iter()
            .any(|g| &g.info.as_ref().unwrap().id == id);
        // One that finished meanwhile is gone from the list but has its outcome.
        if !known {
            let result = framework_result(&addrs, leader, id).await;
            assert!(
                result.ended,
                "framework {id} lost: not registered and no outcome ({result:?})"
            );
        }
    }

    for (name, run) in [("logreg", logreg_run), ("pi", pi_run)] {
        let out = tokio::time::timeout(WAIT, run)
            .await
            .unwrap_or_else(|_| panic!("{name} did not finish in time"))
            .unwrap()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{name} failed across the failover: {stdout}\n{}",
            submit_stderr(name)
        );
        if name == "logreg" {
            assert_eq!(logreg_accuracy(&stdout), expected, "{stdout}");
        } else {
            assert!(
                stdout.contains("(120000000 samples in 40 tasks"),
                "{stdout}"
            );
        }
    }
}

/// A group of three whose two followers were SIGKILLed: returns its dir (kept alive), the
/// addresses, the processes and the leader's index.
async fn leader_cut_off() -> (tempfile::TempDir, Vec<String>, Vec<(Child, String)>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let addrs = free_addrs(3);
    let mut masters = start_group(dir.path(), &addrs).await;
    common::secure(&addrs.join(",")).await;
    let leader = find_leader(&addrs, &[]).await;
    for (i, (child, _)) in masters.iter_mut().enumerate() {
        if i != leader {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }
    (dir, addrs, masters, leader)
}

/// Polls the master at `addr` until it stops serving; returns its status and how long that
/// took, failing after `bound`.
async fn until_not_serving(addr: &str, bound: Duration) -> (tonic::Status, Duration) {
    let start = tokio::time::Instant::now();
    loop {
        match state_at(addr).await {
            Some(Err(status)) => return (status, start.elapsed()),
            Some(Ok(_)) => {}
            None => panic!("the master at {addr} cannot be reached"),
        }
        assert!(
            start.elapsed() < bound,
            "the leader still serves {:?} after losing its majority",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A leader whose two followers are gone cannot commit anything: it stops serving once a
/// majority has not confirmed it for 1.5 s (confirmations are tried every 250 ms and may each
/// take 1 s to fail, so it goes within about 4 s), and then names no leader. 6 s leaves room
/// for a busy machine; a leader that kept serving until openraft deposed it would never go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_a_majority_stops_serving_within_seconds() {
    let (_dir, addrs, _masters, leader) = leader_cut_off().await;
    let (status, took) = until_not_serving(&addrs[leader], Duration::from_secs(6)).await;
    eprintln!("stepped down {took:?} after losing its majority");
    assert_eq!(
        wasmos_api::leader::leader_hint(&status),
        None,
        "it names no leader: {status:?}"
    );
    // It stays down: nothing can confirm it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        matches!(state_at(&addrs[leader]).await, Some(Err(_))),
        "a leader without a majority serves again"
    );
}

/// A change answers only once a majority has it on disk: a weight set on a leader that has
/// just lost both followers (it still serves, for up to seconds) is never answered with
/// success; the call fails when the leader steps down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_cannot_be_made_durable_is_never_answered_with_success() {
    let (_dir, addrs, _masters, leader) = leader_cut_off().await;
    let mut op = operator(&addrs[leader]).await;
    let sent = tokio::time::Instant::now();
    let call = tokio::spawn(async move {
        op.set_weights(pb::SetWeightsRequest {
            weights: vec![pb::RoleWeight {
                role: "undurable".into(),
                weight: 3.0,
            }],
        })
        .await
    });
    let answer = tokio::time::timeout(WAIT, call)
        .await
        .expect("the call is answered once the leader steps down")
        .unwrap();
    let took = sent.elapsed();
    eprintln!("answered {took:?} after it was sent: {answer:?}");
    let status = answer.expect_err("a change no majority has is not answered with success");
    // Not-leader (the leader stepped down first) or unavailable (the commit timed out).
    assert!(
        matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::FailedPrecondition
        ),
        "a status a client retries on: {status:?}"
    );
    until_not_serving(&addrs[leader], Duration::from_secs(6)).await;
}
