//! [`SchedulerInstance`]: a framework's scheduler half, instantiated for the master's framework
//! host; it acts on the cluster through a [`DriverHost`].
//!
//! Each callback runs under the instance's limits: a fuel budget (with fuel metering), the
//! memory cap, and a per-callback wall-clock deadline. A callback that traps or exceeds a limit
//! poisons the instance; the framework host then fails the framework with the error's message,
//! which quotes the end of what the failing callback wrote to stderr (a [`StderrTail`] of
//! [`SCHEDULER_STDERR_TAIL_BYTES`]): an uncaught Python or JavaScript exception is a traceback
//! there followed by a bare trap. The scheduler's stdout goes nowhere.

use std::sync::Arc;

use wasmtime::Store;

use crate::bindings::Framework;
use crate::bindings::types::{Offer, TaskStatus};
use crate::config::{LimitMode, TaskLimits};
use crate::error::TaskError;
use crate::executor::classify;
use crate::host::{HostState, Role};
use crate::host_api::DriverHost;
use crate::runtime::{LoadedComponent, WasmRuntime, root_message};
use crate::stderr_tail::{SCHEDULER_STDERR_TAIL_BYTES, StderrTail};

/// Why a scheduler callback did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// `init` returned an error.
    #[error("scheduler init failed: {0}")]
    Init(String),
    /// A callback trapped or exceeded a limit.
    #[error("scheduler {callback} failed: {source}")]
    Callback {
        /// The WIT name of the callback (`init`, `resource-offers`, ...), or `instantiate`.
        callback: &'static str,
        /// How it failed.
        source: TaskError,
    },
    /// An earlier callback failed; the instance may not be used again.
    #[error("scheduler instance is unusable after an earlier failure")]
    Poisoned,
}

/// A live scheduler instance.
pub struct SchedulerInstance {
    store: Store<HostState>,
    bindings: Framework,
    limits: TaskLimits,
    metered: bool,
    poisoned: bool,
    /// The end of what the callback under way wrote to stderr.
    stderr: StderrTail,
    /// When the callback under way began.
    started: Option<std::time::Instant>,
    /// How long the last callback took and the fuel it burned.
    last: (std::time::Duration, u64),
}

impl SchedulerInstance {
    /// Instantiates the component's scheduler half with `driver` behind its `driver` import.
    /// The scheduler gets no filesystem and no network.
    pub async fn new(
        runtime: &WasmRuntime,
        component: &Arc<LoadedComponent>,
        driver: Box<dyn DriverHost>,
        limits: TaskLimits,
    ) -> Result<Self, SchedulerError> {
        let failed = |e: wasmtime::Error| SchedulerError::Callback {
            callback: "instantiate",
            source: TaskError::Instantiate(root_message(&e)),
        };
        let stderr = StderrTail::new(SCHEDULER_STDERR_TAIL_BYTES);
        let mut store = runtime
            .new_store(
                &limits,
                Role::Scheduler { driver },
                None,
                None::<StderrTail>,
                Some(stderr.clone()),
            )
            .map_err(failed)?;
        let bindings = component
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(failed)?;
        let metered = runtime.config().limit_mode == LimitMode::Fuel;
        Ok(SchedulerInstance {
            store,
            bindings,
            limits,
            metered,
            poisoned: false,
            stderr,
            started: None,
            last: Default::default(),
        })
    }

    /// The driver host, to read back what the scheduler asked for.
    pub fn driver(&mut self) -> &mut dyn DriverHost {
        match &mut self.store.data_mut().role {
            Role::Scheduler { driver } => driver.as_mut(),
            Role::Executor { .. } => {
                unreachable!("a SchedulerInstance is always created with Role::Scheduler")
            }
        }
    }

    /// Calls `init(args)`.
    pub async fn init(&mut self, args: Vec<String>) -> Result<(), SchedulerError> {
        self.begin()?;
        let call = self
            .bindings
            .wasmos_framework_scheduler()
            .call_init(&mut self.store, &args);
        let r = {
            let r = tokio::time::timeout(self.limits.timeout, call).await;
            self.settle("init", r)
        }?;
        r.map_err(SchedulerError::Init)
    }

