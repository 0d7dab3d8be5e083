//! The size bounds of what tenants send, in one place.
//!
//! Every bound a tenant can reach (through gRPC, WIT or a file) is a constant here, so the
//! master, the agent and the Wasm executor check the same number, and the `.proto`/`.wit` docs
//! can name it. A bound that an input passes through several hops must fit on every hop.

/// The longest guest log line kept, in bytes (a scheduler's or an executor's `log` call): a
/// longer line is cut at a character boundary and ends in `…`.
pub const GUEST_LOG_LINE_MAX_BYTES: usize = 4096;

/// Log lines per second one framework's guests may write on one host (its scheduler on the
/// master; all its executors on one agent), on average. Lines past the budget are dropped and
/// counted, and reported in one line per [`GUEST_LOG_DROP_REPORT_SECONDS`].
pub const GUEST_LOG_LINES_PER_SECOND: u32 = 100;

/// Log lines one framework may write in a burst, above the rate, before lines are dropped.
pub const GUEST_LOG_BURST_LINES: u32 = 1000;

/// Log bytes per second one framework's guests may write on one host, on average (64 KiB).
pub const GUEST_LOG_BYTES_PER_SECOND: u32 = 64 << 10;

/// Log bytes one framework may write in a burst, above the rate (256 KiB): at most this plus
/// [`GUEST_LOG_BYTES_PER_SECOND`] a second reaches a host's log from one framework.
pub const GUEST_LOG_BURST_BYTES: u32 = 256 << 10;

/// How often, at most, the host writes the one line that counts a framework's dropped log
/// lines (`framework X dropped N log lines (M bytes) in the last S s`), in seconds.
pub const GUEST_LOG_DROP_REPORT_SECONDS: u64 = 10;

// A line of the longest kept length fits the burst, so a well-behaved guest is never cut off
// by one long line.
const _: () = assert!(GUEST_LOG_LINE_MAX_BYTES <= GUEST_LOG_BURST_BYTES as usize);

/// Most `driver` calls one hosted scheduler callback may queue (launches, declines, kills,
/// revives, suppresses, reconciles, state-puts, set-timers), applied when the callback returns.
/// The next call past it fails the scheduler (its callback traps, its framework fails with a
/// reason naming this cap): one callback answering 65,536 offers is far beyond any real
/// cluster's agents.
pub const MAX_DRIVER_CALLS_PER_CALLBACK: usize = 65_536;

/// Most bytes of `driver` calls one hosted scheduler callback may queue (their encoded size:
/// task specs, ids, state values), like [`MAX_DRIVER_CALLS_PER_CALLBACK`]: 64 MiB. Without it
/// one callback could queue the same 64 KiB `state-put` a million times on the master. The
/// call that crosses it is still queued; the next one fails the scheduler.
pub const MAX_DRIVER_BYTES_PER_CALLBACK: usize = 64 << 20;

/// Most bytes one call from a guest into the host may copy out of the guest's memory: 64 MiB
/// (as [`MAX_DRIVER_BYTES_PER_CALLBACK`]; wasmtime's "hostcall fuel"). Lists and strings a
/// guest passes are copied before the host looks at them, and one region of guest memory can
/// be named many times: a `launch` of 1,024 tasks whose payloads all point at the same 4 MiB
/// would copy 4 GiB. A call past it traps, failing the scheduler or task with a reason that
/// says too much data was copied.
pub const MAX_GUEST_CALL_BYTES: usize = MAX_DRIVER_BYTES_PER_CALLBACK;

/// Most timers one hosted scheduler may have pending; `driver.set-timer` for a new id past it
/// fails (the guest gets the error; nothing is logged). Setting a pending id again replaces it
/// and is always allowed.
pub const MAX_PENDING_TIMERS: usize = 1024;

/// Most bytes in a Wasm task's payload or a status's `data`. A launch whose payload is larger
/// is refused at the master with an `ERROR` update naming this limit.
pub const MAX_PAYLOAD_BYTES: usize = 4 << 20;

/// Most bytes of a framework message's `data`, either way between a scheduler and one of its
/// executors. A larger one is refused where it enters (the scheduler gets a non-fatal `error`
/// event naming the limit; an executor's `send-message` fails).
pub const MAX_FRAMEWORK_MESSAGE_BYTES: usize = 4 << 20;

