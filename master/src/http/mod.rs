//! The master's HTTP/JSON face, beside its gRPC port: the operator API under `/api/v1/`
//! (`api.rs`, its OpenAPI document at `/api/v1/openapi.json`), `/health` and `/ready` for
//! systemd and load balancers, and Prometheus text at `/metrics` (`metrics.rs`).
//!
//! What it shares with gRPC: the one authorization layer (a bearer token in
//! `Authorization: Bearer TOKEN`, the same actions and the same filtering), the gRPC handlers
//! of history, result and stored state, and the TLS certificate (`tls.rs`, without asking
//! clients for one). What it does not do: read the core under its lock while serialising;
//! it serves from a published [`view::View`] (`view.rs`, at most ~250 ms old).
//!
//! A follower (a replicated master that does not lead) answers `/api/v1/*` with 503 and a
//! JSON body naming the leader's id and gRPC address: masters do not know each other's HTTP
//! addresses, so there is nothing to redirect to.

pub mod api;
pub mod error;
pub mod logs;
pub mod metrics;
pub mod tls;
pub mod types;
pub mod ui;
pub mod usage;
pub mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use utoipa::OpenApi;

use crate::Master;
use crate::acl::Action;
use error::{ApiError, ErrorBody};

/// How the HTTP API is served.
#[derive(Clone, Debug, Default)]
pub struct HttpOptions {
    /// Whether `/metrics` is readable without a token (`--metrics-open`); otherwise it needs a
    /// token with the `read_metrics` right (on a master that enforces ACLs). Default false.
    pub metrics_open: bool,
}

/// What every handler gets: the master, its published views, the options.
#[derive(Clone)]
pub struct Http {
    master: Master,
    views: Arc<view::Views>,
    options: HttpOptions,
    usage: Arc<usage::Usage>,
}

/// The OpenAPI document of `/api/v1/`, generated from the handlers and types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "wasmos master API",
        description = "The master's HTTP/JSON operator API. \
        Send `Authorization: Bearer TOKEN`; listings show what the token may see."
    ),
    paths(
        api::cluster,
        api::agents,
        api::agent,
        api::frameworks,
        api::framework,
        api::framework_state,
        api::framework_result,
        logs::scheduler_log,
        api::tasks,
        api::task,
        logs::task_log,
        api::usage,
        api::roles,
        api::offers,
        api::raft,
        health,
        ready,
        metrics_text,
        registry_digest,
    )
)]
pub struct ApiDoc;

/// The router of every endpoint, for `master`, without the task that samples the cluster's
/// use (see [`serve`]): `/api/v1/cluster/usage` then stays empty.
pub fn router(master: Master, options: HttpOptions) -> Router {
    router_of(Http::new(master, options))
}

impl Http {
    fn new(master: Master, options: HttpOptions) -> Self {
        Http {
            master,
            views: Arc::new(view::Views::new()),
            options,
            usage: Arc::new(usage::Usage::default()),
        }
    }
}

fn router_of(http: Http) -> Router {
    let api = Router::new()
        .route("/cluster", get(api::cluster))
        .route("/cluster/usage", get(api::usage))
        .route("/agents", get(api::agents))
        .route("/agents/{id}", get(api::agent))
        .route("/frameworks", get(api::frameworks))
        .route("/frameworks/{id}", get(api::framework))
        .route("/frameworks/{id}/state", get(api::framework_state))
        .route("/frameworks/{id}/result", get(api::framework_result))
        .route("/frameworks/{id}/log", get(logs::scheduler_log))
        .route("/tasks", get(api::tasks))
        .route("/tasks/{id}", get(api::task))
        .route("/tasks/{id}/log", get(logs::task_log))
        .route("/roles", get(api::roles))
        .route("/offers", get(api::offers))
        .route("/raft", get(api::raft))
        .route_layer(axum::middleware::from_fn_with_state(http.clone(), leading))
        .route("/openapi.json", get(openapi));
    Router::new()
        .nest("/api/v1", api)
        .route("/", get(ui::index))
        .route("/ui/{file}", get(ui::file))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/registry/digest", get(registry_digest))
        .fallback(|| async {
            ApiError::not_found("no such endpoint; the API is described at /api/v1/openapi.json")
        })
        .with_state(http)
}

