//! How the bench's clusters are secured, as a real one is: every master enforces ACLs
//! (`wasmos master --acl`, the first token from `wasmos acl bootstrap`), and with `--tls`
//! every link is mutual TLS with certificates that `wasmos certs` makes in the run's temporary
//! directory. [`Security`] gives the flags of each process, the environment of each child
//! (`WASMOS_TOKEN`, `WASMOS_TLS_*`) and the bench's own gRPC clients, which send
//! `authorization: Bearer <token>` and dial with the client certificate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::Command;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use wasmos_api::identity::Role;
use wasmos_api::proto::agent_service_client::AgentServiceClient;
use wasmos_api::proto::operator_service_client::OperatorServiceClient;
use wasmos_api::proto::scheduler_service_client::SchedulerServiceClient;
use wasmos_api::tls::{TlsFiles, TlsMaterial};

/// How long connecting to a master may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest gRPC message the bench's clients send or accept.
const MAX_MESSAGE: usize = 64 << 20;

/// The bench's operator client: bearer token on every call.
pub type Operator = OperatorServiceClient<InterceptedService<Channel, Bearer>>;
/// The bench's scheduler client: bearer token on every call.
pub type Scheduler = SchedulerServiceClient<InterceptedService<Channel, Bearer>>;
/// The bench's agent-session client (simulated agents): bearer token on every call.
pub type AgentClient = AgentServiceClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to each call once the cluster has a token.
#[derive(Clone, Debug, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

/// A cluster's certificates: the CA directory `wasmos certs` wrote.
#[derive(Clone, Debug)]
struct Certs {
    dir: PathBuf,
    client: TlsMaterial,
}

/// The security of one bench cluster: ACLs always (a token once bootstrapped), TLS optionally.
#[derive(Clone, Debug)]
pub struct Security {
    acl: bool,
    certs: Option<Certs>,
    token: Option<String>,
}