/// Most bytes of a command task's program, arguments and environment together (names and
/// values), so that one task's spec has a bound whatever its kind.
pub const MAX_COMMAND_BYTES: usize = 1 << 20;

/// Most bytes of one task's spec on the wire (`TaskInfo`, encoded): the larger of a payload
/// and a command, plus its ids (each at most [`crate::ids::MAX_ID_LEN`]), its name (at most
/// 1,024 bytes), its resources and the protobuf framing of up to
/// [`crate::launch::MAX_COMMAND_ITEMS`] command items, for which 64 KiB is ample.
pub const MAX_TASK_WIRE_BYTES: usize = MAX_PAYLOAD_BYTES + (64 << 10);

/// Largest gRPC message the master accepts from schedulers and operators by default
/// (`MasterConfig::max_message_bytes`), in bytes: 16 MiB. Clients that receive updates with
/// `data` or framework messages must decode at least [`MAX_PAYLOAD_BYTES`] plus framing;
/// tonic's default of 4 MiB is not enough.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Largest gRPC message either end of an agent's session sends or accepts, in bytes (16 MiB;
/// tonic's default is 4 MiB). Set explicitly on both ends: the master's `AgentService` and
/// the agent's client. Whatever the master sends an agent is cut to fit it: a launch is split
/// into several `RunTasks` of at most [`RUN_TASKS_BUDGET_BYTES`] of tasks each, and the agent
/// splits its status batches the same way.
pub const AGENT_SESSION_MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Room left in a message for what surrounds its bounded items: the envelope, ids, a role
/// and a component digest (64 KiB).
pub const MESSAGE_FRAMING_BYTES: usize = 64 << 10;

/// Most bytes of encoded tasks in one `RunTasks` to an agent; a launch with more is sent as
/// several `RunTasks`, in order.
pub const RUN_TASKS_BUDGET_BYTES: usize = AGENT_SESSION_MAX_MESSAGE_BYTES - MESSAGE_FRAMING_BYTES;

/// Most bytes of encoded status updates in one `StatusUpdates` from an agent; a larger batch
/// is sent as several.
pub const STATUS_BATCH_BUDGET_BYTES: usize =
    AGENT_SESSION_MAX_MESSAGE_BYTES - MESSAGE_FRAMING_BYTES;

// What the API accepts fits every hop that carries it, with room for framing.
// A task of the largest spec fits one `RunTasks` to an agent.
const _: () = assert!(MAX_TASK_WIRE_BYTES <= RUN_TASKS_BUDGET_BYTES);
// A command of the largest size, with framing of its items, fits a task's spec.
const _: () = assert!(
    MAX_COMMAND_BYTES + crate::launch::MAX_COMMAND_ITEMS * 16 + (8 << 10) <= MAX_TASK_WIRE_BYTES
);
// A scheduler's accept of one task of the largest spec fits the master's default limit.
const _: () = assert!(MAX_TASK_WIRE_BYTES + MESSAGE_FRAMING_BYTES <= MAX_MESSAGE_BYTES);
// A framework message fits the agent's session, and a scheduler's call carrying it.
const _: () =
    assert!(MAX_FRAMEWORK_MESSAGE_BYTES + MESSAGE_FRAMING_BYTES <= AGENT_SESSION_MAX_MESSAGE_BYTES);
const _: () = assert!(MAX_FRAMEWORK_MESSAGE_BYTES + MESSAGE_FRAMING_BYTES <= MAX_MESSAGE_BYTES);
// An agent's status update with the largest data fits one `StatusUpdates`.
const _: () = assert!(MAX_PAYLOAD_BYTES + MESSAGE_FRAMING_BYTES <= STATUS_BATCH_BUDGET_BYTES);
// The largest `RunTasks` (a budget of tasks plus framing) fits the agent's decode limit.
const _: () =
    assert!(RUN_TASKS_BUDGET_BYTES + MESSAGE_FRAMING_BYTES <= AGENT_SESSION_MAX_MESSAGE_BYTES);

