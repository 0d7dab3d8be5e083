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

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use wasmos_api::proto as pb;

use crate::e2e::{connect, default_components, find_wasmos, upload};
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
}

/// Bound on any one wait.
const WAIT: Duration = Duration::from_secs(60);
/// How long a restarted master gets to catch up the log once it follows the leader.
const SETTLE: Duration = Duration::from_millis(1000);
/// How often the bench polls while it times something.
const POLL: Duration = Duration::from_millis(5);

struct Group {
    wasmos: PathBuf,
    dir: PathBuf,
    addrs: Vec<String>,
    masters: Vec<Option<Child>>,
}

impl Group {
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

    async fn start_master(&mut self, i: usize) -> anyhow::Result<()> {
        let mut child = Command::new(&self.wasmos)
            .args(["master", "--listen", &self.addrs[i]])
            .args(["--id", &(i + 1).to_string(), "--peers", &self.peers()])
            .arg("--data-dir")
            .arg(self.dir.join(format!("master{}", i + 1)))
            .args(["--allocation-interval", "0.05"])
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
    async fn leader(&self, skip: Option<usize>) -> anyhow::Result<usize> {
        let deadline = Instant::now() + WAIT;
        loop {
            for (i, addr) in self.addrs.iter().enumerate() {
                if Some(i) == skip {
                    continue;
                }
                if let Ok(mut op) = connect(addr).await
                    && op.get_state(pb::GetStateRequest {}).await.is_ok()
                {
                    return Ok(i);
                }
            }
            if Instant::now() > deadline {
                bail!("no master leads after {WAIT:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn free_addrs(n: usize) -> anyhow::Result<Vec<String>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.to_string()))
        .collect::<Result<Vec<_>, _>>()?)
}

async fn set_weight(addr: &str, role: &str, weight: f64) -> bool {
    let Ok(mut op) = connect(addr).await else {
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
async fn commit_rate(addr: &str, n: u32, writers: u32) -> anyhow::Result<f64> {
    let op = connect(addr).await?;
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

async fn run_async(args: Args, wasmos: PathBuf, dir: PathBuf) -> anyhow::Result<Value> {
    let components = args.components.clone().unwrap_or_else(default_components);
    let mut group = Group {
        wasmos: wasmos.clone(),
        dir: dir.clone(),
        addrs: free_addrs(3)?,
        masters: vec![None, None, None],
    };
    for i in 0..3 {
        group.start_master(i).await?;
    }
    // One bootstrap for the group, through its leader.
    crate::token::bootstrap(&wasmos, &group.addrs.join(",")).await?;
    let mut agents = Vec::new();
    for a in 0..args.agents {
        let work = dir.join(format!("agent{a}"));
        std::fs::create_dir_all(&work)?;
        agents.push(
            crate::token::pass_to(&mut Command::new(&wasmos))
                .args(["agent", "--master", &group.addrs.join(","), "--work-dir"])
                .arg(&work)
                .args([
                    "--hostname",
                    &format!("bench{a}"),
                    "--resources",
                    "cpus:4;mem:4096",
                ])
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
        let mut op = connect(&group.addrs[leader]).await?;
        match upload(&mut op, &components.join("pi.wasm")).await {
            Ok(pi) => break (leader, pi),
            Err(e) if Instant::now() < deadline => {
                eprintln!("wasmos-bench failover: upload retried: {e:#}");
                tokio::time::sleep(POLL).await;
            }
            Err(e) => return Err(e),
        }
    };
    let commits_per_s = commit_rate(&group.addrs[leader], args.commits, args.writers).await?;

    let mut first_commit = Vec::new();
    let mut failover = Vec::new();
    let mut first_launch = Vec::new();
    for round in 0..args.kills {
        let old = group.leader(None).await?;
        // Every agent is registered with the leader before it is killed.
        let deadline = Instant::now() + WAIT;
        loop {
            let state = connect(&group.addrs[old])
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
                if i != old && set_weight(addr, "failover", f64::from(round + 1)).await {
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
        first_offer(&group.addrs[new], round).await?;
        failover.push(killed.elapsed());
        // First launch: a framework submitted now gets a task onto an agent.
        let mut op = connect(&group.addrs[new]).await?;
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
            let follows = match connect(&group.addrs[old]).await {
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
async fn first_offer(addr: &str, round: u32) -> anyhow::Result<()> {
    use pb::scheduler_call::Call;
    use pb::scheduler_event::Event;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .context("connecting a scheduler to the new leader")?;
    let mut client = pb::scheduler_service_client::SchedulerServiceClient::with_interceptor(
        channel,
        crate::token::BenchToken,
    );
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
    let result = rt.block_on(run_async(args, wasmos, dir));
    if keep {
        let _ = tmp.keep();
    }
    result
}
