//! Operator commands against a master's `OperatorService`: `wasmos agents`, `wasmos
//! frameworks` and `wasmos tasks` print what `GetState` returns as aligned tables (or, with
//! `--json`, as a JSON array of objects for scripts); `wasmos kill` (`KillTask`) and `wasmos
//! teardown` (`TeardownFramework`) act through the master, exactly as a framework's own kill and
//! teardown calls do.
//!
//! Exit status: 0 on success; 1 when the master refused (an unknown id, a task that already
//! ended, an unreachable agent) or a killed task was still alive when `--timeout` passed; 2
//! when the master cannot be reached or the address is bad.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasmos_api::proto as pb;
use wasmos_api::{TaskState, convert};

use crate::client::{self, DEFAULT_MASTER, Failure, OperatorClient, status_text_at};
use crate::display::{escape_controls, escape_controls_keep_lines};

/// How often `wasmos kill` looks at the task while it waits for it to end.
const KILL_POLL: Duration = Duration::from_millis(100);
/// Longest message shown in the tasks table (the JSON has it whole).
const MAX_MESSAGE_CHARS: usize = 60;

/// Which master to ask.
#[derive(clap::Args)]
pub struct MasterArg {
    /// The master (`host:port` or `http://host:port`), or several masters of one group,
    /// comma-separated: the leader among them is asked.
    #[arg(long, value_name = "ADDR[,ADDR...]", env = "WASMOS_MASTER", default_value = DEFAULT_MASTER)]
    pub(crate) master: String,
}

const AGENTS_JSON: &str = "\
With --json, prints a JSON array with one object per agent:
  id, hostname, address (strings); reachable (bool: heartbeating); state (\"reachable\" or
  \"unreachable\"); health ({healthy (bool), reason (string, or null when healthy)}: an
  unhealthy agent, one whose store cannot write, takes no tasks and none of it is offered; the
  table's STATE then reads \"unhealthy: REASON\"); active_tasks (number of non-terminal tasks);
  attributes (object of strings);
  isolation (array of the pieces of native-task isolation on: user, mount, pid, no_new_privs,
  caps, seccomp; empty while the agent is not connected); isolation_warning (string: the
  pieces it runs without because its operator passed --allow-weak-isolation, or null);
  total, used, available (resources: what it has, what its non-terminal tasks use, what is
  neither used nor offered). Resources are objects {cpus (number of cores), mem_mb, disk_mb}.

Example:
  wasmos agents --master 10.0.0.1:5050
  wasmos agents --json | jq -r '.[] | select(.reachable | not) | .hostname'";

const FRAMEWORKS_JSON: &str = "\
With --json, prints a JSON array with one object per registered framework:
  id, name, role, principal (strings); hosted (bool: its scheduler runs inside the master);
  connected (bool: its scheduler is connected); active_tasks (number of non-terminal tasks);
  tasks_finished, tasks_failed (numbers of its tasks that ended FINISHED, or in another terminal
  state, as far as the current leader knows); tasks_total (number its scheduler said it runs in
  all, or null); waiting (string: why it has waited for resources for more than 3 s, e.g.
  \"waiting: no agent registered\", empty when it does not; `wasmos status ID` shows more);
  offers (number of outstanding offers); used (resources of its non-terminal tasks); allocated
  (used plus offered); failover_timeout_seconds (number); component_sha256 (string, empty when
  none). Resources are objects {cpus (number of cores), mem_mb, disk_mb}.
With --all, completed frameworks follow, each with completed (true; false on registered ones),
  outcome (\"succeeded\", \"failed\" or \"torn_down\"), result (its result, failure or why it
  was removed, at most 4 KiB), registered_unix_ms (0 when it registered with an earlier leader),
  ended_unix_ms, tasks_finished, tasks_failed, completed_tasks (numbers).

Example:
  wasmos frameworks
  wasmos frameworks --all --json | jq -r '.[].id'";

const TASKS_JSON: &str = "\
With --json, prints a JSON array with one object per task the master knows:
  id, name, framework_id, framework_name, agent_id, agent_hostname (strings); state (\"STAGING\",
  \"STARTING\", \"RUNNING\", \"FINISHED\", \"FAILED\", \"KILLED\", \"LOST\", \"ERROR\" or
  \"UNREACHABLE\"); message (string: why it is in that state, may be empty); resources ({cpus
  (number of cores), mem_mb, disk_mb}); completed (bool). A task leaves the list once it ended
  and its framework acknowledged that; with --all it is then listed as completed (true), with
  launched_unix_ms, ended_unix_ms and result_bytes (numbers) and resources null.

Example:
  wasmos tasks --framework fw-1a2b3c-2
  wasmos tasks --all --state killed";

/// `wasmos agents`.
#[derive(clap::Args)]
#[command(after_help = AGENTS_JSON)]
pub struct AgentsArgs {
    #[command(flatten)]
    master: MasterArg,
    /// Print a JSON array of objects instead of a table (fields below).
    #[arg(long)]
    json: bool,
}

/// `wasmos frameworks`.
#[derive(clap::Args)]
#[command(after_help = FRAMEWORKS_JSON)]
pub struct FrameworksArgs {
    #[command(flatten)]
    master: MasterArg,
    /// Also the completed frameworks the leader remembers (their STATE is how they ended:
    /// succeeded, failed or torn_down), newest first after the registered ones.
    #[arg(long)]
    all: bool,
    /// Print a JSON array of objects instead of a table (fields below).
    #[arg(long)]
    json: bool,
}

/// `wasmos state`.
#[derive(clap::Args)]
#[command(after_help = STATE_HELP)]
pub struct StateArgs {
    /// The framework's id.
    framework_id: String,
    /// Only this key: its value is printed as stored (raw bytes when stdout is not a
    /// terminal; control characters escaped on one).
    key: Option<String>,
    #[command(flatten)]
    master: MasterArg,
    /// Print a JSON array of objects instead of a table (fields below).
    #[arg(long)]
    json: bool,
}

const STATE_HELP: &str = "\
Without KEY, a table of KEY, BYTES and VALUE (the first 60 characters of a UTF-8 value, or
<N bytes of binary>). With --json, an array of objects: key (string), bytes (number), value
(string when the value is UTF-8, else null), value_hex (string).

