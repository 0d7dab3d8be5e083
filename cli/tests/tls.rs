//! Transport security with real processes and real certificates made by `wasmos certs`: a TLS
//! master serves an agent and a submit; certificates of another CA, plain-text clients and
//! certificates of the wrong role are refused; a master refuses to serve plain text on a
//! non-loopback address unless `--insecure`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use common::{WAIT, assert_pi, example, first_line, output, wasmos};
use tokio::process::Child;
use wasmos_api::identity::Role;
use wasmos_api::proto as pb;
use wasmos_api::proto::operator_service_client::OperatorServiceClient;
use wasmos_api::proto::raft_client::RaftClient;
use wasmos_api::tls::{TlsFiles, TlsMaterial};

/// A cluster CA in `dir/ca` with one master (for 127.0.0.1), agent and client certificate,
/// and a second, foreign CA in `dir/other` with a client certificate.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    async fn make(dir: &Path) -> Certs {
        let ca = dir.join("ca");
        let other = dir.join("other");
        for d in [&ca, &other] {
            common::succeeded(&output(&["certs", "init", "--dir", d.to_str().unwrap()]).await);
        }
        let ca_dir = ca.to_str().unwrap();
        for args in [
            vec!["master", "m1", "--host", "127.0.0.1,localhost"],
            vec!["agent", "a1"],
            vec!["client", "c1"],
        ] {
            let mut full = vec!["certs", "issue"];
            full.extend(args);
            full.extend(["--dir", ca_dir]);
            common::succeeded(&output(&full).await);
        }
        common::succeeded(
            &output(&[
                "certs",
                "issue",
                "client",
                "c1",
                "--dir",
                other.to_str().unwrap(),
            ])
            .await,
        );
        Certs {
            dir: dir.to_path_buf(),
        }
    }

    /// The files of `role-name` issued by the CA directory `ca` ("ca" or "other"), trusting
    /// the cluster's CA (`ca/ca.pem`) either way: a foreign certificate's holder knows which
    /// master to trust, and only the master can refuse it.
    fn files(&self, ca: &str, role: &str, name: &str) -> TlsFiles {
        let d = self.dir.join(ca);
        TlsFiles {
            cert: d.join(format!("{role}-{name}.pem")),
            key: d.join(format!("{role}-{name}-key.pem")),
            ca: self.dir.join("ca").join("ca.pem"),
        }
    }

    fn flags(&self, role: &str, name: &str) -> Vec<String> {
        let f = self.files("ca", role, name);
        vec![
            "--tls-cert".into(),
            f.cert.display().to_string(),
            "--tls-key".into(),
            f.key.display().to_string(),
            "--tls-ca".into(),
            f.ca.display().to_string(),
        ]
    }

    /// The CLI's environment for `role-name` of CA `ca`.
    fn env(&self, ca: &str, role: &str, name: &str) -> Vec<(&'static str, PathBuf)> {
        let f = self.files(ca, role, name);
        vec![
            ("WASMOS_TLS_CERT", f.cert),
            ("WASMOS_TLS_KEY", f.key),
            ("WASMOS_TLS_CA", f.ca),
        ]
    }

    fn material(&self, ca: &str, role: &str, name: &str) -> TlsMaterial {
        self.files(ca, role, name)
            .load(None)
            .expect("usable TLS files")
    }
}

/// Starts `wasmos master` on a free loopback port with `flags` and bootstraps its ACLs with
/// the client certificate (`common::secure_with`); returns it and its address.
async fn start_master(certs: &Certs, flags: &[String]) -> (Child, String) {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (master, addr) = common::start_master_unsecured(&flags, Stdio::inherit()).await;
    let env = certs.env("ca", "client", "c1");
    let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
    common::secure_with(&addr, &env).await;
    (master, addr)
}

