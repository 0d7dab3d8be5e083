//! The master's HTTP API on real processes (`wasmos master --http`): after a pi job the
//! cluster summary, the completed frameworks and tasks show it and `/metrics` counted its
//! tasks; every `/api/v1/` endpoint needs a token and filters by it like gRPC; `/health` and
//! `/ready` need none, and `/ready` tells the leader from a follower, which names the leader.
//! Each master gets a free HTTP port of its own.

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use common::scheduler::Scheduler;
use common::{WAIT, ok, spawn_agent, start_master_with, wasmos};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmos_api::proto as pb;

/// A loopback address no one listens on now.
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// `GET path` on `http` (HTTP/1.1, one connection per request) with `token` as bearer:
/// (status, headers, body).
async fn get(http: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(http)
        .await
        .unwrap_or_else(|e| panic!("connect to {http}: {e}"));
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {http}\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// `GET path` that must answer 200 with JSON.
async fn json(http: &str, path: &str, token: &str) -> Value {
    let (status, _, body) = get(http, path, Some(token)).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
}

/// Checks `text` line by line as Prometheus text format (version 0.0.4) and returns each
/// sample's value by `name{labels}`: every line is a `# HELP`/`# TYPE`/`# EOF` comment or
/// `NAME[{LABELS}] VALUE` with a valid metric name, well-formed labels and a numeric value;
/// every sample's family has a `# TYPE` before it.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut typed: Vec<String> = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts
                .next()
                .unwrap_or_else(|| panic!("bad comment {line:?}"));
            assert!(
                kind == "HELP" || kind == "TYPE" || kind == "UNIT",
                "{line:?}"
            );
            assert!(name_ok(name), "bad metric name in {line:?}");
            if kind == "TYPE" {
                let t = parts.next().unwrap_or_default();
                assert!(
                    [
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "untyped",
                        "unknown"
                    ]
                    .contains(&t),
                    "bad type in {line:?}"
                );
                typed.push(name.to_string());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("{line:?}"));
                for pair in labels.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
                    assert!(name_ok(k), "bad label name in {line:?}");
                    assert!(
                        v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                        "{line:?}"
                    );
                }
                name
            }
            None => series,
        };
        assert!(name_ok(name), "bad metric name in {line:?}");
        assert!(
            typed
                .iter()
                .any(|t| name == t || name.starts_with(&format!("{t}_"))),
            "sample {name} has no # TYPE before it"
        );
        samples.insert(series.to_string(), value);
    }
    samples
}

/// Every route the API serves, as the OpenAPI document must list them.
const ROUTES: [&str; 18] = [
    "/api/v1/cluster",
    "/api/v1/cluster/usage",
    "/api/v1/frameworks/{id}/log",
    "/api/v1/tasks/{id}",
    "/api/v1/tasks/{id}/log",
    "/api/v1/agents",
    "/api/v1/agents/{id}",
    "/api/v1/frameworks",
    "/api/v1/frameworks/{id}",
    "/api/v1/frameworks/{id}/state",
    "/api/v1/frameworks/{id}/result",
    "/api/v1/tasks",
    "/api/v1/roles",
    "/api/v1/offers",
    "/api/v1/raft",
    "/health",
    "/ready",
    "/metrics",
];

const FINISHED: &str = "wasmos_tasks_terminal_total{state=\"finished\"}";

