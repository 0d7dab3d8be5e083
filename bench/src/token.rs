//! The management token of the cluster a benchmark starts: every master enforces ACLs, so the
//! bench bootstraps its cluster once (`wasmos acl bootstrap`) and every call it makes, its
//! agents and its `wasmos` commands carry the token. One cluster per bench process.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context;
use tokio::process::Command;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;

/// The token, once [`bootstrap`] made it.
static TOKEN: OnceLock<MetadataValue<Ascii>> = OnceLock::new();
/// Its secret, for child processes (WASMOS_TOKEN).
static SECRET: OnceLock<String> = OnceLock::new();

/// Bootstraps the ACLs of the master or group at `masters` (comma-separated) with `wasmos`
/// and keeps the management token for the bench's calls.
pub async fn bootstrap(wasmos: &Path, masters: &str) -> anyhow::Result<()> {
    // A new group may elect (or change) its leader while the bootstrap looks for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let out = loop {
        let out = Command::new(wasmos)
            .args(["acl", "bootstrap", "--master", masters])
            .env_remove("WASMOS_TOKEN")
            .kill_on_drop(true)
            .output()
            .await
            .context("cannot run wasmos acl bootstrap")?;
        let leaderless = String::from_utf8_lossy(&out.stderr).contains("leader");
        if out.status.success() || !leaderless || std::time::Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    anyhow::ensure!(
        out.status.success(),
        "wasmos acl bootstrap --master {masters} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let value = format!("Bearer {secret}")
        .parse()
        .context("the bootstrap token is not ASCII")?;
    let _ = TOKEN.set(value);
    let _ = SECRET.set(secret);
    Ok(())
}

/// Puts the token in `command`'s WASMOS_TOKEN (none before [`bootstrap`]).
pub fn pass_to(command: &mut Command) -> &mut Command {
    match SECRET.get() {
        Some(s) => command.env("WASMOS_TOKEN", s),
        None => command.env_remove("WASMOS_TOKEN"),
    }
}

/// Adds `authorization: Bearer TOKEN` to each call, once [`bootstrap`] made the token.
#[derive(Clone, Copy, Debug, Default)]
pub struct BenchToken;

impl Interceptor for BenchToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = TOKEN.get() {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}
