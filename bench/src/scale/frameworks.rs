//! Simulated frameworks: external schedulers over real gRPC (`SchedulerService.Subscribe`),
//! each keeping up to `want` tasks of one size running. On offers it launches what fits (one
//! accept per offer that gets tasks) and declines the rest with its `refuse_seconds`; every
//! update is acknowledged. It records when each task's accept was sent and when its `RUNNING`
//! update arrived (the launch overhead), when its first offer came, and how much it holds over
//! time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use wasmos_api::proto as pb;

use pb::scheduler_call::Call;
use pb::scheduler_event::Event;

use crate::secure::Security;

/// What one framework does.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub role: String,
    /// Tasks it keeps running at most.
    pub want: usize,
    /// Each task's resources.
    pub task: pb::Resources,
    /// Each task's simulated duration.
    pub task_ms: u64,
    /// How long a declined agent is refused.
    pub refuse_seconds: f64,
}

/// What one framework saw.
#[derive(Debug, Default)]
pub struct Record {
    pub subscribed: Option<Instant>,
    pub first_offer: Option<Instant>,
    /// Accept sent to `RUNNING` received, per task.
    pub launch_overhead: Vec<Duration>,
    /// Tasks not yet ended.
    pub active: usize,
    /// Millicpus of its tasks that reported `RUNNING` and have not ended.
    pub running_millicpus: u64,
    pub finished: u64,
    /// Tasks that ended otherwise (`FAILED`, `LOST`, `ERROR`, `KILLED`).
    pub failed: u64,
    pub errors: Vec<String>,
}

/// Counters shared by all frameworks.
#[derive(Default)]
pub struct Totals {
    pub offers: AtomicU64,
    pub accepts: AtomicU64,
    pub declines: AtomicU64,
    pub launched: AtomicU64,
}

