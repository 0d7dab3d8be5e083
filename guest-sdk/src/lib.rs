//! `wasmos-guest`: write a wasmos framework in Rust.
//!
//! A wasmos framework is **one** WebAssembly component (target `wasm32-wasip2`) that holds both
//! halves of a Mesos-style framework:
//!
//! * the **scheduler**, hosted by the leading master: it is told about resource offers and task
//!   status changes, and answers through [`driver`] (launch, decline, suppress, finish, ...);
//! * the **executor**, run by agents: it receives each task's payload and returns the task's
//!   result bytes. Tasks that name the same executor id on one agent run one after another in the
//!   *same* instance, so whatever the executor keeps in `&mut self` (a parsed data partition, a
//!   model) is still there for the next task.
//!
//! You implement the two traits [`Scheduler`] and [`Executor`] and hand both types to
//! [`export!`]. The crate generates the component-model glue from the WIT contract
//! (`wit/framework.wit`, package `wasmos:framework@0.1.0`) with `wit-bindgen`; there is no
//! hand-written ABI.
//!
//! What lives here: the traits, the export macro and its state handling ([`export!`]), the thin
//! [`driver`] and [`executor_driver`] wrappers over the host imports, and helpers every framework
//! needs ([`Resources`] arithmetic, [`TaskInfo::wasm`], decline filters that default to a long
//! refusal). What does not: anything host-side; wasmos implements the WIT, not this crate.
//!
//! # Example: a complete framework
//!
//! A framework that runs `N` "square this number" tasks and finishes with their sum.
//!
//! ```no_run
//! use std::collections::BTreeSet;
//!
//! use wasmos_guest::{
//!     driver, Executor, Offer, Resources, Scheduler, Task, TaskInfo, TaskState, TaskStatus,
//! };
//!
//! /// What one task needs: a tenth of a core and 32 MiB.
//! const PER_TASK: Resources = Resources::cpu_mem(100, 32);
//!
//! struct Squares {
//!     n: u64,
//!     to_launch: Vec<u64>,
//!     done: BTreeSet<u64>,
//!     sum: u64,
//! }
//!
//! /// Task ids are `square-N`; the id is all the scheduler needs to know which one reported.
//! fn number_of(task_id: &str) -> Option<u64> {
//!     task_id.strip_prefix("square-")?.parse().ok()
//! }
//!
//! impl Scheduler for Squares {
//!     fn init(args: Vec<String>) -> Result<Self, String> {
//!         let n: u64 = match args.first() {
//!             Some(a) => a.parse().map_err(|e| format!("bad task count {a:?}: {e}"))?,
//!             None => 10,
//!         };
//!         Ok(Squares { n, to_launch: (1..=n).collect(), done: BTreeSet::new(), sum: 0 })
//!     }
//!
//!     fn resource_offers(&mut self, offers: Vec<Offer>) {
//!         for offer in offers {
//!             let mut left = offer.resources;
//!             let mut tasks = Vec::new();
//!             while !self.to_launch.is_empty() && left.try_take(&PER_TASK) {
//!                 let Some(n) = self.to_launch.pop() else { break };
//!                 let id = format!("square-{n}");
//!                 tasks.push(TaskInfo::wasm(id, &offer.agent_id, PER_TASK, "squares", n.to_string()));
//!             }
//!             if tasks.is_empty() {
//!                 // Nothing to run here: refuse this agent for the SDK's default 120 s.
//!                 driver::decline(&[offer.id]);
//!             } else if let Err(e) = driver::launch(&[offer.id], &tasks) {
//!                 driver::warn(&format!("launch failed, will retry on a later offer: {e}"));
//!                 self.to_launch.extend(tasks.iter().filter_map(|t| number_of(&t.task_id)));
//!             }
//!         }
//!         if self.to_launch.is_empty() {
//!             // Idle frameworks should not be offered resources at all.
//!             driver::suppress();
//!         }
//!     }
//!
//!     fn status_update(&mut self, status: TaskStatus) {
//!         let Some(n) = number_of(&status.task_id) else { return };
//!         // Updates are delivered at least once: count each number once.
//!         if self.done.contains(&n) {
//!             return;
//!         }
//!         match status.state {
//!             TaskState::Finished => {
//!                 let data = status.data.unwrap_or_default();
//!                 let Ok(square) = String::from_utf8_lossy(&data).parse::<u64>() else {
//!                     driver::finish(Err(format!("task {} returned garbage", status.task_id)));
//!                     return;
//!                 };
//!                 self.sum += square;
//!                 self.done.insert(n);
//!                 if self.done.len() as u64 == self.n {
//!                     driver::finish(Ok(format!("sum of squares = {}", self.sum)));
//!                 }
//!             }
//!             state if state.is_terminal() => {
//!                 // Failed, lost, ...: run it again, and ask for offers again.
//!                 self.to_launch.push(n);
//!                 driver::revive();
//!             }
//!             _ => {}
//!         }
//!     }
//! }
//!
//! /// Lives as long as its executor instance: across every task of executor id "squares".
//! #[derive(Default)]
//! struct SquareExecutor {
//!     tasks_run: u64,
//! }
//!
//! impl Executor for SquareExecutor {
//!     fn new() -> Self {
//!         SquareExecutor::default()
//!     }
//!
//!     fn launch(&mut self, task: Task) -> Result<Vec<u8>, String> {
//!         self.tasks_run += 1;
//!         let text = std::str::from_utf8(&task.payload).map_err(|e| e.to_string())?;
//!         let n: u64 = text.trim().parse().map_err(|e| format!("bad payload {text:?}: {e}"))?;
//!         let square = n.checked_mul(n).ok_or_else(|| format!("{n} squared overflows"))?;
//!         Ok(square.to_string().into_bytes())
//!     }
//! }
//!
//! wasmos_guest::export!(scheduler = Squares, executor = SquareExecutor);
//! ```
//!
//! The crate is a `cdylib` (a reactor component: no `main`):
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! wasmos-guest = { path = "../guest-sdk" }
//! ```
//!
//! and is built with `cargo build --release --target wasm32-wasip2` (see `examples-wasm/` and
//! `scripts/build-examples.sh` for machines whose rustup has no such target).
//!
//! # Semantics worth knowing
//!
//! * Scheduler calls are made one at a time. Each trait method runs with exclusive access to
//!   the state `init` returned; a call that arrives before `init` succeeded is logged through
//!   [`driver::log`] and dropped (offers are declined, so they are not hoarded), and `init`
//!   called twice is an error. Nothing here can cause undefined behaviour.
//! * The executor instance is created lazily with [`Executor::new`] on its first task and kept
//!   for the next tasks of the same executor id on that agent. A panic, trap or exhausted limit
//!   discards the instance; the next task starts from [`Executor::new`] again.
//! * Offers you do not use should be declined. [`driver::decline`] refuses the agent for
//!   [`DEFAULT_REFUSE_SECONDS`] (120 s, not Mesos's 5 s, which makes many frameworks starve each
//!   other), and [`driver::suppress`] stops offers entirely while you have nothing to run;
//!   [`driver::revive`] when you have work again.
//! * Both halves link against every import, but the host refuses a call from the wrong half:
//!   [`driver`] from an executor (or [`executor_driver`] from the scheduler) fails the call
//!   with a clear error.
//! * On a non-wasm target (a `cargo check` in the host workspace, unit tests) the imports
//!   panic with `unreachable`; only the pure helpers are usable there.