Example:
  wasmos state fw-1a2b3c-2              # every key the framework's scheduler stored
  wasmos state fw-1a2b3c-2 service      # one value, as stored";

/// `wasmos tasks`.
#[derive(clap::Args)]
#[command(after_help = TASKS_JSON)]
pub struct TasksArgs {
    #[command(flatten)]
    master: MasterArg,
    /// Only the tasks of this framework.
    #[arg(long, value_name = "FRAMEWORK_ID")]
    framework: Option<String>,
    /// Also the completed tasks the leader remembers (those that ended and were
    /// acknowledged; at most 1,000 per framework by default, none from before a failover).
    #[arg(long)]
    all: bool,
    /// Only tasks in this state (running, finished, failed, killed, lost, ...).
    #[arg(long, value_name = "STATE", value_parser = crate::history::parse_state)]
    state: Option<pb::TaskState>,
    /// Only tasks on this agent.
    #[arg(long, value_name = "AGENT_ID")]
    agent: Option<String>,
    /// Print a JSON array of objects instead of a table (fields below).
    #[arg(long)]
    json: bool,
}

/// `wasmos kill`.
#[derive(clap::Args)]
pub struct KillArgs {
    /// The task to kill.
    task_id: String,
    /// The task's framework; needed only when several frameworks use the same task id.
    #[arg(long, value_name = "FRAMEWORK_ID")]
    framework: Option<String>,
    #[command(flatten)]
    master: MasterArg,
    /// How long to wait for the task to end (0 to return as soon as the kill is sent).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::duration_secs)]
    timeout: Duration,
}

/// `wasmos teardown`.
#[derive(clap::Args)]
pub struct TeardownArgs {
    /// The framework to tear down.
    framework_id: String,
    #[command(flatten)]
    master: MasterArg,
}

/// `wasmos components ...`.
#[derive(clap::Subcommand)]
pub enum ComponentsCommand {
    /// Delete a component from the masters' blob store; refused while a registered framework
    /// names it. Components no framework names are also collected after a grace period.
    #[command(
        after_help = "Example:\n  wasmos components delete 3f5a...e9   # a sha256 from `wasmos frameworks`"
    )]
    Delete(DeleteComponentArgs),
}

