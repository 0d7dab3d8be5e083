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
    /// MiB); those not named are measured on this machine.
    #[arg(long, value_name = "SPEC")]
    resources: Option<String>,
    /// Free-form attributes, e.g. "rack:r1,zone:a".
    #[arg(long, value_name = "K:V,...", value_delimiter = ',')]
    attributes: Vec<String>,
    /// This machine's name as the master shows it (default: the kernel's host name).
    #[arg(long)]
    hostname: Option<String>,
    /// The longest deadline, in seconds, a Wasm task or its framework may ask for here
    /// (`WasmTask.timeout_seconds`, `FrameworkInfo.wasm_task_timeout_seconds`); a task asking
    /// for more is refused with TASK_ERROR naming this flag. Tasks that ask for none get 1 h
    /// (or this, if lower).
    #[arg(long, value_name = "SECONDS", default_value_t = 24.0 * 3600.0)]
    max_wasm_task_timeout: f64,
    /// The largest fuel budget (about one unit per Wasm instruction) a Wasm task or its
    /// framework may ask for here (`WasmTask.fuel`, `FrameworkInfo.wasm_task_fuel`); a task
    /// asking for more is refused with TASK_ERROR naming this flag. Tasks that ask for none
    /// get 10^11 (or this, if lower).
    #[arg(long, value_name = "N", default_value_t = wasmos_agent::config::DEFAULT_MAX_WASM_TASK_FUEL)]
    max_wasm_task_fuel: u64,
    /// For tests: the agent's store fails every write (as on a full disk) while this file
    /// exists.
    #[arg(long, value_name = "FILE", hide = true)]
    store_faults_while_exists: Option<PathBuf>,
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
    agent.store_faults = args
        .store_faults_while_exists
        .clone()
        .map(wasmos_agent::store::StoreFaults::while_file_exists);
    Ok(RunConfig { agent, session })
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
}
