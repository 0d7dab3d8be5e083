//! Hostile guests: each misbehaves in one way, must fail (or be contained) with a clear error,
//! and must not disturb a well-behaved task running at the same time.

mod common;

use std::time::Duration;

use common::*;
use wasmos_wasm_executor::{
    LimitMode, QueueBounds, TaskError, TaskLimits, event_queue,
    events::{MAX_QUEUED_EXECUTOR_EVENT_BYTES, MAX_QUEUED_EXECUTOR_EVENTS},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_runs_out_of_fuel() {
    let h = harness(LimitMode::Fuel);
    let limits = TaskLimits {
        fuel: Some(50_000_000),
        ..limits()
    };
    let err = h.run_beside_bystander("loop", limits).await.unwrap_err();
    assert!(
        matches!(err, TaskError::OutOfFuel { budget: 50_000_000 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("ran out of fuel"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_hits_the_deadline_with_fuel_metering() {
    let h = harness(LimitMode::Fuel);
    let limits = TaskLimits {
        timeout: Duration::from_millis(300),
        ..limits()
    };
    let err = h.run_beside_bystander("loop", limits).await.unwrap_err();
    assert!(matches!(err, TaskError::Deadline(_)), "{err:?}");
    assert!(
        err.to_string().contains("exceeded its deadline of 300ms"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_hits_the_deadline_with_epoch_metering() {
    let h = harness(LimitMode::Epoch);
    let limits = TaskLimits {
        timeout: Duration::from_millis(300),
        ..limits()
    };
    let err = h.run_beside_bystander("loop", limits).await.unwrap_err();
    assert!(err.to_string().contains("exceeded its deadline"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_is_stopped_at_the_cap() {
    let h = harness(LimitMode::Fuel);
    let err = h
        .run_beside_bystander("membomb", limits())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TaskError::MemoryLimit { limit_mb: 64, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("exceeded its memory limit of 64 MiB"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_overflows_the_stack() {
    let h = harness(LimitMode::Fuel);
    let err = h
        .run_beside_bystander("recurse", limits())
        .await
        .unwrap_err();
    assert!(matches!(err, TaskError::StackOverflow), "{err:?}");
    assert!(err.to_string().contains("overflowed its stack"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_fails_the_task_with_the_panic_message() {
    let h = harness(LimitMode::Fuel);
    let err = h.run_beside_bystander("panic", limits()).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TaskError::Trap { .. }), "{err:?}");
    assert!(text.contains("unreachable"), "{text}");
    assert!(text.contains("hostile guest panicked on purpose"), "{text}");
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spewing_100_mib_to_stdout_is_capped() {
    let h = harness(LimitMode::Fuel);
    let cap = 1 << 20;
    let before = rss_kib();
    let out = h
        .run_beside_bystander(
            "spew",
            TaskLimits {
                max_output_bytes: cap,
                ..limits()
            },
        )
        .await
        .expect("the task itself finishes: its output is truncated, not fatal");
    assert_eq!(out.output, b"spewed");
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "host memory grew by {grown_mib} MiB while the guest wrote 100 MiB"
    );
    let stdout = h
        .pool
        .executor_dir(&fw(), &"hostile".parse().unwrap())
        .join("stdout");
    let len = std::fs::metadata(&stdout).unwrap().len();
    assert!(len <= cap + 100, "stdout file is {len} bytes; cap {cap}");
    let text = std::fs::read(&stdout).unwrap();
    assert!(
        String::from_utf8_lossy(&text[text.len() - 60..])
            .contains("output truncated at 1048576 bytes")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cannot_read_host_files() {
    let h = harness(LimitMode::Fuel);
    for path in [
        "/etc/passwd",
        "../../../../etc/passwd",
        "/../etc/passwd",
        "sub/../../etc/passwd",
    ] {
        let err = h
            .run_beside_bystander(&format!("read:{path}"), limits())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, TaskError::Guest(_)), "{path}: {err:?}");
        assert!(text.contains(&format!("cannot read {path}")), "{text}");
        assert!(!text.contains("root:"), "{path} leaked host data: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_cannot_escape_the_sandbox() {
    let h = harness(LimitMode::Fuel);
    let sandbox = h
        .pool
        .executor_dir(&fw(), &"hostile".parse().unwrap())
        .join("sandbox");
    std::fs::create_dir_all(&sandbox).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", sandbox.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc/passwd", sandbox.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc", sandbox.join("etc-dir")).unwrap();
    for name in ["abs-link", "rel-link", "etc-dir/passwd"] {
        let err = h
            .run_beside_bystander(&format!("read:{name}"), limits())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("cannot read {name}")), "{text}");
        assert!(!text.contains("root:"), "{name} leaked host data: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_itself_is_usable() {
    // Proves the refusals above are the sandbox's doing, not a broken filesystem.
    let h = harness(LimitMode::Fuel);
    h.run("hostile", "write:notes.txt:kept", limits())
        .await
        .expect("write in sandbox");
    let sandbox = h
        .pool
        .executor_dir(&fw(), &"hostile".parse().unwrap())
        .join("sandbox");
    assert_eq!(
        std::fs::read_to_string(sandbox.join("notes.txt")).unwrap(),
        "kept"
    );
    let out = h.run("hostile", "read:notes.txt", limits()).await.unwrap();
    assert_eq!(out.output, b"kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_may_not_call_the_scheduler_driver() {
    let h = harness(LimitMode::Fuel);
    let err = h
        .run_beside_bystander("driver", limits())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("only a framework's scheduler may use"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapped_instances_do_not_leak_pool_slots() {
    // The pool has 8 component-instance slots. Fail many more tasks than that, each in a fresh
    // executor, then show that slots are still free.
    let h = harness(LimitMode::Fuel);
    let quick = TaskLimits {
        fuel: Some(5_000_000),
        ..limits()
    };
    for i in 0..24 {
        let payload = ["loop", "panic", "recurse"][i % 3];
        let err = h
            .run(&format!("bad-{i}"), payload, quick.clone())
            .await
            .unwrap_err();
        assert!(err.poisons_instance(), "{err:?}");
    }
    assert_eq!(h.pool.live_instances(), 0);
    for i in 0..6 {
        let out = h
            .run(&format!("good-{i}"), "echo:ok", limits())
            .await
            .expect("a slot is free");
        assert_eq!(out.output, b"ok");
    }
    assert_eq!(h.pool.live_instances(), 6);
}

/// Floods `send-framework-message` with `n` messages of `bytes` while nothing drains the queue
/// (as while the agent is disconnected): the guest's call past the bound traps, the queue holds
/// no more than the bound, and a bystander still finishes.
async fn flood(n: usize, bytes: usize) -> (Result<Vec<u8>, TaskError>, usize, usize) {
    let h = harness(LimitMode::Fuel);
    let (tx, rx) = event_queue(QueueBounds::default());
    let mut req = request(
        "hostile",
        "flood",
        &format!("message-flood:{n}:{bytes}"),
        limits(),
    );
    req.events = Some(tx);
    let hostile = h.pool.run_task(&h.hostile, req);
    let bystander = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        h.run("bystander", "echo:still here", limits()).await
    };
    let (hostile, bystander) = tokio::join!(hostile, bystander);
    assert_eq!(
        bystander.expect("the bystander finishes").output,
        b"still here"
    );
    let queued = rx.queued_bytes();
    let mut events = 0;
    let mut rx = rx;
    while rx.try_recv().is_some() {
        events += 1;
    }
    (hostile.map(|o| o.output), queued, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_flood_is_refused_at_the_queue_bound() {
    // Far past, by bytes: 1,000 messages of 1 MiB stop after 16.
    let (r, queued, events) = flood(1000, 1 << 20).await;
    let err = r.unwrap_err();
    assert!(
        matches!(&err, TaskError::Trap { message, .. }
            if message.contains("send-framework-message refused")
                && message.contains(&MAX_QUEUED_EXECUTOR_EVENT_BYTES.to_string())),
        "{err}"
    );
    assert_eq!(queued, MAX_QUEUED_EXECUTOR_EVENT_BYTES);
    assert_eq!(events, MAX_QUEUED_EXECUTOR_EVENT_BYTES >> 20);

    // By count: at the bound all are queued, one past it traps.
    let (r, _, events) = flood(MAX_QUEUED_EXECUTOR_EVENTS, 10).await;
    assert_eq!(
        r.unwrap(),
        format!("sent {MAX_QUEUED_EXECUTOR_EVENTS}").as_bytes()
    );
    assert_eq!(events, MAX_QUEUED_EXECUTOR_EVENTS);
    let (r, _, events) = flood(MAX_QUEUED_EXECUTOR_EVENTS + 1, 10).await;
    assert!(matches!(r, Err(TaskError::Trap { .. })), "{r:?}");
    assert_eq!(events, MAX_QUEUED_EXECUTOR_EVENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_framework_message_past_its_size_limit_is_refused() {
    let (r, _, events) = flood(1, (4 << 20) + 1).await;
    assert!(
        matches!(&r, Err(TaskError::Trap { message, .. }) if message.contains("limit of a framework message")),
        "{r:?}"
    );
    assert_eq!(events, 0);
    let (r, _, events) = flood(1, 4 << 20).await;
    assert_eq!(r.unwrap(), b"sent 1");
    assert_eq!(events, 1);
}

/// A Wasm task has no network: a TCP connection and a UDP datagram to sockets this host
/// listens on (loopback, the easiest target there is) and a name lookup are all refused with a
/// clear error, and neither socket ever sees a connection or a byte. The host's own connection
/// to the same listener is accepted, so the refusal is the sandbox's, not the address's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn has_no_network() {
    let h = harness(LimitMode::Fuel);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let tcp = listener.local_addr().unwrap();
    let udp_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp_socket.set_nonblocking(true).unwrap();
    let udp = udp_socket.local_addr().unwrap();

    for (payload, want) in [
        (format!("connect:{tcp}"), format!("cannot connect {tcp}")),
        (format!("udp:{udp}"), format!("cannot send to {udp}")),
        (
            "resolve:localhost".to_string(),
            "cannot resolve localhost".to_string(),
        ),
    ] {
        let err = h
            .run_beside_bystander(&payload, limits())
            .await
            .unwrap_err();
        assert!(matches!(err, TaskError::Guest(_)), "{payload}: {err:?}");
        assert!(err.to_string().contains(&want), "{payload}: {err}");
    }
    let mut buf = [0u8; 64];
    assert_eq!(
        udp_socket
            .recv_from(&mut buf)
            .map_err(|e| e.kind())
            .unwrap_err(),
        std::io::ErrorKind::WouldBlock,
        "a datagram reached the host's UDP socket"
    );
    assert_eq!(
        listener.accept().map_err(|e| e.kind()).unwrap_err(),
        std::io::ErrorKind::WouldBlock,
        "a guest connection reached the host's listener"
    );
    // Control: the listener does accept the host's own connection.
    let _host = std::net::TcpStream::connect(tcp).unwrap();
    let accepted = (0..200).find_map(|_| match listener.accept() {
        Ok(conn) => Some(conn),
        Err(_) => {
            std::thread::sleep(Duration::from_millis(10));
            None
        }
    });
    assert!(
        accepted.is_some(),
        "the control connection was not accepted"
    );
}

/// A Wasm task inherits nothing of the host's environment or arguments: the test process (the
/// agent here) has `PATH` and cargo's variables, and the guest sees no variable at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inherits_no_environment() {
    assert!(
        std::env::var_os("PATH").is_some() && std::env::var_os("CARGO_MANIFEST_DIR").is_some(),
        "the host process should have an environment for this test to mean anything"
    );
    let h = harness(LimitMode::Fuel);
    let out = h
        .run_beside_bystander("env", limits())
        .await
        .expect("env runs");
    let text = String::from_utf8(out.output).unwrap();
    let (vars, args) = text.split_once("args:\n").expect("an args: line");
    assert_eq!(vars, "", "the guest saw environment variables: {text}");
    assert_eq!(args, "", "the guest saw arguments: {text}");
    assert!(!text.contains("CARGO") && !text.contains("PATH="), "{text}");
}