/// Arguments of `wasmos components delete`.
#[derive(clap::Args)]
pub struct DeleteComponentArgs {
    /// The component's sha256 (64 hex digits, as `wasmos submit` and `wasmos frameworks` show).
    sha256: String,
    #[command(flatten)]
    master: MasterArg,
}

/// What went wrong, and the exit status it gives.
enum OpError {
    /// The master refused, or the outcome was not reached (exit 1).
    Refused(String),
    /// The master cannot be reached or the address is bad (exit 2).
    Unreachable(String),
}

impl From<Failure> for OpError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Refused(m) | Failure::Failed(m) => OpError::Unreachable(m),
        }
    }
}

impl OpError {
    /// A call the master answered with an error (the connection itself was made).
    fn from_status(master: &str, s: &tonic::Status) -> Self {
        OpError::Refused(status_text_at(master, s))
    }
}

fn exit(who: &str, r: Result<(), OpError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(OpError::Refused(m)) => {
            eprintln!("{who}: {}", escape_controls_keep_lines(&m));
            ExitCode::from(1)
        }
        Err(OpError::Unreachable(m)) => {
            eprintln!("{who}: {}", escape_controls_keep_lines(&m));
            ExitCode::from(2)
        }
    }
}

async fn state(op: &mut OperatorClient, master: &str) -> Result<pb::ClusterState, OpError> {
    op.get_state(pb::GetStateRequest {})
        .await
        .map(|r| r.into_inner())
        .map_err(|s| OpError::from_status(master, &s))
}

async fn fetch_state(master: &str) -> Result<pb::ClusterState, OpError> {
    let (mut op, leader) = client::connect_leader(master).await?;
    state(&mut op, &leader).await
}

/// Cores as a short decimal: 1500 millicpus → `1.5`.
fn cpus(millicpus: u64) -> String {
    wasmos_api::resources::cpus_text(millicpus)
}

fn resources_json(r: Option<&pb::Resources>) -> Value {
    let r = r.copied().unwrap_or_default();
    json!({
        "cpus": r.millicpus as f64 / 1000.0,
        "mem_mb": r.mem_mb,
        "disk_mb": r.disk_mb,
    })
}

/// `TASK_STATE_RUNNING` → `RUNNING`.
fn state_name(raw: i32) -> String {
    pb::TaskState::try_from(raw)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("TASK_STATE_")
                .to_string()
        })
        .unwrap_or_else(|_| format!("STATE_{raw}"))
}

/// Whether the wire state `raw` is terminal; `Unspecified` and values this build does not know
/// are not (the task is then waited for, and its raw number shown).
fn is_terminal(raw: i32) -> bool {
    convert::task_state("state", raw).is_ok_and(TaskState::is_terminal)
}

/// Prints rows under a header, each column as wide as its widest cell, two spaces apart; an
/// empty cell shows as `-`, so that every row has as many words as columns. Control
/// characters in a cell are escaped ([`escape_controls`]), so a cell is one line.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", render_table(header, rows));
}

/// The text [`print_table`] prints.
fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| {
                    if c.is_empty() {
                        "-".into()
                    } else {
                        escape_controls(c).into_owned()
                    }
                })
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        text.push_str(out.trim_end());
        text.push('\n');
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    text
}

fn print_json(items: Vec<Value>) {
    println!(
        "{}",
        serde_json::to_string_pretty(&Value::Array(items)).unwrap_or_else(|_| "[]".into())
    );
}