#[tokio::test(flavor = "multi_thread")]
async fn a_pi_job_shows_in_the_api_and_the_metrics_count_its_tasks() {
    let http = free_addr();
    let dir = tempfile::tempdir().unwrap();
    // Replicated (a Raft group of one), so that commits are measured.
    let data = dir.path().join("m");
    let (mut master, addr) = start_master_with(
        &["--http", &http, "--data-dir", data.to_str().unwrap()],
        Stdio::inherit(),
    )
    .await;
    let root = common::tokens_for(&addr).unwrap().root;
    let mut agent = spawn_agent(
        &addr,
        &dir.path().join("w"),
        &["--resources", "cpus:2;mem:2048"],
    );

    // Without a token: the health endpoints answer, nothing else does.
    assert_eq!(get(&http, "/health", None).await.0, 200);
    let (status, _, body) = get(&http, "/ready", None).await;
    assert_eq!(status, 200, "{body}");
    for route in ROUTES.iter().filter(|r| r.starts_with("/api/")) {
        let path = route.replace("{id}", "x");
        let (status, head, body) = get(&http, &path, None).await;
        assert_eq!(status, 401, "GET {path} without a token: {body}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let e: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(e["code"], "unauthenticated", "{body}");
        assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }
    assert_eq!(get(&http, "/metrics", None).await.0, 401);
    // A valid token without `read_metrics`: 403 naming the rule.
    let file = dir.path().join("none.json");
    std::fs::write(&file, "{}").unwrap();
    ok(
        &addr,
        &["acl", "policy", "apply", "none", file.to_str().unwrap()],
    )
    .await;
    let plain = common::token_of(&addr, "carol", "none").await;
    let (status, _, body) = get(&http, "/metrics", Some(&plain)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("read_metrics"), "{body}");

    let before = parse_prometheus(&get(&http, "/metrics", Some(&root)).await.2);
    let finished_before = before.get(FINISHED).copied().unwrap_or(0.0);
    common::submit_pi(&addr, 4).await;

    let cluster = json(&http, "/api/v1/cluster", &root).await;
    assert_eq!(cluster["agents"]["reachable"], 1, "{cluster}");
    assert_eq!(
        cluster["resources"]["total"]["millicpus"], 2000,
        "{cluster}"
    );
    assert!(cluster["version"].as_str().is_some(), "{cluster}");
    let agents = json(&http, "/api/v1/agents", &root).await;
    assert_eq!(
        agents["agents"].as_array().map(Vec::len),
        Some(1),
        "{agents}"
    );
    assert_eq!(agents["total"], 1, "{agents}");
    assert!(agents["next_offset"].is_null(), "{agents}");
    let id = agents["agents"][0]["id"].as_str().unwrap();
    let one = json(&http, &format!("/api/v1/agents/{id}"), &root).await;
    assert_eq!(one["id"], id, "{one}");
    let (status, _, body) = get(&http, "/api/v1/agents/no-such-agent", Some(&root)).await;
    assert_eq!(status, 404, "{body}");
    // An empty order is the default (the document's pattern allows it), an unknown one a 400.
    let (status, _, body) = get(&http, "/api/v1/agents?sort=", Some(&root)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = get(&http, "/api/v1/agents?sort=age", Some(&root)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("host, state, cpu, mem or tasks"), "{body}");

    let frameworks = json(&http, "/api/v1/frameworks?completed=true", &root).await;
    let done = frameworks["completed"]
        .as_array()
        .and_then(|c| c.iter().find(|f| f["tasks_finished"] == 4))
        .unwrap_or_else(|| panic!("no completed pi framework in {frameworks}"));
    assert_eq!(done["end"], "succeeded", "{done}");
    let fw = done["id"].as_str().unwrap().to_string();
    let page = json(
        &http,
        &format!("/api/v1/tasks?completed=true&framework={fw}&state=finished&limit=3"),
        &root,
    )
    .await;
    assert_eq!(page["tasks"].as_array().map(Vec::len), Some(3), "{page}");
    assert!(
        page["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["framework_id"] == fw.as_str())
    );
    let next = page["next_offset"].as_u64().expect("a next page");
    let rest = json(
        &http,
        &format!("/api/v1/tasks?completed=true&framework={fw}&offset={next}"),
        &root,
    )
    .await;
    assert_eq!(rest["tasks"].as_array().map(Vec::len), Some(1), "{rest}");
    assert!(rest["next_offset"].is_null(), "{rest}");
    let result = json(&http, &format!("/api/v1/frameworks/{fw}/result"), &root).await;
    assert_eq!(result["succeeded"], true, "{result}");
    let (status, _, body) = get(&http, "/api/v1/tasks?state=sleeping", Some(&root)).await;
    assert_eq!(status, 400, "{body}");

    // The view is at most ~250 ms old: the counter catches up.
    let grown = common::until_within(
        "the finished-task counter counts the job",
        std::time::Duration::from_secs(15),
        || {
            let (http, root) = (http.clone(), root.clone());
            async move {
                let m = parse_prometheus(&get(&http, "/metrics", Some(&root)).await.2);
                let n = m.get(FINISHED).copied().unwrap_or(0.0);
                (n >= finished_before + 4.0).then_some((n, m))
            }
        },
    )
    .await;
    let (finished, m) = grown;
    assert_eq!(finished, finished_before + 4.0, "only the job's tasks");
    assert!(m["wasmos_offers_sent_total"] >= 1.0, "{m:?}");
    assert!(m["wasmos_offers_accepted_total"] >= 1.0, "{m:?}");
    assert!(
        m["wasmos_allocation_run_duration_seconds_count"] >= 1.0,
        "{m:?}"
    );
    assert_eq!(m["wasmos_agents{state=\"reachable\"}"], 1.0, "{m:?}");
    assert_eq!(m["wasmos_raft_leader"], 1.0, "{m:?}");
    assert!(
        m["wasmos_raft_commit_duration_seconds_count"] >= 1.0,
        "the job's registry changes committed through Raft: {m:?}"
    );
    assert!(m["wasmos_raft_last_applied_index"] >= 1.0, "{m:?}");
    let callbacks = m["wasmos_scheduler_callback_duration_seconds_count"];
    assert!(
        callbacks >= 5.0,
        "pi's scheduler: init, offers and 4 updates: {m:?}"
    );
    assert_eq!(
        m["wasmos_scheduler_callback_duration_seconds_bucket{le=\"+Inf\"}"],
        callbacks
    );
    assert!(
        m["wasmos_scheduler_fuel_used_total"] > 0.0,
        "pi's scheduler burned fuel: {m:?}"
    );

    // The OpenAPI document: JSON that lists every route.
    let (status, _, body) = get(&http, "/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).expect("openapi.json is JSON");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    for route in ROUTES {
        assert!(
            doc["paths"][route]["get"].is_object(),
            "{route} missing from {body}"
        );
    }
    // Found by the OpenAPI property test (`openapi.rs`): what answers 400 says so, and the
    // ids and states it accepts are described, so that valid-looking requests are valid.
    for route in [
        "/api/v1/frameworks",
        "/api/v1/frameworks/{id}",
        "/api/v1/frameworks/{id}/state",
        "/api/v1/frameworks/{id}/result",
        "/api/v1/tasks",
    ] {
        assert!(
            doc["paths"][route]["get"]["responses"]["400"].is_object(),
            "{route} does not document its 400: {body}"
        );
    }
    for path in [
        "/api/v1/frameworks?completed=null",
        "/api/v1/tasks?state=running&state=running",
        "/api/v1/frameworks/%FF/result",
        // A malformed id filter on the live path as on the history's (it answered an empty
        // 200 page, which the document's pattern says cannot be asked).
        "/api/v1/tasks?framework=%C2%84",
        "/api/v1/tasks?agent=a%20b",
        // Past the documented maxima (found by the property test: accepted before).
        "/api/v1/tasks?offset=2147483648",
        "/api/v1/tasks?offset=99999999999999999999999999",
        "/api/v1/tasks/pi-2-1/log?tail=10001",
        "/api/v1/tasks/pi-2-1/log?tail=4294967296",
    ] {
        let (status, head, body) = get(&http, path, Some(&root)).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            head.contains("content-type: application/json"),
            "{path}: {head}"
        );
        let e: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: {body}"));
        assert_eq!(e["code"], "bad_request", "{body}");
    }
    // At the bounds: served (an empty page past the end).
    let (status, _, body) = get(
        &http,
        "/api/v1/tasks?offset=2147483647&limit=1000",
        Some(&root),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["tasks"].as_array().map(Vec::len), Some(0), "{body}");
    let param = |route: &str, name: &str| {
        doc["paths"][route]["get"]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .and_then(|p| p["schema"]["pattern"].as_str())
            .map(str::to_string)
    };
    for route in [
        "/api/v1/frameworks/{id}",
        "/api/v1/frameworks/{id}/state",
        "/api/v1/frameworks/{id}/result",
    ] {
        assert!(param(route, "id").is_some(), "{route}: id has no pattern");
    }
    for name in ["framework", "agent"] {
        assert!(
            param("/api/v1/tasks", name).is_some(),
            "tasks: {name} has no pattern"
        );
    }
    let states = param("/api/v1/tasks", "state").expect("state has a pattern");
    assert!(
        states.contains("finished") && !states.contains("(?i)"),
        "{states}"
    );
    agent.kill().await.unwrap();
    master.kill().await.unwrap();
}

fn info(role: &str) -> pb::FrameworkInfo {
    pb::FrameworkInfo {
        name: "http-test".into(),
        role: role.into(),
        failover_timeout_seconds: 60.0,
        ..Default::default()
    }
}

/// The `id`s (or `key`) of a JSON array.
fn ids(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x[key].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_sees_its_own_frameworks_and_not_anothers_on_every_listing() {
    let http = free_addr();
    let (mut master, addr) = start_master_with(&["--http", &http], Stdio::inherit()).await;
    let root = common::tokens_for(&addr).unwrap().root;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenant.json");
    std::fs::write(&file, r#"{"roles": ["team-a", "team-b"]}"#).unwrap();
    ok(
        &addr,
        &["acl", "policy", "apply", "tenant", file.to_str().unwrap()],
    )
    .await;
    let alice = common::token_of(&addr, "alice", "tenant").await;
    let bob = common::token_of(&addr, "bob", "tenant").await;
    let a = Scheduler::try_subscribe_as(&addr, info("team-a"), &alice)
        .await
        .unwrap();
    let b = Scheduler::try_subscribe_as(&addr, info("team-b"), &bob)
        .await
        .unwrap();
    // Two agents: one offer each, one to each framework (DRF).
    let mut agents = [
        spawn_agent(
            &addr,
            &dir.path().join("w1"),
            &["--resources", "cpus:1;mem:1024"],
        ),
        spawn_agent(
            &addr,
            &dir.path().join("w2"),
            &["--resources", "cpus:1;mem:1024"],
        ),
    ];
    // Both get offers once the agents register (the view may be 250 ms old).
    common::until("both frameworks hold an offer", || {
        let (http, root) = (http.clone(), root.clone());
        let (ida, idb) = (a.id.clone(), b.id.clone());
        async move {
            let offers = json(&http, "/api/v1/offers", &root).await;
            let fws = ids(&offers, "framework_id");
            (fws.contains(&ida) && fws.contains(&idb)).then_some(())
        }
    })
    .await;
    // Each role holds one of two equal agents: half of every resource, its dominant share.
    let m = common::until_within(
        "the role shares reach the metrics",
        std::time::Duration::from_secs(15),
        || {
            let (http, root) = (http.clone(), root.clone());
            async move {
                let m = parse_prometheus(&get(&http, "/metrics", Some(&root)).await.2);
                (m.get("wasmos_role_allocated_share{role=\"team-b\"}") == Some(&0.5)).then_some(m)
            }
        },
    )
    .await;
    assert_eq!(
        m["wasmos_role_allocated_share{role=\"team-a\"}"], 0.5,
        "{m:?}"
    );
    let frameworks = json(&http, "/api/v1/frameworks?completed=true", &alice).await;
    assert_eq!(
        ids(&frameworks["frameworks"], "id"),
        [a.id.clone()],
        "{frameworks}"
    );
    let offers = json(&http, "/api/v1/offers", &alice).await;
    assert!(!offers.as_array().unwrap().is_empty());
    assert!(
        ids(&offers, "framework_id").iter().all(|f| *f == a.id),
        "{offers}"
    );
    let cluster = json(&http, "/api/v1/cluster", &alice).await;
    assert_eq!(cluster["frameworks"]["active"], 1, "{cluster}");
    let (status, _, body) = get(&http, &format!("/api/v1/frameworks/{}", b.id), Some(&alice)).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        json(&http, &format!("/api/v1/frameworks/{}", a.id), &alice).await["id"],
        a.id
    );
    // Another's stored state is refused by the layer, as over gRPC.
    let (status, _, body) = get(
        &http,
        &format!("/api/v1/frameworks/{}/state", b.id),
        Some(&alice),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let everyone = json(&http, "/api/v1/frameworks", &root).await;
    let mut all = ids(&everyone["frameworks"], "id");
    all.sort();
    let mut both = vec![a.id.clone(), b.id.clone()];
    both.sort();
    assert_eq!(all, both);
    let roles = json(&http, "/api/v1/roles", &alice).await;
    assert!(
        ids(&roles, "role").contains(&"team-a".to_string()),
        "{roles}"
    );
    drop((a, b));
    for agent in &mut agents {
        agent.kill().await.unwrap();
    }
    master.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_on_the_leader_and_a_follower_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<String> = (0..3).map(|_| free_addr()).collect();
    let https: Vec<String> = (0..3).map(|_| free_addr()).collect();
    let peers: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect();
    let mut masters = Vec::new();
    for i in 0..3 {
        let data = dir.path().join(format!("m{i}"));
        let mut m = wasmos()
            .args(["master", "--listen", &addrs[i], "--http", &https[i]])
            .args([
                "--data-dir",
                data.to_str().unwrap(),
                "--id",
                &(i + 1).to_string(),
            ])
            .args(["--peers", &peers.join(",")])
            .stdout(Stdio::piped())
            .spawn()
            .expect("wasmos master starts");
        common::first_line(&mut m, "the master says where it listens").await;
        masters.push(m);
    }
    common::secure(&addrs.join(",")).await;
    // Exactly one is ready; the others say why not, and name the leader on the API.
    let (leader, followers) = common::until("one master is ready, two are not", || {
        let https = https.clone();
        async move {
            let mut ready = Vec::new();
            let mut not = Vec::new();
            for (i, h) in https.iter().enumerate() {
                let (status, _, body) = get(h, "/ready", None).await;
                match status {
                    200 => ready.push(i),
                    503 => not.push((i, body)),
                    s => panic!("/ready answered {s}: {body}"),
                }
            }
            (ready.len() == 1 && not.len() == 2).then(|| (ready[0], not))
        }
    })
    .await;
    for (i, body) in &followers {
        let r: Value = serde_json::from_str(body).unwrap();
        assert_eq!(r["ready"], false, "{body}");
        assert!(
            r["reason"].as_str().is_some_and(|s| !s.is_empty()),
            "{body}"
        );
        assert_eq!(get(&https[*i], "/health", None).await.0, 200);
        let (status, _, body) = get(&https[*i], "/api/v1/cluster", None).await;
        assert_eq!(status, 503, "{body}");
        let e: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(e["code"], "not_leader", "{body}");
        assert_eq!(e["leader_id"], leader as u64 + 1, "{body}");
        assert_eq!(e["leader_grpc_address"], addrs[leader].as_str(), "{body}");
    }
    let root = common::tokens_for(&addrs[0]).unwrap().root;
    let raft = json(&https[leader], "/api/v1/raft", &root).await;
    assert_eq!(raft["leader_id"], leader as u64 + 1, "{raft}");
    assert_eq!(raft["members"].as_array().map(Vec::len), Some(3), "{raft}");
    assert!(
        raft["last_applied_index"].as_u64().is_some_and(|i| i > 0),
        "{raft}"
    );
    // The registry digest: the leader's for a token with `read_metrics`; a follower, which
    // cannot check tokens, serves its own only with --metrics-open (the chaos soak's masters
    // run so and compare all three).
    let digest = json(&https[leader], "/registry/digest", &root).await;
    assert_eq!(digest["replicated"], true, "{digest}");
    assert_eq!(digest["id"], leader as u64 + 1, "{digest}");
    assert!(
        digest["applied_index"].as_u64().is_some_and(|i| i > 0),
        "{digest}"
    );
    assert!(
        digest["sha256"]
            .as_str()
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())),
        "{digest}"
    );
    assert_eq!(get(&https[leader], "/registry/digest", None).await.0, 401);
    let (status, _, body) = get(&https[followers[0].0], "/registry/digest", Some(&root)).await;
    assert_eq!(status, 503, "{body}");
    for mut m in masters {
        m.kill().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// `GET path` until it answers `status`, or panics after [`WAIT`].
async fn until_status(http: &str, path: &str, status: u16) -> String {
    common::until(&format!("GET {path} on {http} answers {status}"), || {
        let http = http.to_string();
        let path = path.to_string();
        async move {
            let connected = tokio::net::TcpStream::connect(&http).await.is_ok();
            if !connected {
                return None;
            }
            let (s, _, body) = get(&http, &path, None).await;
            (s == status).then_some(body)
        }
    })
    .await
}

const AGENT_FINISHED: &str = "wasmos_agent_tasks_terminal_total{state=\"finished\"}";
const AGENT_LAUNCHES: &str = "wasmos_agent_task_launch_duration_seconds_count";

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_serves_ready_once_registered_and_metrics_count_a_jobs_tasks() {
    // An agent whose master does not answer: alive, not ready, and it says why.
    let dir = tempfile::tempdir().unwrap();
    let dead = free_addr();
    let lonely_http = free_addr();
    let mut lonely = wasmos()
        .args(["agent", "--master", &dead, "--work-dir"])
        .arg(dir.path().join("lonely"))
        .args(["--resources", "cpus:1;mem:512", "--http", &lonely_http])
        .args(["--metrics-open"])
        .spawn()
        .unwrap();
    until_status(&lonely_http, "/health", 200).await;
    // Not ready from the start; once its first attempt failed, the reason names the master.
    let (status, head, body) = get(&lonely_http, "/ready", None).await;
    assert_eq!(status, 503, "{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let r: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["ready"], false, "{body}");
    common::until_within(
        "the agent's /ready names the master it cannot reach",
        std::time::Duration::from_secs(15),
        || {
            let (h, dead) = (lonely_http.clone(), dead.clone());
            async move {
                let (status, _, body) = get(&h, "/ready", None).await;
                assert_eq!(status, 503, "{body}");
                body.contains(&dead).then_some(())
            }
        },
    )
    .await;
    // --metrics-open: no token needed.
    let m = parse_prometheus(&get(&lonely_http, "/metrics", None).await.2);
    assert_eq!(m["wasmos_agent_registered"], 0.0, "{m:?}");
    lonely.kill().await.unwrap();

    let (mut master, addr) = start_master_with(&[], Stdio::inherit()).await;
    let tokens = common::tokens_for(&addr).unwrap();
    let agent_http = free_addr();
    let mut agent = spawn_agent(
        &addr,
        &dir.path().join("w"),
        &["--resources", "cpus:2;mem:2048", "--http", &agent_http],
    );
    let body = until_status(&agent_http, "/ready", 200).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["ready"],
        true,
        "{body}"
    );
    // Without --metrics-open: the agent's own token and no other.
    let (status, _, body) = get(&agent_http, "/metrics", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = get(&agent_http, "/metrics", Some(&tokens.root)).await;
    assert_eq!(status, 403, "another token than the agent's: {body}");
    let scrape = || async {
        let (status, head, body) = get(&agent_http, "/metrics", Some(&tokens.agent)).await;
        assert_eq!(status, 200, "{body}");
        assert!(head.contains("content-type: text/plain"), "{head}");
        parse_prometheus(&body)
    };
    let before = scrape().await;
    assert_eq!(before["wasmos_agent_registered"], 1.0, "{before:?}");

    common::submit_pi(&addr, 4).await;
    // Each task's end is counted once it is recorded, before the master hears of it.
    let after = scrape().await;
    assert_eq!(
        after[AGENT_FINISHED] - before[AGENT_FINISHED],
        4.0,
        "the job's 4 tasks finished: {after:?}"
    );
    assert_eq!(
        after[AGENT_LAUNCHES] - before[AGENT_LAUNCHES],
        4.0,
        "the job's 4 launches reached RUNNING: {after:?}"
    );
    let inf = "wasmos_agent_task_launch_duration_seconds_bucket{le=\"+Inf\"}";
    assert_eq!(after[inf], after[AGENT_LAUNCHES], "{after:?}");
    assert!(
        after["wasmos_agent_task_launch_duration_seconds_sum"]
            > before["wasmos_agent_task_launch_duration_seconds_sum"],
        "{after:?}"
    );
    assert!(
        after["wasmos_agent_fuel_burned_total"] > before["wasmos_agent_fuel_burned_total"],
        "the pi tasks burned fuel: {after:?}"
    );
    assert!(after.contains_key("wasmos_agent_executor_instances"));
    assert!(
        after["wasmos_agent_sandbox_disk_used_bytes"] > 0.0,
        "the tasks' output files take blocks: {after:?}"
    );
    assert!(after.contains_key("wasmos_agent_status_updates_pending"));

    // The master gone: the agent is no longer ready, and says which master it lost.
    master.kill().await.unwrap();
    let body = until_status(&agent_http, "/ready", 503).await;
    assert!(body.contains(&addr), "{body}");
    agent.kill().await.unwrap();
}
