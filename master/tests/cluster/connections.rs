//! The listener's connection limits over real loopback TCP: connections stalled in the HTTP/2
//! handshake are closed, the per-IP cap refuses one past it while other addresses connect,
//! connections with no call are closed when idle, silent peers are closed by keepalive, and a
//! quiet but healthy subscription outlives all of these.
//!
//! Waits for a close are bounded by [`WAIT`], far above the short timeouts set here, so a
//! rule that is missing fails the test instead of passing slowly.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tonic::transport::{Endpoint, Uri};
use wasmos_api::proto as pb;
use wasmos_api::proto::operator_service_client::OperatorServiceClient;
use wasmos_master::{ConnectionConfig, MasterConfig};

use crate::harness::*;

/// The HTTP/2 client preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: what a client sends after the preface.
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

fn config(connections: ConnectionConfig) -> MasterConfig {
    MasterConfig {
        connections,
        ..fast_config()
    }
}

/// Limits that close nothing within a test unless the test shortens them.
fn lenient() -> ConnectionConfig {
    ConnectionConfig {
        handshake_timeout: Duration::from_secs(600),
        idle_timeout: None,
        keepalive_interval: None,
        keepalive_timeout: Duration::from_secs(600),
        max_connections: None,
        max_connections_per_ip: 1024,
    }
}

/// A TCP connection to `addr` from the loopback address `from` (any of 127.0.0.0/8).
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads (and discards what the master sends) until the master closes `conn`; false if it is
/// still open after [`WAIT`].
async fn closed_by_master(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let read_to_close = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(WAIT, read_to_close).await.is_ok()
}

/// True if `conn` has not been closed by the master (reads what is buffered, never waits).
fn still_open(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match conn.try_read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

/// An operator client whose connection comes from the loopback address `from`.
async fn operator_from(
    from: &'static str,
    addr: SocketAddr,
) -> Result<OperatorServiceClient<tonic::transport::Channel>, tonic::transport::Error> {
    let channel = Endpoint::from_shared(url(addr))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| async move {
            let stream = connect_from(from, addr).await;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }))
        .await?;
    Ok(OperatorServiceClient::new(channel))
}

async fn served(op: &mut OperatorServiceClient<tonic::transport::Channel>) -> bool {
    tokio::time::timeout(WAIT, op.get_state(pb::GetStateRequest {}))
        .await
        .is_ok_and(|r| r.is_ok())
}

#[tokio::test]
async fn connections_stalled_in_the_handshake_are_closed_while_clients_are_served() {
    let (addr, _master) = start_master(config(ConnectionConfig {
        handshake_timeout: Duration::from_millis(300),
        ..lenient()
    }))
    .await;
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let mut conn = connect_from("127.0.0.1", addr).await;
        conn.write_all(&PREFACE[..12]).await.unwrap();
        stalled.push(conn);
    }
    // A real client is served while the stalled ones are open (and after their deadline:
    // the handshake timeout never cuts a client that completed its handshake).
    let mut op = operator(addr).await;
    assert!(served(&mut op).await);
    for conn in &mut stalled {
        assert!(
            closed_by_master(conn).await,
            "a connection that sent half the preface was not closed"
        );
    }
    assert!(served(&mut op).await);
}

#[tokio::test]
async fn per_ip_cap_refuses_one_past_it_and_other_addresses_still_connect() {
    const CAP: usize = 3;
    let (addr, _master) = start_master(config(ConnectionConfig {
        max_connections_per_ip: CAP,
        ..lenient()
    }))
    .await;
    let mut at_cap = Vec::new();
    for _ in 0..CAP {
        at_cap.push(connect_from("127.0.0.1", addr).await);
    }
    // One past the cap, and far past it: each is closed at once.
    for i in 0..20 {
        let mut extra = connect_from("127.0.0.1", addr).await;
        assert!(
            closed_by_master(&mut extra).await,
            "connection {} from one address was not refused",
            CAP + 1 + i
        );
    }
    // The ones at the cap were admitted and stay open (the refusals came after them).
    for conn in &mut at_cap {
        assert!(still_open(conn), "a connection within the cap was closed");
    }
    // Another address has its own slots.
    let mut other = operator_from("127.0.0.2", addr).await.unwrap();
    assert!(served(&mut other).await);
    // Freeing a slot lets the full address in again (the master notices the close
    // asynchronously, so retry until it has).
    drop(at_cap.pop());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(mut op) = operator_from("127.0.0.1", addr).await
            && served(&mut op).await
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the freed slot was not given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn total_cap_refuses_one_past_it_from_any_address() {
    const CAP: usize = 4;
    let (addr, _master) = start_master(config(ConnectionConfig {
        max_connections: Some(CAP),
        ..lenient()
    }))
    .await;
    let mut at_cap = Vec::new();
    for i in 0..CAP {
        at_cap.push(connect_from(["127.0.0.1", "127.0.0.2"][i % 2], addr).await);
    }
    for from in ["127.0.0.3", "127.0.0.4", "127.0.0.1"] {
        let mut extra = connect_from(from, addr).await;
        assert!(
            closed_by_master(&mut extra).await,
            "connection {} in all (from {from}) was not refused",
            CAP + 1
        );
    }
    for conn in &mut at_cap {
        assert!(still_open(conn), "a connection within the cap was closed");
    }
}

#[tokio::test]
async fn connection_with_no_call_is_closed_when_idle() {
    let (addr, _master) = start_master(config(ConnectionConfig {
        idle_timeout: Some(Duration::from_millis(300)),
        ..lenient()
    }))
    .await;
    // A complete handshake, then nothing: no call is ever opened.
    let mut conn = connect_from("127.0.0.1", addr).await;
    conn.write_all(PREFACE).await.unwrap();
    conn.write_all(EMPTY_SETTINGS).await.unwrap();
    assert!(
        closed_by_master(&mut conn).await,
        "an idle connection was not closed"
    );
}

#[tokio::test]
async fn peer_that_answers_no_ping_is_closed() {
    let (addr, _master) = start_master(config(ConnectionConfig {
        keepalive_interval: Some(Duration::from_millis(200)),
        keepalive_timeout: Duration::from_millis(300),
        ..lenient()
    }))
    .await;
    let mut conn = connect_from("127.0.0.1", addr).await;
    conn.write_all(PREFACE).await.unwrap();
    conn.write_all(EMPTY_SETTINGS).await.unwrap();
    assert!(
        closed_by_master(&mut conn).await,
        "a peer that never answered a PING was not closed"
    );
}

#[tokio::test]
async fn quiet_subscription_outlives_the_idle_timeout_and_keepalive() {
    let idle = Duration::from_millis(300);
    let (addr, _master) = start_master(MasterConfig {
        // No heartbeat events: the stream carries nothing until an agent comes.
        scheduler_heartbeat_interval: Duration::from_secs(600),
        ..config(ConnectionConfig {
            handshake_timeout: Duration::from_millis(300),
            idle_timeout: Some(idle),
            keepalive_interval: Some(Duration::from_millis(100)),
            keepalive_timeout: Duration::from_secs(5),
            ..lenient()
        })
    })
    .await;
    let mut sched = Scheduler::subscribe(addr, framework_info("", "web", 60.0))
        .await
        .unwrap();
    // Several idle timeouts and keepalive rounds pass with the stream open and silent.
    tokio::time::sleep(idle * 5).await;
    let _agent = SimAgent::register(addr, "", res(1.0, 128), vec![]).await;
    let offers = sched.offers().await;
    assert_eq!(
        offers.len(),
        1,
        "the old subscription still receives offers"
    );
}
