//! `wasmos agent --http ADDR`: the agent's health and metrics for systemd, load balancers and
//! Prometheus. `/health` (200 while the process serves), `/ready` (200 once registered with a
//! master, else 503 with a JSON reason), `/metrics` (Prometheus text, [`crate::metrics`]).
//!
//! `/metrics` needs `Authorization: Bearer TOKEN` with the token the agent itself was started
//! with (`--token`/`WASMOS_TOKEN`): the agent has no registry of tokens to check others
//! against, and whoever holds its token may already act as it. `--metrics-open` serves it
//! without a token; an agent started without a token serves it only then.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Agent;

/// How the agent's HTTP endpoints are served.
#[derive(Clone, Debug, Default)]
pub struct HttpConfig {
    /// Where to listen (`--http ADDR`); none (the default) serves no HTTP.
    pub listen: Option<SocketAddr>,
    /// Whether `/metrics` is readable without a token (`--metrics-open`). Default false.
    pub metrics_open: bool,
}

#[derive(Clone)]
struct Http {
    agent: Agent,
    metrics_open: bool,
    token: Option<String>,
}

/// Why the agent's HTTP server could not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen for HTTP on {addr}: {source}; pick another --http address (port 0 picks a free one)"
)]
pub struct BindError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// What the system said.
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr` for [`serve`].
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// The router of the agent's endpoints. `token` is the one the agent was started with.
pub fn router(agent: Agent, metrics_open: bool, token: Option<String>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such endpoint; the agent serves /health, /ready and /metrics",
            )
        })
        .with_state(Http {
            agent,
            metrics_open,
            token,
        })
}

/// Serves [`router`] on `listener` until `stop` is cancelled.
pub async fn serve(
    agent: Agent,
    listener: TcpListener,
    metrics_open: bool,
    token: Option<String>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = router(agent, metrics_open, token);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

async fn ready(State(http): State<Http>) -> Response {
    match http.agent.metrics().not_ready() {
        None => axum::Json(serde_json::json!({ "ready": true })).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "ready": false, "reason": reason })),
        )
            .into_response(),
    }
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(http): State<Http>, headers: HeaderMap) -> Response {
    if !http.metrics_open {
        let Some(token) = &http.token else {
            return error(
                StatusCode::FORBIDDEN,
                "this agent was started without a token, so /metrics has none to check; \
                 start it with --metrics-open to serve metrics without one",
            );
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            None => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "/metrics needs `Authorization: Bearer TOKEN` with the agent's token \
                     (unless the agent runs with --metrics-open)",
                );
            }
            Some(g) if !same(g.as_bytes(), token.as_bytes()) => {
                return error(
                    StatusCode::FORBIDDEN,
                    "this token is not the agent's; /metrics takes the token the agent was \
                     started with",
                );
            }
            Some(_) => {}
        }
    }
    let agent = http.agent.clone();
    let disk = tokio::task::spawn_blocking(move || agent.sandbox_disk_used())
        .await
        .unwrap_or(0);
    let a = &http.agent;
    let text = a.metrics().render(
        a.executor_pool().live_instances(),
        a.status_queue().pending(),
        disk,
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
