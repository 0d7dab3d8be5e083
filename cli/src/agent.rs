//! `wasmos agent`: runs an agent (`wasmos_agent::run`) against one or more masters until
//! Ctrl-C or SIGTERM. Parses the resource and attribute flags; everything else keeps the
//! `AgentConfig` and `SessionConfig` defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use wasmos_agent::{AgentConfig, RunConfig, SessionConfig};
use wasmos_api::Resources;

#[derive(clap::Args)]
pub struct Args {
    /// Master addresses (`host:port`), tried in turn.
    #[arg(
        long,
        value_name = "ADDR[,ADDR...]",
        value_delimiter = ',',
        required = true
    )]
    master: Vec<String>,
    /// Where the agent keeps its database (DIR/agent.redb), sandboxes and components (created
    /// if missing). Once the agent has an id, DIR/agent.marker records it, and the agent refuses
    /// to start if agent.redb is then missing, empty or without an id: restore it, or remove it
    /// and the marker to start as a new agent (which first kills the native tasks the old one
    /// left running in DIR).
    #[arg(long, value_name = "DIR")]
    work_dir: PathBuf,
    /// Resources offered to the cluster, e.g. "cpus:4;mem:8192;disk:10000" (mem and disk in
    /// MiB) [default: what this machine has, for each resource not named].
    #[arg(long, value_name = "SPEC")]
    resources: Option<String>,
    /// Free-form attributes, e.g. "rack:r1,zone:a".
    #[arg(long, value_name = "K:V,...", value_delimiter = ',')]
    attributes: Vec<String>,
    /// This machine's name as the master shows it [default: the kernel's host name].
    #[arg(long)]
    hostname: Option<String>,
    /// The longest deadline, in seconds, a Wasm task or its framework may ask for here
    /// (`WasmTask.timeout_seconds`, `FrameworkInfo.wasm_task_timeout_seconds`); a task asking
    /// for more is refused with TASK_ERROR naming this flag. Tasks that ask for none get 1 h
    /// (or this, if lower).
    #[arg(long, value_name = "DURATION", default_value_t = 24.0 * 3600.0, value_parser = crate::seconds)]
    max_wasm_task_timeout: f64,
    /// The largest fuel budget (about one unit per Wasm instruction) a Wasm task or its
    /// framework may ask for here (`WasmTask.fuel`, `FrameworkInfo.wasm_task_fuel`); a task
    /// asking for more is refused with TASK_ERROR naming this flag. Tasks that ask for none
    /// get 10^11 (or this, if lower).
    #[arg(long, value_name = "N", default_value_t = wasmos_agent::config::DEFAULT_MAX_WASM_TASK_FUEL)]
    max_wasm_task_fuel: u64,
    /// The CPU, in cores, that Wasm tasks share on this agent (e.g. 1.5). Tasks that want CPU
    /// always get it in proportion to their declared cpus and together use at most this much.
    /// [default: the cpus this agent offers (--resources, else every CPU of the machine)]
    #[arg(long, value_name = "CPUS")]
    wasm_cpus: Option<f64>,
    /// Holds each Wasm task to its declared cpus even when CPU is idle (a 0.25-CPU task uses at
    /// most a quarter of a core). Off by default: a task may then use idle CPU beyond its
    /// share, and gets at least its share whenever the agent is busy. Turn it on for run times
    /// that do not depend on the neighbours, or to sell CPU by the share.
    #[arg(long)]
    wasm_cpu_hard_cap: bool,
    /// Disk quota, in MiB, of the sandbox of a native task that asks for no disk (disk_mb 0).
    /// A task whose sandbox (its files, its stdout and stderr) passes its quota (its disk_mb,
    /// or this) is killed and fails with a reason starting "disk quota exceeded", naming the
    /// quota and the usage, and its files but stdout and stderr are removed at once. One file
    /// past the quota gets SIGXFSZ (RLIMIT_FSIZE).
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    default_task_disk_mb: u64,
    /// How often, in seconds, a native task's sandbox usage is measured against its disk
    /// quota; each measure looks at 20,000 directory entries at most, so a larger sandbox is
    /// measured over several intervals.
    #[arg(long, value_name = "DURATION", default_value_t = 0.5, value_parser = crate::seconds)]
    disk_watch_interval: f64,
    /// The uids native tasks run as: each framework gets one of FIRST-LAST (gid = uid, no
    /// supplementary groups), claimed on its first task in DIR/uids/ and kept across
    /// restarts. Its sandbox is chowned to it, mode 0700.
    #[arg(
        long,
        value_name = "FIRST-LAST",
        default_value = "100000-165535",
        conflicts_with = "task_user"
    )]
    task_uid_range: String,
    /// Run every native task as this one user (a name from /etc/passwd, or UID[:GID]) instead
    /// of one uid per framework from --task-uid-range; root is refused. Tasks of different
    /// frameworks then share a uid and are kept apart by their mount and PID namespaces only.
    #[arg(long, value_name = "USER")]
    task_user: Option<String>,
    /// Roles whose native tasks run as root, with their capabilities and without the seccomp
    /// filter (still in their own mount and PID namespaces) [default: none].
    #[arg(long, value_name = "ROLE,...", value_delimiter = ',')]
    root_task_roles: Vec<String>,
    /// Run native tasks even when part of their isolation (user, mount, pid, no_new_privs,
    /// caps, seccomp) does not work here; the missing pieces are skipped, logged, and listed
    /// in the agent's registration (`wasmos agents`). Without it such an agent refuses every
    /// native task with a message naming what is missing.
    #[arg(long)]
    allow_weak_isolation: bool,
    /// For tests: the agent's store fails every write (as on a full disk) while this file
    /// exists.
    #[arg(long, value_name = "FILE", hide = true)]
    store_faults_while_exists: Option<PathBuf>,
    /// Serve `/health`, `/ready` (200 once registered with a master, else 503 with the
    /// reason) and Prometheus `/metrics` over plain HTTP on this address (`HOST:PORT`, port 0
    /// picks one) [default: not served]. `/metrics` needs `Authorization: Bearer TOKEN` with
    /// the agent's own token unless --metrics-open.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Serve the agent's `/metrics` without a token.
    #[arg(long, requires = "http")]
    metrics_open: bool,
    #[command(flatten)]
    compile: crate::compiler::CompileArgs,
    #[command(flatten)]
    tls: crate::tls_args::TlsArgs,
}

