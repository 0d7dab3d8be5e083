//! `wasmos logs` against real `wasmos master` and `wasmos agent` processes: the output of Wasm
//! tasks that one executor instance served one after another (each task sees only what it
//! wrote, its executor's `log` lines among its stderr, none of it in the executor's own file; a
//! task that wrote nothing has no output, and says so); a native task's stdout and stderr,
//! `--tail 2`, and `-f` on it while it runs (it returns once the task ended, with everything);
//! another tenant's token is refused; the scheduler log of a pi job.

mod common;

use std::process::Stdio;

use common::scheduler::Scheduler;
use common::{
    MasterAndAgent, NATIVE_DEFAULT_ROLE, WAIT, cluster_state, example, ok, operator, output, run,
    until, wait_for_agents, wasmos,
};
use wasmos_api::proto as pb;

fn wasm_task(id: &str, agent: &str, payload: &str) -> pb::TaskInfo {
    pb::TaskInfo {
        task_id: id.into(),
        name: id.into(),
        agent_id: agent.into(),
        resources: Some(pb::Resources {
            millicpus: 100,
            mem_mb: 32,
            disk_mb: 0,
        }),
        kind: Some(pb::task_info::Kind::Wasm(pb::WasmTask {
            executor_id: "exec".into(),
            payload: payload.as_bytes().to_vec(),
            ..Default::default()
        })),
    }
}

async fn upload(op: &mut common::Operator, path: &str) -> String {
    let bytes = std::fs::read(path).expect("the example is built");
    let digest = wasmos_api::component::ComponentDigest::of(&bytes).to_hex();
    let chunks: Vec<_> = bytes
        .chunks(256 << 10)
        .enumerate()
        .map(|(i, c)| pb::UploadComponentChunk {
            expected_sha256: if i == 0 {
                digest.clone()
            } else {
                String::new()
            },
            data: c.to_vec(),
        })
        .collect();
    op.upload_component(tokio_stream::iter(chunks))
        .await
        .expect("the component uploads");
    digest
}

/// `wasmos logs ARGS --master ADDR` with `token` (the management token when `None`).
async fn logs_as(addr: &str, args: &[&str], token: Option<&str>) -> std::process::Output {
    let mut c = wasmos();
    c.arg("logs").args(args).args(["--master", addr]);
    if let Some(t) = token {
        c.env("WASMOS_TOKEN", t);
    }
    tokio::time::timeout(WAIT, c.output())
        .await
        .expect("wasmos logs exits in time")
        .expect("wasmos runs")
}

