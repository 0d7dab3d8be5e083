//! `wasmos master` and `wasmos agent` as real processes on loopback: the agent registers with
//! the master (seen through `OperatorService.GetState`), with the resources and attributes
//! given on its command line; bad flags fail fast with a message that names the flag. SIGINT
//! stops a master with a connected agent within 5 s, and then the agent. A command whose
//! reader went away stops quietly with exit status 0, without a panic. `wasmos agents` shows
//! the agent's host name and the loopback address its session came from. A clean master
//! shutdown makes its agent log no WARN (and its registration names the master). Every
//! command's `--help`, found from `wasmos --help` down, has an example and no default in prose.

use std::process::ExitStatus;
use std::time::Duration;

mod common;

use common::{operator, output, spawn_agent, start_master, wait_for_state};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_process_registers_with_a_master_process() {
    let (mut master, addr) = start_master().await;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = spawn_agent(
        &addr,
        &dir.path().join("work"),
        &[
            "--resources",
            "cpus:3;mem:2048",
            "--attributes",
            "rack:r1,zone:z",
        ],
    );

    let mut op = operator(&addr).await;
    let registered = wait_for_state(&mut op, "the agent to register", |state| {
        if let Some(a) = state.agents.iter().find(|a| a.reachable) {
            return Some(a.clone());
        }
        if let Ok(Some(status)) = agent.try_wait() {
            panic!("the agent exited before registering: {status}");
        }
        None
    })
    .await;
    let info = registered.info.expect("agent info");
    let resources = info.resources.expect("agent resources");
    assert_eq!((resources.millicpus, resources.mem_mb), (3000, 2048));
    let attrs: Vec<(String, String)> = info
        .attributes
        .into_iter()
        .map(|a| (a.key, a.value))
        .collect();
    assert!(attrs.contains(&("rack".into(), "r1".into())), "{attrs:?}");
    assert!(attrs.contains(&("zone".into(), "z".into())), "{attrs:?}");

    // `wasmos agents` shows where the agent is: this machine's host name and, as the agent
    // names no address, the loopback address its session comes from.
    let out = output(&["agents", "--master", &addr]).await;
    assert!(out.status.success(), "wasmos agents: {out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
    let row: Vec<&str> = lines
        .next()
        .expect("one agent")
        .split_whitespace()
        .collect();
    let column = |name: &str| {
        let i = header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name}: {table}"));
        row[i].to_string()
    };
    let address = column("ADDRESS");
    let port = address
        .strip_prefix("127.0.0.1:")
        .unwrap_or_else(|| panic!("ADDRESS {address:?} is not 127.0.0.1:PORT: {table}"));
    assert!(port.parse::<u16>().is_ok_and(|p| p > 0), "{table}");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(column("HOSTNAME"), kernel.trim(), "{table}");

    agent.kill().await.expect("kill the agent");
    master.kill().await.expect("kill the master");
}

/// Sends SIGINT to `child` and waits up to `within` for it to exit; its exit status.
async fn interrupt(child: &mut tokio::process::Child, within: Duration) -> ExitStatus {
    let pid = child.id().expect("still running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    tokio::time::timeout(within, child.wait())
        .await
        .unwrap_or_else(|_| panic!("process {pid} still runs {within:?} after SIGINT"))
        .expect("wait")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_a_master_with_a_connected_agent_and_then_the_agent() {
    let (mut master, addr) = start_master().await;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = spawn_agent(&addr, &dir.path().join("work"), &[]);
    let mut op = operator(&addr).await;
    wait_for_state(&mut op, "the agent to register", |state| {
        state.agents.iter().any(|a| a.reachable).then_some(())
    })
    .await;
    // The agent's session stream is open: a graceful shutdown alone would wait for it forever.
    let status = interrupt(&mut master, Duration::from_secs(5)).await;
    assert!(status.success(), "the master exited {status:?} on SIGINT");
    let status = interrupt(&mut agent, Duration::from_secs(10)).await;
    assert!(status.success(), "the agent exited {status:?} on SIGINT");
}

async fn fails_with(args: &[&str], needle: &str) {
    let out = output(args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(
        stderr.contains(needle),
        "{args:?}: stderr does not mention {needle:?}: {stderr}"
    );
}

#[tokio::test]
async fn bad_flags_are_refused_with_the_flag_named() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("w");
    let work = work.to_str().unwrap();
    fails_with(&["master", "--listen", "nowhere"], "--listen").await;
    fails_with(
        &["master", "--listen", "127.0.0.1:0", "--offer-timeout=-1"],
        "--offer-timeout",
    )
    .await;
    fails_with(&["agent", "--work-dir", work], "--master").await;
    fails_with(
        &[
            "agent",
            "--master",
            "127.0.0.1:1",
            "--work-dir",
            work,
            "--resources",
            "cpus:many",
        ],
        "--resources",
    )
    .await;
    fails_with(
        &[
            "agent",
            "--master",
            "127.0.0.1:1",
            "--work-dir",
            work,
            "--attributes",
            "rack",
        ],
        "rack",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_whose_reader_went_away_stops_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    // A pipe whose reading end is closed before the command writes to it (as `| head -1`
    // leaves it once head has its line).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = common::wasmos()
        .args(["certs", "init", "--dir"])
        .arg(dir.path().join("ca"))
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wasmos runs")
        .wait_with_output()
        .await
        .expect("wasmos ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    // And in a shell's pipeline, the pipeline succeeds.
    let piped = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} certs init --dir {} | true",
            env!("CARGO_BIN_EXE_wasmos"),
            dir.path().join("ca2").display()
        ))
        .output()
        .unwrap();
    assert!(piped.status.success(), "{piped:?}");
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("panicked"));
}

