//! The framework host: runs a framework's scheduler half (a Wasm component) inside the master.
//!
//! A hosted scheduler goes through the same internal path as an external gRPC scheduler: the
//! host subscribes to [`MasterCore`] with its own outbound queue, turns the events it receives
//! into the component's callbacks (offers into `resource-offers`, updates into `status-update`
//! followed by an acknowledgement, rescinds into `offer-rescinded`, executor messages into
//! `framework-message`), and turns the component's `driver` calls into the same scheduler
//! calls a gRPC client sends (accept with launches, decline with filters, kill, revive,
//! suppress, reconcile).
//!
//! `driver` calls are synchronous and made from inside a guest callback, so they only queue
//! work (`driver.rs`); the driving task (`driving.rs`) applies the queue to the core, under one
//! short lock, right after the callback returns. `state-get` answers from a mirror of the
//! framework's state that the host keeps (the registry holds the durable copy, written through
//! `Command`s); `set-timer` starts a tokio timer that calls `timer`; `finish` records the
//! outcome in the registry and tears the framework down.
//!
//! The component is compiled (by the runtime's compiler: a budgeted child process under the
//! `wasmos` command) when the framework starts; the driving task holds a lease on it, so the
//! last hosted framework of a component to end unloads it from the runtime.
//!
//! Each callback runs under the framework's own fuel and memory caps and a wall-clock deadline
//! ([`TaskLimits`], `limits.rs`). A callback that traps or exceeds a limit fails the framework
//! with the error's message (recorded as its outcome; its tasks are killed) and the master
//! carries on.
//!
//! Each scheduler's admitted `log` lines are also kept, bounded, for `wasmos logs --scheduler`
//! (`scheduler_log.rs`).
//!
//! The host sees the master only through [`HostContext`] (the core, the clock, the commit
//! wait), never the gRPC server, so it runs and is tested without one. It owns the answer to
//! "which frameworks does this master host": [`FrameworkHost::running`].

mod convert;
mod driver;
mod driving;
mod limits;
pub mod scheduler_log;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span};
use wasmos_api::FrameworkId;
use wasmos_api::proto as pb;
use wasmos_wasm_executor::{
    ComponentError, RuntimeConfig, SchedulerError, SchedulerInstance, TaskLimits, WasmRuntime,
};

use crate::allocator::Millis;
use crate::blobs::{BlobError, Digest};
use crate::core::MasterCore;
use crate::sync::lock;

use driver::{HostDriver, Pending};
use driving::Driving;
pub use wasmos_api::limits::MAX_PENDING_TIMERS;

use pb::scheduler_call::Call;

