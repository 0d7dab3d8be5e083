//! `wasmos status FRAMEWORK_ID`: one framework at a glance, active (from the leader's live
//! state, `GetState`) or completed (from its history, `ListCompletedFrameworks`): state, role,
//! principal, times, task counts by state, result or failure reason, and why it waits.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde_json::{Value, json};
use wasmos_api::proto as pb;

use crate::client::{self, DEFAULT_MASTER, Failure, status_text_at};
use crate::display::escape_controls;
use crate::history;

/// How much of a result `wasmos status` prints; `wasmos result` prints all of it.
const RESULT_SHOWN_CHARS: usize = 200;

/// `wasmos status`.
#[derive(clap::Args)]
#[command(after_help = STATUS_HELP)]
pub struct Args {
    /// The framework's id (`wasmos frameworks --all` lists them).
    framework_id: String,
    /// The master (`host:port`), or several masters of one group, comma-separated.
    #[arg(long, value_name = "ADDR[,ADDR...]", env = "WASMOS_MASTER", default_value = DEFAULT_MASTER)]
    master: String,
    /// Print one JSON object instead of text (keys below).
    #[arg(long)]
    json: bool,
}

const STATUS_HELP: &str = "\
Exit status: 0 when the framework is known (active or completed), 1 when the master knows no
framework of that id, 2 when no master answered or it refused the call.

