//! Launch latency through one agent, without a network: launch-to-RUNNING (the RUNNING update
//! is on disk) and launch-to-terminal (the terminal update reached the transport), p50/p99,
//! and tasks per second. Prints the JSON keys `wasmos-bench launch` uses.
//!
//! `cargo run -p wasmos-agent --example launch_latency -- wasm 5000 [serial]` (or `native 200`;
//! native needs root and cgroups); `serial` launches one task at a time (latency without
//! queueing), otherwise all at once (throughput). Wasm tasks are the `hostile` example's `echo:` payload, spread over
//! 16 executor instances, with the component loaded before timing starts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasmos_agent::{
    Agent, AgentConfig, FrameworkContext, MemoryFetcher, QueuedUpdate, StatusQueue, TransportError,
    UpdateTransport,
};
use wasmos_api::{AgentId, ExecutorId, FrameworkId, Resources, TaskId, TaskInfo, TaskKind};

struct Recorder {
    queue: Arc<StatusQueue>,
    ended: Mutex<HashMap<String, Instant>>,
}

#[async_trait::async_trait]
impl UpdateTransport for Recorder {
    async fn send(&self, updates: Vec<QueuedUpdate>) -> Result<(), TransportError> {
        let now = Instant::now();
        for u in updates {
            if u.status.state.is_terminal() {
                self.ended
                    .lock()
                    .unwrap()
                    .entry(u.status.task_id.to_string())
                    .or_insert(now);
            }
            if let Some(uuid) = &u.status.uuid {
                self.queue
                    .acknowledge(&u.framework_id, &u.status.task_id, uuid);
            }
        }
        Ok(())
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn task(i: usize, kind: &str) -> TaskInfo {
    let task_kind = if kind == "wasm" {
        TaskKind::Wasm {
            executor_id: ExecutorId::new(format!("e{}", i % 16)).unwrap(),
            payload: b"echo:x".to_vec(),
        }
    } else {
        TaskKind::Command {
            argv: vec!["true".into()],
            env: vec![],
        }
    };
    TaskInfo {
        task_id: TaskId::new(format!("t{i}")).unwrap(),
        name: String::new(),
        agent_id: AgentId::new("bench").unwrap(),
        resources: Resources::new(0.01, 32, 0),
        kind: task_kind,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).cloned().unwrap_or_else(|| "wasm".into());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Arc::new(MemoryFetcher::new());
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples-wasm/target/wasm32-wasip2/release/hostile.wasm"),
    )
    .expect("hostile.wasm: run scripts/build-examples.sh");
    let digest = fetcher.add(bytes);
    let (agent, _) = Agent::open(AgentConfig::new(dir.path()), fetcher)
        .await
        .unwrap();
    let recorder = Arc::new(Recorder {
        queue: agent.status_queue().clone(),
        ended: Mutex::new(HashMap::new()),
    });
    let stop = CancellationToken::new();
    tokio::spawn(
        agent
            .status_queue()
            .clone()
            .run(recorder.clone(), stop.clone()),
    );
    let ctx = FrameworkContext {
        framework_id: FrameworkId::new("bench").unwrap(),
        role: "*".into(),
        component: Some(digest),
    };
    // Warm up: load the component, create the instances.
    for i in 0..16 {
        let mut t = task(i, &kind);
        t.task_id = TaskId::new(format!("warm{i}")).unwrap();
        agent.launch(&ctx, t).await.unwrap();
    }
    while recorder.ended.lock().unwrap().len() < 16 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let serial = args.get(3).is_some_and(|a| a == "serial");
    let start = Instant::now();
    let mut handles = Vec::with_capacity(n);
    if serial {
        // One task at a time: latency without queueing behind other launches.
        let mut launched = Vec::with_capacity(n);
        for i in 0..n {
            let t0 = Instant::now();
            agent.launch(&ctx, task(i, &kind)).await.unwrap();
            let running = t0.elapsed();
            let id = format!("t{i}");
            while !recorder.ended.lock().unwrap().contains_key(&id) {
                tokio::task::yield_now().await;
            }
            launched.push((id, t0, running));
        }
        report(&kind, n, start.elapsed(), &launched, &recorder);
        stop.cancel();
        return;
    }
    for i in 0..n {
        let agent = agent.clone();
        let ctx = ctx.clone();
        let t = task(i, &kind);
        handles.push(tokio::spawn(async move {
            let t0 = Instant::now();
            agent.launch(&ctx, t).await.unwrap();
            (format!("t{i}"), t0, t0.elapsed())
        }));
    }
    let mut launched = Vec::with_capacity(n);
    for h in handles {
        launched.push(h.await.unwrap());
    }
    while recorder.ended.lock().unwrap().len() < n + 16 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    report(&kind, n, start.elapsed(), &launched, &recorder);
    stop.cancel();
}

fn report(
    kind: &str,
    n: usize,
    elapsed: Duration,
    launched: &[(String, Instant, Duration)],
    recorder: &Recorder,
) {
    let ended = recorder.ended.lock().unwrap().clone();
    let mut running: Vec<f64> = launched
        .iter()
        .map(|(_, _, d)| d.as_secs_f64() * 1e3)
        .collect();
    let mut terminal: Vec<f64> = launched
        .iter()
        .map(|(id, t0, _)| (ended[id] - *t0).as_secs_f64() * 1e3)
        .collect();
    println!(
        "{{\"kind\":\"{kind}\",\"tasks\":{n},\"tasks_per_s\":{:.0},\"running_ms_p50\":{:.3},\"running_ms_p99\":{:.3},\"terminal_ms_p50\":{:.3},\"terminal_ms_p99\":{:.3}}}",
        n as f64 / elapsed.as_secs_f64(),
        pct(&mut running, 0.5),
        pct(&mut running, 0.99),
        pct(&mut terminal, 0.5),
        pct(&mut terminal, 0.99),
    );
}