/// Most tasks one `Accept` (or a hosted scheduler's `driver.launch`) may launch. A call with
/// more is refused whole, before any task is read, with an `Error` event (a hosted scheduler:
/// the call's error) naming this cap and the count; the offers it named return to the pool.
///
/// 1,024 tasks of small specs make a `RunTasks` to the agent of about 150 KB, far below
/// [`AGENT_SESSION_MAX_MESSAGE_BYTES`]; tasks with large payloads are split over several
/// `RunTasks` (see [`RUN_TASKS_BUDGET_BYTES`]). The cap also stays below the master's default event queue
/// per scheduler (4,096), so the `ERROR` updates of one refused launch fit in an idle queue.
pub const MAX_TASKS_PER_LAUNCH: usize = 1024;

/// Most offer ids one `Accept` (or `driver.launch`) may name; a call with more is refused
/// whole, like one with more than [`MAX_TASKS_PER_LAUNCH`] tasks. All offers of one accept are
/// of one agent, and an agent has at most one outstanding offer per framework, so a real
/// accept names one or a few.
pub const MAX_OFFERS_PER_ACCEPT: usize = 256;

/// Problems a refused launch's message names; the rest are only counted
/// (`... and 9,995 more problems`).
pub const REFUSAL_PROBLEMS_LISTED: usize = 5;

/// Most bytes of a refused launch's message. The message is copied into every named task's
/// `ERROR` update, so it must not grow with the number of tasks: it names the first
/// [`REFUSAL_PROBLEMS_LISTED`] problems, each cut to fit, and counts the rest.
pub const MAX_REFUSAL_MESSAGE_BYTES: usize = 2048;

/// Most updates about tasks the master does not hold (`LOST` answers for unknown tasks in a
/// reconciliation or kill, `ERROR` updates of a refused launch) it keeps per framework and
/// resends until acknowledged, like every other update; one past it, such an update is sent
/// once and not resent (reconcile the task again to ask). Updates about tasks the master holds
/// are not counted here: they are bounded by the framework's tasks.
pub const MAX_RESENT_ANSWERS_PER_FRAMEWORK: usize = 4 * MAX_TASKS_PER_LAUNCH;

/// Most bytes of a task status's `message` (an agent's reason for a failed task, an executor's
/// progress, the master's own reasons). A longer one is cut by the agent, and again by the
/// master for updates from any agent, to end in [`STATUS_MESSAGE_CUT_MARKER`]
/// ([`cut_status_message`]).
pub const MAX_STATUS_MESSAGE_BYTES: usize = 4096;

/// What a cut status message ends with.
pub const STATUS_MESSAGE_CUT_MARKER: &str = "… [message truncated]";

/// `message` cut to at most [`MAX_STATUS_MESSAGE_BYTES`] bytes at a character boundary,
/// ending in [`STATUS_MESSAGE_CUT_MARKER`] when cut; unchanged when it fits.
pub fn cut_status_message(message: String) -> String {
    if message.len() <= MAX_STATUS_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_STATUS_MESSAGE_BYTES - STATUS_MESSAGE_CUT_MARKER.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{STATUS_MESSAGE_CUT_MARKER}", &message[..end])
}

/// The first control character in `s` (C0, DEL, C1: what can forge lines or drive a
/// terminal), with its byte offset. Names shown to people (a framework's name and principal,
/// a task's name) are refused when they hold one.
pub fn first_control_char(s: &str) -> Option<(usize, char)> {
    s.char_indices().find(|(_, c)| c.is_control())
}

/// Why an `Accept` is too large to be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcceptTooLarge {
    /// More tasks than [`MAX_TASKS_PER_LAUNCH`].
    #[error(
        "launch refused: it has {count} tasks; at most {MAX_TASKS_PER_LAUNCH} may be launched \
         in one call, so split it over several offers or calls"
    )]
    Tasks {
        /// The number of tasks in the call.
        count: usize,
    },
    /// More offer ids than [`MAX_OFFERS_PER_ACCEPT`].
    #[error(
        "launch refused: it names {count} offer ids; at most {MAX_OFFERS_PER_ACCEPT} may be \
         named in one call (all of one agent)"
    )]
    Offers {
        /// The number of offer ids in the call.
        count: usize,
    },
}