/// A running simulated framework: its record, shared with the measurement.
pub struct Handle {
    pub record: Arc<Mutex<Record>>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Subscribes `spec` to the master at `addr` and serves it until `stop` (or the stream ends).
pub fn spawn(
    spec: Spec,
    security: Security,
    addr: String,
    totals: Arc<Totals>,
    stop: CancellationToken,
) -> Handle {
    let record = Arc::new(Mutex::new(Record::default()));
    let r = record.clone();
    let s = spec;
    let task = tokio::spawn(async move {
        if let Err(e) = serve(&s, &security, &addr, &r, &totals, &stop).await {
            let mut rec = r.lock().unwrap();
            if rec.errors.len() < 5 {
                rec.errors.push(format!("{}: {e:#}", s.name));
            }
        }
    });
    Handle { record, task }
}

/// A launched task, until it ends.
struct Launched {
    accepted_at: Instant,
    running: bool,
}

async fn serve(
    spec: &Spec,
    security: &Security,
    addr: &str,
    record: &Mutex<Record>,
    totals: &Totals,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let mut client = security.scheduler(addr).await?;
    let (tx, rx) = mpsc::channel(256);
    tx.send(pb::SchedulerCall {
        call: Some(Call::Subscribe(pb::scheduler_call::Subscribe {
            framework_info: Some(pb::FrameworkInfo {
                name: spec.name.clone(),
                role: spec.role.clone(),
                ..Default::default()
            }),
        })),
    })
    .await?;
    let mut events = client
        .subscribe(ReceiverStream::new(rx))
        .await
        .map_err(|s| anyhow::anyhow!("subscribe refused: {s}"))?
        .into_inner();
    let mut launched: HashMap<String, Launched> = HashMap::new();
    let mut next_task = 0u64;
    let payload = format!("sleep:{}", spec.task_ms).into_bytes();
    let refuse = Some(pb::Filters {
        refuse_seconds: Some(spec.refuse_seconds),
    });
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => {
                let _ = tx.send(pb::SchedulerCall { call: Some(Call::Teardown(pb::scheduler_call::Teardown {})) }).await;
                return Ok(());
            }
            e = events.message() => e,
        };
        let Some(event) = event? else {
            anyhow::bail!("the master closed the scheduler stream");
        };
        match event.event {
            Some(Event::Subscribed(_)) => {
                record.lock().unwrap().subscribed = Some(Instant::now());
            }
            Some(Event::Offers(o)) => {
                let now = Instant::now();
                totals.offers.fetch_add(o.offers.len() as u64, Relaxed);
                {
                    let mut r = record.lock().unwrap();
                    if r.first_offer.is_none() && !o.offers.is_empty() {
                        r.first_offer = Some(now);
                    }
                }
                let mut declined = Vec::new();
                for offer in o.offers {
                    let room = spec.want.saturating_sub(launched.len());
                    let fits = offer.resources.map_or(0, |r| fits(&r, &spec.task));
                    let n = room.min(fits).min(wasmos_api::limits::MAX_TASKS_PER_LAUNCH);
                    if n == 0 {
                        declined.push(offer.id);
                        continue;
                    }
                    let mut launches = Vec::with_capacity(n);
                    for _ in 0..n {
                        next_task += 1;
                        let id = format!("t{next_task}");
                        launched.insert(
                            id.clone(),
                            Launched {
                                accepted_at: now,
                                running: false,
                            },
                        );
                        launches.push(pb::TaskInfo {
                            task_id: id,
                            name: String::new(),
                            agent_id: offer.agent_id.clone(),
                            resources: Some(spec.task),
                            kind: Some(pb::task_info::Kind::Wasm(pb::WasmTask {
                                executor_id: "sim".into(),
                                payload: payload.clone(),
                                ..Default::default()
                            })),
                        });
                    }
                    totals.accepts.fetch_add(1, Relaxed);
                    totals.launched.fetch_add(n as u64, Relaxed);
                    record.lock().unwrap().active = launched.len();
                    tx.send(pb::SchedulerCall {
                        call: Some(Call::Accept(pb::scheduler_call::Accept {
                            offer_ids: vec![offer.id],
                            launches,
                            filters: refuse,
                        })),
                    })
                    .await?;
                }
                if !declined.is_empty() {
                    totals.declines.fetch_add(declined.len() as u64, Relaxed);
                    tx.send(pb::SchedulerCall {
                        call: Some(Call::Decline(pb::scheduler_call::Decline {
                            offer_ids: declined,
                            filters: refuse,
                        })),
                    })
                    .await?;
                }
            }
            Some(Event::Update(u)) => {
                let Some(status) = u.status else { continue };
                let state = pb::TaskState::try_from(status.state).unwrap_or_default();
                if !status.uuid.is_empty() {
                    tx.send(pb::SchedulerCall {
                        call: Some(Call::Acknowledge(pb::scheduler_call::Acknowledge {
                            agent_id: status.agent_id.clone(),
                            task_id: status.task_id.clone(),
                            uuid: status.uuid.clone(),
                        })),
                    })
                    .await?;
                }
                let mut r = record.lock().unwrap();
                match state {
                    pb::TaskState::Running => {
                        if let Some(l) = launched.get_mut(&status.task_id)
                            && !l.running
                        {
                            l.running = true;
                            r.launch_overhead.push(l.accepted_at.elapsed());
                            r.running_millicpus += spec.task.millicpus;
                        }
                    }
                    pb::TaskState::Staging
                    | pb::TaskState::Starting
                    | pb::TaskState::Unreachable
                    | pb::TaskState::Unspecified => {}
                    ended => {
                        if let Some(l) = launched.remove(&status.task_id) {
                            if l.running {
                                r.running_millicpus -= spec.task.millicpus;
                            }
                            if ended == pb::TaskState::Finished {
                                r.finished += 1;
                            } else {
                                r.failed += 1;
                                if r.errors.len() < 5 {
                                    r.errors.push(format!(
                                        "{}: task {} {}: {}",
                                        spec.name,
                                        status.task_id,
                                        ended.as_str_name(),
                                        status.message
                                    ));
                                }
                            }
                        }
                    }
                }
                r.active = launched.len();
            }
            Some(Event::Error(e)) => {
                if e.fatal {
                    anyhow::bail!("the master ended the framework: {}", e.message);
                }
                let mut r = record.lock().unwrap();
                if r.errors.len() < 5 {
                    r.errors
                        .push(format!("{}: master error: {}", spec.name, e.message));
                }
            }
            _ => {}
        }
    }
}

/// How many tasks of `task` fit in `offer`.
fn fits(offer: &pb::Resources, task: &pb::Resources) -> usize {
    let by = |have: u64, need: u64| {
        if need == 0 {
            usize::MAX
        } else {
            (have / need) as usize
        }
    };
    by(offer.millicpus, task.millicpus).min(by(offer.mem_mb, task.mem_mb))
}
