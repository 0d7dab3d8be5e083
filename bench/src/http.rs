//! `wasmos-bench http`: the master's HTTP API under load. A real cluster (a master with
//! `--http` and agent processes, as `e2e`), then one benchguest framework of `--tasks` tiny
//! Wasm tasks, whose completed tasks the master keeps in its history
//! (`--max-completed-tasks-per-framework` = `--tasks`): the cheapest way to 100,000 known
//! tasks with real agents. Then:
//!
//! - `GET /api/v1/tasks?completed=true&limit=100` (offsets spread over the history), one after
//!   another, with the management token: `api_tasks_ms_p50`, `api_tasks_ms_p99` (wall time per
//!   request, a fresh connection each); the same for the live listing
//!   (`api_live_tasks_ms_*`, during a run, so the view is rebuilt);
//! - e2e throughput of `--e2e-tasks` benchguest tasks, alternately unpolled and polled 10 times
//!   a second, `--rounds` each: `e2e_slowdown_while_polled` = median unpolled tasks/s over
//!   median polled tasks/s (above 1 when polling slows the cluster).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::e2e::{self, Cluster};
use crate::secure::Security;
use crate::stats::percentile;

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON (the only format).
    #[arg(long)]
    json: bool,
    /// Tasks the master knows (completed) before the API is measured.
    #[arg(long, default_value_t = 100_000)]
    tasks: u32,
    /// Tasks of each e2e run (unpolled and polled).
    #[arg(long, default_value_t = 20_000)]
    e2e_tasks: u32,
    /// e2e runs of each kind, alternated.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Requests of each latency measure.
    #[arg(long, default_value_t = 500)]
    requests: u32,
    /// Agent processes.
    #[arg(long, default_value_t = 2)]
    agents: u32,
    /// The `wasmos` binary (default: $WASMOS_BIN, else the one next to this executable).
    #[arg(long)]
    wasmos: Option<std::path::PathBuf>,
    /// Most time any one framework may take, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

#[derive(Parser)]
struct E2e {
    #[command(flatten)]
    args: e2e::Args,
}

/// `GET path` on `http` with `token`: the status and the body's length.
async fn get(http: &str, path: &str, token: Option<&str>) -> anyhow::Result<(u16, usize)> {
    let (status, raw) = get_raw(http, path, token, "1.1").await?;
    Ok((status, raw.len()))
}

/// `GET path` on `http` with `token`: the status and the body (after the headers) as text.
/// Asked in HTTP/1.0, so the answer is not chunked: the body is all that follows the headers.
pub(crate) async fn get_text(
    http: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let (status, raw) = get_raw(http, path, token, "1.0").await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let body = match text.split_once("\r\n\r\n") {
        Some((_, body)) => body.to_string(),
        None => String::new(),
    };
    Ok((status, body))
}

