//! Native tasks isolated from each other and from the agent, with real processes as root:
//! two frameworks in different roles on one agent, where one's task tries to read, list, write
//! and signal what belongs to the other or to the agent, and to regain root through a setuid
//! binary. Tests that need root and cgroups skip visibly (`require_cgroups!`) when they cannot
//! run.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use wasmos_agent::isolation::{Piece, TaskUser};
use wasmos_agent::native::task_cgroup;
use wasmos_agent::{FrameworkContext, MemoryFetcher};
use wasmos_api::{Resources, TaskState};

fn ctx(name: &str, role: &str) -> FrameworkContext {
    FrameworkContext {
        framework_id: fw(name),
        role: role.into(),
        component: None,
        wasm_budget: Default::default(),
    }
}

/// `key=value` lines of a task's stdout.
fn report(stdout: &str) -> HashMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// What the attacker tries, each line `name=<exit status or value>`: 0 means it worked.
const ATTACK: &str = r#"
while [ ! -f go ]; do sleep 0.05; done
read BPID BSB WORK < go
echo "uid=$(id -u)"
echo "gid=$(id -g)"
echo "groups=$(id -G)"
echo "pwd=$(pwd)"
echo "sandbox_env=$WASMOS_SANDBOX"
echo "procs=$(ls /proc | grep -E '^[0-9]+$' | tr '\n' ' ')"
cat "$BSB/secret" >/dev/null 2>&1; echo "read_b=$?"
ls "$BSB" >/dev/null 2>&1; echo "list_b=$?"
(echo x > "$BSB/planted") 2>/dev/null; echo "write_b=$?"
kill -0 "$BPID" 2>/dev/null; echo "see_b=$?"
kill -9 "$BPID" 2>/dev/null; echo "kill_b=$?"
ls "$WORK" >/dev/null 2>&1; echo "list_work=$?"
cat "$WORK/agent.redb" >/dev/null 2>&1; echo "read_db=$?"
unshare --user true 2>/dev/null; echo "userns=$?"
echo "capbnd=$(grep CapBnd /proc/self/status | cut -f2)"
echo "suid_uid=$(./suid-id -u 2>&1)"
echo mine > /tmp/mine; echo "tmp=$(cat /tmp/mine)"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_cannot_reach_another_frameworks_task_or_the_agent() {
    require_cgroups!();
    let dir = tempfile::tempdir().unwrap();
    let t = start(
        config(dir.path().to_path_buf()),
        Arc::new(MemoryFetcher::new()),
    )
    .await;
    let iso = t.agent.native_isolation();
    assert!(iso.refusal().is_none(), "{:?}", iso.refusal());
    for p in Piece::ALL {
        assert!(iso.is_on(p), "{} is off: {:?}", p.name(), iso.warning());
    }

    // B: a task that keeps a secret in its sandbox and runs until killed.
    let victim = command_task(
        "victim",
        "echo secret > secret; echo \"uid=$(id -u)\"; exec sleep 600",
        Resources::new(0.1, 32, 0),
    );
    assert_eq!(
        t.agent.launch(&ctx("iso-b", "beta"), victim).await.unwrap(),
        TaskState::Running
    );
    let b_sandbox = t
        .agent
        .sandbox_dir(&fw("iso-b"), &"victim".parse().unwrap());
    assert!(
        wait_until(Duration::from_secs(30), || b_sandbox
            .join("secret")
            .exists())
        .await,
        "the victim never wrote its secret"
    );
    let b_cgroup = task_cgroup(
        &t.agent
            .container(&fw("iso-b"), &"victim".parse().unwrap())
            .unwrap(),
    )
    .unwrap()
    .clone();
    let b_pids = b_cgroup.pids();
    assert!(!b_pids.is_empty());
    let b_pid = *b_pids.iter().max().unwrap();

    // A: the attacker.
    let attacker = command_task("attacker", ATTACK, Resources::new(0.1, 32, 0));
    assert_eq!(
        t.agent
            .launch(&ctx("iso-a", "alpha"), attacker)
            .await
            .unwrap(),
        TaskState::Running
    );
    let a_sandbox = t
        .agent
        .sandbox_dir(&fw("iso-a"), &"attacker".parse().unwrap());
    // A setuid-root copy of `id` where the task can run it.
    let suid = a_sandbox.join("suid-id");
    std::fs::copy("/usr/bin/id", &suid).unwrap();
    std::os::unix::fs::chown(&suid, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::write(
        a_sandbox.join("go"),
        format!("{b_pid} {} {}\n", b_sandbox.display(), dir.path().display()),
    )
    .unwrap();
    let end = terminal(&t.master, "iso-a", "attacker").await;
    assert_eq!(end.status.state, TaskState::Finished, "{:?}", end.status);
    let out = std::fs::read_to_string(a_sandbox.join("stdout")).unwrap();
    let r = report(&out);
    let get = |k: &str| {
        r.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} missing in {out}"))
    };

    // Its own unprivileged uid, no groups, not B's uid.
    let uid: u32 = get("uid").parse().unwrap();
    assert!(uid >= 100_000, "{out}");
    assert_eq!(get("gid"), uid.to_string(), "{out}");
    assert_eq!(get("groups"), uid.to_string(), "{out}");
    let b_out = std::fs::read_to_string(b_sandbox.join("stdout")).unwrap();
    let b_uid: u32 = report(&b_out)["uid"].parse().unwrap();
    assert!(b_uid >= 100_000 && b_uid != uid, "{b_out} vs {out}");
    // The sandboxes are each closed to the other uid.
    for (sandbox, owner) in [(&a_sandbox, uid), (&b_sandbox, b_uid)] {
        let meta = std::fs::metadata(sandbox).unwrap();
        assert_eq!(meta.uid(), owner);
        assert_eq!(meta.mode() & 0o777, 0o700);
    }

    // Its sandbox is its cwd; its /tmp is its own, inside the sandbox.
    assert_eq!(get("pwd"), "/sandbox", "{out}");
    assert_eq!(get("sandbox_env"), "/sandbox", "{out}");
    assert_eq!(get("tmp"), "mine", "{out}");
    assert_eq!(
        std::fs::read_to_string(a_sandbox.join(".tmp/mine")).unwrap(),
        "mine\n"
    );
    assert!(!b_sandbox.join(".tmp/mine").exists());

    // Nothing of B's or the agent's.
    for (k, what) in [
        ("read_b", "read B's sandbox"),
        ("list_b", "listed B's sandbox"),
        ("write_b", "wrote into B's sandbox"),
        ("see_b", "saw B's process"),
        ("kill_b", "signalled B's process"),
        ("list_work", "listed the agent's work dir"),
        ("read_db", "read the agent's database"),
    ] {
        assert_ne!(get(k), "0", "the task {what}: {out}");
    }
    assert!(!b_sandbox.join("planted").exists());
    // Only its own processes in /proc: none of B's, not the agent.
    let procs: Vec<i32> = get("procs")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(procs.contains(&1), "{out}");
    for p in b_pids.iter().chain([&(std::process::id() as i32)]) {
        assert!(!procs.contains(p), "pid {p} is visible: {out}");
    }
    // No capabilities left to regain, and no new user namespace to gain them in.
    assert_eq!(get("capbnd"), "0000000000000000", "{out}");
    assert_ne!(get("userns"), "0", "the task made a user namespace: {out}");
    // A setuid-root binary does not give root back.
    assert_eq!(get("suid_uid"), uid.to_string(), "{out}");

    // B lives on, unharmed.
    assert!(!b_cgroup.pids().is_empty(), "B's task was killed");
    assert!(t.master.terminal("iso-b", "victim").is_none());
    assert!(t.agent.kill(&fw("iso-b"), &"victim".parse().unwrap()));
    let end = terminal(&t.master, "iso-b", "victim").await;
    assert_eq!(end.status.state, TaskState::Killed, "{:?}", end.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_user_and_a_root_role_are_honoured() {
    require_cgroups!();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path().to_path_buf());
    c.native.isolation.user = TaskUser::named("nobody").unwrap();
    c.native.isolation.root_task_roles = vec!["ops".into()];
    let t = start(c, Arc::new(MemoryFetcher::new())).await;
    let script = "echo \"uid=$(id -u)\"";
    for (f, role) in [("iso-user", "batch"), ("iso-root", "ops")] {
        let task = command_task("who", script, Resources::new(0.1, 32, 0));
        t.agent.launch(&ctx(f, role), task).await.unwrap();
        let end = terminal(&t.master, f, "who").await;
        assert_eq!(end.status.state, TaskState::Finished, "{:?}", end.status);
    }
    let uid = |f: &str| {
        let out = std::fs::read_to_string(
            t.agent
                .sandbox_dir(&fw(f), &"who".parse().unwrap())
                .join("stdout"),
        )
        .unwrap();
        report(&out)["uid"].clone()
    };
    assert_eq!(uid("iso-user"), "65534");
    assert_eq!(uid("iso-root"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_is_pid_1s_child_and_sigterm_reaches_it() {
    require_cgroups!();
    let dir = tempfile::tempdir().unwrap();
    let t = start(
        config(dir.path().to_path_buf()),
        Arc::new(MemoryFetcher::new()),
    )
    .await;
    // A shell that exits 7 on TERM: the init must pass the kill path's SIGTERM on.
    let task = command_task(
        "term",
        "trap 'exit 7' TERM; echo \"ppid=$PPID\"; echo \"me=$$\"; while :; do sleep 0.05; done",
        Resources::new(0.1, 32, 0),
    );
    t.agent
        .launch(&ctx("iso-term", "batch"), task)
        .await
        .unwrap();
    let sandbox = t
        .agent
        .sandbox_dir(&fw("iso-term"), &"term".parse().unwrap());
    assert!(
        wait_until(Duration::from_secs(30), || std::fs::read_to_string(
            sandbox.join("stdout")
        )
        .is_ok_and(|s| s.contains("me=")))
        .await
    );
    let r = report(&std::fs::read_to_string(sandbox.join("stdout")).unwrap());
    assert_eq!(r["ppid"], "1");
    assert_eq!(r["me"], "2");
    assert!(t.agent.kill(&fw("iso-term"), &"term".parse().unwrap()));
    let end = terminal(&t.master, "iso-term", "term").await;
    assert_eq!(end.status.state, TaskState::Killed, "{:?}", end.status);
    assert!(
        end.status.message.contains("SIGTERM)"),
        "the task did not end within the grace of SIGTERM: {}",
        end.status.message
    );
}
