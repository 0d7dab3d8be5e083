//! The operator commands against real `wasmos master` and `wasmos agent` processes:
//! `wasmos agents/frameworks/tasks` tables and `--json`, `wasmos kill` (the framework gets
//! TASK_KILLED; a restarting framework replaces the task), `wasmos teardown` (the framework is
//! gone, its tasks' processes die, its hosted scheduler stops), and clear errors with non-zero
//! exits for unknown ids and an unreachable master.

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;
use tokio::process::Child;
use wasmos_api::proto as pb;

mod common;

use common::scheduler::Scheduler;
use common::{
    NATIVE_DEFAULT_ROLE, WAIT, example, ok, operator, run, spawn_agent, start_master,
    start_master_with, until, wasmos,
};
use pb::scheduler_call::Call;
use pb::scheduler_event::Event;
use std::process::Stdio;

/// Runs a command that must fail with exit status `code`; returns its stderr.
async fn fails(addr: &str, args: &[&str], code: i32, needle: &str) -> String {
    let out = run(addr, args).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "wasmos {args:?}: expected exit {code}; stderr: {stderr}"
    );
    assert!(
        stderr.contains(needle),
        "wasmos {args:?}: stderr does not mention {needle:?}: {stderr}"
    );
    stderr
}

/// Runs `wasmos ARGS --json`; returns the array it prints.
async fn json(addr: &str, args: &[&str]) -> Vec<Value> {
    let mut all = args.to_vec();
    all.push("--json");
    let out = ok(addr, &all).await;
    match serde_json::from_str(&out) {
        Ok(Value::Array(items)) => items,
        other => panic!("wasmos {all:?} printed no JSON array ({other:?}): {out}"),
    }
}

/// Starts `wasmos agent` with 4 CPUs and 4 GiB, host name `ops-host`, attribute `rack:r1`.
fn start_agent(addr: &str, dir: &Path) -> Child {
    spawn_agent(
        addr,
        &dir.join("agent"),
        &[
            "--resources",
            "cpus:4;mem:4096;disk:1000",
            "--attributes",
            "rack:r1",
            "--hostname",
            "ops-host",
        ],
    )
}

/// Waits until the master lists one reachable agent; returns its id.
async fn agent_registered(addr: &str) -> String {
    let agents = until("the agent registers", || async {
        let a = json(addr, &["agents"]).await;
        (a.len() == 1 && a[0]["reachable"] == true).then_some(a)
    })
    .await;
    agents[0]["id"].as_str().expect("an id").to_string()
}

/// The row of `table` whose first cell is `id`, with the header line.
fn row<'a>(table: &'a str, id: &str) -> (&'a str, &'a str) {
    let header = table.lines().next().expect("a header line");
    let line = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .unwrap_or_else(|| panic!("no row for {id} in\n{table}"));
    (header, line)
}

/// Checks that `cell` starts in `line` at the column where `column` starts in `header`.
fn aligned(header: &str, line: &str, column: &str, cell: &str) {
    let at = header
        .find(column)
        .unwrap_or_else(|| panic!("no column {column:?} in {header:?}"));
    assert_eq!(
        line.get(at..at + cell.len()),
        Some(cell),
        "column {column:?} of {line:?} is not {cell:?} (header {header:?})"
    );
}

/// The state of task `id` in `wasmos tasks --json`, if listed.
fn state_of(tasks: &[Value], id: &str) -> Option<String> {
    tasks
        .iter()
        .find(|t| t["id"] == id)
        .map(|t| t["state"].as_str().unwrap_or("").to_string())
}

/// An external framework of role `tests` naming component `component_sha256`.
fn framework(component_sha256: &str) -> pb::FrameworkInfo {
    pb::FrameworkInfo {
        name: "ops-external".into(),
        role: "tests".into(),
        principal: "tester".into(),
        component_sha256: component_sha256.into(),
        ..Default::default()
    }
}

