//! `wasmos dev` and `wasmos submit` as real processes: `dev --run` runs `pi` to its estimate and
//! fails a scheduler that loops in `init` for fuel; `submit` runs `pi` on a separately started
//! `wasmos master` and `wasmos agent`; a missing file, a core module and an unreachable master
//! are refused with exit status 2 and a reason; `dev` without `--run` says where to submit,
//! serves `submit`, and stops cleanly on SIGTERM. `dev --secure` serves mutual TLS with ACLs
//! on: the token and TLS files it prints let `submit` run pi, and a client missing either is
//! refused; `dev --secure --run` uses them itself. `dev` serves on 127.0.0.1:5050 by default,
//! where commands look without `--master`; `WASMOS_MASTER` (a host name too) stands for it.
//! Ctrl-C on `submit` tears its framework down; `submit --detach` then `attach` follows it;
//! `result` tells a result, a failure, a framework still running and one torn down apart.

use std::collections::BTreeMap;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

mod common;

use common::{
    MasterAndAgent, WAIT, assert_pi, example, first_line, operator, output, wait_for_state, wasmos,
};
use tokio::process::Command;
use wasmos_api::proto as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_pi_to_its_estimate() {
    let pi = example("pi");
    let out = output(&["dev", "--agents", "2", "--run", &pi, "--", "8", "20000"]).await;
    assert_pi(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_fails_a_looping_scheduler_for_fuel() {
    let hostile = example("hostile");
    let out = output(&["dev", "--run", &hostile, "--", "loop"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("the framework failed") && stderr.contains("fuel"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_runs_pi_on_a_master_and_agent_and_refuses_a_core_module() {
    let cluster = MasterAndAgent::start().await;
    let addr = cluster.addr.as_str();

    // No wait for the agent: the framework gets offers once it registers.
    let pi = example("pi");
    let out = output(&["submit", &pi, "--master", addr, "--", "8", "20000"]).await;
    assert_pi(&out);

    let core = cluster.dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let out = output(&["submit", core.to_str().unwrap(), "--master", addr]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("refused the component") && stderr.contains("not a Wasm component"),
        "{stderr}"
    );

    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_refuses_a_missing_file_and_an_unreachable_master() {
    let out = output(&["submit", "/nonexistent/framework.wasm"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("cannot read") && stderr.contains("/nonexistent/framework.wasm"),
        "{stderr}"
    );

    // Port 1 on loopback: nothing listens there.
    let pi = example("pi");
    let out = output(&["submit", &pi, "--master", "127.0.0.1:1"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_without_run_serves_and_says_where_to_submit() {
    let dir = tempfile::tempdir().unwrap();
    // The default address, 127.0.0.1:5050, is where every command looks by default (the one
    // test that uses it; the others pass --listen or --run).
    let mut dev = wasmos()
        .args(["dev", "--agents", "1", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("wasmos dev starts");
    let line = first_line(&mut dev, "wasmos dev says where the master is").await;
    let addr = line
        .split("master at ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    assert!(
        line.contains(&format!("wasmos submit FRAMEWORK.wasm --master {addr}")),
        "{line}"
    );

    assert_eq!(addr, "127.0.0.1:5050");
    let pi = example("pi");
    let out = output(&["submit", &pi, "--", "4", "20000"]).await;
    assert_pi(&out);

    // A second one on the same address says what is wrong and what to do.
    let out = output(&["dev", "--agents", "1"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot listen on 127.0.0.1:5050") && stderr.contains("--listen"),
        "{stderr}"
    );

    stops_cleanly_on_sigterm(&mut dev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_secure_runs_pi_itself() {
    let pi = example("pi");
    let out = output(&["dev", "--secure", "--run", &pi, "--", "4", "20000"]).await;
    assert_pi(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("secured: mutual TLS on every link"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_secure_prints_what_a_client_needs_and_refuses_clients_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = wasmos()
        .args([
            "dev",
            "--secure",
            "--listen",
            "localhost:0",
            "--agents",
            "1",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("wasmos dev starts");
    let mut lines = BufReader::new(dev.stdout.take().unwrap()).lines();
    let mut next = async || {
        tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("wasmos dev prints in time")
            .unwrap()
            .expect("a line")
    };
    let first = next().await;
    let addr = first
        .split("master at ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    let mut env = BTreeMap::new();
    for _ in 0..4 {
        let line = next().await;
        let (name, value) = line
            .strip_prefix("export ")
            .and_then(|l| l.split_once('='))
            .unwrap_or_else(|| panic!("not an export line: {line:?}"));
        env.insert(name.to_string(), value.to_string());
    }
    let names: Vec<&str> = env.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "WASMOS_TLS_CA",
            "WASMOS_TLS_CERT",
            "WASMOS_TLS_KEY",
            "WASMOS_TOKEN"
        ]
    );
    assert!(env["WASMOS_TOKEN"].starts_with("wasmos_"), "{env:?}");
    let run = |env: BTreeMap<String, String>, args: Vec<String>| async move {
        tokio::time::timeout(WAIT, wasmos().envs(env).args(args).output())
            .await
            .expect("wasmos exits in time")
            .expect("wasmos runs")
    };
    let args = |a: &[&str]| -> Vec<String> { a.iter().map(|s| s.to_string()).collect() };

    // WASMOS_MASTER, with a host name, stands for --master.
    let port = addr.rsplit(':').next().unwrap();
    let mut with_master = env.clone();
    with_master.insert("WASMOS_MASTER".into(), format!("localhost:{port}"));
    let pi = example("pi");
    let out = run(with_master, args(&["submit", &pi, "--", "4", "20000"])).await;
    assert_pi(&out);

    // Without the token: TLS passes, the ACLs refuse.
    let mut no_token = env.clone();
    no_token.remove("WASMOS_TOKEN");
    let out = run(no_token, args(&["frameworks", "--master", &addr])).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.to_lowercase().contains("token"), "{stderr}");

    // Without the TLS files: the plain-text connection fails, naming what to set.
    let mut no_tls = BTreeMap::new();
    no_tls.insert("WASMOS_TOKEN".to_string(), env["WASMOS_TOKEN"].clone());
    let out = run(no_tls, args(&["frameworks", "--master", &addr])).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("WASMOS_TLS_CERT"), "{stderr}");

    stops_cleanly_on_sigterm(&mut dev).await;
}

/// Whether `state` holds a task of `framework_id` in `wanted`.
fn has_task(state: &pb::ClusterState, framework_id: &str, wanted: &[pb::TaskState]) -> bool {
    state.tasks.iter().any(|t| {
        t.framework_id == framework_id
            && t.status.as_ref().is_some_and(|s| {
                pb::TaskState::try_from(s.state).is_ok_and(|st| wanted.contains(&st))
            })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_submit_tears_its_framework_down() {
    let cluster = MasterAndAgent::start().await;
    let addr = cluster.addr.as_str();
    let pi = example("pi");
    // Tasks that run far longer than the test.
    let submit = wasmos()
        .args(["submit", &pi, "--master", addr, "--", "2", "100000000000"])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("wasmos submit starts");
    let mut op = operator(addr).await;
    let fw = wait_for_state(&mut op, "a task of pi to run", |s| {
        let fw = s.frameworks.first()?.info.as_ref()?.id.clone();
        has_task(s, &fw, &[pb::TaskState::Running]).then_some(fw)
    })
    .await;

    let out = output(&["result", &fw, "--master", addr]).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("still running"), "{said}");

    let pid = submit.id().expect("submit still runs").to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .await
            .unwrap()
            .success()
    );
    let out = tokio::time::timeout(WAIT, submit.wait_with_output())
        .await
        .expect("submit exits after Ctrl-C")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    // Torn down, it has no result.
    let out = output(&["result", &fw, "--master", addr]).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("removed without a result"), "{said}");
    assert!(
        stderr.contains(&format!("tearing down framework {fw}"))
            && stderr.contains("torn down (2 task(s) killed)"),
        "{stderr}"
    );
    // Nothing of it is left: no framework, no task still running.
    wait_for_state(&mut op, "the framework and its tasks to be gone", |s| {
        (s.frameworks.is_empty()
            && !has_task(
                s,
                &fw,
                &[
                    pb::TaskState::Staging,
                    pb::TaskState::Starting,
                    pb::TaskState::Running,
                ],
            ))
        .then_some(())
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_detach_prints_the_id_and_attach_follows_it_to_its_result() {
    let cluster = MasterAndAgent::start().await;
    let addr = cluster.addr.as_str();
    let pi = example("pi");
    let out = output(&[
        "submit", &pi, "--detach", "--master", addr, "--", "20", "20000000",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let fw = stdout.trim().to_string();
    assert!(fw.starts_with("fw-"), "{stdout:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("wasmos attach {fw}")),
        "{out:?}"
    );
    // Detached, it keeps running: the master counts its ended tasks as they end.
    let mut op = operator(addr).await;
    let (finished, failed) = wait_for_state(&mut op, "some of pi's tasks to finish", |s| {
        let f = s
            .frameworks
            .iter()
            .find(|f| f.info.as_ref().is_some_and(|i| i.id == fw))?;
        (f.tasks_finished > 0).then_some((f.tasks_finished, f.tasks_failed))
    })
    .await;
    assert!(
        finished <= 20 && failed == 0,
        "{finished} finished, {failed} failed"
    );
    // Attach follows it to the result.
    let out = output(&["attach", &fw, "--master", addr]).await;
    assert_pi(&out);
    // `result` prints it again, without waiting.
    let out = output(&["result", &fw, "--master", addr]).await;
    assert_pi(&out);
    // An unknown id is refused with exit status 1 and says so.
    let out = output(&["attach", "fw-nonexistent", "--master", addr]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("fw-nonexistent"), "{stderr}");
    cluster.stop().await;
}

/// Sends SIGTERM to a serving `wasmos dev` and checks that it stops cleanly (exit 0) in time.
async fn stops_cleanly_on_sigterm(dev: &mut tokio::process::Child) {
    let pid = dev.id().expect("wasmos dev still runs").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::time::timeout(WAIT, dev.wait())
        .await
        .expect("wasmos dev stops in time after SIGTERM")
        .expect("wait for wasmos dev");
    assert!(status.success(), "wasmos dev exited {status:?} on SIGTERM");
}

/// `dev --open` hands the web UI's URL to the system's opener (`xdg-open` here, a stand-in
/// that records it) and the URL serves the UI; with no opener on `PATH` it says so, names the
/// URL, and the cluster serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_open_hands_the_ui_url_to_a_browser() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let opened = dir.path().join("opened");
    let opener = bin.join("xdg-open");
    std::fs::write(
        &opener,
        format!("#!/bin/sh\necho \"$1\" > {}\n", opened.display()),
    )
    .unwrap();
    std::fs::set_permissions(&opener, std::fs::Permissions::from_mode(0o755)).unwrap();

    for with_opener in [true, false] {
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let path = if with_opener { &bin } else { &empty };
        let mut dev = wasmos()
            .args(["dev", "--open", "--listen", "127.0.0.1:0", "--agents", "1"])
            .env("PATH", path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wasmos dev starts");
        // Read to the end, so a chatty cluster never blocks on a full pipe.
        let mut err = BufReader::new(dev.stderr.take().unwrap()).lines();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            while let Ok(Some(line)) = err.next_line().await {
                if (line.contains("--open") || line.contains("opening the web UI"))
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line);
                }
            }
        });
        let said = tokio::time::timeout(WAIT, rx)
            .await
            .expect("wasmos dev opens the UI in time")
            .expect("wasmos dev says something about --open");
        let url = if with_opener {
            assert!(said.contains("(xdg-open)"), "{said}");
            let url = common::until("the opener is given the URL", || {
                let opened = opened.clone();
                async move { std::fs::read_to_string(&opened).ok() }
            })
            .await
            .trim()
            .to_string();
            assert!(said.contains(&url), "{said} does not name {url}");
            url
        } else {
            assert!(said.contains("could not open a browser"), "{said}");
            said.rsplit(' ').next().unwrap().to_string()
        };
        let hostport = url
            .strip_prefix("http://")
            .and_then(|u| u.strip_suffix('/'))
            .unwrap_or_else(|| panic!("not an http URL of a host: {url:?}"));
        // The URL serves the UI's page.
        let mut s = tokio::net::TcpStream::connect(hostport).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(
            format!("GET / HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut page = String::new();
        s.read_to_string(&mut page).await.unwrap();
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("/ui/app.js"), "{page}");
        stops_cleanly_on_sigterm(&mut dev).await;
    }
}
