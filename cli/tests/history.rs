//! The master's history of completed tasks and frameworks against real `wasmos master` and
//! `wasmos agent` processes: after pi jobs `wasmos tasks --all` and `wasmos frameworks --all`
//! show them and their FINISHED tasks, `--max-completed-tasks-per-framework` bounds what is kept
//! (at the bound and one past), another tenant sees none of it, and `wasmos kill` of a task
//! whose framework acknowledged its end prints its final state from the history.

use std::process::Stdio;

use serde_json::Value;

mod common;

use common::{MasterAndAgent, NATIVE_DEFAULT_ROLE, WAIT, example, ok, output, until, wasmos};

/// `wasmos ARGS --json` as a JSON array.
fn parse(all: &[&str], out: &str) -> Vec<Value> {
    match serde_json::from_str(out) {
        Ok(Value::Array(items)) => items,
        other => panic!("wasmos {all:?} printed no JSON array ({other:?}): {out}"),
    }
}

async fn json(addr: &str, args: &[&str]) -> Vec<Value> {
    let all = [args, &["--json"]].concat();
    parse(&all, &ok(addr, &all).await)
}

/// Runs the pi example with `tasks` tasks to its end; returns its framework id.
async fn pi(addr: &str, tasks: u32) -> String {
    let n = tasks.to_string();
    let out = output(&[
        "submit",
        &example("pi"),
        "--master",
        addr,
        "--",
        &n,
        "20000",
    ])
    .await;
    common::assert_pi(&out);
    let frameworks = json(addr, &["frameworks", "--all"]).await;
    frameworks
        .iter()
        .find(|f| f["completed"] == true && f["tasks_finished"] == tasks)
        .and_then(|f| f["id"].as_str())
        .unwrap_or_else(|| panic!("no completed pi framework of {tasks} tasks in {frameworks:?}"))
        .to_string()
}