/// Uploads the `hostile` example (whose executor has `sleep:MS` tasks); returns its digest.
async fn upload_hostile(addr: &str) -> String {
    let bytes = std::fs::read(example("hostile")).unwrap();
    let mut op = operator(addr).await;
    op.upload_component(tokio_stream::iter(vec![pb::UploadComponentChunk {
        expected_sha256: String::new(),
        data: bytes,
    }]))
    .await
    .expect("upload accepted")
    .into_inner()
    .sha256
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_json_kill_and_teardown_of_an_external_framework() {
    let (mut master, addr) = start_master().await;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = start_agent(&addr, dir.path());
    let agent_id = agent_registered(&addr).await;

    // A framework that launches two long Wasm tasks and acknowledges only up to RUNNING.
    let digest = upload_hostile(&addr).await;
    // A framework's principal is its token's.
    let tester = common::token_of(&addr, "tester", "management").await;
    let mut sched = Scheduler::try_subscribe_as(&addr, framework(&digest), &tester)
        .await
        .expect("subscribed");
    let fw = sched.id.clone();
    let offer = sched.offer().await;
    let sleeper = |id: &str| pb::TaskInfo {
        task_id: id.into(),
        name: format!("{id}-name"),
        agent_id: offer.agent_id.clone(),
        resources: Some(pb::Resources {
            millicpus: 250,
            mem_mb: 64,
            disk_mb: 0,
        }),
        kind: Some(pb::task_info::Kind::Wasm(pb::WasmTask {
            executor_id: format!("exec-{id}"),
            payload: b"sleep:600000".to_vec(),
            ..Default::default()
        })),
    };
    sched
        .accept(
            &offer,
            vec![sleeper("sleeper-1"), sleeper("sleeper-2")],
            None,
        )
        .await;
    // No more offers: this test never answers them, and offers held would starve the second
    // framework below until they time out.
    sched
        .call(Call::Suppress(pb::scheduler_call::Suppress {}))
        .await;
    let mut running = HashSet::new();
    while running.len() < 2 {
        let s = sched.next_update().await;
        sched.ack(&s).await;
        match pb::TaskState::try_from(s.state) {
            Ok(pb::TaskState::Running) => {
                running.insert(s.task_id);
            }
            Ok(pb::TaskState::Staging | pb::TaskState::Starting) => {}
            other => panic!("task {} became {other:?}: {}", s.task_id, s.message),
        }
    }

    // Agents: a table aligned under its header, and JSON.
    let table = ok(&addr, &["agents"]).await;
    let (header, line) = row(&table, &agent_id);
    aligned(header, line, "HOSTNAME", "ops-host");
    aligned(header, line, "STATE", "reachable");
    aligned(header, line, "TASKS", "2");
    aligned(header, line, "CPUS USED/TOTAL", "0.5/4");
    aligned(header, line, "MEM MIB USED/TOTAL", "128/4096");
    aligned(header, line, "ATTRIBUTES", "rack:r1");
    // A real agent as root probes native-task isolation at start and registers what is on.
    let full = "user,mount,pid,no_new_privs,caps,seccomp";
    let isolated = wasmos_test_skip::met(
        "root and cgroups (cpu, memory, pids) for its isolation part",
        common::cgroups_unavailable(),
    );
    if isolated {
        aligned(header, line, "ISOLATION", full);
    }
    let agents = json(&addr, &["agents"]).await;
    let a = &agents[0];
    if isolated {
        let on: Vec<&str> = a["isolation"]
            .as_array()
            .unwrap_or_else(|| panic!("no isolation list in {a}"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(on.join(","), full, "{a}");
        assert_eq!(a["isolation_warning"], Value::Null, "{a}");
    }
    assert_eq!(a["id"], agent_id.as_str());
    assert_eq!(a["hostname"], "ops-host");
    assert_eq!(a["state"], "reachable");
    assert_eq!(a["active_tasks"], 2);
    assert_eq!(a["attributes"]["rack"], "r1");
    assert_eq!(a["total"]["cpus"], 4.0);
    assert_eq!(a["total"]["mem_mb"], 4096);
    assert_eq!(a["used"]["cpus"], 0.5);
    assert_eq!(a["used"]["mem_mb"], 128);

    // Frameworks.
    let table = ok(&addr, &["frameworks"]).await;
    let (header, line) = row(&table, &fw);
    aligned(header, line, "NAME", "ops-external");
    aligned(header, line, "ROLE", "tests");
    aligned(header, line, "PRINCIPAL", "tester");
    aligned(header, line, "SCHEDULER", "external");
    aligned(header, line, "STATE", "connected");
    aligned(header, line, "TASKS", "2");
    let frameworks = json(&addr, &["frameworks"]).await;
    assert_eq!(frameworks.len(), 1, "{frameworks:?}");
    let f = &frameworks[0];
    assert_eq!(f["id"], fw.as_str());
    assert_eq!(f["name"], "ops-external");
    assert_eq!(f["hosted"], false);
    assert_eq!(f["connected"], true);
    assert_eq!(f["active_tasks"], 2);
    assert_eq!(f["used"]["mem_mb"], 128);
    assert_eq!(f["component_sha256"], digest.as_str());

    // Tasks, all and of one framework.
    let table = ok(&addr, &["tasks"]).await;
    let (header, line) = row(&table, "sleeper-1");
    aligned(header, line, "NAME", "sleeper-1-name");
    aligned(header, line, "STATE", "RUNNING");
    aligned(header, line, "FRAMEWORK ID", &fw);
    aligned(header, line, "HOST", "ops-host");
    aligned(header, line, "CPUS", "0.25");
    let tasks = json(&addr, &["tasks", "--framework", &fw]).await;
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    let t = tasks
        .iter()
        .find(|t| t["id"] == "sleeper-2")
        .expect("sleeper-2");
    assert_eq!(t["state"], "RUNNING");
    assert_eq!(t["framework_id"], fw.as_str());
    assert_eq!(t["framework_name"], "ops-external");
    assert_eq!(t["agent_id"], agent_id.as_str());
    assert_eq!(t["agent_hostname"], "ops-host");
    assert_eq!(t["resources"]["cpus"], 0.25);
    fails(
        &addr,
        &["tasks", "--framework", "fw-nope"],
        1,
        "framework fw-nope is not registered",
    )
    .await;

    // Kill: the framework gets TASK_KILLED; unacknowledged, the master still lists it.
    let out = ok(&addr, &["kill", "sleeper-1"]).await;
    assert!(out.contains("sleeper-1 KILLED"), "{out}");
    let killed = sched
        .wait_for_or_end(|e| match e {
            Event::Update(u) => u
                .status
                .clone()
                .filter(|s| s.task_id == "sleeper-1" && s.state == pb::TaskState::Killed as i32),
            _ => None,
        })
        .await
        .expect("the framework hears that sleeper-1 was killed");
    let tasks = json(&addr, &["tasks"]).await;
    assert_eq!(state_of(&tasks, "sleeper-1").as_deref(), Some("KILLED"));
    assert_eq!(state_of(&tasks, "sleeper-2").as_deref(), Some("RUNNING"));
    let agents = json(&addr, &["agents"]).await;
    assert_eq!(agents[0]["active_tasks"], 1, "{agents:?}");
    fails(&addr, &["kill", "sleeper-1"], 1, "has already ended").await;
    sched.ack(&killed).await;
    fails(
        &addr,
        &["kill", "nosuch"],
        1,
        "no framework has a task nosuch",
    )
    .await;
    fails(
        &addr,
        &["kill", "sleeper-2", "--framework", "fw-nope"],
        1,
        "framework fw-nope is not registered",
    )
    .await;
    fails(&addr, &["kill", "bad/id"], 1, "may use only letters").await;

    // The same task id in a second framework: a kill must name the framework.
    let mut sched2 = Scheduler::subscribe(&addr, framework(&digest)).await;
    let fw2 = sched2.id.clone();
    let offer2 = sched2.offer().await;
    sched2
        .accept(&offer2, vec![sleeper("sleeper-2")], None)
        .await;
    loop {
        let s = sched2.next_update().await;
        sched2.ack(&s).await;
        if s.state == pb::TaskState::Running as i32 {
            break;
        }
    }
    let stderr = fails(&addr, &["kill", "sleeper-2"], 1, "is used by frameworks").await;
    assert!(stderr.contains(&fw) && stderr.contains(&fw2), "{stderr}");
    let out = ok(&addr, &["kill", "sleeper-2", "--framework", &fw2]).await;
    assert!(out.contains("sleeper-2 KILLED"), "{out}");
    let killed = sched2.next_update().await;
    assert_eq!(killed.state, pb::TaskState::Killed as i32, "{killed:?}");
    sched2.ack(&killed).await;
    let out = ok(&addr, &["teardown", &fw2]).await;
    assert!(out.contains("0 tasks killed"), "{out}");

    // Teardown: the framework is gone with its tasks, and its scheduler is told so.
    let out = ok(&addr, &["teardown", &fw]).await;
    assert!(
        out.contains(&format!(
            "framework {fw} torn down: 1 tasks killed on 1 agents"
        )),
        "{out}"
    );
    // The master tells the scheduler before it closes the stream.
    let message = sched
        .wait_for_or_end(|e| match e {
            Event::Error(err) if err.fatal => Some(err.message.clone()),
            _ => None,
        })
        .await
        .expect("a fatal error event naming the teardown before the stream ends");
    assert!(message.contains("torn down by an operator"), "{message}");
    assert_eq!(json(&addr, &["frameworks"]).await, Vec::<Value>::new());
    assert_eq!(json(&addr, &["tasks"]).await, Vec::<Value>::new());
    let agents = json(&addr, &["agents"]).await;
    assert_eq!(agents[0]["active_tasks"], 0, "{agents:?}");
    assert_eq!(agents[0]["used"]["cpus"], 0.0, "{agents:?}");
    fails(&addr, &["teardown", &fw], 1, "was already removed").await;
    fails(
        &addr,
        &["teardown", "fw-nope"],
        1,
        "framework fw-nope is not known",
    )
    .await;

    agent.kill().await.expect("kill the agent");
    master.kill().await.expect("kill the master");
}

/// Whether process `pid` is alive (a zombie counts as dead).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The host pids of the service's instances (the `sleep` commands in framework `fw`'s task
/// cgroups) seen so far, in order: those recorded in `file`, then any new ones, which are
/// appended to it. (A task in its own PID namespace cannot tell its host pid, nor write
/// outside its sandbox, so the test looks from outside.)
fn pids(file: &Path, fw: &str) -> Vec<u32> {
    let mut seen: Vec<u32> = std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for p in common::framework_pids(fw) {
        let sleeping =
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep");
        if sleeping && !seen.contains(&p) {
            seen.push(p);
        }
    }
    let text: String = seen.iter().map(|p| format!("{p}\n")).collect();
    let _ = std::fs::write(file, text);
    seen
}

/// Waits until the RUNNING tasks of framework `fw` are `ids` (sorted); `what` names the wait.
async fn until_running(addr: &str, fw: &str, what: &str, ids: &[&str]) {
    until(what, || async {
        let tasks = json(addr, &["tasks", "--framework", fw]).await;
        let mut running: Vec<&str> = tasks
            .iter()
            .filter(|t| t["state"] == "RUNNING")
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        running.sort();
        (running == ids).then_some(())
    })
    .await
}

/// Waits until `file` lists `n` pids and returns them; `what` names the wait.
async fn until_pids(file: &Path, fw: &str, what: &str, n: usize) -> Vec<u32> {
    until(what, || async {
        let p = pids(file, fw);
        (p.len() == n).then_some(p)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_service_replaces_a_killed_task_and_teardown_stops_it() {
    let (mut master, addr) = start_master_with(&NATIVE_DEFAULT_ROLE, Stdio::inherit()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = start_agent(&addr, dir.path());
    agent_registered(&addr).await;

    // Two instances of a native command, kept running by `service`; the test notes their pids.
    let pid_file = dir.path().join("pids");
    let script = "exec /bin/sleep 600".to_string();
    let submit = wasmos()
        .args([
            "submit",
            &example("service"),
            "--name",
            "svc",
            "--master",
            &addr,
        ])
        .args(["--", "2", "0.1", "32", "/bin/sh", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wasmos submit starts");
    let fw = until("the service framework is registered", || async {
        let f = json(&addr, &["frameworks"]).await;
        f.first().map(|f| f["id"].as_str().unwrap().to_string())
    })
    .await;
    until_running(
        &addr,
        &fw,
        "both instances run",
        &["service-0-1", "service-1-1"],
    )
    .await;
    let first = until_pids(&pid_file, &fw, "both instances recorded their pids", 2).await;
    assert!(first.iter().all(|p| alive(*p)), "{first:?}");

    let frameworks = json(&addr, &["frameworks"]).await;
    assert_eq!(frameworks[0]["name"], "svc");
    assert_eq!(frameworks[0]["hosted"], true);
    assert_eq!(frameworks[0]["active_tasks"], 2);
    let table = ok(&addr, &["frameworks"]).await;
    let (header, line) = row(&table, &fw);
    aligned(header, line, "SCHEDULER", "hosted");
    let table = ok(&addr, &["tasks"]).await;
    let (header, line) = row(&table, "service-0-1");
    aligned(header, line, "FRAMEWORK", "svc");
    aligned(header, line, "STATE", "RUNNING");

    // Kill one instance: its process dies and the service launches a replacement.
    let out = ok(&addr, &["kill", "service-0-1", "--framework", &fw]).await;
    assert!(out.starts_with("service-0-1 "), "{out}");
    until_running(
        &addr,
        &fw,
        "the replacement runs",
        &["service-0-2", "service-1-1"],
    )
    .await;
    let after = until_pids(&pid_file, &fw, "the replacement recorded its pid", 3).await;
    let dead: Vec<u32> = first.iter().copied().filter(|p| !alive(*p)).collect();
    assert_eq!(dead.len(), 1, "exactly one of {first:?} was killed");
    assert!(alive(after[2]), "the replacement {} runs", after[2]);

    // Teardown: every instance dies, the framework and its hosted scheduler are gone, and
    // `wasmos submit`, which followed it, says so.
    let out = ok(&addr, &["teardown", &fw]).await;
    assert!(
        out.contains("2 tasks killed") && out.contains("hosted scheduler stopped"),
        "{out}"
    );
    assert_eq!(json(&addr, &["frameworks"]).await, Vec::<Value>::new());
    let all = pids(&pid_file, &fw);
    until("every instance's process is dead", || async {
        all.iter().all(|p| !alive(*p)).then_some(())
    })
    .await;
    let mut op = operator(&addr).await;
    until("the hosted scheduler stops", || {
        let mut op = op.clone();
        async move {
            let s = op
                .get_state(pb::GetStateRequest {})
                .await
                .ok()?
                .into_inner();
            (s.hosted_schedulers == 0).then_some(())
        }
    })
    .await;
    let r = op
        .get_framework_result(pb::GetFrameworkResultRequest {
            framework_id: fw.clone(),
        })
        .await
        .expect("the master remembers the framework")
        .into_inner();
    assert!(!r.registered && !r.ended, "{r:?}");
    let out = tokio::time::timeout(WAIT, submit.wait_with_output())
        .await
        .expect("wasmos submit ends after the teardown")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("torn down"), "{stderr}");
    // No instance was started after the teardown.
    assert_eq!(pids(&pid_file, &fw), all);

    agent.kill().await.expect("kill the agent");
    master.kill().await.expect("kill the master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_master_and_an_empty_one_are_reported_clearly() {
    let nowhere = "127.0.0.1:1";
    for args in [
        vec!["agents"],
        vec!["frameworks", "--json"],
        vec!["tasks"],
        vec!["kill", "t1"],
        vec!["teardown", "fw-1"],
    ] {
        fails(
            nowhere,
            &args,
            2,
            "cannot connect to a master at 127.0.0.1:1",
        )
        .await;
    }

    let (mut master, addr) = start_master().await;
    assert_eq!(json(&addr, &["agents"]).await, Vec::<Value>::new());
    assert_eq!(json(&addr, &["tasks"]).await, Vec::<Value>::new());
    let table = ok(&addr, &["frameworks"]).await;
    assert_eq!(table.lines().count(), 1, "only the header: {table}");
    assert!(table.starts_with("ID "), "{table}");
    fails(&addr, &["kill", "t1"], 1, "no framework has a task t1").await;
    fails(
        &addr,
        &["teardown", "fw-1"],
        1,
        "framework fw-1 is not known",
    )
    .await;
    master.kill().await.expect("kill the master");
}
