//! The web UI in a real browser: headless Chromium driven over WebDriver (Debian's
//! `chromium` and `chromedriver`, installed by `scripts/install-browser.sh`), against a
//! secured master with an agent running pi and the `service` example. Without a token the UI
//! shows only its login; with the management token the overview shows the agent and the
//! running framework, pi's page its result and ended tasks, a task page its log, and a killed
//! service instance is replaced in the task list without a reload; a tenant's token shows its
//! own framework and not another's, in the UI and in every JSON listing the UI reads. At
//! 10,000 ended tasks and 1,001 agents (1,000 of them simulated over the real agent session)
//! every listing is one page from the server and the browser stays responsive.
//!
//! Each page is saved as a PNG in `target/ui-screenshots/` (the test prints where).
//!
//! The WebDriver client is the few calls below (JSON over HTTP/1.1 to chromedriver): the
//! crates that offer one (fantoccini) pull in a Unicode segmenter whose derive macros change
//! `syn`'s features, which rebuilds every proc macro and wasmtime of the workspace.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::scheduler::Scheduler;
use common::{NATIVE_DEFAULT_ROLE, WAIT, example, ok, spawn_agent, start_master_with, wasmos};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use wasmos_api::proto as pb;

/// A loopback address no one listens on now.
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
async fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // Read by the answer's length: chromedriver keeps the connection open.
    let read = async {
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw);
            if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                let lower = head.to_ascii_lowercase();
                let length = lower
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                let done = match length {
                    Some(len) => raw.len() - head.len() - 4 >= len,
                    None if lower.contains("transfer-encoding: chunked") => {
                        rest.ends_with("0\r\n\r\n")
                    }
                    None => n == 0,
                };
                if done {
                    return text.into_owned();
                }
            }
            if n == 0 {
                return text.into_owned();
            }
        }
    };
    let text = tokio::time::timeout(WAIT, read)
        .await
        .unwrap_or_else(|_| panic!("{method} {path} on {addr}: no answer in time"));
    let (head, rest) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

/// The body of a chunked answer.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// Decodes standard base64 (screenshots).
fn base64(text: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        .map(val)
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n |= (*b as u32) << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}

/// Where a program is on `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(program))
            .find(|f| f.is_file())
    })
}

/// A headless Chromium session driven through chromedriver (killed on drop).
struct Browser {
    driver: String,
    session: String,
    _chromedriver: Child,
    shots: PathBuf,
}

/// The key WebDriver names an element reference by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session; fails (never
    /// skips) naming `scripts/install-browser.sh` when either is missing.
    async fn start() -> Browser {
        let missing = |what: &str| -> ! {
            panic!(
                "{what} is missing: the UI test needs Debian's chromium and chromium-driver; \
                 run scripts/install-browser.sh (scripts/test.sh does)"
            )
        };
        let chromedriver = on_path("chromedriver").unwrap_or_else(|| missing("chromedriver"));
        let chromium = on_path("chromium")
            .or_else(|| on_path("chromium-browser"))
            .unwrap_or_else(|| missing("chromium"));
        let driver = free_addr();
        let port = driver.rsplit(':').next().unwrap().to_string();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .kill_on_drop(true)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        common::until("chromedriver answers", || {
            let driver = driver.clone();
            async move {
                let s = tokio::net::TcpStream::connect(&driver).await.ok()?;
                drop(s);
                let (status, _) = http(&driver, "GET", "/status", None, None).await;
                (status == 200).then_some(())
            }
        })
        .await;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1360,900",
                         "--hide-scrollbars"],
            },
        }}});
        let (status, body) = http(&driver, "POST", "/session", None, Some(&caps)).await;
        assert_eq!(status, 200, "chromedriver refused a session: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ui-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            driver,
            session,
            _chromedriver: child,
            shots,
        }
    }

    /// A WebDriver command of this session; its `value`.
    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let (status, text) = http(&self.driver, method, &path, None, body.as_ref()).await;
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        assert_eq!(status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    /// Ends the session (Chromium exits); chromedriver is killed when dropped.
    async fn close(self) {
        let path = format!("/session/{}", self.session);
        http(&self.driver, "DELETE", &path, None, None).await;
    }

    async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// Runs `script` (a function body) in the page.
    async fn eval(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// The text the page shows in its main area.
    async fn main_text(&self) -> String {
        self.eval("return document.getElementById('main').innerText;")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until the main area's text satisfies `ok`; returns it.
    async fn wait_text(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = self.main_text().await;
            if ok(&text) {
                return text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page never showed {what}; it shows:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Types `text` into the element `css` and presses its form's submit (as a user would).
    async fn type_and_submit(&self, css: &str, text: &str) {
        let el = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        let id = el[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {el}"))
            .to_string();
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": format!("{text}\u{E007}") })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let el = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        let id = el[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {el}"))
            .to_string();
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})))
            .await;
    }

    /// Saves the page as `name`.png.
    async fn screenshot(&self, name: &str) {
        let png = self.cmd("GET", "/screenshot", None).await;
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, base64(png.as_str().unwrap_or_default())).unwrap();
        eprintln!("ui test: screenshot {}", path.display());
    }
}