/// Why a hosted framework could not be started.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The framework record names no component to run.
    #[error("the framework names no component (component_sha256 is empty)")]
    NoComponent,
    /// The component's digest is malformed, or the blob store does not hold it.
    #[error("component: {0}")]
    Blob(#[from] BlobError),
    /// The component does not compile.
    #[error("cannot load the framework's component: {0}")]
    Load(#[from] ComponentError),
    /// The scheduler half cannot be instantiated under its limits.
    #[error("cannot start the framework's scheduler: {0}")]
    Instantiate(#[from] SchedulerError),
    /// The core refused the scheduler's subscription (the message says why; the kind picks
    /// the gRPC code a submitter sees).
    #[error("subscription refused: {0}")]
    Subscribe(crate::core::CoreError),
    /// The Wasm engine could not be created (a host misconfiguration).
    #[error("cannot create the Wasm engine: {0}")]
    Engine(String),
}

/// What the framework host needs of the master it runs in, and nothing more: the core that
/// hosted schedulers subscribe to, the master's clock, and a wait for the registry's changes
/// to commit.
///
/// [`Master`](crate::Master) implements it; a test implements it over a bare [`MasterCore`]
/// to run hosted schedulers without a gRPC server or Raft. A trait rather than a struct of
/// closures, so that `host.start(&master, ..)` reads as it always has and the commit wait stays
/// an ordinary `async` method.
pub trait HostContext: Clone + Send + Sync + 'static {
    /// Locks the core. The host holds the guard only for short sections that never await.
    fn core(&self) -> MutexGuard<'_, MasterCore>;

    /// The master's clock in milliseconds, as the core's calls take it.
    fn now(&self) -> Millis;

    /// Waits until every registry change made so far is committed (at once where nothing is
    /// replicated). An error means the changes are not known to be committed (the leadership
    /// was lost, or no majority answered in time); the host logs it and carries on.
    fn committed(&self) -> impl Future<Output = Result<(), tonic::Status>> + Send;

    /// Whether hosted framework `framework` may launch native command tasks now, asked before
    /// every accept of its scheduler that launches one (without the core locked); `Err` says
    /// why not, and the accept is refused (each task an `ERROR` update). The master answers
    /// with the authorization layer, using the rights of the token that submitted the
    /// framework. By default allowed: a context without an authorization layer (a test over a
    /// bare core) has only the core's own check, `--command-task-roles`.
    fn authorize_native_launch(&self, framework: &FrameworkId) -> Result<(), String> {
        let _ = framework;
        Ok(())
    }
}

/// Hosts Wasm schedulers for one master process (one [`WasmRuntime`], shared by all of them),
/// and knows which of them run.
#[derive(Clone)]
pub struct FrameworkHost {
    runtime: WasmRuntime,
    /// Frameworks whose scheduler this host started and that have not stopped yet, each with
    /// the token of the start that listed it (see [`Listed`]).
    running: Arc<Mutex<HashMap<FrameworkId, u64>>>,
    /// The next start's token.
    starts: Arc<AtomicU64>,
    /// The last `log` lines of each hosted scheduler (`ReadSchedulerLog`).
    logs: Arc<scheduler_log::SchedulerLogs>,
}

/// A hosted framework that was started.
pub struct HostedFramework {
    /// The id the master gave it.
    pub framework_id: FrameworkId,
    /// The task driving its scheduler; it ends when the framework is torn down.
    pub task: JoinHandle<()>,
}

impl FrameworkHost {
    /// A host with its own Wasm runtime.
    pub fn new(config: RuntimeConfig) -> Result<Self, HostError> {
        let runtime = WasmRuntime::new(config).map_err(|e| HostError::Engine(e.to_string()))?;
        Ok(Self::with_runtime(runtime))
    }

    /// A host sharing an existing runtime (one per process).
    pub fn with_runtime(runtime: WasmRuntime) -> Self {
        FrameworkHost {
            runtime,
            running: Arc::new(Mutex::new(HashMap::new())),
            starts: Arc::new(AtomicU64::new(0)),
            logs: Arc::default(),
        }
    }

    /// The last `log` lines of the schedulers this host ran (see [`scheduler_log`]).
    pub fn scheduler_logs(&self) -> &Arc<scheduler_log::SchedulerLogs> {
        &self.logs
    }

    /// The frameworks whose scheduler this host runs: started by [`FrameworkHost::start`] and
    /// whose driving task has not ended (nor been forgotten by
    /// [`FrameworkHost::forget_running`]). This is what `GetState` reports as `hosted`.
    pub fn running(&self) -> HashSet<FrameworkId> {
        lock(&self.running).keys().cloned().collect()
    }

    /// Whether this host runs `framework`'s scheduler (see [`FrameworkHost::running`]).
    pub fn is_running(&self, framework: &FrameworkId) -> bool {
        lock(&self.running).contains_key(framework)
    }

    /// Forgets every running scheduler at once: the master stepped down and closed their
    /// streams, so they are stopping; a new leader starts them again.
    pub fn forget_running(&self) {
        lock(&self.running).clear();
    }

    /// Starts a hosted framework: loads the component named by `info.component_sha256` from
    /// the master's blob store, instantiates its scheduler half under `limits`, subscribes it
    /// to the master (registering the framework as `info` describes, and recording `args` and
    /// `limits` in the registry), calls `init(args)` and drives it until the framework ends.
    /// Returns once the framework is registered; a failing `init` then fails the framework
    /// like any later callback. The framework is listed in [`FrameworkHost::running`] until
    /// its driving task ends.
    ///
    /// With `info.id` set it restarts a registered framework (a new leader): the scheduler
    /// starts from `init(args)` and its stored state, and is sent the status of every task
    /// the master knows for it (more arrive as agents re-register).
    pub async fn start<C: HostContext>(
        &self,
        ctx: &C,
        info: pb::FrameworkInfo,
        args: Vec<String>,
        limits: TaskLimits,
    ) -> Result<HostedFramework, HostError> {
        self.start_as(ctx, info, args, limits, None).await
    }

    /// As [`FrameworkHost::start`], recording for a new framework the accessor of the token
    /// that submitted it (`submitter`; `None` on a master that does not enforce ACLs) with
    /// its registration, before its scheduler makes any call: the scheduler then acts with
    /// that token's rights.
    pub async fn start_as<C: HostContext>(
        &self,
        ctx: &C,
        info: pb::FrameworkInfo,
        args: Vec<String>,
        limits: TaskLimits,
        submitter: Option<String>,
    ) -> Result<HostedFramework, HostError> {
        if info.component_sha256.is_empty() {
            return Err(HostError::NoComponent);
        }
        let digest =
            Digest::parse(&info.component_sha256).map_err(crate::blobs::BlobError::from)?;
        let bytes = ctx.core().blobs().get(&digest)?;
        let component = self.runtime.load_async(bytes.as_ref().clone()).await?;
        // Held by the driving task: the last hosted framework of a component to end unloads it.
        let lease = self.runtime.lease(component.digest());

        let pending = Arc::new(Mutex::new(Pending::default()));
        let driver = HostDriver {
            pending: pending.clone(),
            logs: self.logs.clone(),
        };
        let spec = Self::spec_of(&args, &limits);
        let instance =
            SchedulerInstance::new(&self.runtime, &component, Box::new(driver), limits).await?;

        let queue = ctx.core().config().connection_queue;
        let (tx, rx) = mpsc::channel(queue);
        let (framework_id, conn) = {
            let now = ctx.now();
            let mut core = ctx.core();
            let conn = core.new_conn();
            let restart = !info.id.is_empty();
            let fw = core
                .subscribe(conn, tx, Some(info), now)
                .map_err(HostError::Subscribe)?;
            if restart {
                core.scheduler_call(
                    &fw,
                    conn,
                    Some(Call::Reconcile(pb::scheduler_call::Reconcile {
                        tasks: Vec::new(),
                    })),
                    now,
                );
            } else {
                core.set_hosted(&fw, spec).map_err(HostError::Subscribe)?;
                if let Some(accessor) = submitter {
                    core.set_submitter(&fw, accessor)
                        .map_err(HostError::Subscribe)?;
                }
            }
            // A framework id that was given may already hold state (a restarted host).
            let state = core
                .registry()
                .framework_state
                .get(&fw)
                .cloned()
                .unwrap_or_default();
            let mut p = lock(&pending);
            p.state = state;
            p.framework_id = fw.to_string();
            (fw, conn)
        };
        info!(framework_id = %framework_id, component = %digest, "hosted framework started");

        let span = info_span!("hosted_scheduler", framework_id = %framework_id);
        let driving = Driving {
            ctx: ctx.clone(),
            framework_id: framework_id.clone(),
            conn,
            instance,
            pending,
            timers: HashMap::new(),
            timer_tx: None,
            acks: Vec::new(),
            done: false,
            puts_uncommitted: false,
        };
        let token = self.starts.fetch_add(1, Ordering::Relaxed);
        let listed = Listed::new(&self.running, framework_id.clone(), token);
        let task = tokio::spawn(
            async move {
                // Unlisted when the task ends, however it ends (finished, failed, aborted).
                let _listed = listed;
                let _lease = lease;
                driving.run(args, rx).await;
            }
            .instrument(span),
        );
        Ok(HostedFramework { framework_id, task })
    }
}

/// Keeps a framework in its host's running set while its driving task lives. The entry
/// carries the start's token, so a task of an earlier start that ends late (after a
/// step-down and a quick re-take of leadership restarted the framework) does not unlist the
/// newer one.
struct Listed {
    running: Arc<Mutex<HashMap<FrameworkId, u64>>>,
    framework_id: FrameworkId,
    token: u64,
}

impl Listed {
    fn new(
        running: &Arc<Mutex<HashMap<FrameworkId, u64>>>,
        framework_id: FrameworkId,
        token: u64,
    ) -> Self {
        lock(running).insert(framework_id.clone(), token);
        Listed {
            running: running.clone(),
            framework_id,
            token,
        }
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        let mut running = lock(&self.running);
        if running.get(&self.framework_id) == Some(&self.token) {
            running.remove(&self.framework_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_end_of_an_earlier_start_keeps_the_newer_start_listed() {
        let running = Arc::new(Mutex::new(HashMap::new()));
        let fw = FrameworkId::new("fw-1".to_string()).unwrap();
        let first = Listed::new(&running, fw.clone(), 1);
        let second = Listed::new(&running, fw.clone(), 2);
        drop(first);
        assert!(
            lock(&running).contains_key(&fw),
            "the newer start was unlisted"
        );
        drop(second);
        assert!(!lock(&running).contains_key(&fw));
    }
}
