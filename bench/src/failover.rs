//! `failover`: a group of three `wasmos master` processes (each with its own data dir) and
//! agents on loopback; the leader is killed (SIGKILL) `--kills` times and the bench times how
//! long the cluster takes to work again.
//!
//! - `first_commit_ms`: from the kill until a registry change (a `SetWeights`) commits on the
//!   new leader: election, takeover (core rebuilt from the replicated registry) and a commit.
//! - `failover_ms`: from the kill until the new leader's first offer reaches a scheduler that
//!   subscribes to it as soon as it commits: adds the agents' re-registration with the new
//!   leader and an allocation cycle.
//! - `first_launch_ms`: from the kill until a framework submitted to the new leader has a
//!   task launched on an agent: adds the agents' re-registration with the new leader.
//! - `commits_per_s`: registry commits per second through the leader, measured before the
//!   first kill with `--writers` concurrent `SetWeights` callers (each call is acknowledged
//!   only once a majority of masters has it on disk).
//!
//! After each kill the killed master is started again from its data dir, and the next round
//! starts once it follows the leader and has had a second to catch up its log, so that every
//! kill hits a steady group of three. The `wasmos` binary is found as
//! for `e2e`.
//!
//! The masters enforce ACLs (`--acl`; the bench bootstraps the first token and every agent,
//! call and subscription carries it). With `--tls` the whole scenario then runs a second time
//! on a fresh group over mutual TLS (a master certificate per master, from `wasmos certs`), and
//! the report adds that run (`tls`) and `tls_failover_ratio`, TLS `failover_ms_p50` over plain.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use wasmos_api::proto as pb;

use crate::e2e::{default_components, find_wasmos, upload};
use crate::secure::Security;
use crate::stats::percentile;

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON (the only format; accepted for symmetry with the other scenarios).
    #[arg(long)]
    json: bool,
    /// How many times the leader is killed.
    #[arg(long, default_value_t = 5)]
    kills: u32,
    /// Agent processes.
    #[arg(long, default_value_t = 2)]
    agents: u32,
    /// Registry commits made to measure commits/s.
    #[arg(long, default_value_t = 2000)]
    commits: u32,
    /// Concurrent callers making them.
    #[arg(long, default_value_t = 32)]
    writers: u32,
    /// The `wasmos` binary (default: $WASMOS_BIN, else the one next to this executable).
    #[arg(long)]
    wasmos: Option<PathBuf>,
    /// Directory with `pi.wasm` (default: examples-wasm's release output).
    #[arg(long)]
    components: Option<PathBuf>,
    /// Keep the temporary directory (data dirs and process logs) and print its path.
    #[arg(long)]
    keep_dir: bool,
    /// After the plain run, run the scenario again over mutual TLS and report both (`tls`,
    /// `tls_failover_ms_p50`, `tls_failover_ratio`).
    #[arg(long)]
    tls: bool,
}

/// Bound on any one wait.
const WAIT: Duration = Duration::from_secs(60);
/// How long a restarted master gets to catch up the log once it follows the leader.
const SETTLE: Duration = Duration::from_millis(1000);
/// How often the bench polls while it times something.
const POLL: Duration = Duration::from_millis(5);

/// A Raft group of `wasmos master` processes on loopback (also used by `scale`).
pub(crate) struct Group {
    wasmos: PathBuf,
    dir: PathBuf,
    pub(crate) addrs: Vec<String>,
    masters: Vec<Option<Child>>,
    pub(crate) security: Security,
    /// Flags every master gets beyond the group's own.
    extra_flags: Vec<String>,
    /// Each master's `--http` address, when they serve HTTP.
    http: Option<Vec<String>>,
}

impl Group {
    /// A group of `addrs.len()` masters (none started yet), data dirs and logs in `dir`.
    pub(crate) fn new(
        wasmos: PathBuf,
        dir: PathBuf,
        addrs: Vec<String>,
        security: Security,
        extra_flags: Vec<String>,
        http: Option<Vec<String>>,
    ) -> Group {
        Group {
            wasmos,
            dir,
            masters: addrs.iter().map(|_| None).collect(),
            addrs,
            security,
            extra_flags,
            http,
        }
    }

    /// The pid of master `i`, while it runs.
    pub(crate) fn pid(&self, i: usize) -> Option<u32> {
        self.masters.get(i)?.as_ref()?.id()
    }

