//! Target `http_request`: the master's HTTP API (`wasmos_master::http::router`, an axum
//! `Router` used as a tower service with `oneshot`) fed a request whose method, path, query,
//! headers and body come from the input, against in-memory masters (one that enforces ACLs and
//! holds no token, one that does not, each with a framework and an agent). Nothing panics, and
//! no answer is a 5xx except a 503 saying this master does not lead.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use tokio::sync::mpsc;
use tower::ServiceExt;
use wasmos_api::proto as pb;
use wasmos_master::config::MasterConfig;
use wasmos_master::http::{HttpOptions, router};
use wasmos_master::server::Master;

use crate::input::Input;

const PATHS: &[&str] = &[
    "/health",
    "/ready",
    "/metrics",
    "/api/v1/openapi.json",
    "/api/v1/cluster",
    "/api/v1/agents",
    "/api/v1/frameworks",
    "/api/v1/frameworks/",
    "/api/v1/tasks",
    "/api/v1/roles",
    "/api/v1/offers",
    "/api/v1/raft",
    "/api/v1/",
    "/",
];

struct World {
    runtime: tokio::runtime::Runtime,
    /// Enforcing ACLs, and not.
    masters: [Master; 2],
    framework_id: String,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the harness");
        let _guard = runtime.enter();
        let mut framework_id = String::new();
        let masters = [true, false].map(|enforce_acl| {
            let master = Master::new(MasterConfig {
                enforce_acl,
                ..MasterConfig::default()
            });
            let mut core = master.core();
            let (tx, rx) = mpsc::channel(1024);
            std::mem::forget(rx); // keep the framework's stream open
            let conn = core.new_conn();
            let info = pb::FrameworkInfo {
                name: "pi".into(),
                role: "batch".into(),
                failover_timeout_seconds: 3600.0,
                ..Default::default()
            };
            if let Ok(fw) = core.subscribe(conn, tx, Some(info), 0) {
                framework_id = fw.to_string();
            }
            let (tx, rx) = mpsc::channel(1024);
            std::mem::forget(rx);
            let conn = core.new_conn();
            let reg = pb::agent_message::Register {
                info: Some(pb::AgentInfo {
                    hostname: "h".into(),
                    resources: Some(pb::Resources {
                        millicpus: 2000,
                        mem_mb: 1024,
                        disk_mb: 0,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let _ = core.agent_register(conn, tx, reg, 0);
            core.allocate(0);
            drop(core);
            master
        });
        World {
            runtime,
            masters,
            framework_id,
        }
    })
}

/// The input chooses the master, method, path (a known route, maybe with the framework's id,
/// a suffix, or raw bytes), query, up to four headers (an `Authorization` among the likely
/// ones) and the body.
pub fn http_request(data: &[u8]) {
    let w = world();
    let mut input = Input::new(data);
    let master = w.masters[usize::from(input.bool())].clone();
    let method = match input.byte() % 8 {
        0 => Method::POST,
        1 => Method::PUT,
        2 => Method::DELETE,
        3 => Method::HEAD,
        4 => Method::from_bytes(input.chunk(12)).unwrap_or(Method::OPTIONS),
        _ => Method::GET,
    };
    let mut path = match input.byte() % 4 {
        0 => String::from_utf8_lossy(input.chunk(64)).into_owned(),
        1 => format!(
            "/api/v1/frameworks/{}{}",
            w.framework_id,
            ["", "/state", "/result", "/state/"][input.byte() as usize % 4]
        ),
        _ => PATHS[input.byte() as usize % PATHS.len()].to_string(),
    };
    if input.bool() {
        path.push_str(&String::from_utf8_lossy(input.chunk(32)));
    }
    if input.bool() {
        path.push('?');
        path.push_str(&String::from_utf8_lossy(input.chunk(64)));
    }
    let mut builder = Request::builder().method(method).uri(path);
    for _ in 0..input.byte() % 4 {
        let name = match input.byte() % 4 {
            0 => "authorization".to_string(),
            1 => "content-type".to_string(),
            2 => "accept".to_string(),
            _ => String::from_utf8_lossy(input.chunk(16)).into_owned(),
        };
        let value = input.chunk(64).to_vec();
        builder = builder.header(name, value);
    }
    let body = Body::from(input.rest().to_vec());
    let Ok(mut request) = builder.body(body) else {
        return; // not a request a client could send
    };
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let app = router(master, HttpOptions::default());
    let answer = w.runtime.block_on(async move {
        let response = app
            .oneshot(request)
            .await
            .expect("axum routers do not fail");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .map(|b| Arc::new(b.to_vec()));
        (status, body)
    });
    let (status, body) = answer;
    if status.is_server_error() {
        let text = body
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        assert!(
            status.as_u16() == 503 && text.contains("not_leader"),
            "the HTTP API answered {status}: {text}"
        );
    }
}
