//! The soak's processes: three `wasmos master`s, each in its own network namespace, and the
//! agents in the bench's namespace, each with its work dir on its own tmpfs; killing, pausing
//! and restarting them; and the bench's view of them (who leads, each master's registry
//! digest, every process's RSS).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use wasmos_api::proto as pb;

use super::net::{Net, Tmpfs};
use super::workload::SERVICE_ROLE;
use crate::secure::{Operator, Security};

/// Bound on one call to a master (it may be paused or cut off).
pub const CALL: Duration = Duration::from_secs(2);
/// Bound on a process's start.
const START: Duration = Duration::from_secs(60);
/// Size of each agent's work-dir tmpfs, in MiB.
pub const AGENT_DISK_MIB: u64 = 64;

/// Pids of the live processes by name (`master1`, `agent0`), for the RSS sampler.
pub type Pids = Arc<Mutex<Vec<(String, Option<u32>)>>>;

/// A process slot: the child while it runs.
struct Slot {
    name: String,
    child: Option<Child>,
    paused: bool,
}

/// The soak's cluster.
pub struct Cluster {
    wasmos: PathBuf,
    dir: PathBuf,
    pub net: Net,
    pub security: Security,
    masters: Vec<Slot>,
    agents: Vec<Slot>,
    disks: Vec<Tmpfs>,
    /// Operator clients of each master (lazy, per-call deadline).
    pub ops: Vec<Operator>,
    pub pids: Pids,
}

impl Cluster {
    /// Sets up the network and starts the masters; bootstraps the first token through the
    /// group's leader. Agents are started with [`Cluster::start_agents`].
    pub async fn start(wasmos: &Path, dir: &Path, masters: usize) -> anyhow::Result<Cluster> {
        let net = Net::setup(masters)?;
        let security = Security::make(wasmos, dir, false, masters).await?;
        let mut c = Cluster {
            wasmos: wasmos.to_path_buf(),
            dir: dir.to_path_buf(),
            net,
            security,
            masters: (0..masters)
                .map(|i| Slot {
                    name: format!("master{}", i + 1),
                    child: None,
                    paused: false,
                })
                .collect(),
            agents: Vec::new(),
            disks: Vec::new(),
            ops: Vec::new(),
            pids: Arc::new(Mutex::new(Vec::new())),
        };
        for i in 0..masters {
            c.start_master(i).await?;
        }
        let all = c.grpc_addrs().join(",");
        let deadline = tokio::time::Instant::now() + START;
        loop {
            match c.security.bootstrap(&c.wasmos, &all).await {
                Ok(()) => break,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    eprintln!("wasmos-bench chaos: bootstrap retried: {e:#}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
        c.ops = (0..masters)
            .map(|i| c.security.operator_lazy(&c.net.grpc(i), CALL))
            .collect::<anyhow::Result<_>>()?;
        Ok(c)
    }

    pub fn grpc_addrs(&self) -> Vec<String> {
        (0..self.masters.len()).map(|i| self.net.grpc(i)).collect()
    }

    pub fn masters(&self) -> usize {
        self.masters.len()
    }

    pub fn agents(&self) -> usize {
        self.agents.len()
    }

    fn log(&self, name: &str) -> anyhow::Result<Stdio> {
        let path = self.dir.join(format!("{name}.log"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Stdio::from(f))
    }

    fn set_pid(&self, name: &str, pid: Option<u32>) {
        let mut pids = self.pids.lock().unwrap_or_else(|p| p.into_inner());
        match pids.iter_mut().find(|(n, _)| n == name) {
            Some(e) => e.1 = pid,
            None => pids.push((name.to_string(), pid)),
        }
    }

    /// Starts master `i` (id i+1) in its namespace from its data dir; returns once it listens.
    pub async fn start_master(&mut self, i: usize) -> anyhow::Result<()> {
        let peers: Vec<String> = (0..self.masters.len())
            .map(|j| format!("{}={}", j + 1, self.net.grpc(j)))
            .collect();
        let name = self.masters[i].name.clone();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.net.ns(i)])
            .arg(&self.wasmos)
            .args(["master", "--listen", &self.net.grpc(i)])
            .args(["--http", &self.net.http(i), "--metrics-open"])
            // Namespace addresses are not loopback; the soak is about faults, not TLS.
            .arg("--insecure")
            .args(["--id", &(i + 1).to_string(), "--peers", &peers.join(",")])
            .arg("--data-dir")
            .arg(self.dir.join(&name))
            .args(["--allocation-interval", "0.05"])
            .args(["--agent-heartbeat-interval", "1"])
            .args(["--agent-unreachable-timeout", "5"])
            .args(["--launch-timeout", "30"])
            .args(["--command-task-roles", SERVICE_ROLE])
            .args(self.security.master_flags(i + 1))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(self.log(&name)?)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {} master", self.wasmos.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        tokio::time::timeout(START, lines.next_line())
            .await
            .with_context(|| format!("{name} did not start within {START:?}"))??
            .with_context(|| {
                format!(
                    "{name} exited at start; see {}",
                    self.dir.join(format!("{name}.log")).display()
                )
            })?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.set_pid(&name, child.id());
        self.masters[i].child = Some(child);
        self.masters[i].paused = false;
        Ok(())
    }

    /// Mounts each agent's tmpfs and starts `n` agents.
    pub async fn start_agents(&mut self, n: usize) -> anyhow::Result<()> {
        for a in 0..n {
            let work = self.dir.join(format!("agent{a}"));
            self.disks.push(Tmpfs::mount(&work, AGENT_DISK_MIB)?);
            self.agents.push(Slot {
                name: format!("agent{a}"),
                child: None,
                paused: false,
            });
            self.start_agent(a)?;
        }
        Ok(())
    }

    /// Starts agent `a` from its work dir.
    pub fn start_agent(&mut self, a: usize) -> anyhow::Result<()> {
        let name = self.agents[a].name.clone();
        let mut cmd = Command::new(&self.wasmos);
        cmd.args(["agent", "--master", &self.grpc_addrs().join(",")])
            .arg("--work-dir")
            .arg(self.dir.join(&name))
            .args(["--hostname", &format!("chaos-{name}")])
            .args(["--resources", "cpus:4;mem:4096;disk:32"])
            .arg("--allow-weak-isolation")
            .args(self.security.agent_flags())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log(&name)?)
            .kill_on_drop(true);
        self.security.child_env(&mut cmd, false);
        let child = cmd.spawn().context("cannot start an agent")?;
        self.set_pid(&name, child.id());
        self.agents[a].child = Some(child);
        Ok(())
    }

    async fn kill(slot: &mut Slot) -> anyhow::Result<()> {
        if let Some(mut c) = slot.child.take() {
            c.start_kill().ok();
            c.wait().await?;
        }
        slot.paused = false;
        Ok(())
    }

    /// SIGKILLs master `i` and reaps it.
    pub async fn kill_master(&mut self, i: usize) -> anyhow::Result<()> {
        let name = self.masters[i].name.clone();
        Self::kill(&mut self.masters[i]).await?;
        self.set_pid(&name, None);
        Ok(())
    }

    /// SIGKILLs agent `a` and reaps it.
    pub async fn kill_agent(&mut self, a: usize) -> anyhow::Result<()> {
        let name = self.agents[a].name.clone();
        Self::kill(&mut self.agents[a]).await?;
        self.set_pid(&name, None);
        Ok(())
    }

    /// SIGSTOP (`pause`) or SIGCONT master `i`.
    pub fn signal_master(&mut self, i: usize, pause: bool) -> anyhow::Result<()> {
        let slot = &mut self.masters[i];
        let pid = slot
            .child
            .as_ref()
            .and_then(Child::id)
            .with_context(|| format!("{} does not run", slot.name))?;
        let sig = if pause { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) with a pid of our own child and a valid signal.
        if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
            bail!(
                "cannot signal {}: {}",
                slot.name,
                std::io::Error::last_os_error()
            );
        }
        slot.paused = pause;
        Ok(())
    }