    /// Kills master `i` (SIGKILL) and waits for it to exit.
    pub(crate) async fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let mut child = self.masters[i]
            .take()
            .context("that master is not running")?;
        child.kill().await.context("cannot kill a master")?;
        Ok(())
    }

    /// Kills every master.
    pub(crate) async fn stop(&mut self) {
        for m in self.masters.iter_mut() {
            if let Some(mut c) = m.take() {
                let _ = c.kill().await;
            }
        }
    }

    /// Creates the first token through the leader once the group has elected one; its index.
    /// Retried only while no master leads: a bootstrap that committed cannot be made again,
    /// and its secret is shown only to the call that made it.
    pub(crate) async fn bootstrap(&mut self) -> anyhow::Result<usize> {
        let deadline = Instant::now() + WAIT;
        loop {
            let leader = self.leader(None).await?;
            match self
                .security
                .bootstrap(&self.wasmos, &self.addrs[leader])
                .await
            {
                Ok(()) => return self.leader(None).await,
                Err(e)
                    if Instant::now() < deadline && format!("{e:#}").contains("not the leader") =>
                {
                    eprintln!("wasmos-bench: bootstrap retried: {e:#}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn peers(&self) -> String {
        self.addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
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

    pub(crate) async fn start_master(&mut self, i: usize) -> anyhow::Result<()> {
        let mut child = Command::new(&self.wasmos)
            .args(["master", "--listen", &self.addrs[i]])
            .args(["--id", &(i + 1).to_string(), "--peers", &self.peers()])
            .arg("--data-dir")
            .arg(self.dir.join(format!("master{}", i + 1)))
            .args(self.security.master_flags(i + 1))
            .args(&self.extra_flags)
            .args(
                self.http
                    .as_ref()
                    .map(|h| vec!["--http".to_string(), h[i].clone()])
                    .unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(self.log(&format!("master{}", i + 1))?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} master", self.wasmos.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        tokio::time::timeout(WAIT, lines.next_line())
            .await
            .context("a master did not start in time")??
            .context("a master exited at start; see its log")?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.masters[i] = Some(child);
        Ok(())
    }

    /// The index of the master that serves (polling every master but `skip`).
    pub(crate) async fn leader(&self, skip: Option<usize>) -> anyhow::Result<usize> {
        let deadline = Instant::now() + WAIT;
        loop {
            for (i, addr) in self.addrs.iter().enumerate() {
                if Some(i) == skip {
                    continue;
                }
                // Only the leader gets past its leader check; before the first token exists
                // the leader then refuses the call UNAUTHENTICATED.
                if let Ok(mut op) = self.security.operator(addr).await {
                    match op.get_state(pb::GetStateRequest {}).await {
                        Ok(_) => return Ok(i),
                        // Without a token only; with one, a follower that has not applied
                        // the bootstrap yet refuses it the same way.
                        Err(s)
                            if s.code() == tonic::Code::Unauthenticated
                                && self.security.token().is_none() =>
                        {
                            return Ok(i);
                        }
                        Err(_) => {}
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("no master leads after {WAIT:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

pub(crate) fn free_addrs(n: usize) -> anyhow::Result<Vec<String>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.to_string()))
        .collect::<Result<Vec<_>, _>>()?)
}

async fn set_weight(security: &Security, addr: &str, role: &str, weight: f64) -> bool {
    let Ok(mut op) = security.operator(addr).await else {
        return false;
    };
    op.set_weights(pb::SetWeightsRequest {
        weights: vec![pb::RoleWeight {
            role: role.into(),
            weight,
        }],
    })
    .await
    .is_ok()
}

/// Commits `n` weights through the master at `addr` from `writers` concurrent callers;
/// returns commits per second.
async fn commit_rate(security: &Security, addr: &str, n: u32, writers: u32) -> anyhow::Result<f64> {
    let op = security.operator(addr).await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let mut op = op.clone();
        let count = n / writers + u32::from(w < n % writers);
        tasks.push(tokio::spawn(async move {
            for i in 0..count {
                op.set_weights(pb::SetWeightsRequest {
                    weights: vec![pb::RoleWeight {
                        role: format!("bench{w}"),
                        weight: 1.0 + f64::from(i),
                    }],
                })
                .await?;
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    for t in tasks {
        t.await?.context("a commit failed")?;
    }
    Ok(f64::from(n) / start.elapsed().as_secs_f64())
}

/// The scenario on a fresh group in `dir`, over TLS with `tls`.
async fn run_once(args: &Args, wasmos: PathBuf, dir: PathBuf, tls: bool) -> anyhow::Result<Value> {
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let components = args.components.clone().unwrap_or_else(default_components);
    let security = Security::make(&wasmos, &dir, tls, 3).await?;
    let mut group = Group::new(
        wasmos.clone(),
        dir.clone(),
        free_addrs(3)?,
        security,
        vec!["--allocation-interval".into(), "0.05".into()],
        None,
    );
    for i in 0..3 {
        group.start_master(i).await?;
    }
    group.bootstrap().await?;
    let security = group.security.clone();
    let enforced = security
        .probe(&group.addrs[group.leader(None).await?])
        .await;
    let mut agents = Vec::new();
    for a in 0..args.agents {
        let work = dir.join(format!("agent{a}"));
        std::fs::create_dir_all(&work)?;
        let mut agent = Command::new(&wasmos);
        agent
            .args(["agent", "--master", &group.addrs.join(","), "--work-dir"])
            .arg(&work)
            .args([
                "--hostname",
                &format!("bench{a}"),
                "--resources",
                "cpus:4;mem:4096",
            ])
            .args(security.agent_flags());
        security.child_env(&mut agent, false);
        agents.push(
            agent
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(group.log(&format!("agent{a}"))?)
                .kill_on_drop(true)
                .spawn()
                .context("cannot start an agent")?,
        );
    }
    // The group may still change leader right after it forms (a master that started late can
    // call an election): the upload follows the leadership until it lands.
    let deadline = Instant::now() + WAIT;
    let (leader, pi) = loop {
        let leader = group.leader(None).await?;
        let mut op = security.operator(&group.addrs[leader]).await?;
        match upload(&mut op, &components.join("pi.wasm")).await {
            Ok(pi) => break (leader, pi),
            Err(e) if Instant::now() < deadline => {
                eprintln!("wasmos-bench failover: upload retried: {e:#}");
                tokio::time::sleep(POLL).await;
            }
            Err(e) => return Err(e),
        }
    };
    let commits_per_s =
        commit_rate(&security, &group.addrs[leader], args.commits, args.writers).await?;

    let mut first_commit = Vec::new();
    let mut failover = Vec::new();
    let mut first_launch = Vec::new();
    for round in 0..args.kills {
        let old = group.leader(None).await?;
        // Every agent is registered with the leader before it is killed.
        let deadline = Instant::now() + WAIT;
        loop {
            let state = security
                .operator(&group.addrs[old])
                .await?
                .get_state(pb::GetStateRequest {})
                .await
                .map(|s| s.into_inner());
            if let Ok(s) = state
                && s.agents.iter().filter(|a| a.reachable).count() == args.agents as usize
            {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the agents did not register with master {} in time",
                    old + 1
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut child = group.masters[old].take().context("the leader runs")?;
        let killed = Instant::now();
        child.start_kill()?;
        child.wait().await?;
        // Failover: a change commits on the new leader.
        let mut new = None;
        while new.is_none() {
            if killed.elapsed() > WAIT {
                bail!("no new leader committed within {WAIT:?} of kill {round}");
            }
            for (i, addr) in group.addrs.iter().enumerate() {
                if i != old && set_weight(&security, addr, "failover", f64::from(round + 1)).await {
                    new = Some(i);
                    break;
                }
            }
            if new.is_none() {
                tokio::time::sleep(POLL).await;
            }
        }
        first_commit.push(killed.elapsed());
        let new = new.expect("found");
        // Failover: the new leader's first offer reaches a freshly subscribed scheduler.
        first_offer(&security, &group.addrs[new], round).await?;
        failover.push(killed.elapsed());
        // First launch: a framework submitted now gets a task onto an agent.
        let mut op = security.operator(&group.addrs[new]).await?;
        let framework_id = op
            .submit_framework(pb::SubmitFrameworkRequest {
                info: Some(pb::FrameworkInfo {
                    name: format!("failover-{round}"),
                    role: "bench".into(),
                    component_sha256: pi.clone(),
                    ..Default::default()
                }),
                args: vec!["1".into(), "1000".into()],
                limits: None,
            })
            .await
            .context("submitting to the new leader")?
            .into_inner()
            .framework_id;
        loop {
            let launched = match op
                .get_framework_result(pb::GetFrameworkResultRequest {
                    framework_id: framework_id.clone(),
                })
                .await
            {
                Ok(r) if r.get_ref().ended => true,
                _ => op.get_state(pb::GetStateRequest {}).await.is_ok_and(|s| {
                    s.get_ref()
                        .tasks
                        .iter()
                        .any(|t| t.framework_id == framework_id)
                }),
            };
            if launched {
                break;
            }
            if killed.elapsed() > WAIT {
                bail!("no task launched within {WAIT:?} of kill {round}");
            }
            tokio::time::sleep(POLL).await;
        }
        first_launch.push(killed.elapsed());
        group.start_master(old).await?;
        // The next round starts from a steady group: the restarted master follows the leader.
        let deadline = Instant::now() + WAIT;
        loop {
            let leader = group.leader(Some(old)).await?;
            let follows = match security.operator(&group.addrs[old]).await {
                Ok(mut op) => match op.get_state(pb::GetStateRequest {}).await {
                    Err(s) => {
                        wasmos_api::leader::leader_hint(&s).as_deref()
                            == Some(group.addrs[leader].as_str())
                    }
                    Ok(_) => false,
                },
                Err(_) => false,
            };
            if follows {
                // Knowing the leader is not having its log: killed before it catches up, the
                // restarted master times out on a stale log and its refused candidacy delays the
                // real election by a whole election timeout (openraft 0.9 has no pre-vote).
                // Give it a few heartbeat rounds to catch up, so that every kill hits a group
                // whose followers are all current.
                tokio::time::sleep(SETTLE).await;
                break;
            }
            if Instant::now() > deadline {
                bail!("master {} did not rejoin in time", old + 1);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for a in &mut agents {
        let _ = a.start_kill();
    }
    for m in group.masters.iter_mut().flatten() {
        let _ = m.start_kill();
    }
    let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
    Ok(json!({
        "scenario": "failover",
        "acl_enforced": enforced.acl,
        "tls_enforced": enforced.tls,
        "kills": args.kills,
        "agents": args.agents,
        "first_commit_ms_p50": ms(percentile(&mut first_commit, 50.0)),
        "first_commit_ms_p99": ms(percentile(&mut first_commit, 99.0)),
        "failover_ms_p50": ms(percentile(&mut failover, 50.0)),
        "failover_ms_p99": ms(percentile(&mut failover, 99.0)),
        "first_launch_ms_p50": ms(percentile(&mut first_launch, 50.0)),
        "first_launch_ms_p99": ms(percentile(&mut first_launch, 99.0)),
        "commits_per_s": commits_per_s.round(),
        "commit_writers": args.writers,
    }))
}

/// Subscribes an external scheduler (role `bench`, no failover timeout) to the master at `addr`
/// and waits for its first offer; the stream is then dropped, which removes the framework.
async fn first_offer(security: &Security, addr: &str, round: u32) -> anyhow::Result<()> {
    use pb::scheduler_call::Call;
    use pb::scheduler_event::Event;
    let mut client = security
        .scheduler(addr)
        .await
        .context("connecting a scheduler to the new leader")?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::SchedulerCall {
        call: Some(Call::Subscribe(pb::scheduler_call::Subscribe {
            framework_info: Some(pb::FrameworkInfo {
                name: format!("failover-offers-{round}"),
                role: "bench".into(),
                ..Default::default()
            }),
        })),
    })
    .await
    .context("queueing the subscription")?;
    let mut events = client
        .subscribe(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .context("subscribing to the new leader")?
        .into_inner();
    let wait = async {
        while let Some(e) = events.message().await? {
            if let Some(Event::Offers(o)) = e.event
                && !o.offers.is_empty()
            {
                return Ok::<_, tonic::Status>(true);
            }
        }
        Ok(false)
    };
    match tokio::time::timeout(WAIT, wait).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => bail!("the new leader closed the scheduler stream before an offer"),
        Ok(Err(e)) => bail!("the new leader's scheduler stream failed: {e}"),
        Err(_) => bail!("no offer from the new leader within {WAIT:?}"),
    }
}

/// The plain run's report with the TLS run's beside it: `tls` (its whole report),
/// `tls_failover_ms_p50`, `tls_first_commit_ms_p50` and `tls_failover_ratio` (TLS
/// `failover_ms_p50` over plain; above 1 when TLS fails over more slowly).
fn with_tls(plain: Value, tls: Value) -> Value {
    let ratio = match (
        plain["failover_ms_p50"].as_f64(),
        tls["failover_ms_p50"].as_f64(),
    ) {
        (Some(p), Some(t)) if p > 0.0 => json!((t / p * 1000.0).round() / 1000.0),
        _ => Value::Null,
    };
    let mut report = plain;
    report["tls_failover_ms_p50"] = tls["failover_ms_p50"].clone();
    report["tls_first_commit_ms_p50"] = tls["first_commit_ms_p50"].clone();
    report["tls_failover_ratio"] = ratio;
    report["tls"] = tls;
    report
}

/// Runs the scenario; see the module docs.
pub fn run(args: Args) -> anyhow::Result<Value> {
    let _ = args.json;
    if args.kills == 0 || args.agents == 0 || args.writers == 0 || args.commits == 0 {
        bail!("--kills, --agents, --writers and --commits must each be at least 1");
    }
    let wasmos = find_wasmos(args.wasmos.as_deref())?;
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let dir: PathBuf = tmp.path().to_path_buf();
    if args.keep_dir {
        eprintln!(
            "wasmos-bench failover: data dirs and logs in {}",
            dir.display()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let keep = args.keep_dir;
    let result = rt.block_on(async {
        let plain = run_once(&args, wasmos.clone(), dir.join("plain"), false).await?;
        if !args.tls {
            let mut report = plain;
            report["tls"] = Value::Null;
            return Ok(report);
        }
        let tls = run_once(&args, wasmos, dir.join("tls"), true).await?;
        Ok(with_tls(plain, tls))
    });
    if keep {
        let _ = tmp.keep();
    }
    result
}