fn ids_of(tasks: &[Value], fw: &str) -> Vec<String> {
    tasks
        .iter()
        .filter(|t| t["framework_id"] == fw)
        .map(|t| t["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn completed_jobs_are_listed_bounded_and_only_to_their_owner() {
    let c = MasterAndAgent::start_with(&["--max-completed-tasks-per-framework", "3"]).await;
    let addr = c.addr.clone();
    // At the bound: three tasks, all kept.
    let three = pi(&addr, 3).await;
    // One past: four tasks ended, three kept.
    let four = pi(&addr, 4).await;

    // Nothing is registered any more; without --all the lists are empty.
    assert_eq!(json(&addr, &["frameworks"]).await, Vec::<Value>::new());
    assert_eq!(json(&addr, &["tasks"]).await, Vec::<Value>::new());

    let frameworks = json(&addr, &["frameworks", "--all"]).await;
    assert_eq!(frameworks.len(), 2, "{frameworks:?}");
    // Newest first.
    assert_eq!(frameworks[0]["id"], four.as_str());
    for (f, finished) in frameworks.iter().zip([4, 3]) {
        assert_eq!(f["completed"], true, "{f}");
        assert_eq!(f["outcome"], "succeeded", "{f}");
        assert_eq!(f["name"], "pi", "{f}");
        assert_eq!(f["tasks_finished"], finished, "{f}");
        assert_eq!(f["tasks_failed"], 0, "{f}");
        assert_eq!(f["completed_tasks"], 3, "{f}");
        assert!(f["result"].as_str().is_some_and(|r| !r.is_empty()), "{f}");
        assert!(
            f["ended_unix_ms"].as_u64() >= f["registered_unix_ms"].as_u64(),
            "{f}"
        );
    }
    let table = ok(&addr, &["frameworks", "--all"]).await;
    let line = table
        .lines()
        .find(|l| l.starts_with(&three))
        .unwrap_or_else(|| panic!("no row for {three} in\n{table}"));
    assert!(line.contains("succeeded"), "{line}");

    let tasks = json(&addr, &["tasks", "--all"]).await;
    assert_eq!(ids_of(&tasks, &three).len(), 3, "{tasks:?}");
    assert_eq!(ids_of(&tasks, &four).len(), 3, "{tasks:?}");
    for t in &tasks {
        assert_eq!(t["state"], "FINISHED", "{t}");
        assert_eq!(t["completed"], true, "{t}");
        assert_eq!(t["framework_name"], "pi", "{t}");
        assert!(t["result_bytes"].as_u64() > Some(0), "{t}");
        assert!(
            t["ended_unix_ms"].as_u64() >= t["launched_unix_ms"].as_u64(),
            "{t}"
        );
    }
    // Filters.
    let of_three = json(&addr, &["tasks", "--all", "--framework", &three]).await;
    assert_eq!(ids_of(&of_three, &three).len(), 3, "{of_three:?}");
    assert_eq!(of_three.len(), 3, "{of_three:?}");
    let killed = json(&addr, &["tasks", "--all", "--state", "killed"]).await;
    assert_eq!(killed, Vec::<Value>::new());
    let agent = tasks[0]["agent_id"].as_str().expect("an agent id");
    let on_agent = json(&addr, &["tasks", "--all", "--agent", agent]).await;
    assert_eq!(on_agent.len(), 6, "{on_agent:?}");
    let table = ok(&addr, &["tasks", "--all"]).await;
    assert_eq!(
        table.lines().filter(|l| l.contains(" FINISHED ")).count(),
        6,
        "{table}"
    );

    // Another tenant sees none of it, and is not refused.
    let eve = common::token_of(&addr, "eve", "agent").await;
    for what in ["tasks", "frameworks"] {
        let args = [what, "--all", "--json", "--master", &addr];
        let out =
            tokio::time::timeout(WAIT, wasmos().args(args).env("WASMOS_TOKEN", &eve).output())
                .await
                .expect("in time")
                .expect("wasmos runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed = parse(&args, &String::from_utf8_lossy(&out.stdout));
        assert_eq!(listed, Vec::<Value>::new(), "eve sees {what}");
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_prints_the_final_state_and_teardown_keeps_the_killed_tasks() {
    let c = MasterAndAgent::start_with(&NATIVE_DEFAULT_ROLE).await;
    let addr = c.addr.clone();
    // One instance of a native command kept running by `service`, whose hosted scheduler
    // acknowledges every update at once: a killed task leaves the task book quickly.
    let mut submit = wasmos()
        .args([
            "submit",
            &example("service"),
            "--name",
            "svc",
            "--master",
            &addr,
        ])
        .args([
            "--",
            "1",
            "0.1",
            "32",
            "/bin/sh",
            "-c",
            "exec /bin/sleep 600",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("wasmos submit starts");
    let running = |id: &'static str| {
        let addr = addr.clone();
        async move {
            let tasks = json(&addr, &["tasks"]).await;
            let t = tasks
                .iter()
                .find(|t| t["id"] == id && t["state"] == "RUNNING")?;
            Some(t["framework_id"].as_str()?.to_string())
        }
    };
    let fw = until("service-0-1 runs", || running("service-0-1")).await;

    let out = ok(&addr, &["kill", "service-0-1", "--framework", &fw]).await;
    assert!(out.starts_with("service-0-1 KILLED"), "{out}");
    until("the replacement runs", || running("service-0-2")).await;
    let done = json(&addr, &["tasks", "--all", "--state", "killed"]).await;
    assert_eq!(ids_of(&done, &fw), ["service-0-1"], "{done:?}");

    // Teardown: the live replacement ends KILLED in the history, the framework torn down.
    ok(&addr, &["teardown", &fw]).await;
    let frameworks = json(&addr, &["frameworks", "--all"]).await;
    let f = frameworks
        .iter()
        .find(|f| f["id"] == fw.as_str())
        .unwrap_or_else(|| panic!("{fw} not in {frameworks:?}"));
    assert_eq!(f["outcome"], "torn_down", "{f}");
    assert_eq!(f["completed"], true, "{f}");
    let tasks = json(&addr, &["tasks", "--all", "--framework", &fw]).await;
    let replacement = tasks
        .iter()
        .find(|t| t["id"] == "service-0-2")
        .unwrap_or_else(|| panic!("service-0-2 not in {tasks:?}"));
    assert_eq!(replacement["state"], "KILLED", "{replacement}");
    assert!(
        replacement["message"]
            .as_str()
            .is_some_and(|m| m.contains("framework was removed")),
        "{replacement}"
    );
    let _ = tokio::time::timeout(WAIT, submit.wait()).await;
    c.stop().await;
}
