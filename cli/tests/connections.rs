//! A real `wasmos master` process hammered with connections that send half the HTTP/2
//! preface and stop: its open file descriptors (counted in `/proc/PID/fd`) stay under the
//! per-IP cap plus what it held before, an operator client from another address is served
//! throughout, every stalled connection is closed by the handshake timeout, and the
//! descriptors come back. The master says at start which caps it chose.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;

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
