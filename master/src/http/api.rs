//! The `/api/v1/` handlers. Each one checks, in order: that this master leads (a follower
//! names the leader, `mod.rs`), the caller's bearer token against the one authorization layer
//! (`Master::authorize`, the same [`Action`]s as the gRPC services), then answers from the
//! published [`View`](super::view::View) filtered to what the caller may see
//! (`Master::filter_state`), or through the gRPC handler of the same call (history, result,
//! stored state), so both APIs refuse and filter alike.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use tonic::Request;
use utoipa::IntoParams;
use wasmos_api::proto as pb;
use wasmos_api::proto::operator_service_server::OperatorService;

use super::Http;
use super::error::{ApiError, ErrorBody, JsonPath, JsonQuery, MAX_QUERY_NUMBER, at_most};
use super::types::*;
use crate::Master;
use crate::acl::{Action, Caller};

/// Most tasks (or agents) in one page.
pub const MAX_LIMIT: usize = 1000;
/// Tasks (or agents) in a page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;

/// A gRPC request carrying the HTTP request's headers (its `authorization`) and peer, for
/// the shared handlers and the authorization layer.
pub(super) fn grpc_request<T>(headers: &HeaderMap, peer: SocketAddr, body: T) -> Request<T> {
    let mut r = Request::new(body);
    *r.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers.clone());
    r.extensions_mut()
        .insert(tonic::transport::server::TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(peer),
        });
    r
}

/// Authenticates the caller and decides `action` (audited like a gRPC call).
pub(super) fn authorize(
    master: &Master,
    headers: &HeaderMap,
    peer: SocketAddr,
    action: &Action,
) -> Result<Caller, ApiError> {
    master
        .authorize(&grpc_request(headers, peer, ()), action)
        .map_err(ApiError::from_status)
}

/// The published state, filtered to what `caller` may see.
async fn visible_state(
    http: &Http,
    caller: &Caller,
) -> (pb::ClusterState, std::sync::Arc<super::view::View>) {
    let view = http.views.get(&http.master).await;
    (Master::filter_state(caller, view.state.clone()), view)
}