/// The subcommands `wasmos ARGS --help` lists under "Commands:" (without `help`).
async fn subcommands_of(args: &[String]) -> Vec<String> {
    let mut full = args.to_vec();
    full.push("--help".into());
    let out = output(&full).await;
    assert!(out.status.success(), "wasmos {full:?} failed");
    let help = String::from_utf8_lossy(&out.stdout);
    help.lines()
        .skip_while(|l| l.trim_end() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn every_command_shows_an_example_and_its_defaults_in_its_help() {
    // Every command, nested ones too, found as a user finds them: from `wasmos --help` down.
    let mut todo = vec![Vec::<String>::new()];
    let mut seen = 0;
    let mut missing = Vec::new();
    while let Some(path) = todo.pop() {
        for sub in subcommands_of(&path).await {
            let mut p = path.clone();
            p.push(sub);
            let mut args = p.clone();
            args.push("--help".into());
            let out = output(&args).await;
            let help = String::from_utf8_lossy(&out.stdout);
            if !help.contains("\nExample") {
                missing.push(format!("wasmos {}", p.join(" ")));
            }
            // A default said in prose ("By default 30", "(default 1)") hides it from the
            // place people look; clap's `[default: ...]` is that place.
            for line in help.lines() {
                assert!(
                    !["(default ", "(default: ", "; default "]
                        .iter()
                        .any(|prose| line.contains(prose)),
                    "wasmos {}: a default in prose, not as [default: ...]: {line}",
                    p.join(" ")
                );
            }
            seen += 1;
            todo.push(p);
        }
    }
    assert!(seen > 25, "only {seen} commands found");
    assert!(
        missing.is_empty(),
        "commands without an example in --help: {missing:?}"
    );
}

/// The lines `child`'s stderr has written so far, read on as it writes them.
fn collect_stderr(
    child: &mut tokio::process::Child,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use tokio::io::AsyncBufReadExt;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("stderr is piped");
    let sink = lines.clone();
    tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            eprintln!("agent: {line}");
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_master_shutdown_is_no_warning_for_its_agent() {
    let (mut master, addr) = common::start_master_with(&[], std::process::Stdio::inherit()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = common::wasmos()
        .env(
            "WASMOS_TOKEN",
            common::tokens_for(&addr).expect("bootstrapped").agent,
        )
        .env_remove("WASMOS_LOG")
        .args(["agent", "--master", &addr, "--work-dir"])
        .arg(dir.path().join("work"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wasmos agent starts");
    let lines = collect_stderr(&mut agent);
    let has = |needle: &str| lines.lock().unwrap().iter().any(|l| l.contains(needle));
    // Its registration names the master and the agent's id.
    let registered = format!("registered with the master at {addr} as agent agent-");
    assert!(
        common::wait_until(|| has(&registered)).await,
        "the agent never logged {registered:?}"
    );
    let status = interrupt(&mut master, Duration::from_secs(5)).await;
    assert!(status.success(), "the master exited {status:?} on SIGINT");
    // The agent hears of the shutdown, then tries to reconnect (0.5 s later at most) and
    // fails: the master is gone.
    let unreachable = format!("cannot reach the master at {addr}");
    assert!(
        common::wait_until(|| has("is shutting down") && has(&unreachable)).await,
        "the agent never logged the shutdown and a failed reconnection"
    );
    let status = interrupt(&mut agent, Duration::from_secs(10)).await;
    assert!(status.success(), "the agent exited {status:?} on SIGINT");
    // Before its registration the agent may warn of its own setup (weaker isolation on this
    // machine); from then on, nothing that happened was wrong.
    let lines = lines.lock().unwrap().clone();
    let since: Vec<&String> = lines
        .iter()
        .skip_while(|l| !l.contains(&registered))
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(
        since.is_empty(),
        "a clean master shutdown made its agent warn: {since:?}"
    );
}
