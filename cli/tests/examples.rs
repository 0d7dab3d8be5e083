//! The example frameworks with real `wasmos` processes: `logreg` runs to its model in `wasmos
//! dev`, and finishes with the same model when one of three `wasmos agent` processes is killed
//! mid-job (its partitions rebuilt elsewhere); `service` keeps its native instances running on
//! `wasmos master` + `wasmos agent` processes, bringing back each instance whose process is
//! killed, and runs to a summary in `wasmos dev` (`--until-replaced`, `--for`). The `service`
//! tests need root and cgroups, and skip visibly where they are unavailable (`require_cgroups!`).

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

mod common;

use common::{
    NATIVE_DEFAULT_ROLE, Operator, WAIT, cluster_state, example, framework_named_in,
    framework_pids, operator, output, output_watching_framework, spawn_agent, start_master_with,
    succeeded, task_pids, wait_for_agents, wait_for_state, wait_until, wasmos,
};
use tokio::process::{Child, Command};
use wasmos_api::proto as pb;

/// Starts `wasmos submit COMPONENT --master ADDR -- ARGS`, collecting its output in the
/// background; the handle resolves when it exits.
fn start_submit(
    component: &str,
    addr: &str,
    args: &[&str],
) -> tokio::task::JoinHandle<std::io::Result<Output>> {
    let child = wasmos()
        .args(["submit", component, "--master", addr, "--"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wasmos submit starts");
    tokio::spawn(child.wait_with_output())
}

async fn finished(submit: tokio::task::JoinHandle<std::io::Result<Output>>) -> Output {
    tokio::time::timeout(WAIT, submit)
        .await
        .unwrap_or_else(|_| panic!("wasmos submit did not finish within {WAIT:?}"))
        .expect("the submit task")
        .expect("wasmos submit runs")
}

/// Starts `n` agents of 1 CPU and 1 GiB for the master at `addr`, working in `dir/agent-I`
/// under the host names `NAME-agent-I`, and waits until the master counts them all.
async fn start_agents(
    op: &mut Operator,
    addr: &str,
    dir: &Path,
    name: &str,
    n: usize,
) -> Vec<Child> {
    let agents = (0..n)
        .map(|i| {
            spawn_agent(
                addr,
                &dir.join(format!("agent-{i}")),
                &[
                    "--hostname",
                    &format!("{name}-agent-{i}"),
                    "--resources",
                    "cpus:1;mem:1024",
                ],
            )
        })
        .collect();
    wait_for_agents(op, n).await;
    agents
}

/// The text after `key` up to the next `;` or line end.
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    let rest = text
        .split(key)
        .nth(1)
        .unwrap_or_else(|| panic!("no {key:?} in {text:?}"));
    rest.split([';', '\n']).next().unwrap_or_default().trim()
}

/// `accuracy 0.9590 on ...` → 0.9590, as printed (the model is deterministic, so two runs of
/// the same arguments print the same text).
fn accuracy(result: &str) -> (String, f64) {
    let text = field(result, "logreg: accuracy ")
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let value = text
        .parse()
        .unwrap_or_else(|e| panic!("bad accuracy {text:?} in {result:?}: {e}"));
    (text, value)
}

/// Iterations (1-based) and counts of `partitions parsed: 4 in the first iteration, 2 rebuilt
/// later (iteration 37: 1, iteration 38: 1)`, with the first iteration's count first.
fn parsed(result: &str) -> (u32, Vec<(u32, u32)>) {
    let text = field(result, "partitions parsed: ");
    let first = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no first-iteration count in {text:?}"));
    let rebuilt = match text.split_once('(') {
        None => Vec::new(),
        Some((_, list)) => list
            .trim_end_matches(')')
            .split(", ")
            .map(|entry| {
                let (i, n) = entry
                    .strip_prefix("iteration ")
                    .and_then(|e| e.split_once(": "))
                    .unwrap_or_else(|| panic!("bad rebuild entry {entry:?} in {text:?}"));
                (i.parse().unwrap(), n.parse().unwrap())
            })
            .collect(),
    };
    (first, rebuilt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_logreg_to_an_accurate_model_with_iteration_times() {
    let logreg = example("logreg");
    // 4 partitions x 5000 points, 6 iterations, 300 ms locality wait.
    let out = output(&[
        "dev", "--agents", "2", "--run", &logreg, "--", "4", "5000", "6", "300",
    ])
    .await;
    let result = succeeded(&out);
    let (_, acc) = accuracy(&result);
    assert!(acc >= 0.9, "accuracy {acc}: {result}");
    assert!(
        result.contains("after 6 iterations over 4 partitions x 5000 points"),
        "{result}"
    );
    let times: Vec<f64> = field(&result, "iteration ms: ")
        .split(", ")
        .map(|t| {
            t.parse()
                .unwrap_or_else(|e| panic!("bad time {t:?}: {e}: {result}"))
        })
        .collect();
    assert_eq!(times.len(), 6, "one time per iteration: {result}");
    assert!(times.iter().all(|&t| t > 0.0), "{result}");
    // Every partition was parsed once, in the first iteration.
    assert_eq!(parsed(&result).0, 4, "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logreg_survives_a_killed_agent_process_with_the_same_model() {
    let logreg = example("logreg");
    // Enough iterations that the job is still running well after the first one; a short
    // locality wait so that partitions of the dead agent move soon.
    let args = ["4", "5000", "300", "300"];

    // What the model is when nothing goes wrong: the model does not depend on scheduling.
    let mut dev_args = vec!["dev", "--agents", "2", "--run", &logreg, "--"];
    dev_args.extend(args);
    let baseline = succeeded(&output(&dev_args).await);
    let (expected, _) = accuracy(&baseline);

    let dir = tempfile::tempdir().unwrap();
    let master_log = dir.path().join("master.log");
    // The master's default timeouts: a killed agent's tasks turn unreachable when its
    // connection drops, and would be reported lost only after 10 minutes, which logreg does
    // not wait for.
    let (mut master, addr) =
        start_master_with(&[], std::fs::File::create(&master_log).unwrap().into()).await;
    // Each agent takes two tasks (0.5 CPU each) at a time.
    let mut op = operator(&addr).await;
    let mut agents = start_agents(&mut op, &addr, dir.path(), "logreg", 3).await;

    let submit = start_submit(&logreg, &addr, &args);
    // Once a task of the second iteration or later is seen on an agent, that agent holds the
    // task's partition (parsed in the first iteration, cached since): kill it.
    let (victim, iteration, task) = wait_for_state(&mut op, "a later-iteration task", |s| {
        s.tasks.iter().find_map(|t| {
            let status = t.status.as_ref()?;
            let mut id = status.task_id.strip_prefix("logreg-")?.split('-');
            let iteration: u32 = id.next()?.parse().ok()?;
            if iteration == 0 || status.agent_id.is_empty() {
                return None;
            }
            let agent = s
                .agents
                .iter()
                .filter_map(|a| a.info.as_ref())
                .find(|a| a.id == status.agent_id)?;
            let index: usize = agent.hostname.strip_prefix("logreg-agent-")?.parse().ok()?;
            Some((index, iteration, status.task_id.clone()))
        })
    })
    .await;
    agents[victim].start_kill().expect("SIGKILL the agent");
    assert!(
        !submit.is_finished(),
        "logreg finished before the agent was killed; give it more iterations"
    );
    eprintln!("killed agent {victim} after seeing {task} on it (iteration {iteration}, from 0)");

    let out = finished(submit).await;
    let log = std::fs::read_to_string(&master_log).unwrap_or_default();
    let result = succeeded(&out);
    eprintln!("result: {result}\nmaster log:\n{log}");
    let (got, acc) = accuracy(&result);
    assert!(acc >= 0.9, "accuracy {acc}: {result}");
    assert_eq!(
        got, expected,
        "the model differs from the undisturbed run's\nthis run: {result}\nundisturbed: \
         {baseline}\nmaster log:\n{log}"
    );
    // The dead agent's partitions were parsed again elsewhere in the iteration that lost them
    // (iteration + 1, counting from 1) or a later one.
    let (first, rebuilt) = parsed(&result);
    assert_eq!(first, 4, "{result}");
    assert!(
        rebuilt.iter().any(|&(i, n)| i > iteration && n > 0),
        "no partition was rebuilt after agent {victim} was killed in iteration {iteration}: \
         {result}\nmaster log:\n{log}"
    );
    // The master no longer counts the dead agent.
    let state = cluster_state(&mut op).await;
    let victim_host = format!("logreg-agent-{victim}");
    assert!(
        !state
            .agents
            .iter()
            .any(|a| a.reachable && a.info.as_ref().is_some_and(|i| i.hostname == victim_host)),
        "the killed agent is still reachable: {:#?}",
        state.agents
    );

    for mut a in agents {
        let _ = a.kill().await;
    }
    master.kill().await.expect("kill the master");
}

/// Sends SIGKILL to `pid` (not a child of the test: the agent's supervisor started it).
async fn sigkill(pid: u32) {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .await
        .expect("kill runs");
    assert!(status.success(), "kill -KILL {pid} failed");
}

/// The running tasks of the only framework on the master, by task id, and that framework's id.
fn running_tasks(state: &pb::ClusterState) -> (Option<String>, Vec<String>) {
    let fw = state
        .frameworks
        .first()
        .and_then(|f| f.info.as_ref())
        .map(|i| i.id.clone());
    let mut running: Vec<String> = state
        .tasks
        .iter()
        .filter_map(|t| t.status.as_ref())
        .filter(|s| s.state == pb::TaskState::Running as i32)
        .map(|s| s.task_id.clone())
        .collect();
    running.sort();
    (fw, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_brings_back_instances_whose_process_is_killed() {
    require_cgroups!();
    let service = example("service");
    let dir = tempfile::tempdir().unwrap();
    let (mut master, addr) = start_master_with(&NATIVE_DEFAULT_ROLE, Stdio::inherit()).await;
    let mut op = operator(&addr).await;
    let agents = start_agents(&mut op, &addr, dir.path(), "service", 2).await;

    // Two instances; the framework finishes once two were replaced and both run again.
    let submit = start_submit(
        &service,
        &addr,
        &[
            "--until-replaced",
            "2",
            "2",
            "0.1",
            "16",
            "--",
            "sleep",
            "1000",
        ],
    );
    let fw = wait_for_state(&mut op, "both instances running", |s| {
        let (fw, running) = running_tasks(s);
        (running == ["service-0-1", "service-1-1"]).then_some(fw?)
    })
    .await;

    // Kill instance 0's process (the command itself, found by its task's cgroup, beside the
    // init of its PID namespace).
    let first: Vec<_> = task_pids(&fw, "service-0-1")
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
        .collect();
    assert_eq!(first.len(), 1, "one command in service-0-1's cgroup");
    sigkill(first[0]).await;

    // The framework launches a replacement that runs as a new process, and both run again.
    wait_for_state(&mut op, "instance 0 replaced and both running", |s| {
        (running_tasks(s).1 == ["service-0-2", "service-1-1"]).then_some(())
    })
    .await;
    // The instance table the scheduler publishes: `wasmos state`, its owner's to read.
    let table = succeeded(&output(&["state", &fw, "--master", &addr]).await);
    assert!(
        table.starts_with("KEY") && table.contains("instances"),
        "{table}"
    );
    assert!(
        wait_until_async(async || {
            let out = output(&["state", &fw, "instances", "--master", &addr]).await;
            let value = String::from_utf8_lossy(&out.stdout).into_owned();
            out.status.success() && value.contains("service-0-2") && value.contains("service-1-1")
        })
        .await,
        "the stored table never named both running instances"
    );
    let out = output(&["state", &fw, "nope", "--master", &addr]).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("has stored no key \"nope\""), "{said}");
    // Another principal may not read it (its policy lacks see_all_frameworks).
    let eve = common::token_of(&addr, "eve", "agent").await;
    let out = wasmos()
        .args(["state", &fw, "--master", &addr])
        .env("WASMOS_TOKEN", &eve)
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("see_all_frameworks") && said.contains("read the state of framework"),
        "{said}"
    );
    let mut second = Vec::new();
    assert!(
        wait_until(|| {
            second = task_pids(&fw, "service-0-2");
            !second.is_empty()
        })
        .await,
        "no process in service-0-2's cgroup"
    );
    assert_ne!(second, first);
    assert!(!submit.is_finished(), "only one instance was replaced yet");

    // The second replacement ends the run, with a summary of both.
    let other: Vec<_> = task_pids(&fw, "service-1-1")
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
        .collect();
    assert_eq!(other.len(), 1, "one command in service-1-1's cgroup");
    sigkill(other[0]).await;
    let result = succeeded(&finished(submit).await);
    assert!(
        result.contains("stopping after 2 replacements (--until-replaced 2)")
            && result.contains("2 of 2 instances running")
            && result.contains("2 replaced")
            && result.contains("service-0-2 running on")
            && result.contains("service-1-2 running on")
            && result.contains("ended: service-0-1 (")
            && result.contains("service-1-1 ("),
        "{result}"
    );
    // Finishing tears the framework down: its processes are killed.
    let mut left = Vec::new();
    assert!(
        wait_until(|| {
            left = framework_pids(&fw);
            left.is_empty()
        })
        .await,
        "processes {left:?} of {fw} outlived the framework"
    );

    for mut a in agents {
        let _ = a.kill().await;
    }
    master.kill().await.expect("kill the master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_service_until_its_crashing_instances_were_replaced() {
    require_cgroups!();
    let service = example("service");
    let out = output(&[
        "dev",
        "--agents",
        "2",
        "--command-task-roles",
        "default",
        "--run",
        &service,
        "--",
        "--until-replaced",
        "3",
        "2",
        "0.1",
        "16",
        "--",
        "sh",
        "-c",
        "sleep 0.2; exit 3",
    ])
    .await;
    let result = succeeded(&out);
    assert!(
        result.contains("stopping after 3 replacements (--until-replaced 3)")
            && result.contains("2 of 2 instances running")
            && result.contains("(failed: command exited with code 3)"),
        "{result}"
    );
    // Instances that end together (or again before the other runs) may push the count past 3.
    let replaced: u32 = field(&result, "instances running after ")
        .split(", ")
        .nth(1)
        .and_then(|r| r.strip_suffix(" replaced"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no replacement count in {result}"));
    assert!(replaced >= 3, "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_service_for_a_while_then_stops_its_instances() {
    require_cgroups!();
    let service = example("service");
    let started = std::time::Instant::now();
    let (out, seen) = output_watching_framework(&[
        "dev",
        "--agents",
        "1",
        "--command-task-roles",
        "default",
        "--run",
        &service,
        "--",
        "--for",
        "1",
        "2",
        "0.1",
        "16",
        "--",
        "sleep",
        "1000",
    ])
    .await;
    let result = succeeded(&out);
    assert!(started.elapsed() >= Duration::from_secs(1), "{result}");
    assert!(
        result.contains("stopping after 1.0 s (--for)")
            && result.contains("2 of 2 instances running")
            && result.contains("0 replaced")
            && result.contains("ended: none"),
        "{result}"
    );
    // The framework's id is not printed on stdout; its instances are `sleep 1000` processes
    // in cgroups of this run's agents (`wasmos-dev-0`), none of which may be left.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let fw = framework_named_in(&stderr).unwrap_or_else(|| panic!("no framework id in {stderr}"));
    let fw = fw.as_str();
    // Both `sleep`s were seen in the framework's cgroups while it ran (so an empty list below
    // means they are gone, not that the cgroup pattern missed them).
    assert!(
        seen.len() >= 2,
        "processes seen in {fw}'s task cgroups while it ran: {seen:?}"
    );
    let mut left = Vec::new();
    assert!(
        wait_until(|| {
            left = framework_pids(fw);
            left.is_empty()
        })
        .await,
        "processes {left:?} of {fw} outlived wasmos dev"
    );
}

/// Native tasks are off by default for every role: `wasmos dev` without
/// `--command-task-roles` refuses service's command tasks, the refusal names the flag, and
/// service gives up instead of relaunching; with another role named, the same holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_refuses_native_tasks_of_a_role_not_named_by_command_task_roles() {
    let service = example("service");
    for extra in [&[][..], &["--command-task-roles", "ops"][..]] {
        let mut args = vec!["dev", "--agents", "1"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--run", &service, "--", "1", "0.1", "16", "--", "true"]);
        let out = output(&args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(
            stderr.contains("role \"default\" may not run native command tasks")
                && stderr.contains("--command-task-roles default")
                && stderr.contains("a refused task is not launched again"),
            "{extra:?}: {stderr}"
        );
    }
}

/// Polls `cond` every 100 ms until it holds; false when `WAIT` passes first.
async fn wait_until_async(mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}