/// The JSON of `GET path`, which must answer 200.
async fn get_json(http_addr: &str, path: &str, token: &str) -> Value {
    let (status, body) = http(http_addr, "GET", path, Some(token), None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
}

/// The live service instance tasks that run, sorted.
async fn running_instances(http_addr: &str, token: &str, fw: &str) -> Vec<String> {
    let page = get_json(
        http_addr,
        &format!("/api/v1/tasks?framework={fw}&state=running"),
        token,
    )
    .await;
    let mut ids: Vec<String> = page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// The line a service instance wrote on stdout, read through the API.
async fn output_line(http_addr: &str, token: &str, fw: &str, task: &str) -> String {
    let path = format!("/api/v1/tasks/{task}/log?framework={fw}&tail=10");
    common::until(&format!("{task} wrote its line"), || {
        let (h, token, path) = (http_addr.to_string(), token.to_string(), path.clone());
        async move {
            let log = get_json(&h, &path, &token).await;
            let data = log["data"].as_str()?.trim().to_string();
            data.starts_with("hello-from-").then_some(data)
        }
    })
    .await
}

/// The process of a service instance's command (`sleep`), found by its task's cgroup.
fn instance_pid(fw: &str, task: &str) -> Option<u32> {
    common::task_pids(fw, task).into_iter().find(|p| {
        std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
    })
}

fn info(name: &str, role: &str) -> pb::FrameworkInfo {
    pb::FrameworkInfo {
        name: name.into(),
        role: role.into(),
        failover_timeout_seconds: 60.0,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_shows_the_cluster_to_whoever_may_see_it() {
    let browser = Browser::start().await;
    if let Some(why) = common::cgroups_unavailable() {
        panic!(
            "the UI test runs the service example's native tasks, which need root and cgroups: {why}"
        );
    }
    let http_addr = free_addr();
    let (mut master, addr) = start_master_with(
        &[
            "--http",
            &http_addr,
            NATIVE_DEFAULT_ROLE[0],
            NATIVE_DEFAULT_ROLE[1],
        ],
        Stdio::inherit(),
    )
    .await;
    let root = common::tokens_for(&addr).unwrap().root;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = spawn_agent(
        &addr,
        &dir.path().join("w"),
        &["--hostname", "ui-agent", "--resources", "cpus:2;mem:2048"],
    );
    let url = format!("http://{http_addr}/");

    // The static files: served without a token, under a strict policy.
    let (status, page) = http(&http_addr, "GET", "/", None, None).await;
    assert_eq!(status, 200);
    assert!(page.contains("/ui/app.js"), "{page}");
    assert_eq!(
        http(&http_addr, "GET", "/ui/nope.js", None, None).await.0,
        404
    );

    // Without a token: only the login.
    browser.goto(&url).await;
    let login = browser
        .wait_text("the login", |t| t.contains("Sign in"))
        .await;
    assert!(
        !login.contains("ui-agent") && !login.contains("Resources"),
        "{login}"
    );
    browser.screenshot("login").await;

    // A service of two instances that each write a line, then sleep.
    let service = wasmos()
        .args(["submit", &example("service"), "--master", &addr, "--"])
        .args([
            "2",
            "0.1",
            "16",
            "--",
            "sh",
            "-c",
            "echo hello-from-$(date +%s%N); exec sleep 1000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("wasmos submit starts");
    let svc = common::until("the service's two instances run", || {
        let (h, root) = (http_addr.clone(), root.clone());
        async move {
            let fws = get_json(&h, "/api/v1/frameworks", &root).await;
            let fw = fws["frameworks"]
                .as_array()?
                .iter()
                .find(|f| f["name"] == "service")?["id"]
                .as_str()?
                .to_string();
            (running_instances(&h, &root, &fw).await.len() == 2).then_some(fw)
        }
    })
    .await;

    // Signed in with the management token: the overview shows the agent and the framework.
    browser.type_and_submit("#token", &root).await;
    let overview = browser
        .wait_text("the overview with the agent and the service", |t| {
            // The cards' labels are upper-cased by the stylesheet.
            t.contains("Active frameworks") && t.contains("service") && t.contains("AGENTS\n1 of 1")
        })
        .await;
    assert!(overview.contains("master 1"), "the leader: {overview}");
    browser.goto(&format!("{url}#/agents")).await;
    browser
        .wait_text("the agent", |t| {
            t.contains("ui-agent") && t.contains("reachable")
        })
        .await;
    browser.screenshot("agents").await;

    // pi runs to its end; its page shows the result and its ended tasks.
    let out = common::submit_pi(&addr, 4).await;
    let estimate = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let done = get_json(&http_addr, "/api/v1/frameworks?completed=true", &root).await;
    let pi = done["completed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "pi")
        .unwrap_or_else(|| panic!("pi is not among the completed: {done}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    browser.goto(&format!("{url}#/frameworks/{pi}")).await;
    let page = browser
        .wait_text("pi's result and ended tasks", |t| {
            t.contains("Result") && t.contains("Ended tasks") && t.contains("finished")
        })
        .await;
    let digits: String = estimate
        .chars()
        .filter(|c| c.is_ascii_digit())
        .take(4)
        .collect();
    assert!(
        !page
            .lines()
            .any(|l| l.trim() == "null" || l.trim() == "undefined"),
        "a missing value shown as text:\n{page}"
    );
    assert!(
        page.replace('.', "").contains(&digits),
        "pi's result {estimate:?} is not on its page:\n{page}"
    );
    browser.screenshot("framework").await;
    browser.goto(&format!("{url}#/frameworks")).await;
    browser
        .wait_text("active and completed frameworks", |t| {
            t.contains("Completed (") && t.contains("succeeded") && t.contains("service")
        })
        .await;
    browser.screenshot("frameworks").await;
    browser.goto(&format!("{url}#/")).await;
    browser
        .wait_text("the overview", |t| t.contains("Use over the last hour"))
        .await;
    browser.screenshot("overview").await;

    // A task page shows that task's output, not the other instance's.
    let mine = output_line(&http_addr, &root, &svc, "service-0-1").await;
    let other = output_line(&http_addr, &root, &svc, "service-1-1").await;
    assert_ne!(mine, other, "both instances wrote the same line");
    browser
        .goto(&format!("{url}#/tasks/{svc}/service-0-1"))
        .await;
    let task = browser
        .wait_text("service-0-1's output", |t| t.contains(&mine))
        .await;
    assert!(task.contains("running"), "{task}");
    assert!(!task.contains(&other), "another task's output: {task}");
    browser.screenshot("task").await;

    // A killed instance is replaced in the list, with no reload.
    browser
        .goto(&format!("{url}#/tasks?framework={svc}&state=running"))
        .await;
    browser
        .wait_text("both instances", |t| {
            t.contains("service-0-1") && t.contains("service-1-1")
        })
        .await;
    browser
        .eval("window.__notReloaded = true; return null;")
        .await;
    let pid = instance_pid(&svc, "service-0-1").expect("service-0-1's sleep");
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let replaced = browser
        .wait_text("the replacement instead of the killed instance", |t| {
            t.contains("service-0-2") && t.contains("service-1-1") && !t.contains("service-0-1")
        })
        .await;
    assert_eq!(
        browser.eval("return window.__notReloaded === true;").await,
        Value::Bool(true),
        "the page reloaded: {replaced}"
    );
    browser.screenshot("tasks").await;
    browser.goto(&format!("{url}#/roles")).await;
    browser
        .wait_text("the roles", |t| t.contains("Dominant share"))
        .await;
    browser.screenshot("roles").await;

    // Tenants: alice sees her framework and not bob's, nor the management token's.
    let file = dir.path().join("tenant.json");
    std::fs::write(&file, r#"{"roles": ["team-a", "team-b"]}"#).unwrap();
    ok(
        &addr,
        &["acl", "policy", "apply", "tenant", file.to_str().unwrap()],
    )
    .await;
    let alice = common::token_of(&addr, "alice", "tenant").await;
    let bob = common::token_of(&addr, "bob", "tenant").await;
    let a = Scheduler::try_subscribe_as(&addr, info("alpha-of-alice", "team-a"), &alice)
        .await
        .unwrap();
    let b = Scheduler::try_subscribe_as(&addr, info("beta-of-bob", "team-b"), &bob)
        .await
        .unwrap();
    browser.click("#logout").await;
    browser
        .wait_text("the login", |t| t.contains("Sign in"))
        .await;
    browser.type_and_submit("#token", &alice).await;
    browser.goto(&format!("{url}#/")).await;
    browser
        .wait_text("alice's overview", |t| t.contains("alpha-of-alice"))
        .await;
    browser.goto(&format!("{url}#/frameworks")).await;
    let theirs = browser
        .wait_text("alice's framework", |t| t.contains("alpha-of-alice"))
        .await;
    for other in ["beta-of-bob", "service", "pi"] {
        assert!(
            !theirs.lines().any(|l| l.split('\t').next() == Some(other)),
            "alice's UI shows {other}:\n{theirs}"
        );
    }
    assert!(
        !theirs.contains(&b.id) && !theirs.contains(&svc),
        "{theirs}"
    );
    browser.goto(&format!("{url}#/tasks")).await;
    let tasks = browser
        .wait_text("alice's (empty) task list", |t| {
            t.contains("No live task matches")
        })
        .await;
    assert!(!tasks.contains("service-"), "{tasks}");
    browser.screenshot("tenant").await;
    // Every JSON listing the UI reads names none of another principal's frameworks or tasks.
    for path in [
        "/api/v1/cluster",
        "/api/v1/cluster/usage",
        "/api/v1/agents",
        "/api/v1/frameworks?completed=true",
        "/api/v1/tasks",
        "/api/v1/tasks?completed=true",
        "/api/v1/roles",
        "/api/v1/offers",
        "/api/v1/raft",
    ] {
        let (status, body) = http(&http_addr, "GET", path, Some(&alice), None).await;
        assert_eq!(status, 200, "GET {path} as alice: {body}");
        for other in [&b.id, &svc, &pi] {
            assert!(
                !body.contains(other.as_str()),
                "GET {path} as alice names {other}: {body}"
            );
        }
        assert!(!body.contains("service-0-"), "GET {path} as alice: {body}");
    }
    let alices = get_json(&http_addr, "/api/v1/frameworks", &alice).await;
    assert_eq!(alices["frameworks"][0]["id"], a.id.as_str(), "{alices}");
    for path in [
        format!("/api/v1/tasks/service-0-2?framework={svc}"),
        format!("/api/v1/tasks/service-0-2/log?framework={svc}"),
        format!("/api/v1/frameworks/{svc}/log"),
    ] {
        let (status, body) = http(&http_addr, "GET", &path, Some(&alice), None).await;
        assert!(
            status == 403 || status == 404,
            "GET {path} as alice: {status} {body}"
        );
    }
    // The management token reads the same task and its log.
    let t = get_json(
        &http_addr,
        &format!("/api/v1/tasks/service-0-2?framework={svc}"),
        &root,
    )
    .await;
    assert_eq!(t["state"], "running", "{t}");
    let log = get_json(
        &http_addr,
        &format!("/api/v1/tasks/service-0-1/log?framework={svc}&tail=10"),
        &root,
    )
    .await;
    assert!(log["data"].as_str().unwrap().contains(&mine), "{log}");
    assert_eq!(log["task_ended"], true, "{log}");

    browser.close().await;
    drop((a, b, service));
    agent.kill().await.unwrap();
    master.kill().await.unwrap();
}

/// Agents registered over the real agent session (`AgentService.Session`) with the agent
/// token, heartbeating every second from one task: enough of them to make the UI page. Their
/// sessions end when this is dropped.
struct SimAgents {
    _heartbeats: tokio::task::JoinHandle<()>,
}

impl SimAgents {
    async fn register(addr: &str, n: usize) -> SimAgents {
        use tokio_stream::wrappers::ReceiverStream;
        use wasmos_api::proto::agent_service_client::AgentServiceClient;
        let token = common::tokens_for(addr).unwrap().agent;
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut senders = Vec::with_capacity(n);
        let mut streams = Vec::with_capacity(n);
        for i in 0..n {
            let mut client = AgentServiceClient::with_interceptor(
                channel.clone(),
                common::Bearer::new(Some(&token)),
            );
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let register = pb::agent_message::Register {
                info: Some(pb::AgentInfo {
                    hostname: format!("sim-{i:04}"),
                    resources: Some(pb::Resources {
                        millicpus: 1000 + (i as u64 % 7) * 500,
                        mem_mb: 1024,
                        disk_mb: 0,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            tx.send(pb::AgentMessage {
                message: Some(pb::agent_message::Message::Register(register)),
            })
            .await
            .unwrap();
            let mut stream = client
                .session(ReceiverStream::new(rx))
                .await
                .unwrap_or_else(|e| panic!("simulated agent {i}: {e}"))
                .into_inner();
            let first = tokio::time::timeout(WAIT, stream.message())
                .await
                .expect("the master answers a registration")
                .unwrap()
                .unwrap();
            assert!(
                matches!(
                    first.message,
                    Some(pb::master_message::Message::Registered(_))
                ),
                "simulated agent {i}: {first:?}"
            );
            senders.push(tx);
            streams.push(stream);
        }
        let heartbeats = tokio::spawn(async move {
            // The streams stay open (and are drained, so the master never blocks on one).
            let mut streams = streams;
            loop {
                for tx in &senders {
                    let hb = pb::AgentMessage {
                        message: Some(pb::agent_message::Message::Heartbeat(
                            pb::agent_message::Heartbeat::default(),
                        )),
                    };
                    let _ = tx.try_send(hb);
                }
                for s in &mut streams {
                    while let Ok(Ok(Some(_))) =
                        tokio::time::timeout(Duration::from_millis(0), s.message()).await
                    {
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        SimAgents {
            _heartbeats: heartbeats,
        }
    }
}

impl Drop for SimAgents {
    fn drop(&mut self) {
        self._heartbeats.abort();
    }
}

/// The rows of the main area's table.
async fn table_rows(browser: &Browser) -> Vec<String> {
    browser
        .eval("return [...document.querySelectorAll('#main tbody tr')].map((r) => r.innerText);")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap_or_default().to_string())
        .collect()
}

/// At 10,000 ended tasks and 1,001 agents the UI stays quick: each listing asks the server
/// for one page (100 rows in the page, the server's `total` in the count), the order of the
/// agents is the server's (page 2 of the agents sorted by host starts where the JSON's page 2
/// does), the last page of the tasks has no Next, and the browser answers a script at once
/// after each page (no freeze).
#[tokio::test(flavor = "multi_thread")]
async fn the_ui_pages_ten_thousand_tasks_and_a_thousand_agents() {
    const TASKS: usize = 10_000;
    const SIMULATED: usize = 1_000;
    let browser = Browser::start().await;
    let http_addr = free_addr();
    let (mut master, addr) = start_master_with(
        &[
            "--http",
            &http_addr,
            "--max-completed-tasks-per-framework",
            &TASKS.to_string(),
        ],
        Stdio::inherit(),
    )
    .await;
    let root = common::tokens_for(&addr).unwrap().root;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = spawn_agent(
        &addr,
        &dir.path().join("w"),
        &["--hostname", "real-agent", "--resources", "cpus:2;mem:4096"],
    );
    let out = common::output(&[
        "submit",
        &example("benchguest"),
        "--master",
        &addr,
        "--",
        &TASKS.to_string(),
    ])
    .await;
    common::succeeded(&out);
    let _sims = SimAgents::register(&addr, SIMULATED).await;

    let agents = get_json(&http_addr, "/api/v1/agents?limit=1000", &root).await;
    assert_eq!(agents["total"], SIMULATED + 1, "{}", agents["total"]);
    assert_eq!(agents["agents"].as_array().unwrap().len(), 1000);
    assert_eq!(agents["next_offset"], 1000);
    let hosts: Vec<&str> = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["hostname"].as_str().unwrap())
        .collect();
    assert!(hosts.windows(2).all(|w| w[0] <= w[1]), "not by host");
    // The page's size: 100 by default, never more than 1000 however many are asked for.
    let default = get_json(&http_addr, "/api/v1/agents", &root).await;
    assert_eq!(default["agents"].as_array().unwrap().len(), 100);
    let far = get_json(&http_addr, "/api/v1/agents?limit=2147483647", &root).await;
    assert_eq!(far["agents"].as_array().unwrap().len(), 1000);
    let past = get_json(&http_addr, "/api/v1/agents?offset=2147483647", &root).await;
    assert!(past["agents"].as_array().unwrap().is_empty(), "{past}");
    assert!(past["next_offset"].is_null(), "{past}");
    // Pages of another order do not overlap and cover every agent once.
    let mut seen = std::collections::HashSet::new();
    let mut offset = 0;
    let mut last = "~".to_string();
    loop {
        let page = get_json(
            &http_addr,
            &format!("/api/v1/agents?sort=-host&limit=300&offset={offset}"),
            &root,
        )
        .await;
        for a in page["agents"].as_array().unwrap() {
            assert!(seen.insert(a["id"].as_str().unwrap().to_string()), "{a}");
            let host = a["hostname"].as_str().unwrap().to_string();
            assert!(host <= last, "not by host, descending: {host} after {last}");
            last = host;
        }
        match page["next_offset"].as_u64() {
            Some(n) => offset = n,
            None => break,
        }
    }
    assert_eq!(seen.len(), SIMULATED + 1);
    let ended = get_json(
        &http_addr,
        &format!(
            "/api/v1/tasks?completed=true&limit=1000&offset={}",
            TASKS - 1000
        ),
        &root,
    )
    .await;
    assert_eq!(ended["tasks"].as_array().unwrap().len(), 1000);
    assert!(ended["next_offset"].is_null(), "{}", ended["next_offset"]);

    let url = format!("http://{http_addr}/");
    browser.goto(&url).await;
    browser
        .wait_text("the login", |t| t.contains("Sign in"))
        .await;
    browser.type_and_submit("#token", &root).await;
    browser
        .wait_text("the overview with every agent", |t| {
            t.contains(&format!("of {}", SIMULATED + 1))
        })
        .await;
    browser.screenshot("scale-overview").await;

    // The agents, by host: page 2 starts where the JSON's does.
    let second = get_json(&http_addr, "/api/v1/agents?offset=100&limit=1", &root).await;
    let second_host = second["agents"][0]["hostname"]
        .as_str()
        .unwrap()
        .to_string();
    browser.goto(&format!("{url}#/agents?offset=100")).await;
    browser
        .wait_text("the second page of agents", |t| {
            t.contains(&format!("{} agents", SIMULATED + 1)) && t.contains("101–200")
        })
        .await;
    let rows = table_rows(&browser).await;
    assert_eq!(rows.len(), 100, "one page of agents: {}", rows.len());
    assert!(
        rows[0].starts_with(&second_host),
        "{} vs {second_host}",
        rows[0]
    );
    assert_eq!(browser.eval("return 1 + 1;").await, 2);
    browser.screenshot("scale-agents").await;

    // The ended tasks: one page, then the last one, which has no Next.
    browser.goto(&format!("{url}#/tasks?completed=1")).await;
    browser
        .wait_text("a page of ended tasks", |t| t.contains("1–100"))
        .await;
    assert_eq!(table_rows(&browser).await.len(), 100);
    browser
        .goto(&format!("{url}#/tasks?completed=1&offset={}", TASKS - 100))
        .await;
    browser
        .wait_text("the last page of ended tasks", |t| {
            t.contains(&format!("{}–{TASKS}", TASKS - 99))
        })
        .await;
    assert_eq!(table_rows(&browser).await.len(), 100);
    let next_disabled = browser
        .eval("return [...document.querySelectorAll('.pager button')].find((b) => b.innerText === 'Next').disabled;")
        .await;
    assert_eq!(next_disabled, true, "the last page offers a Next");
    assert_eq!(browser.eval("return 1 + 1;").await, 2);
    browser.screenshot("scale-tasks").await;

    browser.close().await;
    agent.kill().await.unwrap();
    master.kill().await.unwrap();
}