#[utoipa::path(get, path = "/api/v1/cluster", tag = "cluster",
    responses((status = 200, body = ClusterJson), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
/// The cluster at a glance.
pub async fn cluster(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<ClusterJson>, ApiError> {
    let caller = authorize(&http.master, &headers, peer, &Action::ReadState)?;
    let (state, view) = visible_state(&http, &caller).await;
    let mut agents = AgentCounts::default();
    let mut used = ResourcesJson::default();
    for a in &state.agents {
        agents.total += 1;
        if a.reachable {
            agents.reachable += 1;
        } else {
            agents.unreachable += 1;
        }
        used = used.plus(a.used.as_ref().into());
    }
    let frameworks = FrameworkCounts {
        active: state.frameworks.len() as u64,
        connected: state.frameworks.iter().filter(|f| f.connected).count() as u64,
        hosted: state.frameworks.iter().filter(|f| f.hosted).count() as u64,
    };
    let mut tasks: BTreeMap<String, u64> = BTreeMap::new();
    for t in &state.tasks {
        let s = t.status.as_ref().map_or(0, |s| s.state);
        *tasks.entry(state_name(s)).or_default() += 1;
    }
    let offered = view.offers.iter().fold(ResourcesJson::default(), |acc, o| {
        acc.plus(o.resources.into())
    });
    let total: ResourcesJson = state.total.as_ref().into();
    let leader_id = match http.master.raft_node() {
        None => Some(1),
        Some(n) => n.leader().map(|(id, _)| id),
    };
    Ok(Json(ClusterJson {
        leader_id,
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_seconds: http.master.uptime().as_secs_f64(),
        view_age_ms: view.built.elapsed().as_millis() as u64,
        agents,
        frameworks,
        tasks,
        resources: ClusterResources {
            total,
            used,
            offered,
            idle: total.minus(used).minus(offered),
        },
    }))
}

/// The agents listing's page and order.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgentsQuery {
    /// Most agents in the page: default 100, at most 1000 (more is cut to 1000).
    #[param(minimum = 0, maximum = 2147483647)]
    pub limit: Option<usize>,
    /// Agents to skip: the previous page's `next_offset`. Default 0.
    #[param(minimum = 0, maximum = 2147483647)]
    pub offset: Option<usize>,
    /// The order: `host` (the default), `state` (reachable first), `cpu`, `mem` (CPU or
    /// memory in use) or `tasks` (live tasks), ascending; a leading `-` reverses it. Ties
    /// are broken by id, so pages do not overlap. Empty: the default.
    #[param(pattern = r"^(-?(host|state|cpu|mem|tasks))?$")]
    pub sort: Option<String>,
}

/// The order `sort` names, as a comparison of two agents.
fn agent_order(
    sort: Option<&str>,
) -> Result<impl Fn(&pb::AgentSummary, &pb::AgentSummary) -> std::cmp::Ordering, ApiError> {
    let sort = sort.filter(|s| !s.is_empty()).unwrap_or("host");
    let (descending, key) = match sort.strip_prefix('-') {
        Some(k) => (true, k),
        None => (false, sort),
    };
    let key: fn(&pb::AgentSummary) -> (u64, &str) = match key {
        "host" => |a| (0, a.info.as_ref().map_or("", |i| i.hostname.as_str())),
        "state" => |a| (u64::from(!a.reachable), ""),
        "cpu" => |a| (a.used.as_ref().map_or(0, |r| r.millicpus), ""),
        "mem" => |a| (a.used.as_ref().map_or(0, |r| r.mem_mb), ""),
        "tasks" => |a| (u64::from(a.active_tasks), ""),
        other => {
            return Err(ApiError::bad_request(format!(
                "sort {other:?} is not an agents order; use host, state, cpu, mem or tasks, \
                 with a leading - to reverse it"
            )));
        }
    };
    let id = |a: &pb::AgentSummary| a.info.as_ref().map_or("", |i| i.id.as_str()).to_owned();
    Ok(move |a: &pb::AgentSummary, b: &pb::AgentSummary| {
        let by_key = key(a).cmp(&key(b));
        let by_key = if descending { by_key.reverse() } else { by_key };
        by_key.then_with(|| id(a).cmp(&id(b)))
    })
}

#[utoipa::path(get, path = "/api/v1/agents", tag = "cluster", params(AgentsQuery),
    responses((status = 200, body = AgentPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
/// Admitted agents, ordered and paged (the page's size is bounded, so a cluster of 50,000
/// agents does not answer with 50,000).
pub async fn agents(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonQuery(q): JsonQuery<AgentsQuery>,
) -> Result<Json<AgentPage>, ApiError> {
    authorize(&http.master, &headers, peer, &Action::ReadState)?;
    at_most("limit", q.limit.map(|n| n as u64), MAX_QUERY_NUMBER)?;
    at_most("offset", q.offset.map(|n| n as u64), MAX_QUERY_NUMBER)?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let offset = q.offset.unwrap_or(0);
    let order = agent_order(q.sort.as_deref())?;
    let view = http.views.get(&http.master).await;
    let mut all: Vec<&pb::AgentSummary> = view.state.agents.iter().collect();
    let total = all.len();
    let start = offset.min(total);
    let end = offset.saturating_add(limit).min(total);
    // Only what the page needs is sorted: selecting the first `end` first keeps a
    // 50,000-agent listing's cost near linear.
    if end < total {
        all.select_nth_unstable_by(end, |a, b| order(a, b));
        all.truncate(end);
    }
    all.sort_unstable_by(|a, b| order(a, b));
    let agents = all[start..end]
        .iter()
        .map(|a| AgentJson::from(*a))
        .collect();
    Ok(Json(AgentPage {
        agents,
        total: total as u64,
        next_offset: (end < total).then_some(end as u64),
    }))
}

#[utoipa::path(get, path = "/api/v1/agents/{id}", tag = "cluster",
    params(("id" = String, Path, description = "The agent's id", pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")),
    responses((status = 200, body = AgentJson), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
/// One admitted agent.
pub async fn agent(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<AgentJson>, ApiError> {
    authorize(&http.master, &headers, peer, &Action::ReadState)?;
    let view = http.views.get(&http.master).await;
    view.state
        .agents
        .iter()
        .find(|a| a.info.as_ref().is_some_and(|i| i.id == id))
        .map(|a| Json(AgentJson::from(a)))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no admitted agent {id:?}; /api/v1/agents lists those this master knows"
            ))
        })
}

/// `?completed=`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CompletedQuery {
    /// Also list ended frameworks (from the history). Default false.
    #[serde(default)]
    pub completed: bool,
}

#[utoipa::path(get, path = "/api/v1/frameworks", tag = "frameworks", params(CompletedQuery),
    responses((status = 200, body = FrameworksJson), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
/// Registered frameworks the caller may see, and with `?completed=true` ended ones.
pub async fn frameworks(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonQuery(q): JsonQuery<CompletedQuery>,
) -> Result<Json<FrameworksJson>, ApiError> {
    let caller = authorize(&http.master, &headers, peer, &Action::ReadState)?;
    let (state, _) = visible_state(&http, &caller).await;
    let completed = if q.completed {
        let r = http
            .master
            .list_completed_frameworks_call(grpc_request(
                &headers,
                peer,
                pb::ListCompletedFrameworksRequest {
                    page_size: MAX_LIMIT as u32,
                    page_token: String::new(),
                },
            ))
            .await
            .map_err(ApiError::from_status)?;
        Some(
            r.into_inner()
                .frameworks
                .into_iter()
                .map(CompletedFrameworkJson::from)
                .collect(),
        )
    } else {
        None
    };
    Ok(Json(FrameworksJson {
        frameworks: state.frameworks.iter().map(FrameworkJson::from).collect(),
        completed,
    }))
}

#[utoipa::path(get, path = "/api/v1/frameworks/{id}", tag = "frameworks",
    params(("id" = String, Path, description = "The framework's id", pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")),
    responses((status = 200, body = FrameworkJson), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
/// One registered framework the caller may see.
pub async fn framework(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<FrameworkJson>, ApiError> {
    let caller = authorize(&http.master, &headers, peer, &Action::ReadState)?;
    let (state, _) = visible_state(&http, &caller).await;
    state
        .frameworks
        .iter()
        .find(|f| f.info.as_ref().is_some_and(|i| i.id == id))
        .map(|f| Json(FrameworkJson::from(f)))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no registered framework {id:?} that this token may see; ended ones are in \
                 /api/v1/frameworks?completed=true"
            ))
        })
}

/// `?key=`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyQuery {
    /// Only this key. Default: every key.
    #[serde(default)]
    pub key: String,
}

#[utoipa::path(get, path = "/api/v1/frameworks/{id}/state", tag = "frameworks",
    params(("id" = String, Path, description = "The framework's id", pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$"), KeyQuery),
    responses((status = 200, body = StateJson), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
/// A framework's stored state (`driver.state-put`).
pub async fn framework_state(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonPath(id): JsonPath<String>,
    JsonQuery(q): JsonQuery<KeyQuery>,
) -> Result<Json<StateJson>, ApiError> {
    let r = http
        .master
        .get_framework_state(grpc_request(
            &headers,
            peer,
            pb::GetFrameworkStateRequest {
                framework_id: id,
                key: q.key,
            },
        ))
        .await
        .map_err(ApiError::from_status)?;
    Ok(Json(StateJson {
        entries: r
            .into_inner()
            .entries
            .into_iter()
            .map(|e| StateEntryJson {
                key: e.key,
                value_hex: hex::encode(&e.value),
                value: String::from_utf8(e.value).ok(),
            })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/frameworks/{id}/result", tag = "frameworks",
    params(("id" = String, Path, description = "The framework's id", pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")),
    responses((status = 200, body = ResultJson), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
/// How a framework ended, if it did.
pub async fn framework_result(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<ResultJson>, ApiError> {
    let r = http
        .master
        .get_framework_result(grpc_request(
            &headers,
            peer,
            pb::GetFrameworkResultRequest { framework_id: id },
        ))
        .await
        .map_err(ApiError::from_status)?
        .into_inner();
    Ok(Json(ResultJson {
        ended: r.ended,
        succeeded: r.succeeded,
        result: r.result,
        registered: r.registered,
    }))
}

/// The tasks listing's filters and page.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TasksQuery {
    /// Only this framework's tasks (empty: no filter).
    #[param(pattern = r"^([A-Za-z0-9_-][A-Za-z0-9._-]{0,127})?$")]
    pub framework: Option<String>,
    /// Only tasks on this agent (empty: no filter).
    #[param(pattern = r"^([A-Za-z0-9_-][A-Za-z0-9._-]{0,127})?$")]
    pub agent: Option<String>,
    /// Only tasks in this state (`running`, `finished`, ...).
    #[param(
        pattern = r"^(staging|starting|running|finished|failed|killed|lost|error|unreachable)$"
    )]
    pub state: Option<String>,
    /// Most tasks in the page: default 100, at most 1000 (more is cut to 1000).
    #[param(minimum = 0, maximum = 2147483647)]
    pub limit: Option<usize>,
    /// Tasks to skip: the previous page's `next_offset`. Default 0.
    #[param(minimum = 0, maximum = 2147483647)]
    pub offset: Option<usize>,
    /// List ended tasks (from the history) instead of live ones. Default false.
    #[serde(default)]
    pub completed: bool,
}

/// The wire state named `name` (`running`, `task_state_running`, case-insensitive).
fn parse_state(name: &str) -> Result<pb::TaskState, ApiError> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("TASK_STATE_") {
        upper
    } else {
        format!("TASK_STATE_{upper}")
    };
    pb::TaskState::from_str_name(&full)
        .filter(|s| *s != pb::TaskState::Unspecified)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "state {name:?} is not a task state; use staging, starting, running, finished, \
                 failed, killed, lost, error or unreachable"
            ))
        })
}

#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(TasksQuery),
    responses((status = 200, body = TaskPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
/// Tasks the caller may see, filtered and paged: live ones, or with `?completed=true` ended
/// ones.
pub async fn tasks(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonQuery(q): JsonQuery<TasksQuery>,
) -> Result<Json<TaskPage>, ApiError> {
    at_most("limit", q.limit.map(|n| n as u64), MAX_QUERY_NUMBER)?;
    at_most("offset", q.offset.map(|n| n as u64), MAX_QUERY_NUMBER)?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let offset = q.offset.unwrap_or(0);
    let state = q.state.as_deref().map(parse_state).transpose()?;
    // The same id rules on both paths (the history's gRPC handler checks them too), so a
    // malformed filter is a 400 rather than an empty page.
    let framework_ok = q.framework.as_deref().filter(|f| !f.is_empty()).map(|f| {
        wasmos_api::convert::id::<wasmos_api::FrameworkId>("framework", f)
            .map_err(|e| ApiError::bad_request(e.to_string()))
    });
    if let Some(Err(e)) = framework_ok {
        return Err(e);
    }
    let agent_ok = q.agent.as_deref().filter(|a| !a.is_empty()).map(|a| {
        wasmos_api::convert::id::<wasmos_api::AgentId>("agent", a)
            .map_err(|e| ApiError::bad_request(e.to_string()))
    });
    if let Some(Err(e)) = agent_ok {
        return Err(e);
    }
    if q.completed {
        let r = http
            .master
            .list_completed_tasks_call(grpc_request(
                &headers,
                peer,
                pb::ListCompletedTasksRequest {
                    framework_id: q.framework.unwrap_or_default(),
                    agent_id: q.agent.unwrap_or_default(),
                    state: state.map_or(0, |s| s as i32),
                    task_id: String::new(),
                    page_size: limit as u32,
                    page_token: if offset == 0 {
                        String::new()
                    } else {
                        offset.to_string()
                    },
                },
            ))
            .await
            .map_err(ApiError::from_status)?
            .into_inner();
        return Ok(Json(TaskPage {
            tasks: r.tasks.into_iter().map(TaskJson::from).collect(),
            next_offset: r.next_page_token.parse().ok(),
        }));
    }
    let caller = authorize(&http.master, &headers, peer, &Action::ReadState)?;
    let view = http.views.get(&http.master).await;
    let sees_all = caller.sees_all();
    let mine: HashSet<&str> = view
        .state
        .frameworks
        .iter()
        .filter_map(|f| f.info.as_ref())
        .filter(|i| sees_all || i.principal == caller.principal)
        .map(|i| i.id.as_str())
        .collect();
    let mut matching = view.state.tasks.iter().filter(|t| {
        let status = t.status.as_ref();
        mine.contains(t.framework_id.as_str())
            && q.framework
                .as_ref()
                .filter(|f| !f.is_empty())
                .is_none_or(|f| *f == t.framework_id)
            && q.agent
                .as_ref()
                .filter(|a| !a.is_empty())
                .is_none_or(|a| status.is_some_and(|s| s.agent_id == *a))
            && state.is_none_or(|st| status.is_some_and(|s| s.state == st as i32))
    });
    let page: Vec<TaskJson> = matching
        .by_ref()
        .skip(offset)
        .take(limit)
        .map(TaskJson::from)
        .collect();
    let next_offset = matching.next().map(|_| (offset + page.len()) as u64);
    Ok(Json(TaskPage {
        tasks: page,
        next_offset,
    }))
}

/// `GET /api/v1/tasks/{id}`'s parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// The task's framework; needed only when several frameworks have a task of that id
    /// (else the first the caller may see, live before ended; empty: not given).
    #[param(pattern = r"^([A-Za-z0-9_-][A-Za-z0-9._-]{0,127})?$")]
    pub framework: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "The task's id", pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$"), TaskQuery),
    responses((status = 200, body = TaskJson), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
/// One task the caller may see: live, or else from the history.
pub async fn task(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonPath(id): JsonPath<String>,
    JsonQuery(q): JsonQuery<TaskQuery>,
) -> Result<Json<TaskJson>, ApiError> {
    let caller = authorize(&http.master, &headers, peer, &Action::ReadState)?;
    let (state, _) = visible_state(&http, &caller).await;
    let framework = q.framework.as_deref().filter(|f| !f.is_empty());
    let wanted = |fw: &str| framework.is_none_or(|f| f == fw);
    if let Some(t) = state
        .tasks
        .iter()
        .find(|t| wanted(&t.framework_id) && t.status.as_ref().is_some_and(|s| s.task_id == id))
    {
        return Ok(Json(TaskJson::from(t)));
    }
    let r = http
        .master
        .list_completed_tasks_call(grpc_request(
            &headers,
            peer,
            pb::ListCompletedTasksRequest {
                framework_id: framework.unwrap_or_default().to_string(),
                agent_id: String::new(),
                state: 0,
                task_id: id.clone(),
                page_size: 1,
                page_token: String::new(),
            },
        ))
        .await
        .map_err(ApiError::from_status)?
        .into_inner();
    r.tasks
        .into_iter()
        .next()
        .map(|t| Json(TaskJson::from(t)))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no task {id:?} that this token may see, live or in the history (which keeps \
                 the last 1000 ended tasks per framework)"
            ))
        })
}

#[utoipa::path(get, path = "/api/v1/cluster/usage", tag = "cluster",
    responses((status = 200, body = super::usage::UsageJson), (status = 401, body = ErrorBody)))]
/// The cluster's CPU and memory use, one sample every 10 s over the last hour (soft state:
/// empty on a master that just became leader).
pub async fn usage(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<super::usage::UsageJson>, ApiError> {
    authorize(&http.master, &headers, peer, &Action::ReadState)?;
    Ok(Json(super::usage::UsageJson {
        samples: http.usage.samples(),
    }))
}

#[utoipa::path(get, path = "/api/v1/roles", tag = "cluster",
    responses((status = 200, body = Vec<RoleJson>), (status = 401, body = ErrorBody)))]
/// Roles: weights, quotas, allocated and offered resources, DRF dominant shares.
pub async fn roles(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Vec<RoleJson>>, ApiError> {
    authorize(&http.master, &headers, peer, &Action::ReadState)?;
    let view = http.views.get(&http.master).await;
    let role_of: HashMap<&str, &str> = view
        .state
        .frameworks
        .iter()
        .filter_map(|f| f.info.as_ref())
        .map(|i| (i.id.as_str(), i.role.as_str()))
        .collect();
    let mut offered: HashMap<&str, ResourcesJson> = HashMap::new();
    for o in &view.offers {
        if let Some(role) = role_of.get(o.framework.as_str()) {
            let e = offered.entry(role).or_default();
            *e = e.plus(o.resources.into());
        }
    }
    let total: ResourcesJson = view.state.total.as_ref().into();
    let share = |a: u64, t: u64| if t == 0 { 0.0 } else { a as f64 / t as f64 };
    Ok(Json(
        view.state
            .roles
            .iter()
            .map(|r| {
                let allocated: ResourcesJson = r.allocated.as_ref().into();
                let dominant = share(allocated.millicpus, total.millicpus)
                    .max(share(allocated.mem_mb, total.mem_mb))
                    .max(share(allocated.disk_mb, total.disk_mb));
                RoleJson {
                    role: r.role.clone(),
                    weight: r.weight,
                    guarantee: r.guarantee.as_ref().into(),
                    limit: r.limit.as_ref().map(|l| Some(l).into()),
                    allocated,
                    offered: offered.get(r.role.as_str()).copied().unwrap_or_default(),
                    dominant_share: dominant,
                    weighted_share: if r.weight > 0.0 {
                        dominant / r.weight
                    } else {
                        0.0
                    },
                }
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/offers", tag = "cluster",
    responses((status = 200, body = Vec<OfferJson>), (status = 401, body = ErrorBody)))]
/// Outstanding offers to frameworks the caller may see, oldest first.
pub async fn offers(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Vec<OfferJson>>, ApiError> {
    let caller = authorize(&http.master, &headers, peer, &Action::ReadState)?;
    let (state, view) = visible_state(&http, &caller).await;
    let mine: HashSet<&str> = state
        .frameworks
        .iter()
        .filter_map(|f| f.info.as_ref().map(|i| i.id.as_str()))
        .collect();
    Ok(Json(
        view.offers
            .iter()
            .filter(|o| mine.contains(o.framework.as_str()))
            .map(|o| OfferJson {
                id: o.id.clone(),
                framework_id: o.framework.to_string(),
                agent_id: o.agent.clone(),
                resources: o.resources.into(),
                created_unix_ms: o.created_ms,
                expires_unix_ms: o.expires_ms,
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/raft", tag = "cluster",
    responses((status = 200, body = RaftJson), (status = 401, body = ErrorBody)))]
/// The Raft group: members, leader, term, last applied index.
pub async fn raft(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<RaftJson>, ApiError> {
    authorize(&http.master, &headers, peer, &Action::ListMembers)?;
    let Some(node) = http.master.raft_node() else {
        return Ok(Json(RaftJson {
            replicated: false,
            id: 0,
            leader_id: None,
            term: 0,
            last_applied_index: None,
            members: Vec::new(),
        }));
    };
    let m = node.metrics().borrow().clone();
    let members = http
        .master
        .members()
        .map_err(|e| ApiError::from_status(e.into()))?;
    Ok(Json(RaftJson {
        replicated: true,
        id: node.id(),
        leader_id: m.current_leader,
        term: m.current_term,
        last_applied_index: m.last_applied.map(|l| l.index),
        members: members
            .members
            .into_iter()
            .map(|m| MemberJson {
                id: m.id,
                address: m.address,
                voter: m.voter,
            })
            .collect(),
    }))
}