/// Checks the two counts of an `Accept` (or `driver.launch`) against their caps.
pub fn check_accept_size(offer_ids: usize, tasks: usize) -> Result<(), AcceptTooLarge> {
    if tasks > MAX_TASKS_PER_LAUNCH {
        return Err(AcceptTooLarge::Tasks { count: tasks });
    }
    if offer_ids > MAX_OFFERS_PER_ACCEPT {
        return Err(AcceptTooLarge::Offers { count: offer_ids });
    }
    Ok(())
}

/// The message of a refused launch: `launch refused: ` and the first
/// [`REFUSAL_PROBLEMS_LISTED`] problems, `; `-separated, then a count of the rest; at most
/// [`MAX_REFUSAL_MESSAGE_BYTES`] bytes however many problems there are or however long they
/// are (a long problem is cut, ending in `…`).
pub fn refusal_message(problems: &[String]) -> String {
    const PREFIX: &str = "launch refused: ";
    // Room for the count of the rest ("; ... and 18446744073709551615 more problems").
    const TAIL_ROOM: usize = 64;
    let per_problem =
        (MAX_REFUSAL_MESSAGE_BYTES - PREFIX.len() - TAIL_ROOM) / REFUSAL_PROBLEMS_LISTED - 2;
    let mut out = String::from(PREFIX);
    for (i, p) in problems.iter().take(REFUSAL_PROBLEMS_LISTED).enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&cut(p, per_problem));
    }
    let rest = problems.len().saturating_sub(REFUSAL_PROBLEMS_LISTED);
    if rest > 0 {
        out.push_str(&format!(
            "; ... and {rest} more problem{}",
            if rest == 1 { "" } else { "s" }
        ));
    }
    out
}

/// `s` cut to at most `max` bytes at a character boundary, ending in `…` when cut.
fn cut(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end]).into()
}

/// Most events (progress updates and framework messages) one running Wasm task may have queued
/// on its agent and not yet sent on: 64. Past it (or past
/// [`MAX_QUEUED_EXECUTOR_EVENT_BYTES`]) the guest's `send-framework-message` traps, failing the
/// task with a reason naming the cap, and a `progress` is coalesced with the next (the latest
/// wins). An event is counted from the guest's call until the agent has handed it to its master
/// session, so a guest that sends faster than the agent forwards, or while the agent is
/// disconnected, holds at most this much of the agent's memory.
pub const MAX_QUEUED_EXECUTOR_EVENTS: usize = 64;

/// Most bytes (messages' lengths) of the events one running Wasm task may have queued on its
/// agent: 16 MiB, four framework messages of the largest size
/// ([`MAX_FRAMEWORK_MESSAGE_BYTES`]). See [`MAX_QUEUED_EXECUTOR_EVENTS`].
pub const MAX_QUEUED_EXECUTOR_EVENT_BYTES: usize = 16 << 20;

