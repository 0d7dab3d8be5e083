//! The state handling behind [`crate::export!`]: where the scheduler's and the executor's values
//! live between calls, and what happens to calls that arrive at the wrong time.
//!
//! The macro owns the thread-locals (a static cannot be generic over the framework's types) and
//! passes them here. Every access goes through `RefCell::try_borrow_mut`, so a re-entrant call
//! (which the component model forbids anyway) becomes a logged error, never aliasing.

use std::cell::RefCell;
use std::thread::LocalKey;

use crate::{Executor, LogLevel, Offer, Scheduler, Task, driver, offer_ids};

/// Where a half's state lives: `None` until created.
type Slot<T> = LocalKey<RefCell<Option<T>>>;

/// `scheduler.init`: creates the scheduler's state, once.
pub fn scheduler_init<S: Scheduler>(
    slot: &'static Slot<S>,
    args: Vec<String>,
) -> Result<(), String> {
    slot.with(|cell| {
        let Ok(mut state) = cell.try_borrow_mut() else {
            return Err("scheduler.init called while another scheduler call was running".into());
        };
        if state.is_some() {
            // The host starts a fresh instance after a failover, so a second init on a live one
            // is a host bug; keeping the existing state is safer than silently replacing it.
            return Err("scheduler.init called twice on the same instance".into());
        }
        *state = Some(S::init(args)?);
        Ok(())
    })
}

/// `scheduler.resource-offers`: like [`with_scheduler`], but offers that cannot be handed to a
/// scheduler are declined, so they are not counted against this framework until they time out.
pub fn scheduler_offers<S: Scheduler>(slot: &'static Slot<S>, offers: Vec<Offer>) {
    let mut offers = Some(offers);
    let handled = with_scheduler(slot, "resource-offers", |s| {
        if let Some(offers) = offers.take() {
            s.resource_offers(offers);
        }
    });
    if !handled && let Some(offers) = offers {
        driver::decline(&offer_ids(&offers));
    }
}

/// Runs `f` on the scheduler's state. Returns `false`, after logging why, when there is no state
/// (the call came before a successful `init`) or it is already borrowed (a re-entrant call).
pub fn with_scheduler<S: Scheduler>(
    slot: &'static Slot<S>,
    call: &str,
    f: impl FnOnce(&mut S),
) -> bool {
    slot.with(|cell| match cell.try_borrow_mut() {
        Ok(mut state) => match state.as_mut() {
            Some(s) => {
                f(s);
                true
            }
            None => {
                driver::log(
                    LogLevel::Error,
                    &format!("scheduler.{call} called before a successful init; ignored"),
                );
                false
            }
        },
        Err(_) => {
            driver::log(
                LogLevel::Error,
                &format!(
                    "scheduler.{call} called while another scheduler call was running; ignored"
                ),
            );
            false
        }
    })
}

/// `executor.launch`: creates the executor's state on the first task, then runs the task on it.
pub fn executor_launch<E: Executor>(slot: &'static Slot<E>, task: Task) -> Result<Vec<u8>, String> {
    slot.with(|cell| {
        let Ok(mut state) = cell.try_borrow_mut() else {
            return Err(format!(
                "task {}: executor.launch called while executor {} was running another task",
                task.task_id, task.executor_id
            ));
        };
        state.get_or_insert_with(E::new).launch(task)
    })
}

#[cfg(test)]
mod tests {
    //! Only paths that do not call host imports: on the host those panic with `unreachable`.

    use super::*;
    use crate::TaskStatus;

    struct Counter(u32);

    impl Executor for Counter {
        fn new() -> Self {
            Counter(0)
        }
        fn launch(&mut self, task: Task) -> Result<Vec<u8>, String> {
            if task.payload == b"fail" {
                return Err("asked to fail".into());
            }
            self.0 += 1;
            Ok(self.0.to_string().into_bytes())
        }
    }

    struct Args(Vec<String>);

    impl Scheduler for Args {
        fn init(args: Vec<String>) -> Result<Self, String> {
            if args.iter().any(|a| a == "bad") {
                return Err("bad argument".into());
            }
            Ok(Args(args))
        }
        fn resource_offers(&mut self, _offers: Vec<Offer>) {}
        fn status_update(&mut self, _status: TaskStatus) {}
    }

    thread_local! {
        static EXECUTOR: RefCell<Option<Counter>> = const { RefCell::new(None) };
        static SCHEDULER: RefCell<Option<Args>> = const { RefCell::new(None) };
        static FAILED_SCHEDULER: RefCell<Option<Args>> = const { RefCell::new(None) };
    }

    fn task(payload: &str) -> Task {
        Task {
            task_id: "t".into(),
            executor_id: "e".into(),
            payload: payload.as_bytes().to_vec(),
        }
    }

    #[test]
    fn executor_state_survives_between_tasks() {
        assert_eq!(executor_launch(&EXECUTOR, task("")), Ok(b"1".to_vec()));
        assert_eq!(
            executor_launch(&EXECUTOR, task("fail")),
            Err("asked to fail".into())
        );
        assert_eq!(executor_launch(&EXECUTOR, task("")), Ok(b"2".to_vec()));
    }

    #[test]
    fn executor_reentry_is_an_error() {
        EXECUTOR.with(|cell| {
            let _held = cell.borrow_mut();
            let err = executor_launch(&EXECUTOR, task("")).unwrap_err();
            assert!(err.contains("while executor e was running"), "{err}");
        });
    }

    #[test]
    fn init_once() {
        assert_eq!(scheduler_init(&SCHEDULER, vec!["x".into()]), Ok(()));
        let err = scheduler_init(&SCHEDULER, vec![]).unwrap_err();
        assert!(err.contains("twice"), "{err}");
        assert!(with_scheduler(&SCHEDULER, "timer", |s| assert_eq!(
            s.0,
            ["x"]
        )));
    }

    #[test]
    fn failed_init_leaves_no_state() {
        assert_eq!(
            scheduler_init(&FAILED_SCHEDULER, vec!["bad".into()]),
            Err("bad argument".into())
        );
        FAILED_SCHEDULER.with(|cell| assert!(cell.borrow().is_none()));
        // A retry with good arguments may still succeed.
        assert_eq!(scheduler_init(&FAILED_SCHEDULER, vec![]), Ok(()));
    }
}
