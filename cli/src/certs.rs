//! `wasmos certs`: the cluster's certificates. `init` makes a CA; `issue ROLE NAME` makes a
//! leaf certificate signed by it whose DNS names carry the role (`master.wasmos`,
//! `agent.wasmos`, `client.wasmos`; see `wasmos_api::identity`), plus the `--host` names and
//! addresses it is reached at.
//!
//! Files, all PEM, in `--dir`:
//! - `ca.pem` (0644): the CA certificate, given to every member as `--tls-ca`;
//! - `ca-key.pem` (0600): the CA's private key; whoever holds it can mint any role, so keep
//!   it off the cluster's machines once the certificates are issued;
//! - `ROLE-NAME.pem` (0644) and `ROLE-NAME-key.pem` (0600): a member's certificate and key.
//!
//! Nothing is ever overwritten: an existing file makes the command fail. Keys are ECDSA P-256;
//! the CA is valid for 10 years, leaf certificates for `--days` (default 365).

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use wasmos_api::identity::Role;

/// The CA certificate's file name.
pub(crate) const CA_CERT: &str = "ca.pem";
/// The CA key's file name.
const CA_KEY: &str = "ca-key.pem";
/// How long the CA is valid.
const CA_DAYS: u64 = 3650;
const DAY: Duration = Duration::from_secs(24 * 3600);

#[derive(clap::Subcommand)]
pub enum CertsCommand {
    /// Create a cluster CA: DIR/ca.pem (certificate, 0644) and DIR/ca-key.pem (private key,
    /// 0600). Refuses to overwrite either.
    #[command(after_help = "Example:\n  wasmos certs init --dir tls")]
    Init {
        /// Where to write the CA (created if missing, mode 0700).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Issue a certificate signed by the CA in DIR: DIR/ROLE-NAME.pem (0644) and
    /// DIR/ROLE-NAME-key.pem (0600). Its DNS name ROLE.wasmos says what it may do: a master
    /// certificate serves and joins the Raft group, an agent one opens agent sessions, a
    /// client one calls the scheduler and operator APIs.
    #[command(
        after_help = "Example:\n  wasmos certs issue agent a1 --dir tls --host a1.example.com --days 90"
    )]
    Issue {
        /// master, agent or client.
        #[arg(value_parser = parse_role)]
        role: Role,
        /// The member's name (letters, digits, '.', '-', '_'), its certificate's common name.
        name: String,
        /// The directory of `wasmos certs init`.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Host names and IP addresses the member is reached at, added to its certificate
        /// (wasmos clients check a master for master.wasmos, other tools check these).
        #[arg(long, value_name = "HOST[,HOST...]", value_delimiter = ',')]
        host: Vec<String>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("{s:?} is not a role; write master, agent or client"))
}

pub fn run(command: CertsCommand) -> ExitCode {
    let result = match command {
        CertsCommand::Init { dir } => init(&dir),
        CertsCommand::Issue {
            role,
            name,
            dir,
            host,
            days,
        } => issue(&dir, role, &name, &host, days),
    };
    match result {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wasmos certs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Now and `days` from now, as certificate times.
fn validity(days: u64) -> anyhow::Result<(rcgen::CertificateParams, ())> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let mut params = CertificateParams::default();
    // An hour of slack for clocks that are a little behind.
    params.not_before = epoch + now.saturating_sub(Duration::from_secs(3600));
    params.not_after = epoch + now + DAY * u32::try_from(days).context("--days is too large")?;
    Ok((params, ()))
}

/// Writes `contents` to the new file `path` with `mode`, refusing an existing one.
fn write_new(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create {} (an existing file is never overwritten; move it away first)",
                path.display()
            )
        })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn refuse_existing(paths: &[&Path]) -> anyhow::Result<()> {
    for p in paths {
        anyhow::ensure!(
            !p.exists(),
            "{} exists already; wasmos certs never overwrites a certificate or key (move it \
             away first)",
            p.display()
        );
    }
    Ok(())
}

/// Creates the cluster CA in `dir` (see `wasmos certs init`); returns the files written.
pub(crate) fn init(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    refuse_existing(&[&cert_path, &key_path])?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    let (mut params, ()) = validity(CA_DAYS)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "wasmos cluster CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().context("cannot generate the CA key")?;
    let cert = params
        .self_signed(&key)
        .context("cannot sign the CA certificate")?;
    write_new(&key_path, &key.serialize_pem(), 0o600)?;
    write_new(&cert_path, &cert.pem(), 0o644)?;
    Ok(vec![cert_path, key_path])
}

/// Issues a certificate of `role` named `name` from the CA in `dir` (see `wasmos certs
/// issue`); returns the certificate's and the key's paths.
pub(crate) fn issue(
    dir: &Path,
    role: Role,
    name: &str,
    hosts: &[String],
    days: u64,
) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(
        !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')),
        "{name:?} is not a usable name: 1 to 64 letters, digits, '.', '-' or '_'"
    );
    let cert_path = dir.join(format!("{role}-{name}.pem"));
    let key_path = dir.join(format!("{role}-{name}-key.pem"));
    refuse_existing(&[&cert_path, &key_path])?;
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}; create the CA first with `wasmos certs init --dir {}`",
                path.display(),
                dir.display()
            )
        })
    };
    let ca_key = KeyPair::from_pem(&read(CA_KEY)?).context("the CA key is not usable")?;
    let issuer = Issuer::from_ca_cert_pem(&read(CA_CERT)?, ca_key)
        .context("the CA certificate is not usable")?;

    let (mut params, ()) = validity(days)?;
    params.distinguished_name.push(DnType::CommonName, name);
    let mut sans = vec![SanType::DnsName(
        role.san()
            .try_into()
            .context("the role name is not a DNS name")?,
    )];
    for host in hosts.iter().map(|h| h.trim()).filter(|h| !h.is_empty()) {
        anyhow::ensure!(
            Role::ALL
                .iter()
                .all(|r| !host.eq_ignore_ascii_case(&r.san())),
            "--host {host} is a role name; the role comes from the command's ROLE only"
        );
        sans.push(match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into().with_context(|| {
                format!("--host {host:?} is neither an IP address nor a DNS name")
            })?),
        });
    }
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Only a master's certificate may serve TLS: the others cannot pass as a server even to a
    // client that checked only the CA.
    params.extended_key_usages = match role {
        Role::Master => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Role::Agent | Role::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().context("cannot generate the key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("cannot sign the certificate")?;
    write_new(&key_path, &key.serialize_pem(), 0o600)?;
    write_new(&cert_path, &cert.pem(), 0o644)?;
    Ok(vec![cert_path, key_path])
}