    /// Calls `resource-offers(offers)`.
    pub async fn resource_offers(&mut self, offers: Vec<Offer>) -> Result<(), SchedulerError> {
        self.begin()?;
        let call = self
            .bindings
            .wasmos_framework_scheduler()
            .call_resource_offers(&mut self.store, &offers);
        {
            let r = tokio::time::timeout(self.limits.timeout, call).await;
            self.settle("resource-offers", r)
        }
    }

    /// Calls `status-update(status)`.
    pub async fn status_update(&mut self, status: TaskStatus) -> Result<(), SchedulerError> {
        self.begin()?;
        let call = self
            .bindings
            .wasmos_framework_scheduler()
            .call_status_update(&mut self.store, &status);
        {
            let r = tokio::time::timeout(self.limits.timeout, call).await;
            self.settle("status-update", r)
        }
    }

    /// Calls `offer-rescinded(offer_id)`.
    pub async fn offer_rescinded(&mut self, offer_id: String) -> Result<(), SchedulerError> {
        self.begin()?;
        let call = self
            .bindings
            .wasmos_framework_scheduler()
            .call_offer_rescinded(&mut self.store, &offer_id);
        {
            let r = tokio::time::timeout(self.limits.timeout, call).await;
            self.settle("offer-rescinded", r)
        }
    }

    /// Calls `timer(timer_id)`.
    pub async fn timer(&mut self, timer_id: u64) -> Result<(), SchedulerError> {
        self.begin()?;
        let call = self
            .bindings
            .wasmos_framework_scheduler()
            .call_timer(&mut self.store, timer_id);
        {
            let r = tokio::time::timeout(self.limits.timeout, call).await;
            self.settle("timer", r)
        }
    }

    /// Calls `framework-message(agent_id, executor_id, data)`.
    pub async fn framework_message(
        &mut self,
        agent_id: String,
        executor_id: String,
        data: Vec<u8>,
    ) -> Result<(), SchedulerError> {
        self.begin()?;
        let call = self
            .bindings
            .wasmos_framework_scheduler()
            .call_framework_message(&mut self.store, &agent_id, &executor_id, &data);
        {
            let r = tokio::time::timeout(self.limits.timeout, call).await;
            self.settle("framework-message", r)
        }
    }

    /// How long the last callback took and the fuel it burned (0 without fuel metering).
    pub fn last_callback(&self) -> (std::time::Duration, u64) {
        self.last
    }

    fn begin(&mut self) -> Result<(), SchedulerError> {
        if self.poisoned {
            return Err(SchedulerError::Poisoned);
        }
        self.store.data_mut().limiter.denied_memory = None;
        self.stderr.clear();
        self.started = Some(std::time::Instant::now());
        if self.metered {
            let fuel = self.limits.fuel.unwrap_or(u64::MAX);
            self.store
                .set_fuel(fuel)
                .map_err(|e| SchedulerError::Callback {
                    callback: "set-fuel",
                    source: TaskError::Instantiate(root_message(&e)),
                })?;
        }
        Ok(())
    }

    fn settle<T>(
        &mut self,
        callback: &'static str,
        result: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, SchedulerError> {
        let took = self.started.take().map(|t| t.elapsed()).unwrap_or_default();
        let fuel = if self.metered {
            let budget = self.limits.fuel.unwrap_or(u64::MAX);
            self.store
                .get_fuel()
                .map_or(0, |left| budget.saturating_sub(left))
        } else {
            0
        };
        self.last = (took, fuel);
        let limits = &self.limits;
        let error = match result {
            Ok(Ok(v)) => return Ok(v),
            Err(_) => TaskError::Deadline(limits.timeout),
            Ok(Err(e)) => classify(
                &e,
                &self.store,
                limits,
                limits.fuel.unwrap_or(u64::MAX),
                || self.stderr.tail(),
            ),
        };
        self.poisoned = true;
        Err(SchedulerError::Callback {
            callback,
            source: error,
        })
    }
}
