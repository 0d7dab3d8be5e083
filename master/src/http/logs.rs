//! Task output and hosted schedulers' log lines over HTTP: thin twins of the gRPC
//! `ReadTaskLog` and `ReadSchedulerLog` calls, which they call with the request's token, so
//! both APIs authorize (`read_task_log` on the framework), proxy from the agent and refuse
//! alike. The caller is authenticated first (any valid token), so a request without one is
//! 401 before the task is looked up, as on every other endpoint. A client follows a running task by passing the answer's `next_offset` back until
//! `task_ended` (the UI polls every 2 s).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wasmos_api::proto as pb;
use wasmos_api::proto::operator_service_server::OperatorService;

use super::Http;
use super::api::{authorize, grpc_request};
use super::error::{ApiError, ErrorBody, JsonPath, JsonQuery, MAX_QUERY_NUMBER, at_most};
use crate::acl::Action;

/// `GET /api/v1/tasks/{id}/log`'s parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskLogQuery {
    /// The task's framework; needed only when several frameworks have a task of that id
    /// (empty: not given).
    #[param(pattern = r"^([A-Za-z0-9_-][A-Za-z0-9._-]{0,127})?$")]
    pub framework: Option<String>,
    /// `stdout` or `stderr`. Default (also when empty) `stdout`.
    #[param(pattern = r"^(stdout|stderr)?$")]
    pub stream: Option<String>,
    /// Where to start, in bytes from the start of the file (the previous `next_offset`).
    /// Default 0; ignored with `tail`.
    #[param(minimum = 0, maximum = 2147483647)]
    pub offset: Option<u64>,
    /// When given: only the last this many lines (at most 10,000).
    #[param(minimum = 0, maximum = 10000)]
    pub tail: Option<u32>,
}

/// A piece of a task's output.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskLogJson {
    /// The bytes read, as text (invalid UTF-8 replaced by U+FFFD). At most 64 KiB.
    pub data: String,
    /// Pass as `offset` to read what follows.
    pub next_offset: u64,
    /// True when the task has ended: what is there is all there will be.
    pub task_ended: bool,
    /// The agent that runs (ran) the task.
    pub agent_id: String,
}

#[utoipa::path(get, path = "/api/v1/tasks/{id}/log", tag = "tasks",
    params(("id" = String, Path, description = "The task's id", pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$"), TaskLogQuery),
    responses((status = 200, body = TaskLogJson), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
/// A piece of a task's stdout or stderr, read from its agent's sandbox through the master.
pub async fn task_log(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonPath(id): JsonPath<String>,
    JsonQuery(q): JsonQuery<TaskLogQuery>,
) -> Result<Json<TaskLogJson>, ApiError> {
    authorize(&http.master, &headers, peer, &Action::ReadState)?;
    at_most("offset", q.offset, MAX_QUERY_NUMBER)?;
    at_most("tail", q.tail.map(u64::from), 10_000)?;
    let stream = match q.stream.as_deref() {
        None | Some("") | Some("stdout") => pb::LogStream::Stdout,
        Some("stderr") => pb::LogStream::Stderr,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "stream {other:?} is not a task output stream; use stdout or stderr"
            )));
        }
    };
    let r = http
        .master
        .read_task_log(grpc_request(
            &headers,
            peer,
            pb::ReadTaskLogRequest {
                task_id: id,
                framework_id: q.framework.unwrap_or_default(),
                stream: stream as i32,
                offset: q.offset.unwrap_or(0),
                max_bytes: 0,
                tail_lines: q.tail.unwrap_or(0),
            },
        ))
        .await
        .map_err(ApiError::from_status)?
        .into_inner();
    Ok(Json(TaskLogJson {
        data: String::from_utf8_lossy(&r.data).into_owned(),
        next_offset: r.next_offset,
        task_ended: r.task_ended,
        agent_id: r.agent_id,
    }))
}

/// `GET /api/v1/frameworks/{id}/log`'s parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SchedulerLogQuery {
    /// Only lines with a larger `seq` (the last line's `seq` seen). Default 0: from the
    /// oldest kept.
    #[param(minimum = 0, maximum = 2147483647)]
    pub after: Option<u64>,
    /// When given: only the last this many of those lines (at most 10,000).
    #[param(minimum = 0, maximum = 10000)]
    pub tail: Option<u32>,
}

/// One `log` line of a hosted scheduler.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchedulerLogLineJson {
    /// Its number, from 1 per framework.
    pub seq: u64,
    /// When it was logged (unix ms).
    pub unix_ms: u64,
    /// `TRACE`, `DEBUG`, `INFO`, `WARN` or `ERROR`.
    pub level: String,
    /// The message.
    pub message: String,
}

/// A hosted scheduler's log lines.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchedulerLogJson {
    /// Oldest first.
    pub lines: Vec<SchedulerLogLineJson>,
    /// True when the framework is no longer registered (no more lines will come).
    pub framework_ended: bool,
}

#[utoipa::path(get, path = "/api/v1/frameworks/{id}/log", tag = "frameworks",
    params(("id" = String, Path, description = "The framework's id", pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$"), SchedulerLogQuery),
    responses((status = 200, body = SchedulerLogJson), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
/// The `log` lines of a framework's hosted scheduler (soft state: kept by this leader only).
pub async fn scheduler_log(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonPath(id): JsonPath<String>,
    JsonQuery(q): JsonQuery<SchedulerLogQuery>,
) -> Result<Json<SchedulerLogJson>, ApiError> {
    authorize(&http.master, &headers, peer, &Action::ReadState)?;
    at_most("after", q.after, MAX_QUERY_NUMBER)?;
    at_most("tail", q.tail.map(u64::from), 10_000)?;
    let r = http
        .master
        .read_scheduler_log(grpc_request(
            &headers,
            peer,
            pb::ReadSchedulerLogRequest {
                framework_id: id,
                tail_lines: q.tail.unwrap_or(0),
                after_seq: q.after.unwrap_or(0),
            },
        ))
        .await
        .map_err(ApiError::from_status)?
        .into_inner();
    Ok(Json(SchedulerLogJson {
        lines: r
            .lines
            .into_iter()
            .map(|l| SchedulerLogLineJson {
                seq: l.seq,
                unix_ms: l.unix_ms,
                level: l.level,
                message: l.message,
            })
            .collect(),
        framework_ended: r.framework_ended,
    }))
}
