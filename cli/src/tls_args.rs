//! The `--tls-cert`, `--tls-key` and `--tls-ca` flags of `wasmos master` and `wasmos agent`:
//! all three or none, loaded and checked for the member's role before it starts.

use std::path::PathBuf;

use wasmos_api::identity::Role;
use wasmos_api::tls::{TlsFiles, TlsMaterial};

/// A member's TLS files on the command line.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// This member's certificate (PEM), from `wasmos certs issue master|agent NAME`. With
    /// --tls-key and --tls-ca, every link is mutual TLS.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM; keep it mode 0600).
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,
    /// The cluster CA's certificate (PEM), from `wasmos certs init`: peers must present a
    /// certificate it signed.
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The loaded files, checked to carry `role`; `None` without the flags.
    pub fn load(&self, role: Role) -> anyhow::Result<Option<TlsMaterial>> {
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Ok(Some(
                TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    ca: ca.clone(),
                }
                .load(Some(role))?,
            )),
            // clap's `requires_all` refuses a partial set before this runs.
            _ => Ok(None),
        }
    }
}