async fn logs(addr: &str, args: &[&str]) -> String {
    ok(addr, &[&["logs"], args].concat()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn wasm_tasks_of_one_executor_each_see_only_their_own_output() {
    let c = MasterAndAgent::start().await;
    let addr = c.addr.clone();
    let mut op = operator(&addr).await;
    wait_for_agents(&mut op, 1).await;
    let agent = cluster_state(&mut op).await.agents[0]
        .info
        .as_ref()
        .expect("agent info")
        .id
        .clone();
    let digest = upload(&mut op, &example("hostile")).await;
    let info = pb::FrameworkInfo {
        name: "logs".into(),
        role: "default".into(),
        component_sha256: digest,
        ..Default::default()
    };
    let mut sched = Scheduler::subscribe(&addr, info).await;
    let offer = sched.offer().await;
    // One executor id: the four run one after another in one instance.
    let tasks = vec![
        wasm_task("t1", &agent, "stderr:first task"),
        wasm_task("t2", &agent, "stderr:second task"),
        wasm_task("t3", &agent, "log-flood:3"),
        wasm_task("t4", &agent, "echo:quiet"),
    ];
    sched.accept(&offer, tasks, None).await;
    let mut finished = 0;
    while finished < 4 {
        let s = sched.update().await;
        match pb::TaskState::try_from(s.state) {
            Ok(pb::TaskState::Finished) => finished += 1,
            Ok(pb::TaskState::Running | pb::TaskState::Starting) => {}
            _ => panic!("a task did not finish: {s:?}"),
        }
    }

    assert_eq!(logs(&addr, &["t1", "--stderr"]).await, "first task\n");
    assert_eq!(logs(&addr, &["t2", "--stderr"]).await, "second task\n");
    // The executor's `log` lines of t3, as `LEVEL message` lines of its stderr.
    let line = format!("INFO {}", "f".repeat(100));
    let t3 = logs(&addr, &["t3", "--stderr"]).await;
    assert_eq!(t3, format!("{line}\n").repeat(3), "{t3}");
    assert_eq!(
        logs(&addr, &["t3", "--stderr", "--tail", "1"]).await,
        format!("{line}\n")
    );
    // Nothing on stdout: no file, and a task that ended without one says so on stderr,
    // printing nothing and exiting 0 (nothing went wrong).
    let out = logs_as(&addr, &["t1"], None).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no stdout: it wrote none"), "{err}");
    assert!(
        !c.dir
            .path()
            .join("work/sandboxes")
            .join(&sched.id)
            .join("t4")
            .exists(),
        "a task that wrote nothing has no directory"
    );
    // None of it in the executor's own file.
    let own = c
        .dir
        .path()
        .join("work/executors")
        .join(&sched.id)
        .join("exec/stderr");
    let own = std::fs::read_to_string(&own).unwrap_or_default();
    assert!(!own.contains("task"), "the executor's own stderr: {own:?}");

    // Another tenant may not read it; an unknown task is named.
    let eve = common::token_of(&addr, "eve", "agent").await;
    let out = logs_as(&addr, &["t1", "--stderr"], Some(&eve)).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("see_all_frameworks"), "{err}");
    let out = run(&addr, &["logs", "no-such-task"]).await;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("task no-such-task is not known"),
        "{out:?}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn native_task_logs_tail_and_follow_to_the_end() {
    require_cgroups!();
    let c = MasterAndAgent::start_with(&NATIVE_DEFAULT_ROLE).await;
    let addr = c.addr.clone();
    let mut op = operator(&addr).await;
    wait_for_agents(&mut op, 1).await;
    let agent = cluster_state(&mut op).await.agents[0]
        .info
        .as_ref()
        .expect("agent info")
        .id
        .clone();
    let mut sched = Scheduler::subscribe(
        &addr,
        pb::FrameworkInfo {
            name: "native-logs".into(),
            role: "default".into(),
            ..Default::default()
        },
    )
    .await;
    let offer = sched.offer().await;
    // It writes, sleeps, then writes more: `-f`, started once the first line is there, must
    // wait for the rest (whenever it starts, it must print everything).
    let script = "echo out1; echo err1 >&2; sleep 4; echo out2; echo out3".to_string();
    let task = pb::TaskInfo {
        task_id: "n1".into(),
        name: "n1".into(),
        agent_id: agent.clone(),
        resources: Some(pb::Resources {
            millicpus: 100,
            mem_mb: 32,
            disk_mb: 0,
        }),
        kind: Some(pb::task_info::Kind::Command(pb::CommandTask {
            argv: vec!["/bin/sh".into(), "-c".into(), script],
            env: vec![],
        })),
    };
    sched.accept(&offer, vec![task], None).await;
    sched.update_of("n1", pb::TaskState::Running).await;
    until("n1 wrote its first line", || {
        let addr = addr.clone();
        async move { (logs(&addr, &["n1"]).await == "out1\n").then_some(()) }
    })
    .await;
    // Follow it while it runs: it is blocked, so `-f` must wait for the rest.
    let follow = wasmos()
        .args(["logs", "n1", "-f", "--master", &addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wasmos logs -f starts");
    sched.update_of("n1", pb::TaskState::Finished).await;
    let out = tokio::time::timeout(WAIT, follow.wait_with_output())
        .await
        .expect("-f returns once the task ended")
        .expect("wasmos runs");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out1\nout2\nout3\n");

    assert_eq!(logs(&addr, &["n1", "--tail", "2"]).await, "out2\nout3\n");
    assert_eq!(
        logs(&addr, &["n1", "--stderr", "--framework", &sched.id]).await,
        "err1\n"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scheduler_log_of_a_pi_job_is_kept_after_it_ended() {
    let c = MasterAndAgent::start().await;
    let addr = c.addr.clone();
    let out = output(&[
        "submit",
        &example("pi"),
        "--master",
        &addr,
        "--",
        "3",
        "20000",
    ])
    .await;
    common::assert_pi(&out);
    let listed = ok(&addr, &["frameworks", "--all", "--json"]).await;
    let frameworks: serde_json::Value = serde_json::from_str(&listed).expect("JSON");
    let fw = frameworks[0]["id"]
        .as_str()
        .expect("a framework id")
        .to_string();
    let lines = logs(&addr, &["--scheduler", &fw]).await;
    assert!(
        lines.contains("INFO  pi: 3 tasks x 20000 samples"),
        "{lines}"
    );
    // -f on an ended framework returns at once.
    let followed = logs(&addr, &["--scheduler", &fw, "-f", "--tail", "1"]).await;
    assert_eq!(followed.lines().count(), 1, "{followed}");
    let eve = common::token_of(&addr, "eve", "agent").await;
    let out = logs_as(&addr, &["--scheduler", &fw], Some(&eve)).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    c.stop().await;
}
