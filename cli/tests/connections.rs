//! A real `wasmos master` process hammered with connections that send half the HTTP/2
//! preface and stop: its open file descriptors (counted in `/proc/PID/fd`) stay under the
//! per-IP cap plus what it held before, an operator client from another address is served
//! throughout, every stalled connection is closed by the handshake timeout, and the
//! descriptors come back. The master says at start which caps it chose.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use common::{WAIT, cluster_state, operator, start_master_with, wait_until};

const PER_IP: usize = 32;
const HAMMER: usize = 400;
/// Descriptors the master may open beside the connections counted (a client's connection, a
/// timer, a log file): generous, far below `HAMMER`.
const SLACK: usize = 16;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn connect_from(from: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.parse().unwrap(), 0))?;
    socket.connect(addr).await
}

#[tokio::test]
async fn stalled_handshakes_cannot_use_up_the_masters_descriptors() {
    let (mut master, addr) = start_master_with(
        &[
            "--max-connections",
            "64",
            "--max-connections-per-ip",
            &PER_IP.to_string(),
            "--handshake-timeout",
            "10",
        ],
        Stdio::piped(),
    )
    .await;
    let stderr = master.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let said = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap_or_default();
    assert!(
        said.contains("accepting up to 64 connections, 32 per IP address"),
        "the master did not say its caps: {said:?}"
    );
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let pid = master.id().unwrap();
    let sock: SocketAddr = addr.parse().unwrap();

    let mut op = operator(&addr).await;
    cluster_state(&mut op).await;
    let before = open_fds(pid);

    // Half a preface from each of HAMMER connections from one address, then silence.
    let mut stalled = Vec::new();
    for _ in 0..HAMMER {
        if let Ok(mut conn) = connect_from("127.0.0.2", sock).await {
            let _ = conn
                .write_all(&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..12])
                .await;
            stalled.push(conn);
        }
    }
    assert_eq!(
        stalled.len(),
        HAMMER,
        "the kernel accepted every connection"
    );
    // A client from another address is served; its call queued behind every connection
    // above, so the master has accepted (and admitted or refused) them all by now.
    let mut op2 = operator(&addr).await;
    cluster_state(&mut op2).await;
    cluster_state(&mut op).await;
    let during = open_fds(pid);
    assert!(
        during <= before + PER_IP + SLACK,
        "the master holds {during} descriptors under {HAMMER} stalled connections \
         ({before} before; the cap is {PER_IP} per address)"
    );

    // The handshake timeout closes every stalled connection, and the descriptors return.
    for conn in &mut stalled {
        let mut buf = [0u8; 1024];
        let closed = tokio::time::timeout(WAIT, async {
            while let Ok(n) = conn.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a stalled connection was never closed");
    }
    assert!(
        wait_until(|| open_fds(pid) <= before + SLACK / 4).await,
        "the master kept descriptors after the stalled connections closed: {} (before {before})",
        open_fds(pid)
    );
    cluster_state(&mut op).await;
    let _ = master.kill().await;
}

/// A TCP relay to `upstream` on a loopback port that can go silent: once `cut` is set it
/// accepts no more connections and forwards nothing more either way, but keeps the connections
/// it has open, as a peer cut off by the network does (no FIN, no RST).
async fn relay(upstream: String, cut: Arc<AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((down, _)) = listener.accept().await {
            if cut.load(Ordering::Relaxed) {
                // The listener goes with the loop: later connections are refused.
                break;
            }
            let Ok(up) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let (dr, dw) = down.into_split();
            let (ur, uw) = up.into_split();
            tokio::spawn(pipe(dr, uw, cut.clone()));
            tokio::spawn(pipe(ur, dw, cut.clone()));
        }
    });
    addr
}

/// Copies `from` to `to` until `cut`; then holds both open and silent.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if cut.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Reads the agent's log until it says it registered through `to`.
async fn registered_with(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    to: &str,
) {
    let said = format!("registered with the master at {to}");
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.contains(&said) {
            return;
        }
    }
    panic!("the agent exited before registering through {to}");
}

/// An agent whose master goes silent (cut off by the network: no FIN, no RST, the master
/// sends nothing on a quiet session) notices within its session's HTTP/2 PING timeout and
/// registers through another master address, instead of waiting for the kernel to give up on
/// the connection. Here both addresses are relays to one master; the first is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_leaves_a_master_that_goes_silent_and_registers_elsewhere() {
    let (mut master, addr) = start_master_with(&[], Stdio::inherit()).await;
    let cut = Arc::new(AtomicBool::new(false));
    let first = relay(addr.clone(), cut.clone()).await;
    let second = relay(addr.clone(), Arc::new(AtomicBool::new(false))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = common::wasmos();
    if let Some(t) = common::tokens_for(&addr) {
        agent.env("WASMOS_TOKEN", t.agent);
    }
    let mut agent = agent
        .args([
            "agent",
            "--master",
            &format!("{first},{second}"),
            "--work-dir",
        ])
        .arg(dir.path().join("work"))
        .args(["--resources", "cpus:1;mem:512"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("wasmos agent starts");
    let mut lines = BufReader::new(agent.stderr.take().unwrap()).lines();
    tokio::time::timeout(WAIT, registered_with(&mut lines, &first))
        .await
        .expect("the agent registers through the first address");
    let op = &mut operator(&addr).await;
    cut.store(true, Ordering::Relaxed);
    let cut_at = tokio::time::Instant::now();
    // Pings every 3 s, 3 s to answer; then a new session. Without them: minutes.
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        registered_with(&mut lines, &second),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the agent did not leave the silent master within 20 s of the cut (left after {:?})",
            cut_at.elapsed()
        )
    });
    eprintln!(
        "the agent registered elsewhere {:?} after the cut",
        cut_at.elapsed()
    );
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let state = cluster_state(op).await;
    assert_eq!(
        state.agents.len(),
        1,
        "one agent, registered again: {state:?}"
    );
    agent.kill().await.unwrap();
    master.kill().await.unwrap();
}