/// Serves [`router`] on `listener` until `shutdown` resolves: over TLS with the master's
/// certificate when it serves TLS, plain text otherwise.
pub async fn serve(
    master: Master,
    listener: TcpListener,
    options: HttpOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = master.tls_material().map(tls::http_server_config);
    let http = Http::new(master, options);
    // Stopped with the server: its samples are of no use without it.
    let sampler = AbortOnDrop(tokio::spawn(usage::sample_forever(http.clone())));
    let app = router_of(http).into_make_service_with_connect_info::<SocketAddr>();
    let served = match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => {
            let config = config.map_err(std::io::Error::other)?;
            let listener =
                tls::TlsListener::new(listener, tokio_rustls::TlsAcceptor::from(config))?;
            use axum::serve::ListenerExt;
            axum::serve(listener.tap_io(|_| {}), app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    drop(sampler);
    served
}

/// Aborts its task when dropped (also when `serve`'s future is).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Lets `/api/v1/*` through only on a master that serves (leads): a follower's core is
/// empty. Else 503 naming the leader.
async fn leading(State(http): State<Http>, request: Request, next: Next) -> Response {
    if http.master.is_serving() {
        return next.run(request).await;
    }
    let leader = http.master.raft_node().and_then(|n| n.leader());
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_leader",
        match &leader {
            Some((id, addr)) => format!(
                "this master does not lead; master {id} (gRPC {addr}) does: ask its HTTP address"
            ),
            None => "this master does not lead and no leader is known yet (an election); retry \
                     shortly"
                .to_string(),
        },
    );
    if let Some((id, addr)) = leader {
        e.body.leader_id = Some(id);
        e.body.leader_grpc_address = Some(addr);
    }
    e.into_response()
}

async fn openapi() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}

#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The process serves", body = String)))]
/// 200 while the process serves HTTP; needs no token.
pub async fn health() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, body = types::ReadyJson), (status = 503, body = types::ReadyJson)))]
/// 200 when this master leads and serves, else 503 with the reason; needs no token.
pub async fn ready(State(http): State<Http>) -> Response {
    if http.master.is_serving() {
        return axum::Json(types::ReadyJson {
            ready: true,
            reason: None,
        })
        .into_response();
    }
    let reason = match http.master.raft_node().and_then(|n| n.leader()) {
        Some((id, _)) if Some(id) != http.master.raft_node().map(|n| n.id()) => {
            format!("not the leader: master {id} leads")
        }
        Some(_) => "elected leader, still taking over the registry".to_string(),
        None => "no leader known (an election)".to_string(),
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(types::ReadyJson {
            ready: false,
            reason: Some(reason),
        }),
    )
        .into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", body = String),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
/// The master's metrics in Prometheus text format. Needs a token with `read_metrics` unless
/// the master runs with `--metrics-open`.
pub async fn metrics_text(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    scrape_allowed(&http, peer, headers)?;
    let view = http.views.get(&http.master).await;
    let text = metrics::render(&http.master, &view);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Whether the caller may read what a scraper reads (`/metrics`, `/registry/digest`): anyone
/// with `--metrics-open`, else a token with `read_metrics`. A follower has no registry to
/// check tokens against: it serves them only when they are open.
fn scrape_allowed(http: &Http, peer: SocketAddr, headers: HeaderMap) -> Result<(), ApiError> {
    if !http.options.metrics_open {
        if !http.master.is_serving() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_leader",
                "this master does not lead, so it cannot check tokens; scrape the leader, or \
                 run the masters with --metrics-open",
            ));
        }
        let request = {
            let mut r = tonic::Request::new(());
            *r.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
            r.extensions_mut()
                .insert(tonic::transport::server::TcpConnectInfo {
                    local_addr: None,
                    remote_addr: Some(peer),
                });
            r
        };
        http.master
            .authorize(&request, &Action::ReadMetrics)
            .map_err(ApiError::from_status)?;
    }
    Ok(())
}

#[utoipa::path(get, path = "/registry/digest", tag = "health",
    responses((status = 200, body = types::RegistryDigestJson),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody)))]
/// This master's registry as it has applied it, as a digest: the index of the last Raft entry
/// applied and the sha256 of the registry's encoding. Answered by every master, leader or
/// follower, so that the registries of a group can be compared: masters at the same index
/// must have the same digest. Same rights as `/metrics`.
pub async fn registry_digest(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<axum::Json<types::RegistryDigestJson>, ApiError> {
    scrape_allowed(&http, peer, headers)?;
    let Some(node) = http.master.raft_node() else {
        return Ok(axum::Json(types::RegistryDigestJson {
            replicated: false,
            id: 0,
            applied_index: None,
            sha256: None,
            frameworks: 0,
            agents: 0,
        }));
    };
    let id = node.id();
    let (applied_index, registry) = node.registry_with_index();
    // Hashing walks every component's bytes: off the async workers.
    let digest = tokio::task::spawn_blocking(move || {
        let d = registry.digest();
        (d, registry.frameworks.len(), registry.agents.len())
    })
    .await;
    match digest {
        Ok((Ok(sha256), frameworks, agents)) => Ok(axum::Json(types::RegistryDigestJson {
            replicated: true,
            id,
            applied_index,
            sha256: Some(sha256),
            frameworks: frameworks as u64,
            agents: agents as u64,
        })),
        Ok((Err(e), _, _)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("cannot encode this master's registry to hash it: {e}"),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("hashing this master's registry failed: {e}"),
        )),
    }
}
