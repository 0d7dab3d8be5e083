//! The history half of `wasmos tasks --all`, `wasmos frameworks --all` and `wasmos kill`: the
//! leader's completed tasks and frameworks (`ListCompletedTasks`, `ListCompletedFrameworks`),
//! fetched page by page, as JSON objects and table rows beside the live ones.

use serde_json::{Value, json};
use wasmos_api::proto as pb;

use crate::client::OperatorClient;

/// Page size asked for: the master's largest.
const PAGE: u32 = 1000;

/// Every completed task matching `filter` (its paging fields are set here).
pub async fn completed_tasks(
    op: &mut OperatorClient,
    mut filter: pb::ListCompletedTasksRequest,
) -> Result<Vec<pb::CompletedTask>, tonic::Status> {
    let mut all = Vec::new();
    filter.page_size = PAGE;
    loop {
        let page = op.list_completed_tasks(filter.clone()).await?.into_inner();
        all.extend(page.tasks);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        filter.page_token = page.next_page_token;
    }
}

/// Every completed framework the caller may see, newest first.
pub async fn completed_frameworks(
    op: &mut OperatorClient,
) -> Result<Vec<pb::CompletedFramework>, tonic::Status> {
    let mut all = Vec::new();
    let mut req = pb::ListCompletedFrameworksRequest {
        page_size: PAGE,
        page_token: String::new(),
    };
    loop {
        let page = op
            .list_completed_frameworks(req.clone())
            .await?
            .into_inner();
        all.extend(page.frameworks);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        req.page_token = page.next_page_token;
    }
}

/// `succeeded`, `failed` or `torn_down`.
pub fn end_name(raw: i32) -> &'static str {
    match pb::FrameworkEnd::try_from(raw) {
        Ok(pb::FrameworkEnd::Succeeded) => "succeeded",
        Ok(pb::FrameworkEnd::Failed) => "failed",
        Ok(pb::FrameworkEnd::TornDown) => "torn_down",
        _ => "ended",
    }
}

/// The wire state a `--state` argument names (`finished`, `FINISHED` or
/// `TASK_STATE_FINISHED`).
pub fn parse_state(s: &str) -> Result<pb::TaskState, String> {
    let upper = s.trim().to_ascii_uppercase();
    let name = if upper.starts_with("TASK_STATE_") {
        upper
    } else {
        format!("TASK_STATE_{upper}")
    };
    match pb::TaskState::from_str_name(&name) {
        Some(st) if st != pb::TaskState::Unspecified => Ok(st),
        _ => Err(format!(
            "{s:?} is not a task state; use one of staging, starting, running, finished, \
             failed, killed, lost, error, unreachable"
        )),
    }
}

/// A completed framework in `wasmos frameworks --all --json`.
pub fn framework_json(f: &pb::CompletedFramework) -> Value {
    json!({
        "id": f.framework_id,
        "name": f.name,
        "role": f.role,
        "principal": f.principal,
        "completed": true,
        "outcome": end_name(f.end),
        "result": f.text,
        "registered_unix_ms": f.registered_unix_ms,
        "ended_unix_ms": f.ended_unix_ms,
        "active_tasks": 0,
        "tasks_finished": f.tasks_finished,
        "tasks_failed": f.tasks_failed,
        "completed_tasks": f.completed_tasks,
    })
}

/// A completed framework as a row of the frameworks table (`ID NAME ROLE PRINCIPAL SCHEDULER
/// STATE TASKS CPUS MEM OFFERS`): STATE is how it ended; it holds nothing.
pub fn framework_row(f: &pb::CompletedFramework) -> Vec<String> {
    vec![
        f.framework_id.clone(),
        f.name.clone(),
        f.role.clone(),
        f.principal.clone(),
        String::new(),
        end_name(f.end).into(),
        "0".into(),
        "0".into(),
        "0".into(),
        "0".into(),
    ]
}