With --json, one object: id, name, role, principal (strings); state (\"active\", \"succeeded\",
\"failed\" or \"torn_down\"); registered_unix_ms (number, or null when it registered with an
earlier leader); ended_unix_ms (number, or null while active); tasks (object: task state in
lower case -> count, over its live and completed tasks); tasks_finished, tasks_failed (numbers:
the master's counts); tasks_total (number, or null when its scheduler did not say); result
(string: its result, failure or why it was removed, empty while active); waiting (string: why
it waits for resources, empty when it does not); waiting_since_unix_ms (number, or null).

Example:
  wasmos status fw-1a2b3c-2
  wasmos status fw-1a2b3c-2 --json | jq .tasks";

/// What `wasmos status` shows of one framework.
struct Status {
    id: String,
    name: String,
    role: String,
    principal: String,
    state: &'static str,
    registered_ms: u64,
    ended_ms: u64,
    tasks: BTreeMap<String, u64>,
    finished: u64,
    failed: u64,
    total: Option<u64>,
    result: String,
    waiting: String,
    waiting_since_ms: u64,
}

/// Runs `wasmos status`.
pub async fn run(args: Args) -> ExitCode {
    match status(&args).await {
        Ok(s) => {
            if args.json {
                println!("{}", to_json(&s));
            } else {
                print!("{}", render(&s));
            }
            ExitCode::SUCCESS
        }
        // An unknown id exits 1; no master, or a refusal, 2.
        Err(f) => f.report("wasmos status"),
    }
}

/// Lower-case state name: `TASK_STATE_RUNNING` → `running`.
fn state_name(raw: i32) -> String {
    pb::TaskState::try_from(raw)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("TASK_STATE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| format!("state_{raw}"))
}

async fn status(args: &Args) -> Result<Status, Failure> {
    let (mut op, leader) = client::connect_leader(&args.master).await?;
    let refused = |s: tonic::Status| Failure::Refused(status_text_at(&leader, &s));
    let id = args.framework_id.as_str();
    let completed_tasks = history::completed_tasks(
        &mut op,
        pb::ListCompletedTasksRequest {
            framework_id: id.to_string(),
            ..Default::default()
        },
    )
    .await
    .map_err(refused)?;
    let mut tasks: BTreeMap<String, u64> = BTreeMap::new();
    for t in &completed_tasks {
        *tasks.entry(state_name(t.state)).or_default() += 1;
    }
    let state = op
        .get_state(pb::GetStateRequest {})
        .await
        .map_err(refused)?
        .into_inner();
    if let Some(f) = state
        .frameworks
        .iter()
        .find(|f| f.info.as_ref().is_some_and(|i| i.id == id))
    {
        for t in state.tasks.iter().filter(|t| t.framework_id == id) {
            if let Some(s) = &t.status {
                *tasks.entry(state_name(s.state)).or_default() += 1;
            }
        }
        let info = f.info.clone().unwrap_or_default();
        return Ok(Status {
            id: info.id,
            name: info.name,
            role: info.role,
            principal: info.principal,
            state: "active",
            registered_ms: f.registered_unix_ms,
            ended_ms: 0,
            tasks,
            finished: f.tasks_finished,
            failed: f.tasks_failed,
            total: f.tasks_total,
            result: String::new(),
            waiting: f.waiting.clone(),
            waiting_since_ms: f.waiting_since_unix_ms,
        });
    }
    let completed = history::completed_frameworks(&mut op)
        .await
        .map_err(refused)?;
    let Some(f) = completed.into_iter().find(|f| f.framework_id == id) else {
        return Err(Failure::Failed(format!(
            "the master at {leader} knows no framework {} (neither registered nor among its \
             completed frameworks, which it keeps for a bounded number and forgets on a \
             failover); `wasmos frameworks --all` lists those it knows",
            escape_controls(id)
        )));
    };
    Ok(Status {
        state: history::end_name(f.end),
        id: f.framework_id,
        name: f.name,
        role: f.role,
        principal: f.principal,
        registered_ms: f.registered_unix_ms,
        ended_ms: f.ended_unix_ms,
        tasks,
        finished: f.tasks_finished,
        failed: f.tasks_failed,
        total: None,
        result: f.text,
        waiting: String::new(),
        waiting_since_ms: 0,
    })
}

fn to_json(s: &Status) -> Value {
    let opt = |ms: u64| (ms > 0).then_some(ms);
    json!({
        "id": s.id,
        "name": s.name,
        "role": s.role,
        "principal": s.principal,
        "state": s.state,
        "registered_unix_ms": opt(s.registered_ms),
        "ended_unix_ms": opt(s.ended_ms),
        "tasks": s.tasks,
        "tasks_finished": s.finished,
        "tasks_failed": s.failed,
        "tasks_total": s.total,
        "result": s.result,
        "waiting": s.waiting,
        "waiting_since_unix_ms": opt(s.waiting_since_ms),
    })
}

/// When, as RFC 3339 UTC; `unknown` for 0.
fn time(ms: u64, unknown: &str) -> String {
    if ms == 0 {
        unknown.to_string()
    } else {
        wasmos_master::acl::audit::rfc3339(ms)
    }
}

/// The text `wasmos status` prints: one `label  value` line per field.
fn render(s: &Status) -> String {
    let mut lines: Vec<(&str, String)> = vec![
        ("framework", escape_controls(&s.id).into_owned()),
        ("name", escape_controls(&s.name).into_owned()),
        ("state", s.state.replace('_', " ")),
        ("role", escape_controls(&s.role).into_owned()),
        (
            "principal",
            if s.principal.is_empty() {
                "-".into()
            } else {
                escape_controls(&s.principal).into_owned()
            },
        ),
        (
            "registered",
            time(s.registered_ms, "unknown (with an earlier leader)"),
        ),
    ];
    if s.state != "active" {
        lines.push(("ended", time(s.ended_ms, "unknown")));
    }
    let finished = match s.total {
        Some(t) => format!("{}/{t}", s.finished),
        None => s.finished.to_string(),
    };
    lines.push(("tasks", format!("{finished} finished, {} failed", s.failed)));
    if !s.tasks.is_empty() {
        let by_state: Vec<String> = s.tasks.iter().map(|(k, n)| format!("{n} {k}")).collect();
        lines.push(("by state", by_state.join(", ")));
    }
    if !s.waiting.is_empty() {
        lines.push((
            "waiting",
            format!(
                "{} (since {})",
                escape_controls(s.waiting.trim_start_matches("waiting: ")),
                time(s.waiting_since_ms, "unknown")
            ),
        ));
    }
    if s.state != "active" {
        let label = match s.state {
            "succeeded" => "result",
            "failed" => "failure",
            _ => "reason",
        };
        let text = escape_controls(&s.result).into_owned();
        let shown = if text.chars().count() > RESULT_SHOWN_CHARS {
            let cut: String = text.chars().take(RESULT_SHOWN_CHARS).collect();
            format!(
                "{cut}... (cut; `wasmos result {}` prints all of it)",
                escape_controls(&s.id)
            )
        } else {
            text
        };
        lines.push((label, shown));
    }
    let width = lines.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    lines
        .iter()
        .map(|(l, v)| format!("{l:<width$}  {v}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(result: &str) -> Status {
        Status {
            id: "fw-1".into(),
            name: "pi".into(),
            role: "*".into(),
            principal: "alice".into(),
            state: "succeeded",
            registered_ms: 1,
            ended_ms: 2,
            tasks: [("finished".to_string(), 4)].into(),
            finished: 4,
            failed: 0,
            total: None,
            result: result.into(),
            waiting: String::new(),
            waiting_since_ms: 0,
        }
    }

    #[test]
    fn a_long_result_is_cut_and_says_how_to_get_all_of_it() {
        let long = "x".repeat(RESULT_SHOWN_CHARS + 1);
        let text = render(&finished(&long));
        assert!(text.contains("wasmos result fw-1"), "{text}");
        assert!(!text.contains(&long), "{text}");
        let text = render(&finished(&long[1..]));
        assert!(text.contains(&long[1..]) && !text.contains("cut"), "{text}");
    }
}