    /// Fills (or drains) agent `a`'s disk.
    pub fn fill_disk(&self, a: usize, full: bool) -> anyhow::Result<u64> {
        if full {
            self.disks[a].fill()
        } else {
            self.disks[a].drain().map(|()| 0)
        }
    }

    /// Processes that exited though the bench did not kill them, by name and status; they are
    /// forgotten (the caller restarts them).
    pub fn exited(&mut self) -> Vec<(String, bool, usize, String)> {
        let mut out = Vec::new();
        for (master, slots) in [(true, &mut self.masters), (false, &mut self.agents)] {
            for (i, s) in slots.iter_mut().enumerate() {
                if let Some(c) = &mut s.child
                    && let Ok(Some(status)) = c.try_wait()
                {
                    out.push((s.name.clone(), master, i, status.to_string()));
                    s.child = None;
                }
            }
        }
        for (name, ..) in &out {
            self.set_pid(name, None);
        }
        out
    }

    /// Kills every process (also done on drop).
    pub async fn stop(&mut self) {
        for s in self.agents.iter_mut().chain(self.masters.iter_mut()) {
            if let Some(c) = &mut s.child {
                if s.paused
                    && let Some(pid) = c.id()
                {
                    // SAFETY: as in `signal_master`.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
                }
                let _ = c.kill().await;
            }
            s.child = None;
        }
    }
}

/// The index of the master that serves (answers `ListMembers`, which only the serving leader
/// does, and cheaply), asking all at once: the first to answer, or `None` once none has
/// within [`CALL`].
pub async fn leader(ops: &[Operator]) -> Option<usize> {
    let mut asks = tokio::task::JoinSet::new();
    for (i, op) in ops.iter().enumerate() {
        let mut op = op.clone();
        asks.spawn(async move {
            let ok = tokio::time::timeout(CALL, op.list_members(pb::ListMembersRequest {}))
                .await
                .is_ok_and(|r| r.is_ok());
            ok.then_some(i)
        });
    }
    while let Some(r) = asks.join_next().await {
        if let Ok(Some(i)) = r {
            return Some(i);
        }
    }
    None
}

/// Awaits every future, concurrently.
pub async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in pinned.iter_mut().zip(outs.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outs.into_iter().flatten().collect()
}

/// One master's `/registry/digest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    pub applied_index: u64,
    pub sha256: String,
    pub frameworks: u64,
}

/// `GET /registry/digest` of the master whose HTTP address is `http`.
pub async fn digest(http: &str) -> anyhow::Result<Digest> {
    let get = async {
        let mut s = tokio::net::TcpStream::connect(http)
            .await
            .with_context(|| format!("cannot connect to {http}"))?;
        let req =
            format!("GET /registry/digest HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        s.take(1 << 20).read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(CALL, get)
        .await
        .with_context(|| format!("{http} did not answer within {CALL:?}"))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("{http}: no HTTP answer"))?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "{http}/registry/digest: {}: {body}",
            head.lines().next().unwrap_or("")
        );
    }
    let v: Value = serde_json::from_str(body.trim())
        .with_context(|| format!("{http}/registry/digest is not JSON: {body:?}"))?;
    Ok(Digest {
        applied_index: v["applied_index"].as_u64().unwrap_or(0),
        sha256: v["sha256"]
            .as_str()
            .with_context(|| format!("{http}/registry/digest has no sha256: {body}"))?
            .to_string(),
        frameworks: v["frameworks"].as_u64().unwrap_or(0),
    })
}