/// Parses `--attributes` entries `key:value`.
fn attributes(entries: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for e in entries.iter().filter(|e| !e.trim().is_empty()) {
        let (k, v) = e.split_once(':').with_context(|| {
            format!("attribute {e:?} has no ':'; write --attributes key:value,key2:value2")
        })?;
        let (k, v) = (k.trim(), v.trim());
        anyhow::ensure!(
            !k.is_empty(),
            "attribute {e:?} has an empty key; write --attributes key:value"
        );
        anyhow::ensure!(
            out.insert(k.to_string(), v.to_string()).is_none(),
            "attribute {k:?} is given twice in --attributes"
        );
    }
    Ok(out)
}

/// Parses `--resources`, measuring those it does not name.
fn resources(spec: &str, work_dir: &std::path::Path) -> anyhow::Result<Resources> {
    let mut given: Resources = spec
        .parse()
        .map_err(|e| anyhow::anyhow!("--resources: {e}"))?;
    let named = |key: &str| {
        spec.split(';')
            .any(|part| part.split(':').next().map(str::trim) == Some(key))
    };
    let measured = wasmos_agent::session::measure_resources(work_dir);
    if !named("cpus") {
        given.millicpus = measured.millicpus;
    }
    if !named("mem") {
        given.mem_mb = measured.mem_mb;
    }
    if !named("disk") {
        given.disk_mb = measured.disk_mb;
    }
    anyhow::ensure!(
        given.millicpus > 0 || given.mem_mb > 0,
        "--resources {spec:?} offers neither CPU nor memory, so no task could run here"
    );
    Ok(given)
}