#![warn(missing_docs)]

// Lets the generated code and the `export!` macro name this crate as `::wasmos_guest` both
// from inside it and from a framework crate.
extern crate self as wasmos_guest;

mod helpers;
mod runtime;

pub mod driver;
pub mod executor_driver;

/// Bindings generated from `wit/framework.wit`. Hidden: the public names are the re-exports
/// below; the module is `pub` only because [`export!`] expands in the framework's crate.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "framework",
        // The export macro is invoked by our own `export!`, from the framework's crate.
        pub_export_macro: true,
        export_macro_name: "__export_framework",
        default_bindings_module: "::wasmos_guest::__bindings",
        runtime_path: "::wasmos_guest::__bindings::__rt",
        // Frameworks compare offers and statuses in tests; f64 in `filters` rules out `Eq`.
        additional_derives: [PartialEq],
    });

    #[doc(hidden)]
    pub use wit_bindgen::rt as __rt;
}

pub use __bindings::exports::wasmos::framework::executor::Task;
pub use __bindings::wasmos::framework::types::{
    CommandTask, Filters, LogLevel, Offer, Resources, TaskInfo, TaskKind, TaskState, TaskStatus,
    WasmTask,
};
pub use driver::DEFAULT_REFUSE_SECONDS;
pub use helpers::{DeclineAll, offer_ids};

/// The executor half of a framework.
///
/// One value of the implementing type lives in each executor instance. The host creates the
/// instance when the first task with a given executor id arrives on an agent; the SDK then calls
/// [`Executor::new`] once and [`Executor::launch`] for that task and every later task with the
/// same executor id on that agent, one at a time. That is how data is cached across tasks: keep
/// it in `self`.
pub trait Executor: 'static {
    /// Creates the executor's state, before its first task.
    fn new() -> Self
    where
        Self: Sized;

    /// Runs one task to completion. `Ok` bytes become the task's result (`finished`, with
    /// `data` set); `Err` fails the task with that message. Long-running tasks can report
    /// progress with [`executor_driver::progress`].
    fn launch(&mut self, task: Task) -> Result<Vec<u8>, String>;
}