const _: () = assert!(MAX_FRAMEWORK_MESSAGE_BYTES <= MAX_QUEUED_EXECUTOR_EVENT_BYTES);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_lists_a_few_problems_and_counts_the_rest() {
        let problems: Vec<String> = (0..10_000).map(|i| format!("task t{i}: bad")).collect();
        let m = refusal_message(&problems);
        assert!(m.len() <= MAX_REFUSAL_MESSAGE_BYTES, "{}", m.len());
        assert!(
            m.starts_with("launch refused: task t0: bad; task t1: bad"),
            "{m}"
        );
        assert!(m.contains("task t4: bad") && !m.contains("task t5:"), "{m}");
        assert!(m.ends_with("... and 9995 more problems"), "{m}");
    }

    #[test]
    fn a_refusal_at_the_listed_bound_counts_nothing() {
        let at: Vec<String> = (0..REFUSAL_PROBLEMS_LISTED)
            .map(|i| format!("p{i}"))
            .collect();
        assert!(!refusal_message(&at).contains("more problem"));
        let past: Vec<String> = (0..=REFUSAL_PROBLEMS_LISTED)
            .map(|i| format!("p{i}"))
            .collect();
        assert!(refusal_message(&past).ends_with("... and 1 more problem"));
    }

    #[test]
    fn long_problems_are_cut_to_the_bound() {
        let problems = vec!["é".repeat(100_000); 7];
        let m = refusal_message(&problems);
        assert!(m.len() <= MAX_REFUSAL_MESSAGE_BYTES, "{}", m.len());
        assert!(
            m.contains('…') && m.ends_with("... and 2 more problems"),
            "{m}"
        );
    }

    #[test]
    fn status_messages_are_cut_at_the_bound_with_a_marker() {
        let at = "m".repeat(MAX_STATUS_MESSAGE_BYTES);
        assert_eq!(cut_status_message(at.clone()), at, "at the bound");
        let past = cut_status_message("m".repeat(MAX_STATUS_MESSAGE_BYTES + 1));
        assert_eq!(past.len(), MAX_STATUS_MESSAGE_BYTES, "one past");
        assert!(past.ends_with(STATUS_MESSAGE_CUT_MARKER));
        let far = cut_status_message("é".repeat(10 << 20));
        assert!(far.len() <= MAX_STATUS_MESSAGE_BYTES && far.ends_with(STATUS_MESSAGE_CUT_MARKER));
    }

    #[test]
    fn accept_sizes_at_one_past_and_far_past_the_caps() {
        assert_eq!(
            check_accept_size(MAX_OFFERS_PER_ACCEPT, MAX_TASKS_PER_LAUNCH),
            Ok(())
        );
        assert_eq!(
            check_accept_size(1, MAX_TASKS_PER_LAUNCH + 1),
            Err(AcceptTooLarge::Tasks {
                count: MAX_TASKS_PER_LAUNCH + 1
            })
        );
        assert_eq!(
            check_accept_size(MAX_OFFERS_PER_ACCEPT + 1, 1),
            Err(AcceptTooLarge::Offers {
                count: MAX_OFFERS_PER_ACCEPT + 1
            })
        );
        let far = check_accept_size(1, 100_000).unwrap_err().to_string();
        assert!(
            far.contains("100000 tasks") && far.contains("1024"),
            "{far}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// What a framework component may contain.

/// Bounds on what a component contains, checked by
/// [`crate::component_contents::check_contents`] before anything compiles it: at the master's
/// upload (`UploadComponent` is refused with `INVALID_ARGUMENT` naming the bound) and in the
/// Wasm runtime before it compiles (the agent and the framework host). Compiling costs memory
/// and time in proportion to these, not to the file's size. The values in use are
/// [`COMPONENT_BOUNDS`]; tests build smaller ones.
///
/// The example frameworks (Rust `pi`, `logreg`, `service`, `hostile`, `benchguest`,
/// `wrongworld` and C `primes`, release builds of 50–200 KB) have at most 315 functions,
/// 131 KB of code, a largest function body of 10.5 KB, depth 2, 31 KB of data, 5 core modules,
/// 25 instances and 143 imports and exports (measured by the test
/// `every_example_fits_with_room_to_spare`, which also checks that each fits a quarter of every
/// bound). Each bound is 20 to 100 times that, so a framework many times our largest fits.
///
/// A framework written in JavaScript carries its engine: the JavaScript example (`squares`,
/// componentize-js 0.23 with StarlingMonkey, 12 MB) has 12,741 functions, 9.2 MB of code,
/// a largest body of 172 KB, 2.8 MB of data (the engine's snapshot) and 4 core modules,
/// whatever the size of the script (which is data), measured by
/// `every_js_example_fits_half_of_every_bound`, which checks that each fits half of every
/// bound. [`MAX_COMPONENT_CODE_BYTES`] and [`MAX_COMPONENT_FUNCTIONS`] were raised for it
/// (from 8 MiB and 20,000); what compiling such a component costs is bounded by the compiler
/// child's memory and time budget (`--compile-memory-mb`, `--compile-timeout`) as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentBounds {
    /// Most functions defined in all core modules together, used or not
    /// ([`MAX_COMPONENT_FUNCTIONS`]).
    pub max_functions: u64,
    /// Most bytes of all code sections together ([`MAX_COMPONENT_CODE_BYTES`]).
    pub max_code_bytes: u64,
    /// Most bytes of one function's body ([`MAX_FUNCTION_BODY_BYTES`]).
    pub max_function_body_bytes: u64,
    /// Deepest nesting of components and modules, the top-level component being 1
    /// ([`MAX_COMPONENT_DEPTH`]).
    pub max_depth: u64,
    /// Most bytes of all data segments together ([`MAX_COMPONENT_DATA_BYTES`]).
    pub max_data_bytes: u64,
    /// Most core modules, nested at any depth ([`MAX_COMPONENT_CORE_MODULES`]).
    pub max_core_modules: u64,
    /// Most core and component instances together ([`MAX_COMPONENT_INSTANCES`]).
    pub max_instances: u64,
    /// Most imports and exports of all modules and components together
    /// ([`MAX_COMPONENT_IMPORTS_EXPORTS`]).
    pub max_imports_exports: u64,
}

/// Most functions in a component's core modules, used or not: 50,000 (the largest Rust or C
/// example has 315; the JavaScript one, whose engine is compiled in, 12,741: the bound is four times that). The compiler's memory grows with the count: a component
/// with 100,000 empty functions in a module nothing instantiates took a master to 1.2 GB.
pub const MAX_COMPONENT_FUNCTIONS: u64 = 50_000;
/// Most bytes of code in a component: 32 MiB (the largest Rust or C example has 131 KB; the
/// JavaScript one, StarlingMonkey's engine, 9.2 MB, over the 8 MiB this was before; 32 MiB
/// leaves room for an engine build three times that, such as an ahead-of-time compiled one).
pub const MAX_COMPONENT_CODE_BYTES: u64 = 32 << 20;
/// Most bytes in one function body: 512 KiB (the largest example's is 10.5 KB). The
/// compiler's memory and time grow faster than linearly with one function's size.
pub const MAX_FUNCTION_BODY_BYTES: u64 = 512 << 10;
/// Deepest nesting of components and core modules: 8 (the examples have 2: a component and
/// its core modules).
pub const MAX_COMPONENT_DEPTH: u64 = 8;
/// Most bytes of data segments in a component: 16 MiB (the examples have at most 31 KB).
pub const MAX_COMPONENT_DATA_BYTES: u64 = 16 << 20;
/// Most core modules in a component: 100 (the examples have at most 5).
pub const MAX_COMPONENT_CORE_MODULES: u64 = 100;
/// Most core and component instances in a component: 1,000 (the examples have at most 25).
pub const MAX_COMPONENT_INSTANCES: u64 = 1_000;
/// Most imports and exports in a component and its modules: 10,000 (the examples have at
/// most 143).
pub const MAX_COMPONENT_IMPORTS_EXPORTS: u64 = 10_000;

/// The bounds every wasmos component is held to.
pub const COMPONENT_BOUNDS: ComponentBounds = ComponentBounds {
    max_functions: MAX_COMPONENT_FUNCTIONS,
    max_code_bytes: MAX_COMPONENT_CODE_BYTES,
    max_function_body_bytes: MAX_FUNCTION_BODY_BYTES,
    max_depth: MAX_COMPONENT_DEPTH,
    max_data_bytes: MAX_COMPONENT_DATA_BYTES,
    max_core_modules: MAX_COMPONENT_CORE_MODULES,
    max_instances: MAX_COMPONENT_INSTANCES,
    max_imports_exports: MAX_COMPONENT_IMPORTS_EXPORTS,
};

/// Longest wall-clock deadline a framework (`FrameworkInfo.wasm_task_timeout_seconds`) or a
/// task (`WasmTask.timeout_seconds`) may ask for its Wasm tasks, in seconds: 7 days. The
/// master refuses more (INVALID_ARGUMENT at subscribe, an `ERROR` update at launch). Each
/// agent applies its own, usually lower, maximum too (`wasmos agent --max-wasm-task-timeout`,
/// by default 24 h). Long-running services belong in command tasks, which have no deadline.
pub const MAX_WASM_TASK_TIMEOUT_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// Largest fuel budget a framework (`FrameworkInfo.wasm_task_fuel`) or a task
/// (`WasmTask.fuel`) may ask for its Wasm tasks: 10^13 units (about one per Wasm instruction;
/// hours of CPU). The master refuses more like [`MAX_WASM_TASK_TIMEOUT_SECONDS`]; each agent
/// applies its own maximum too (`wasmos agent --max-wasm-task-fuel`, by default 10^12).
pub const MAX_WASM_TASK_FUEL: u64 = 10_000_000_000_000;