fn config(args: &Args) -> anyhow::Result<RunConfig> {
    let masters: Vec<String> = args
        .master
        .iter()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    anyhow::ensure!(
        !masters.is_empty(),
        "--master is empty; give HOST:PORT[,HOST:PORT...]"
    );
    let attributes = attributes(&args.attributes)?;
    if let Some(spec) = &args.resources {
        // Syntax first, so that a typo creates no directory.
        spec.parse::<Resources>()
            .map_err(|e| anyhow::anyhow!("--resources: {e}"))?;
    }
    std::fs::create_dir_all(&args.work_dir).with_context(|| {
        format!(
            "cannot create the work directory {}; pick a writable --work-dir",
            args.work_dir.display()
        )
    })?;
    let mut session = SessionConfig::new(masters);
    if let Some(spec) = &args.resources {
        session.resources = Some(resources(spec, &args.work_dir)?);
    }
    session.attributes = attributes;
    // An agent certificate (`wasmos certs issue agent NAME`): masters let it open agent
    // sessions and fetch components, nothing else.
    session.tls = args.tls.load(wasmos_api::identity::Role::Agent)?;
    // The global --token/WASMOS_TOKEN: an agent token (policy `register_agents`) for a master
    // that enforces ACLs, which an agent certificate makes unnecessary.
    session.token = crate::client::token_secret();
    if let Some(h) = &args.hostname {
        session.hostname = h.clone();
    }
    let mut agent = AgentConfig::new(args.work_dir.clone());
    agent.runtime.compiler = args.compile.compiler()?;
    let t = args.max_wasm_task_timeout;
    anyhow::ensure!(
        t.is_finite() && t > 0.0,
        "--max-wasm-task-timeout {t} must be a number of seconds above 0"
    );
    agent.max_wasm_task_timeout = std::time::Duration::from_secs_f64(t);
    anyhow::ensure!(
        args.max_wasm_task_fuel > 0,
        "--max-wasm-task-fuel must be at least 1"
    );
    agent.max_wasm_task_fuel = args.max_wasm_task_fuel;
    if let Some(c) = args.wasm_cpus {
        anyhow::ensure!(
            c.is_finite() && c >= 0.001,
            "--wasm-cpus {c} must be a number of cores of at least 0.001"
        );
        agent.wasm_cpu.capacity_millicpus = Some((c * 1000.0).round() as u64);
    }
    agent.wasm_cpu.hard_cap = args.wasm_cpu_hard_cap;
    anyhow::ensure!(
        args.default_task_disk_mb > 0,
        "--default-task-disk-mb must be at least 1"
    );
    agent.native.default_disk_mb = args.default_task_disk_mb;
    let d = args.disk_watch_interval;
    anyhow::ensure!(
        d.is_finite() && (0.01..=3600.0).contains(&d),
        "--disk-watch-interval {d} must be a number of seconds from 0.01 to 3600"
    );
    agent.native.disk_watch_interval = std::time::Duration::from_secs_f64(d);
    agent.native.isolation.user = match &args.task_user {
        Some(u) => wasmos_agent::isolation::TaskUser::named(u)
            .map_err(|e| anyhow::anyhow!("--task-user: {e}"))?,
        None => wasmos_agent::isolation::TaskUser::parse_range(&args.task_uid_range)
            .map_err(|e| anyhow::anyhow!("--task-uid-range: {e}"))?,
    };
    agent.native.isolation.root_task_roles = args
        .root_task_roles
        .iter()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect();
    agent.native.isolation.allow_weak = args.allow_weak_isolation;
    agent.store_faults = args
        .store_faults_while_exists
        .clone()
        .map(wasmos_agent::store::StoreFaults::while_file_exists);
    let http = wasmos_agent::http::HttpConfig {
        listen: match &args.http {
            Some(a) => {
                Some(crate::parse_listen(a).map_err(|e| anyhow::anyhow!("--http {a}: {e}"))?)
            }
            None => None,
        },
        metrics_open: args.metrics_open,
    };
    Ok(RunConfig {
        agent,
        session,
        http,
    })
}

pub async fn run(args: Args) -> ExitCode {
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wasmos agent: {e:#}");
            return ExitCode::from(2);
        }
    };
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        on_signal.cancel();
    });
    match wasmos_agent::run_until_stopped(config, stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmos agent: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_attributes_and_refuses_malformed_ones() {
        let a = attributes(&["rack:r1".into(), "zone: a".into()]).unwrap();
        assert_eq!(a.get("rack").map(String::as_str), Some("r1"));
        assert_eq!(a.get("zone").map(String::as_str), Some("a"));
        let e = attributes(&["rack".into()]).unwrap_err().to_string();
        assert!(e.contains("no ':'"), "{e}");
        let e = attributes(&["a:1".into(), "a:2".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn named_resources_are_taken_and_the_rest_measured() {
        let dir = std::path::Path::new("/");
        let r = resources("cpus:4;mem:8192", dir).unwrap();
        assert_eq!((r.millicpus, r.mem_mb), (4000, 8192));
        let r = resources("mem:100", dir).unwrap();
        assert_eq!(r.mem_mb, 100);
        assert!(r.millicpus >= 1000, "cpus measured");
        assert!(resources("cpus:four", dir).is_err());
        assert!(resources("cpus:0;mem:0", dir).is_err());
    }

    #[derive(clap::Parser)]
    struct Cmd {
        #[command(flatten)]
        args: Args,
    }

    fn parse(extra: &[&str]) -> anyhow::Result<RunConfig> {
        use clap::Parser;
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().to_str().unwrap().to_string();
        let mut argv = vec!["agent", "--master", "m:1", "--work-dir", &work];
        argv.extend_from_slice(extra);
        config(&Cmd::try_parse_from(argv)?.args)
    }

    #[test]
    fn wasm_cpu_flags_set_the_capacity_and_the_hard_cap() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.agent.wasm_cpu, wasmos_agent::WasmCpu::default());
        assert!(!c.agent.wasm_cpu.hard_cap);
        let c = parse(&["--wasm-cpus", "1.5", "--wasm-cpu-hard-cap"]).unwrap();
        assert_eq!(c.agent.wasm_cpu.capacity_millicpus, Some(1500));
        assert!(c.agent.wasm_cpu.hard_cap);
        let e = parse(&["--wasm-cpus", "0"]).unwrap_err().to_string();
        assert!(e.contains("--wasm-cpus 0 must be"), "{e}");
    }
}