/// The scheduler half of a framework.
///
/// One value of the implementing type lives in the framework's scheduler instance on the master,
/// created by [`Scheduler::init`]. Every other method is called with `&mut self`, one call at a
/// time, and answers through [`driver`].
pub trait Scheduler: 'static {
    /// Starts the framework with the arguments given to `wasmos submit`. `Err` fails the
    /// framework with that message.
    fn init(args: Vec<String>) -> Result<Self, String>
    where
        Self: Sized;

    /// New offers. Answer each with [`driver::launch`] or [`driver::decline`]: an unanswered
    /// offer counts as used by this framework until the master rescinds it.
    fn resource_offers(&mut self, offers: Vec<Offer>);

    /// A task changed state. Delivery is at least once: the same terminal status can arrive
    /// twice (for instance after a master failover), so make handling idempotent.
    fn status_update(&mut self, status: TaskStatus);

    /// An offer is no longer valid (its agent went away or it timed out).
    fn offer_rescinded(&mut self, _offer_id: String) {}

    /// A timer set with [`driver::set_timer`] fired.
    fn timer(&mut self, _timer_id: u64) {}

    /// An executor sent bytes with [`executor_driver::send_framework_message`].
    fn framework_message(&mut self, _agent_id: String, _executor_id: String, _data: Vec<u8>) {}
}

/// Exports a scheduler type and an executor type as this crate's wasmos component.
///
/// ```ignore
/// wasmos_guest::export!(scheduler = MyScheduler, executor = MyExecutor);
/// ```
///
/// Invoke it once, in a `cdylib` crate. It keeps each half's state in a thread-local
/// `RefCell<Option<T>>` (a wasm component instance is single-threaded) and implements the
/// `wit-bindgen` export traits by forwarding to [`Scheduler`] and [`Executor`]. A framework
/// without a scheduler of its own (an executor tested with `wasmos task run`) can pass
/// [`DeclineAll`].
#[macro_export]
macro_rules! export {
    (scheduler = $scheduler:ty, executor = $executor:ty $(,)?) => {
        const _: () = {
            struct WasmosGuestComponent;

            ::std::thread_local! {
                static WASMOS_SCHEDULER: ::core::cell::RefCell<::core::option::Option<$scheduler>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
                static WASMOS_EXECUTOR: ::core::cell::RefCell<::core::option::Option<$executor>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            impl $crate::__private::SchedulerGuest for WasmosGuestComponent {
                fn init(
                    args: $crate::__private::Vec<$crate::__private::String>,
                ) -> ::core::result::Result<(), $crate::__private::String> {
                    $crate::__private::scheduler_init(&WASMOS_SCHEDULER, args)
                }
                fn resource_offers(offers: $crate::__private::Vec<$crate::Offer>) {
                    $crate::__private::scheduler_offers(&WASMOS_SCHEDULER, offers)
                }
                fn status_update(status: $crate::TaskStatus) {
                    $crate::__private::with_scheduler(&WASMOS_SCHEDULER, "status-update", |s| {
                        $crate::Scheduler::status_update(s, status)
                    });
                }
                fn offer_rescinded(offer_id: $crate::__private::String) {
                    $crate::__private::with_scheduler(&WASMOS_SCHEDULER, "offer-rescinded", |s| {
                        $crate::Scheduler::offer_rescinded(s, offer_id)
                    });
                }
                fn timer(timer_id: u64) {
                    $crate::__private::with_scheduler(&WASMOS_SCHEDULER, "timer", |s| {
                        $crate::Scheduler::timer(s, timer_id)
                    });
                }
                fn framework_message(
                    agent_id: $crate::__private::String,
                    executor_id: $crate::__private::String,
                    data: $crate::__private::Vec<u8>,
                ) {
                    $crate::__private::with_scheduler(
                        &WASMOS_SCHEDULER,
                        "framework-message",
                        |s| $crate::Scheduler::framework_message(s, agent_id, executor_id, data),
                    );
                }
            }

            impl $crate::__private::ExecutorGuest for WasmosGuestComponent {
                fn launch(
                    task: $crate::Task,
                ) -> ::core::result::Result<$crate::__private::Vec<u8>, $crate::__private::String>
                {
                    $crate::__private::executor_launch(&WASMOS_EXECUTOR, task)
                }
            }

            $crate::__bindings::__export_framework!(
                WasmosGuestComponent with_types_in $crate::__bindings
            );
        };
    };
    (executor = $executor:ty, scheduler = $scheduler:ty $(,)?) => {
        $crate::export!(scheduler = $scheduler, executor = $executor);
    };
}

/// What [`export!`] expands to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::__bindings::exports::wasmos::framework::executor::Guest as ExecutorGuest;
    pub use crate::__bindings::exports::wasmos::framework::scheduler::Guest as SchedulerGuest;
    pub use crate::runtime::{executor_launch, scheduler_init, scheduler_offers, with_scheduler};
    pub use std::string::String;
    pub use std::vec::Vec;
}