/// Runs `wasmos ARGS` with `env` to its end.
async fn output_with(args: &[&str], env: &[(&'static str, PathBuf)]) -> Output {
    let mut c = wasmos();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    tokio::time::timeout(WAIT, c.output())
        .await
        .unwrap_or_else(|_| panic!("wasmos {args:?} did not exit within {WAIT:?}"))
        .expect("wasmos runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certs_init_and_issue_write_keys_0600_and_never_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path()).await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let ca = dir.path().join("ca");
    assert_eq!(mode(&ca.join("ca-key.pem")), 0o600);
    assert_eq!(mode(&ca.join("ca.pem")), 0o644);
    let agent = certs.files("ca", "agent", "a1");
    assert_eq!(mode(&agent.key), 0o600);
    assert_eq!(mode(&agent.cert), 0o644);
    let before = std::fs::read(ca.join("ca-key.pem")).unwrap();
    let again = output(&["certs", "init", "--dir", ca.to_str().unwrap()]).await;
    assert!(!again.status.success(), "a second init must refuse");
    assert!(
        stderr(&again).contains("never overwrites"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read(ca.join("ca-key.pem")).unwrap(), before);
    let reissue = output(&[
        "certs",
        "issue",
        "agent",
        "a1",
        "--dir",
        ca.to_str().unwrap(),
    ])
    .await;
    assert!(
        !reissue.status.success(),
        "issuing over an existing certificate must refuse"
    );
    // Each certificate says its role.
    for (role, name, want) in [
        ("master", "m1", Role::Master),
        ("agent", "a1", Role::Agent),
        ("client", "c1", Role::Client),
    ] {
        let m = certs.material("ca", role, name);
        assert_eq!(m.identity().role, want);
        assert_eq!(m.identity().name, name);
    }
}

/// The agent has no token: its agent certificate alone authenticates it to a master that
/// enforces ACLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_master_runs_an_agent_and_a_submitted_pi() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path()).await;
    let (mut master, addr) = start_master(&certs, &certs.flags("master", "m1")).await;
    let mut agent = wasmos()
        .args(["agent", "--master", &addr, "--work-dir"])
        .arg(dir.path().join("work"))
        .args(["--resources", "cpus:2;mem:2048"])
        .args(certs.flags("agent", "a1"))
        .env_remove("WASMOS_TOKEN")
        .spawn()
        .expect("wasmos agent starts");
    let pi = example("pi");
    let out = output_with(
        &["submit", &pi, "--master", &addr, "--", "4", "20000"],
        &certs.env("ca", "client", "c1"),
    )
    .await;
    assert_pi(&out);
    agent.kill().await.unwrap();
    master.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_plain_and_wrong_role_clients_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path()).await;
    let (mut master, addr) = start_master(&certs, &certs.flags("master", "m1")).await;

    // The right client certificate works (the control for the refusals below).
    let ok = output_with(
        &["agents", "--master", &addr],
        &certs.env("ca", "client", "c1"),
    )
    .await;
    common::succeeded(&ok);

    // A client certificate from another CA: the handshake fails.
    let foreign = output_with(
        &["agents", "--master", &addr],
        &certs.env("other", "client", "c1"),
    )
    .await;
    assert!(
        !foreign.status.success(),
        "a foreign CA's certificate was accepted"
    );
    println!("foreign CA: {}", stderr(&foreign));
    assert!(
        stderr(&foreign).contains("refused the certificate"),
        "{}",
        stderr(&foreign)
    );

    // Plain text to a TLS master: refused, and the CLI says how to give TLS files.
    let plain = output(&["agents", "--master", &addr]).await;
    assert!(!plain.status.success(), "a plain-text client was served");
    println!("plain text: {}", stderr(&plain));
    assert!(
        stderr(&plain).contains("WASMOS_TLS_CERT"),
        "{}",
        stderr(&plain)
    );

    // An agent certificate may not operate.
    let as_agent = output_with(
        &["agents", "--master", &addr],
        &certs.env("ca", "agent", "a1"),
    )
    .await;
    assert!(
        !as_agent.status.success(),
        "an agent certificate could operate"
    );
    assert!(
        stderr(&as_agent).contains("agent certificate"),
        "{}",
        stderr(&as_agent)
    );

    // The same through a raw gRPC client, with its status code.
    let endpoint = wasmos_api::tls::endpoint(
        &addr,
        Some(&certs.material("other", "client", "c1")),
        Duration::from_secs(5),
    )
    .unwrap();
    let refused = match endpoint.connect().await {
        Err(_) => true,
        Ok(channel) => OperatorServiceClient::new(channel)
            .get_state(pb::GetStateRequest {})
            .await
            .is_err(),
    };
    assert!(refused, "a foreign CA's client reached GetState");
    master.kill().await.unwrap();
}

/// A raw Raft client of the master at `addr` with `tls`; its answer to an empty Vote.
async fn raft_vote(addr: &str, tls: &TlsMaterial) -> Result<(), tonic::Status> {
    let channel = wasmos_api::tls::endpoint(addr, Some(tls), Duration::from_secs(5))
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    RaftClient::new(channel)
        .vote(pb::RaftRequest {
            payload: Vec::new(),
            data: Vec::new(),
        })
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_master_certificate_reaches_the_raft_service() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path()).await;
    let mut flags = certs.flags("master", "m1");
    flags.extend([
        "--data-dir".to_string(),
        dir.path().join("m1").display().to_string(),
    ]);
    let (mut master, addr) = start_master(&certs, &flags).await;

    // A master's certificate reaches Raft: the empty request is decoded and refused by the
    // service itself, not by the role check.
    let as_master = raft_vote(&addr, &certs.material("ca", "master", "m1")).await;
    let status = as_master.expect_err("an empty vote cannot be decoded");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    for (role, name) in [("agent", "a1"), ("client", "c1")] {
        let status = raft_vote(&addr, &certs.material("ca", role, name))
            .await
            .expect_err("a non-master certificate reached Raft");
        assert_eq!(
            status.code(),
            tonic::Code::PermissionDenied,
            "{role}: {status:?}"
        );
        assert!(
            status.message().contains(&format!("a {role} certificate")),
            "{status:?}"
        );
    }
    master.kill().await.unwrap();

    // `wasmos master` itself refuses to start from an agent certificate.
    let out = output(
        &[
            &["master", "--listen", "127.0.0.1:0"][..],
            &certs
                .flags("agent", "a1")
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()[..],
        ]
        .concat(),
    )
    .await;
    assert!(
        !out.status.success(),
        "a master started from an agent certificate"
    );
    assert!(
        stderr(&out).contains("needs a master certificate"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_an_agent_certificate_is_not_taken_for_a_master() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path()).await;
    // A master program serving with a stolen agent certificate (the CLI would refuse it).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let fake = wasmos_master::Master::new(wasmos_master::MasterConfig::default())
        .with_tls(certs.material("ca", "agent", "a1"));
    let server = tokio::spawn(fake.serve(listener, std::future::pending()));
    let out = output_with(
        &["agents", "--master", &addr],
        &certs.env("ca", "client", "c1"),
    )
    .await;
    assert!(
        !out.status.success(),
        "a client took an agent certificate for a master"
    );
    println!("impostor: {}", stderr(&out));
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_on_a_non_loopback_address_needs_tls_or_insecure() {
    let out = output(&["master", "--listen", "0.0.0.0:0"]).await;
    assert!(!out.status.success(), "a plain master served on 0.0.0.0");
    assert!(stderr(&out).contains("--insecure"), "{}", stderr(&out));

    let mut master = wasmos()
        .args(["master", "--listen", "0.0.0.0:0", "--insecure"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wasmos master starts");
    let line = first_line(&mut master, "the insecure master listens").await;
    assert!(
        line.starts_with("wasmos master listening on 0.0.0.0:"),
        "{line}"
    );
    master.kill().await.unwrap();
    let out = master.wait_with_output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WARNING: serving plain text"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_is_closed_at_the_handshake_timeout() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path()).await;
    let mut flags = certs.flags("master", "m1");
    flags.extend(["--handshake-timeout".to_string(), "1".to_string()]);
    let (mut master, addr) = start_master(&certs, &flags).await;
    // Connects and never starts the TLS handshake: the master closes the connection.
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .expect("the master closed the stalled connection")
        .unwrap_or(0);
    assert_eq!(
        n, 0,
        "the master sent bytes to a client that never said hello"
    );
    master.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tls_masters_elect_a_leader_over_tls_raft() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path()).await;
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    drop(listeners);
    let peers: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect();
    let mut masters = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let mut master = wasmos()
            .args(["master", "--listen", addr, "--id", &(i + 1).to_string()])
            .args(["--peers", &peers.join(",")])
            .arg("--data-dir")
            .arg(dir.path().join(format!("m{}", i + 1)))
            // One master certificate for all three: each is also a client of the others.
            .args(certs.flags("master", "m1"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("wasmos master starts");
        first_line(&mut master, "the master says where it listens").await;
        masters.push(master);
    }
    // A leader exists only once two masters voted over TLS Raft; the group then serves, and
    // commits its first token (through Raft) to the bootstrap.
    let all = addrs.join(",");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let out = output_with(
            &["acl", "bootstrap", "--master", &all],
            &certs.env("ca", "client", "c1"),
        )
        .await;
        if out.status.success() {
            let mut env = certs.env("ca", "client", "c1");
            let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
            env.push(("WASMOS_TOKEN", PathBuf::from(root)));
            // The group's first seconds may see one more election (a master that voted late
            // calls its own): the CLI then says the leader is unknown, and a retry finds it.
            common::until("the TLS group serves `wasmos agents`", || {
                let (all, env) = (all.clone(), env.clone());
                async move {
                    output_with(&["agents", "--master", &all], &env)
                        .await
                        .status
                        .success()
                        .then_some(())
                }
            })
            .await;
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no TLS group served within {WAIT:?}: {}",
            stderr(&out)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for mut m in masters {
        m.kill().await.unwrap();
    }
}