/// Runs `wasmos ARGS` to its end; its stdout, or why it failed.
async fn wasmos_output(
    wasmos: &Path,
    args: &[&str],
    env: &[(&str, PathBuf)],
) -> anyhow::Result<String> {
    let mut c = Command::new(wasmos);
    c.args(args).stdin(std::process::Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .with_context(|| format!("`wasmos {}` did not end within 60 s", args.join(" ")))?
        .with_context(|| format!("cannot run {}", wasmos.display()))?;
    if !out.status.success() {
        bail!(
            "`wasmos {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Security {
    /// An open cluster: no ACLs, no TLS (to compare against, `--open`).
    pub fn open() -> Security {
        Security {
            acl: false,
            certs: None,
            token: None,
        }
    }

    /// ACLs enforced, and with `tls` a CA in `dir/certs` with a certificate for each of
    /// `masters` (named `m1`, `m2`, ... for 127.0.0.1), one agent certificate and one client
    /// certificate, made by `wasmos certs`.
    pub async fn make(
        wasmos: &Path,
        dir: &Path,
        tls: bool,
        masters: usize,
    ) -> anyhow::Result<Security> {
        let certs = if tls {
            let ca = dir.join("certs");
            let ca_dir = ca
                .to_str()
                .context("the temporary directory is not UTF-8")?;
            wasmos_output(wasmos, &["certs", "init", "--dir", ca_dir], &[]).await?;
            for m in 1..=masters {
                let name = format!("m{m}");
                wasmos_output(
                    wasmos,
                    &[
                        "certs",
                        "issue",
                        "master",
                        &name,
                        "--host",
                        "127.0.0.1,localhost",
                        "--dir",
                        ca_dir,
                    ],
                    &[],
                )
                .await?;
            }
            for (role, name) in [("agent", "a1"), ("client", "bench")] {
                wasmos_output(
                    wasmos,
                    &["certs", "issue", role, name, "--dir", ca_dir],
                    &[],
                )
                .await?;
            }
            let client = files(&ca, "client", "bench")
                .load(Some(Role::Client))
                .context("the bench's client certificate")?;
            Some(Certs { dir: ca, client })
        } else {
            None
        };
        Ok(Security {
            acl: true,
            certs,
            token: None,
        })
    }

    /// Flags of master number `n` (from 1): `--acl` and its TLS files.
    pub fn master_flags(&self, n: usize) -> Vec<String> {
        let mut flags = Vec::new();
        if self.acl {
            flags.push("--acl".to_string());
        }
        if let Some(c) = &self.certs {
            flags.extend(file_flags(&files(&c.dir, "master", &format!("m{n}"))));
        }
        flags
    }

    /// Flags of an agent: its TLS files.
    pub fn agent_flags(&self) -> Vec<String> {
        match &self.certs {
            Some(c) => file_flags(&files(&c.dir, "agent", "a1")),
            None => Vec::new(),
        }
    }

    /// Gives a child `wasmos` process the token (`WASMOS_TOKEN`) and, for a client command,
    /// the client certificate (`WASMOS_TLS_*`).
    pub fn child_env(&self, command: &mut Command, client: bool) {
        if let Some(t) = &self.token {
            command.env("WASMOS_TOKEN", t);
        }
        if client && let Some(c) = &self.certs {
            for (k, v) in client_env(&c.dir) {
                command.env(k, v);
            }
        }
    }

    /// Creates the cluster's management token through the master(s) at `masters`
    /// (comma-separated) with `wasmos acl bootstrap`; later clients and children carry it.
    /// Nothing to do without ACLs.
    pub async fn bootstrap(&mut self, wasmos: &Path, masters: &str) -> anyhow::Result<()> {
        if !self.acl {
            return Ok(());
        }
        let env = self
            .certs
            .as_ref()
            .map(|c| client_env(&c.dir))
            .unwrap_or_default();
        let env: Vec<(&str, PathBuf)> = env.into_iter().collect();
        let secret = wasmos_output(wasmos, &["acl", "bootstrap", "--master", masters], &env)
            .await?
            .trim()
            .to_string();
        if secret.is_empty() {
            bail!("`wasmos acl bootstrap` printed no token");
        }
        self.token = Some(secret);
        Ok(())
    }

    /// The bootstrapped management token, once there is one.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn bearer(&self) -> anyhow::Result<Bearer> {
        Ok(Bearer(match &self.token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .context("the bootstrapped token is not printable ASCII")?,
            ),
            None => None,
        }))
    }

    async fn channel(&self, addr: &str) -> anyhow::Result<Channel> {
        let tls = self.certs.as_ref().map(|c| &c.client);
        let endpoint =
            wasmos_api::tls::endpoint(addr, tls, CONNECT_TIMEOUT).map_err(anyhow::Error::msg)?;
        endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to the master at {addr}"))
    }

    /// An operator client of the master at `addr`.
    pub async fn operator(&self, addr: &str) -> anyhow::Result<Operator> {
        let channel = self.channel(addr).await?;
        Ok(
            OperatorServiceClient::with_interceptor(channel, self.bearer()?)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
    }

    /// An operator client of the master at `addr` that connects on its first call, reconnects
    /// after a failure, and gives up any one call after `timeout` (for a master that may be
    /// paused or cut off).
    pub fn operator_lazy(&self, addr: &str, timeout: Duration) -> anyhow::Result<Operator> {
        let tls = self.certs.as_ref().map(|c| &c.client);
        let channel = wasmos_api::tls::endpoint(addr, tls, timeout)
            .map_err(anyhow::Error::msg)?
            .timeout(timeout)
            .connect_lazy();
        Ok(
            OperatorServiceClient::with_interceptor(channel, self.bearer()?)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
    }

    /// An agent-session client of the master at `addr` on a connection of its own, made on
    /// first use and remade after a failure (for a master that may die), with the agent
    /// session's message bound both ways.
    pub fn agent_lazy(&self, addr: &str) -> anyhow::Result<AgentClient> {
        let tls = self.certs.as_ref().map(|c| &c.client);
        let channel = wasmos_api::tls::endpoint(addr, tls, CONNECT_TIMEOUT)
            .map_err(anyhow::Error::msg)?
            .connect_lazy();
        let max = wasmos_api::limits::AGENT_SESSION_MAX_MESSAGE_BYTES;
        Ok(
            AgentServiceClient::with_interceptor(channel, self.bearer()?)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
    }

    /// A scheduler client of the master at `addr`.
    pub async fn scheduler(&self, addr: &str) -> anyhow::Result<Scheduler> {
        let channel = self.channel(addr).await?;
        Ok(
            SchedulerServiceClient::with_interceptor(channel, self.bearer()?)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
    }
}

/// What a probe of a running master found: which of its defences are really up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enforced {
    /// A call without a token was refused `UNAUTHENTICATED`.
    pub acl: bool,
    /// A plain-text call was refused (`None` when the cluster is not meant to be TLS).
    pub tls: Option<bool>,
}

impl Security {
    /// Checks that the master at `addr` refuses a call without a token, and (with TLS) one
    /// over plain text, so that a report cannot claim a secured run that was not.
    pub async fn probe(&self, addr: &str) -> Enforced {
        let acl = match self.channel(addr).await {
            Ok(channel) => {
                let mut op = OperatorServiceClient::new(channel);
                matches!(
                    op.get_state(wasmos_api::proto::GetStateRequest {}).await,
                    Err(s) if s.code() == tonic::Code::Unauthenticated
                )
            }
            Err(_) => false,
        };
        let tls = match self.certs {
            None => None,
            Some(_) => {
                let plain = async {
                    let channel = wasmos_api::tls::endpoint(addr, None, CONNECT_TIMEOUT)
                        .map_err(anyhow::Error::msg)?
                        .connect()
                        .await?;
                    OperatorServiceClient::with_interceptor(channel, self.bearer()?)
                        .get_state(wasmos_api::proto::GetStateRequest {})
                        .await?;
                    anyhow::Ok(())
                };
                Some(
                    tokio::time::timeout(CONNECT_TIMEOUT, plain)
                        .await
                        .map_or(true, |r| r.is_err()),
                )
            }
        };
        Enforced { acl, tls }
    }
}

fn files(ca: &Path, role: &str, name: &str) -> TlsFiles {
    TlsFiles {
        cert: ca.join(format!("{role}-{name}.pem")),
        key: ca.join(format!("{role}-{name}-key.pem")),
        ca: ca.join("ca.pem"),
    }
}

fn file_flags(f: &TlsFiles) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        f.cert.display().to_string(),
        "--tls-key".into(),
        f.key.display().to_string(),
        "--tls-ca".into(),
        f.ca.display().to_string(),
    ]
}

fn client_env(ca: &Path) -> Vec<(&'static str, PathBuf)> {
    let f = files(ca, "client", "bench");
    vec![
        ("WASMOS_TLS_CERT", f.cert),
        ("WASMOS_TLS_KEY", f.key),
        ("WASMOS_TLS_CA", f.ca),
    ]
}