fn cut(s: &str, max: usize) -> String {
    let s = s.replace(['\n', '\r', '\t'], " ");
    if s.chars().count() <= max {
        s
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// An agent's health in `wasmos agents --json`: `{"healthy": bool, "reason": string|null}`.
fn health_json(a: &pb::AgentSummary) -> Value {
    if a.unhealthy_reason.is_empty() {
        json!({ "healthy": true, "reason": null })
    } else {
        json!({ "healthy": false, "reason": a.unhealthy_reason })
    }
}

/// `wasmos agents`.
pub async fn agents(args: AgentsArgs) -> ExitCode {
    exit("wasmos agents", agents_inner(args).await)
}

async fn agents_inner(args: AgentsArgs) -> Result<(), OpError> {
    let state = fetch_state(&args.master.master).await?;
    if args.json {
        let items = state
            .agents
            .iter()
            .map(|a| {
                let info = a.info.clone().unwrap_or_default();
                let attributes: serde_json::Map<String, Value> = info
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), Value::String(kv.value.clone())))
                    .collect();
                json!({
                    "id": info.id,
                    "hostname": info.hostname,
                    "address": info.address,
                    "reachable": a.reachable,
                    "state": if a.reachable { "reachable" } else { "unreachable" },
                    "health": health_json(a),
                    "isolation": a.isolation,
                    "isolation_warning": (!a.isolation_warning.is_empty())
                        .then_some(a.isolation_warning.as_str()),
                    "active_tasks": a.active_tasks,
                    "attributes": attributes,
                    "total": resources_json(info.resources.as_ref()),
                    "used": resources_json(a.used.as_ref()),
                    "available": resources_json(a.available.as_ref()),
                })
            })
            .collect();
        print_json(items);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = state
        .agents
        .iter()
        .map(|a| {
            let info = a.info.clone().unwrap_or_default();
            let total = info.resources.unwrap_or_default();
            let used = a.used.unwrap_or_default();
            let attributes: Vec<String> = info
                .attributes
                .iter()
                .map(|kv| format!("{}:{}", kv.key, kv.value))
                .collect();
            vec![
                info.id,
                info.hostname,
                info.address,
                match (a.reachable, a.unhealthy_reason.is_empty()) {
                    (false, _) => "unreachable".into(),
                    (true, true) => "reachable".into(),
                    (true, false) => format!("unhealthy: {}", a.unhealthy_reason),
                },
                a.active_tasks.to_string(),
                format!("{}/{}", cpus(used.millicpus), cpus(total.millicpus)),
                format!("{}/{}", used.mem_mb, total.mem_mb),
                attributes.join(","),
                match (a.isolation.is_empty(), a.isolation_warning.is_empty()) {
                    (true, true) => "none".into(),
                    (_, true) => a.isolation.join(","),
                    (_, false) => {
                        format!("{} (weak: {})", a.isolation.join(","), a.isolation_warning)
                    }
                },
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "HOSTNAME",
            "ADDRESS",
            "STATE",
            "TASKS",
            "CPUS USED/TOTAL",
            "MEM MIB USED/TOTAL",
            "ATTRIBUTES",
            "ISOLATION",
        ],
        &rows,
    );
    Ok(())
}

/// `wasmos frameworks`.
pub async fn frameworks(args: FrameworksArgs) -> ExitCode {
    exit("wasmos frameworks", frameworks_inner(args).await)
}

async fn frameworks_inner(args: FrameworksArgs) -> Result<(), OpError> {
    let (mut op, leader) = client::connect_leader(&args.master.master).await?;
    let state = state(&mut op, &leader).await?;
    let completed = if args.all {
        crate::history::completed_frameworks(&mut op)
            .await
            .map_err(|s| OpError::from_status(&leader, &s))?
    } else {
        Vec::new()
    };
    if args.json {
        let mut items: Vec<Value> = state
            .frameworks
            .iter()
            .map(|f| {
                let info = f.info.clone().unwrap_or_default();
                json!({
                    "id": info.id,
                    "name": info.name,
                    "role": info.role,
                    "principal": info.principal,
                    "hosted": f.hosted,
                    "connected": f.connected,
                    "active_tasks": f.active_tasks,
                    "tasks_finished": f.tasks_finished,
                    "tasks_failed": f.tasks_failed,
                    "tasks_total": f.tasks_total,
                    "waiting": f.waiting,
                    "offers": f.offers,
                    "used": resources_json(f.used.as_ref()),
                    "allocated": resources_json(f.allocated.as_ref()),
                    "failover_timeout_seconds": info.failover_timeout_seconds,
                    "component_sha256": info.component_sha256,
                    "completed": false,
                })
            })
            .collect();
        items.extend(completed.iter().map(crate::history::framework_json));
        print_json(items);
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = state
        .frameworks
        .iter()
        .map(|f| {
            let info = f.info.clone().unwrap_or_default();
            let used = f.used.unwrap_or_default();
            vec![
                info.id,
                info.name,
                info.role,
                info.principal,
                if f.hosted { "hosted" } else { "external" }.into(),
                if f.connected {
                    "connected"
                } else {
                    "disconnected"
                }
                .into(),
                f.active_tasks.to_string(),
                cpus(used.millicpus),
                used.mem_mb.to_string(),
                f.offers.to_string(),
            ]
        })
        .collect();
    rows.extend(completed.iter().map(crate::history::framework_row));
    print_table(
        &[
            "ID",
            "NAME",
            "ROLE",
            "PRINCIPAL",
            "SCHEDULER",
            "STATE",
            "TASKS",
            "CPUS",
            "MEM MIB",
            "OFFERS",
        ],
        &rows,
    );
    Ok(())
}

/// `wasmos tasks`.
pub async fn tasks(args: TasksArgs) -> ExitCode {
    exit("wasmos tasks", tasks_inner(args).await)
}

async fn tasks_inner(args: TasksArgs) -> Result<(), OpError> {
    let (mut op, leader) = client::connect_leader(&args.master.master).await?;
    let state = state(&mut op, &leader).await?;
    let (completed, completed_frameworks) = if args.all {
        let refused = |s: tonic::Status| OpError::from_status(&leader, &s);
        let filter = pb::ListCompletedTasksRequest {
            framework_id: args.framework.clone().unwrap_or_default(),
            agent_id: args.agent.clone().unwrap_or_default(),
            state: args.state.map_or(0, |s| s as i32),
            ..Default::default()
        };
        (
            crate::history::completed_tasks(&mut op, filter)
                .await
                .map_err(refused)?,
            crate::history::completed_frameworks(&mut op)
                .await
                .map_err(refused)?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let framework_names: HashMap<&str, &str> = state
        .frameworks
        .iter()
        .filter_map(|f| f.info.as_ref())
        .map(|i| (i.id.as_str(), i.name.as_str()))
        .chain(
            completed_frameworks
                .iter()
                .map(|f| (f.framework_id.as_str(), f.name.as_str())),
        )
        .collect();
    let hostnames: HashMap<&str, &str> = state
        .agents
        .iter()
        .filter_map(|a| a.info.as_ref())
        .map(|i| (i.id.as_str(), i.hostname.as_str()))
        .collect();
    if let Some(fw) = &args.framework
        && !framework_names.contains_key(fw.as_str())
    {
        return Err(OpError::Refused(format!(
            "framework {fw} is not registered with the master at {}; `wasmos frameworks` lists \
             those that are (`--all` also those that completed)",
            args.master.master
        )));
    }
    let tasks: Vec<&pb::TaskSummary> = state
        .tasks
        .iter()
        .filter(|t| {
            let s = t.status.as_ref();
            args.framework
                .as_deref()
                .is_none_or(|f| t.framework_id == f)
                && args
                    .state
                    .is_none_or(|want| s.is_some_and(|s| s.state == want as i32))
                && args
                    .agent
                    .as_deref()
                    .is_none_or(|a| s.is_some_and(|s| s.agent_id == a))
        })
        .collect();
    let host_of = |agent: &str| hostnames.get(agent).copied().unwrap_or("").to_string();
    let view = |t: &pb::TaskSummary| {
        let s = t.status.clone().unwrap_or_default();
        let framework_name = framework_names
            .get(t.framework_id.as_str())
            .copied()
            .unwrap_or("")
            .to_string();
        let hostname = hostnames
            .get(s.agent_id.as_str())
            .copied()
            .unwrap_or("")
            .to_string();
        (s, framework_name, hostname)
    };
    if args.json {
        let items = tasks
            .iter()
            .map(|t| {
                let (s, framework_name, hostname) = view(t);
                json!({
                    "id": s.task_id,
                    "name": t.name,
                    "framework_id": t.framework_id,
                    "framework_name": framework_name,
                    "agent_id": s.agent_id,
                    "agent_hostname": hostname,
                    "state": state_name(s.state),
                    "message": s.message,
                    "resources": resources_json(t.resources.as_ref()),
                    "completed": false,
                })
            })
            .chain(completed.iter().map(|t| {
                json!({
                    "id": t.task_id,
                    "name": t.name,
                    "framework_id": t.framework_id,
                    "framework_name": framework_names.get(t.framework_id.as_str()).copied().unwrap_or(""),
                    "agent_id": t.agent_id,
                    "agent_hostname": host_of(&t.agent_id),
                    "state": state_name(t.state),
                    "message": t.message,
                    "resources": Value::Null,
                    "completed": true,
                    "launched_unix_ms": t.launched_unix_ms,
                    "ended_unix_ms": t.ended_unix_ms,
                    "result_bytes": t.result_bytes,
                })
            }))
            .collect();
        print_json(items);
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let (s, framework_name, hostname) = view(t);
            let r = t.resources.unwrap_or_default();
            vec![
                s.task_id,
                t.name.clone(),
                state_name(s.state),
                framework_name,
                t.framework_id.clone(),
                hostname,
                cpus(r.millicpus),
                r.mem_mb.to_string(),
                cut(&s.message, MAX_MESSAGE_CHARS),
            ]
        })
        .collect();
    rows.extend(completed.iter().map(|t| {
        vec![
            t.task_id.clone(),
            t.name.clone(),
            state_name(t.state),
            framework_names
                .get(t.framework_id.as_str())
                .copied()
                .unwrap_or("")
                .to_string(),
            t.framework_id.clone(),
            host_of(&t.agent_id),
            String::new(),
            String::new(),
            cut(&t.message, MAX_MESSAGE_CHARS),
        ]
    }));
    print_table(
        &[
            "ID",
            "NAME",
            "STATE",
            "FRAMEWORK",
            "FRAMEWORK ID",
            "HOST",
            "CPUS",
            "MEM MIB",
            "MESSAGE",
        ],
        &rows,
    );
    Ok(())
}

/// `wasmos kill`.
pub async fn kill(args: KillArgs) -> ExitCode {
    exit("wasmos kill", kill_inner(args).await)
}

async fn kill_inner(args: KillArgs) -> Result<(), OpError> {
    let (mut op, leader) = client::connect_leader(&args.master.master).await?;
    let master = &leader;
    let sent = op
        .kill_task(pb::KillTaskRequest {
            task_id: args.task_id.clone(),
            framework_id: args.framework.clone().unwrap_or_default(),
        })
        .await
        .map_err(|s| OpError::from_status(master, &s))?
        .into_inner();
    let (task, fw) = (&args.task_id, &sent.framework_id);
    eprintln!(
        "wasmos kill: kill of task {} (framework {}, {}) sent to agent {}",
        escape_controls(task),
        escape_controls(fw),
        state_name(sent.state),
        escape_controls(&sent.agent_id)
    );
    if args.timeout.is_zero() {
        return Ok(());
    }
    let deadline = Instant::now() + args.timeout;
    loop {
        let st = state(&mut op, master).await?;
        let found = st
            .tasks
            .iter()
            .find(|t| {
                &t.framework_id == fw && t.status.as_ref().is_some_and(|s| &s.task_id == task)
            })
            .and_then(|t| t.status.clone());
        let now = match found {
            Some(s) if is_terminal(s.state) => {
                let why = if s.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", s.message)
                };
                println!(
                    "{} {}{}",
                    escape_controls(task),
                    state_name(s.state),
                    escape_controls(&why)
                );
                return Ok(());
            }
            Some(s) => s.state,
            None => {
                // The framework acknowledged the task's end: its final state is in the history.
                let filter = pb::ListCompletedTasksRequest {
                    framework_id: fw.clone(),
                    task_id: task.clone(),
                    page_size: 1,
                    ..Default::default()
                };
                let ended = op
                    .list_completed_tasks(filter)
                    .await
                    .map_err(|s| OpError::from_status(master, &s))?
                    .into_inner()
                    .tasks
                    .into_iter()
                    .next();
                match ended {
                    Some(t) => {
                        let why = if t.message.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", t.message)
                        };
                        println!(
                            "{} {}{}",
                            escape_controls(task),
                            state_name(t.state),
                            escape_controls(&why)
                        );
                    }
                    None => println!(
                        "{} ended (its framework acknowledged the end; the master's history no \
                         longer holds it)",
                        escape_controls(task)
                    ),
                }
                return Ok(());
            }
        };
        if Instant::now() >= deadline {
            return Err(OpError::Refused(format!(
                "task {task} of framework {fw} is still {} {} after the kill was sent",
                state_name(now),
                crate::display::duration(args.timeout)
            )));
        }
        tokio::time::sleep(KILL_POLL).await;
    }
}

/// `wasmos teardown`.
pub async fn teardown(args: TeardownArgs) -> ExitCode {
    exit("wasmos teardown", teardown_inner(args).await)
}

async fn teardown_inner(args: TeardownArgs) -> Result<(), OpError> {
    let (mut op, leader) = client::connect_leader(&args.master.master).await?;
    let master = &leader;
    let done = op
        .teardown_framework(pb::TeardownFrameworkRequest {
            framework_id: args.framework_id.clone(),
        })
        .await
        .map_err(|s| OpError::from_status(master, &s))?
        .into_inner();
    println!(
        "framework {} torn down: {} tasks killed on {} agents{}",
        escape_controls(&args.framework_id),
        done.tasks_killed,
        done.agents,
        if done.hosted {
            "; its hosted scheduler stopped"
        } else {
            ""
        }
    );
    Ok(())
}

/// `wasmos components`.
pub async fn components(command: ComponentsCommand) -> ExitCode {
    match command {
        ComponentsCommand::Delete(args) => exit(
            "wasmos components delete",
            delete_component_inner(args).await,
        ),
    }
}

async fn delete_component_inner(args: DeleteComponentArgs) -> Result<(), OpError> {
    let (mut op, leader) = client::connect_leader(&args.master.master).await?;
    let master = &leader;
    let done = op
        .delete_component(pb::DeleteComponentRequest {
            sha256: args.sha256.clone(),
        })
        .await
        .map_err(|s| OpError::from_status(master, &s))?
        .into_inner();
    println!(
        "component {} deleted ({} bytes)",
        args.sha256, done.size_bytes
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_are_short_decimals() {
        assert_eq!(cpus(0), "0");
        assert_eq!(cpus(1500), "1.5");
        assert_eq!(cpus(250), "0.25");
        assert_eq!(cpus(4000), "4");
        assert_eq!(cpus(1001), "1.001");
    }

    #[test]
    fn table_cells_with_control_characters_stay_on_one_line() {
        let rows = vec![
            vec!["f1".into(), "evil\nFAKE  ROW\x1b[2J\0".into()],
            vec!["f2".into(), String::new()],
        ];
        let text = render_table(&["ID", "NAME"], &rows);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("evil\\nFAKE  ROW\\u{1b}[2J\\0"), "{text}");
        assert!(text.lines().nth(2).unwrap().ends_with('-'), "{text}");
    }

    #[test]
    fn state_names_drop_the_prefix() {
        assert_eq!(state_name(pb::TaskState::Killed as i32), "KILLED");
        assert_eq!(state_name(99), "STATE_99");
    }
}

/// `wasmos state FRAMEWORK_ID [KEY]`.
pub async fn framework_state(args: StateArgs) -> ExitCode {
    exit("wasmos state", state_inner(args).await)
}

async fn state_inner(args: StateArgs) -> Result<(), OpError> {
    let (mut op, leader) = client::connect_leader(&args.master.master).await?;
    let entries = op
        .get_framework_state(pb::GetFrameworkStateRequest {
            framework_id: args.framework_id.clone(),
            key: args.key.clone().unwrap_or_default(),
        })
        .await
        .map_err(|s| OpError::from_status(&leader, &s))?
        .into_inner()
        .entries;
    if args.json {
        let hex = |v: &[u8]| v.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let items = entries
            .iter()
            .map(|e| {
                json!({
                    "key": e.key,
                    "bytes": e.value.len(),
                    "value": std::str::from_utf8(&e.value).ok(),
                    "value_hex": hex(&e.value),
                })
            })
            .collect();
        print_json(items);
        return Ok(());
    }
    if args.key.is_some() {
        let value = entries
            .first()
            .map(|e| e.value.as_slice())
            .unwrap_or_default();
        let mut out = std::io::stdout();
        if std::io::IsTerminal::is_terminal(&out) {
            println!(
                "{}",
                escape_controls_keep_lines(&String::from_utf8_lossy(value))
            );
        } else {
            use std::io::Write;
            let _ = out.write_all(value).and_then(|()| out.flush());
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let shown = match std::str::from_utf8(&e.value) {
                Ok(t) if t.chars().count() > MAX_MESSAGE_CHARS => {
                    format!(
                        "{}...",
                        t.chars().take(MAX_MESSAGE_CHARS).collect::<String>()
                    )
                }
                Ok(t) => t.to_string(),
                Err(_) => format!("<{} bytes of binary>", e.value.len()),
            };
            vec![e.key.clone(), e.value.len().to_string(), shown]
        })
        .collect();
    print_table(&["KEY", "BYTES", "VALUE"], &rows);
    Ok(())
}
