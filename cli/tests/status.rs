//! `wasmos status`, placement feedback and `wasmos submit`'s progress line against real
//! `wasmos master` and `wasmos agent` processes: the status of a finished, a failed and a
//! torn-down framework (and of an unknown id, exit 1); "waiting: no agent registered" in
//! `status` and in submit's output when no agent is there; "tasks need 8 CPUs, the largest
//! agent has 2" for tasks larger than the only agent; `0/4 finished` once pi reported its
//! total; and "lost, retrying" when the master dies under a running submit.

use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr};
use tokio::sync::mpsc;

mod common;

use common::{MasterAndAgent, WAIT, example, ok, run, until, wasmos};

/// `wasmos status ID --json` as an object, or `None` (with its exit code) when it fails.
async fn status_json(addr: &str, id: &str) -> Result<Value, (Option<i32>, String)> {
    let out = run(addr, &["status", id, "--json"]).await;
    if !out.status.success() {
        return Err((
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(serde_json::from_slice(&out.stdout).expect("status --json prints JSON"))
}

/// `wasmos submit pi --detach -- ARGS`: the framework's id.
async fn detached_pi(addr: &str, args: &[&str]) -> String {
    let pi = example("pi");
    let out =
        common::output(&[&["submit", &pi, "--detach", "--master", addr, "--"], args].concat())
            .await;
    common::succeeded(&out).trim().to_string()
}

/// Waits until `wasmos status ID` reports `state`; returns its JSON.
async fn status_once(addr: &str, id: &str, state: &str) -> Value {
    until(&format!("{id} is {state}"), || async {
        status_json(addr, id)
            .await
            .ok()
            .filter(|s| s["state"] == state)
    })
    .await
}

/// Sends each line `child` writes on its (piped) stderr to the returned channel.
fn stderr_lines(child: &mut Child) -> mpsc::UnboundedReceiver<String> {
    let stderr: ChildStderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads lines until one contains `what`; fails the test after [`WAIT`] or at the end of the
/// output. Returns the line.
async fn line_with(
    rx: &mut mpsc::UnboundedReceiver<String>,
    what: &str,
    seen: &mut Vec<String>,
) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(l)) => {
                seen.push(l.clone());
                if l.contains(what) {
                    return l;
                }
            }
            Ok(None) => panic!("output ended without {what:?}: {seen:#?}"),
            Err(_) => panic!("no {what:?} within {WAIT:?}: {seen:#?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_of_finished_failed_and_unknown_frameworks() {
    let c = MasterAndAgent::start().await;
    let addr = c.addr.clone();

    let done = detached_pi(&addr, &["4", "20000"]).await;
    let s = status_once(&addr, &done, "succeeded").await;
    assert_eq!(s["id"], done.as_str(), "{s}");
    assert_eq!(s["name"], "pi", "{s}");
    assert_eq!(s["tasks_finished"], 4, "{s}");
    assert_eq!(s["tasks"]["finished"], 4, "by state: {s}");
    assert!(
        s["result"]
            .as_str()
            .is_some_and(|r| r.starts_with("pi ~= 3.1")),
        "{s}"
    );
    assert!(
        s["ended_unix_ms"].as_u64() >= s["registered_unix_ms"].as_u64(),
        "{s}"
    );
    let text = ok(&addr, &["status", &done]).await;
    for want in ["state", "succeeded", "result", "pi ~= 3.1", "4 finished"] {
        assert!(text.contains(want), "{want:?} missing in\n{text}");
    }

    // pi refuses 0 tasks in init: the framework fails with that reason.
    let failed = detached_pi(&addr, &["0"]).await;
    let s = status_once(&addr, &failed, "failed").await;
    assert!(
        s["result"]
            .as_str()
            .is_some_and(|r| r.contains("at least 1")),
        "{s}"
    );
    let text = ok(&addr, &["status", &failed]).await;
    assert!(
        text.contains("failure") && text.contains("at least 1"),
        "{text}"
    );

    // An id the master never knew: exit 1, naming it.
    let (code, err) = status_json(&addr, "fw-never-was").await.unwrap_err();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("fw-never-was"), "{err}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_agents_status_and_submit_say_no_agent_registered() {
    let (mut master, addr) = common::start_master_with(&[], Stdio::inherit()).await;
    let mut submit = wasmos()
        .args([
            "submit",
            &example("pi"),
            "--master",
            &addr,
            "--",
            "4",
            "20000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wasmos submit starts");
    let mut lines = stderr_lines(&mut submit);
    let mut seen = Vec::new();
    // pi reported its total in init: the line counts towards it.
    let line = line_with(&mut lines, "waiting: no agent registered", &mut seen).await;
    assert!(line.contains("0/4 finished, 0 running, 0 failed"), "{line}");

    let frameworks: Value =
        serde_json::from_str(&ok(&addr, &["frameworks", "--json"]).await).expect("JSON");
    let id = frameworks[0]["id"]
        .as_str()
        .expect("a framework")
        .to_string();
    let s = status_json(&addr, &id)
        .await
        .expect("status of the waiting framework");
    assert_eq!(s["state"], "active", "{s}");
    assert_eq!(s["waiting"], "waiting: no agent registered", "{s}");
    assert_eq!(s["tasks_total"], 4, "{s}");
    assert!(s["waiting_since_unix_ms"].as_u64() > Some(0), "{s}");
    let text = ok(&addr, &["status", &id]).await;
    assert!(text.contains("no agent registered"), "{text}");
    submit.kill().await.expect("kill submit");
    master.kill().await.expect("kill the master");
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_larger_than_every_agent_are_said_and_teardown_shows() {
    // The only agent has 2 CPUs; every pi task asks for 8.
    let c = MasterAndAgent::start().await;
    let addr = c.addr.clone();
    let id = detached_pi(&addr, &["2", "20000", "8"]).await;
    let s = until("the framework says why it waits", || async {
        status_json(&addr, &id)
            .await
            .ok()
            .filter(|s| s["waiting"] != "" && s["waiting"] != "waiting: no agent registered")
    })
    .await;
    assert_eq!(
        s["waiting"], "waiting: tasks need 8 CPUs, the largest agent has 2",
        "{s}"
    );
    assert_eq!(s["tasks"], serde_json::json!({}), "nothing ran: {s}");

    ok(&addr, &["teardown", &id]).await;
    let s = status_once(&addr, &id, "torn_down").await;
    assert_eq!(s["waiting"], "", "{s}");
    let text = ok(&addr, &["status", &id]).await;
    assert!(text.contains("torn down"), "{text}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_says_when_its_master_is_lost() {
    let mut c = MasterAndAgent::start().await;
    let addr = c.addr.clone();
    // Long enough to outlive the master: 400 tasks of 2·10^7 samples on 2 CPUs.
    let mut submit = wasmos()
        .args([
            "submit",
            &example("pi"),
            "--master",
            &addr,
            "--",
            "400",
            "20000000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wasmos submit starts");
    let mut lines = stderr_lines(&mut submit);
    let mut seen = Vec::new();
    line_with(&mut lines, "/400 finished", &mut seen).await;
    c.master.kill().await.expect("kill the master");
    let line = line_with(&mut lines, "lost, retrying", &mut seen).await;
    assert!(
        line.contains(&format!("master at {addr} lost, retrying")),
        "{line}"
    );
    submit.kill().await.expect("kill submit");
    c.agent.kill().await.expect("kill the agent");
}