async fn get_raw(
    http: &str,
    path: &str,
    token: Option<&str>,
    version: &str,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut s = tokio::net::TcpStream::connect(http)
        .await
        .with_context(|| format!("cannot connect to the master's HTTP address {http}"))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req =
        format!("GET {path} HTTP/{version}\r\nHost: {http}\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let status = std::str::from_utf8(&raw[..raw.len().min(16)])
        .ok()
        .and_then(|h| h.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("GET {path}: no HTTP status in the answer"))?;
    Ok((status, raw))
}

/// `n` requests of `path(i)` one after another: (p50, p99) in ms.
async fn latency(
    http: &str,
    token: Option<&str>,
    n: u32,
    path: impl Fn(u32) -> String,
) -> anyhow::Result<(f64, f64)> {
    let mut samples = Vec::with_capacity(n as usize);
    for i in 0..n {
        let p = path(i);
        let t = Instant::now();
        let (status, _) = get(http, &p, token).await?;
        samples.push(t.elapsed());
        if status != 200 {
            bail!("GET {p} answered {status}");
        }
    }
    let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
    Ok((
        ms(percentile(&mut samples, 0.5)),
        ms(percentile(&mut samples, 0.99)),
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: Args) -> anyhow::Result<Value> {
    let _ = args.json;
    if args.tasks == 0 || args.e2e_tasks == 0 || args.rounds == 0 || args.requests == 0 {
        bail!("--tasks, --e2e-tasks, --rounds and --requests must each be at least 1");
    }
    let wasmos = e2e::find_wasmos(args.wasmos.as_deref())?;
    let http = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.to_string()
    };
    let mut e = E2e::try_parse_from([
        "e2e".to_string(),
        "--tasks".into(),
        args.tasks.to_string(),
        "--agents".into(),
        args.agents.to_string(),
        "--no-logreg".into(),
    ])?
    .args;
    e.extra_master_flags = vec!["--http".into(), http.clone()];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::Builder::new()
        .prefix("wasmos-bench-http")
        .tempdir()
        .context("cannot create a temporary directory")?;
    rt.block_on(async {
        let mut security = Security::make(&wasmos, dir.path(), false, 1).await?;
        let mut cluster = Cluster::start(&wasmos, dir.path(), &e, &mut security).await?;
        let r = measure(&args, &mut cluster, dir.path(), &security, &http).await;
        cluster.stop().await;
        r
    })
}

async fn measure(
    args: &Args,
    cluster: &mut Cluster,
    dir: &Path,
    security: &Security,
    http: &str,
) -> anyhow::Result<Value> {
    let timeout = Duration::from_secs(args.timeout);
    let token = security.token().map(str::to_string);
    let token = token.as_deref();
    let mut op = security.operator(&cluster.addr).await?;
    e2e::wait_for_agents(&mut op, cluster, dir, args.agents as usize).await?;
    let bench = e2e::upload(&mut op, &e2e::default_components().join("benchguest.wasm")).await?;
    let bench_args = |n: u32| {
        vec![
            n.to_string(),
            e2e::TASK_MILLICPUS.to_string(),
            e2e::TASK_MEM_MB.to_string(),
            "4".to_string(),
        ]
    };
    let run = |name: &'static str, n: u32| {
        let bench = bench.clone();
        (name, bench_args(n), bench)
    };
    // The history: `--tasks` completed tasks.
    let (name, a, b) = run("bench-history", args.tasks);
    let rss0 = cluster.master_rss_kib();
    let filled = e2e::run_framework(&mut op, cluster, dir, name, &b, a, timeout).await?;
    let rss1 = cluster.master_rss_kib();
    let filled = e2e::parse_report("the history run", &filled)?;

    let known = args.tasks;
    let (p50, p99) = latency(http, token, args.requests, |i| {
        let offset = (u64::from(i) * 7919) % u64::from(known.saturating_sub(100).max(1));
        format!("/api/v1/tasks?completed=true&limit=100&offset={offset}")
    })
    .await?;

    // e2e, alternately unpolled and polled at 10 requests/s.
    let mut unpolled = Vec::new();
    let mut polled = Vec::new();
    let mut live = (0.0, 0.0);
    for round in 0..args.rounds {
        for poll in [false, true] {
            let (name, a, b) = run(if poll { "bench-polled" } else { "bench" }, args.e2e_tasks);
            let stop = tokio_util::sync::CancellationToken::new();
            let poller = poll.then(|| {
                let (http, token, stop) =
                    (http.to_string(), token.map(str::to_string), stop.clone());
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_millis(100));
                    let mut samples = Vec::new();
                    let mut n = 0u32;
                    loop {
                        tokio::select! {
                            _ = tick.tick() => {}
                            () = stop.cancelled() => break,
                        }
                        // Alternately the live listing and a history page.
                        let path = if n % 2 == 0 {
                            "/api/v1/tasks?limit=100".to_string()
                        } else {
                            "/api/v1/tasks?completed=true&limit=100&offset=5000".to_string()
                        };
                        n += 1;
                        let t = Instant::now();
                        let answered = get(&http, &path, token.as_deref()).await;
                        if matches!(answered, Ok((200, _))) && !path.contains("completed") {
                            samples.push(t.elapsed());
                        }
                    }
                    samples
                })
            });
            let out = e2e::run_framework(&mut op, cluster, dir, name, &b, a, timeout).await?;
            stop.cancel();
            if let Some(p) = poller {
                let mut s = p.await.unwrap_or_default();
                if round == 0 && !s.is_empty() {
                    let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
                    live = (ms(percentile(&mut s, 0.5)), ms(percentile(&mut s, 0.99)));
                }
            }
            let r = e2e::parse_report(name, &out)?;
            let tps = r["tasks_per_s"]
                .as_f64()
                .with_context(|| format!("{name} reported no tasks_per_s: {r}"))?;
            if poll { &mut polled } else { &mut unpolled }.push(tps);
        }
    }
    let (u, p) = (median(unpolled.clone()), median(polled.clone()));
    let rss_per_100k = match (rss0, rss1) {
        (Some(a), Some(b)) => {
            json!(
                (b.saturating_sub(a) as f64 / 1024.0 * 100_000.0 / f64::from(known) * 10.0).round()
                    / 10.0
            )
        }
        _ => Value::Null,
    };
    Ok(json!({
        "known_tasks": known,
        "history_tasks_per_s": filled["tasks_per_s"],
        "api_tasks_ms_p50": p50,
        "api_tasks_ms_p99": p99,
        "api_live_tasks_ms_p50_while_running": live.0,
        "api_live_tasks_ms_p99_while_running": live.1,
        "requests": args.requests,
        "e2e_tasks": args.e2e_tasks,
        "e2e_tasks_per_s_unpolled": unpolled,
        "e2e_tasks_per_s_polled": polled,
        "e2e_slowdown_while_polled": (u / p * 1000.0).round() / 1000.0,
        "master_rss_mib_per_100k_completed_tasks": rss_per_100k,
    }))
}
