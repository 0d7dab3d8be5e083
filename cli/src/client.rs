//! The CLI's client of a master's `OperatorService`, used by every command that talks to a
//! master (`submit`, `dev --run`, `agents`, `frameworks`, `tasks`, `kill`, `teardown`,
//! `operator members`): connecting to an address, finding the leader among `--master
//! ADDR[,ADDR...]` by following the not-leader hints (`wasmos_api::leader`), finding it again
//! after it changed, and turning a failed connection or call into a sentence.
//!
//! What lives elsewhere: each command's calls, its output and its exit status (a command maps
//! a [`Failure`] to its own status), and following a framework to its result (`submit`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use wasmos_api::proto as pb;
use wasmos_api::proto::operator_service_client::OperatorServiceClient;

use crate::display::escape_controls_keep_lines;

/// Where commands look for a master unless told, and where `wasmos master` listens unless
/// told.
pub const DEFAULT_MASTER: &str = "127.0.0.1:5050";

/// A connected operator client; every call carries the token given to [`set_token`].
pub type OperatorClient = OperatorServiceClient<InterceptedService<Channel, BearerToken>>;

/// The token every call to a master carries (`--token` / `WASMOS_TOKEN`, set at start; `wasmos
/// dev --secure` sets the management token it bootstrapped).
static TOKEN: std::sync::RwLock<Option<MetadataValue<Ascii>>> = std::sync::RwLock::new(None);

/// Sets the token later calls carry as `authorization: Bearer <token>`; refused when it is
/// not printable ASCII.
pub fn set_token(token: Option<&str>) -> Result<(), String> {
    let value = match token.map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(
            format!("Bearer {t}")
                .parse::<MetadataValue<Ascii>>()
                .map_err(|_| {
                    "the token (--token or WASMOS_TOKEN) is not printable ASCII".to_string()
                })?,
        ),
    };
    *TOKEN
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = value;
    Ok(())
}

/// The secret of [`set_token`]'s token, for a process that dials the master itself (`wasmos
/// agent`); `None` when no token was given.
pub fn token_secret() -> Option<String> {
    let token = TOKEN
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()?;
    let v = token.to_str().ok()?;
    v.strip_prefix("Bearer ").map(str::to_string)
}

/// Adds the `authorization` header of [`set_token`]'s token to each call.
#[derive(Clone, Copy, Debug, Default)]
pub struct BearerToken;

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let token = TOKEN
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(v) = token {
            request.metadata_mut().insert("authorization", v);
        }
        Ok(request)
    }
}

/// Largest gRPC message sent to or accepted from the master.
const MAX_MESSAGE: usize = 16 << 20;
/// How long connecting to one address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`find_leader`] waits for a group of masters to have a leader.
pub const LEADER_WAIT: Duration = Duration::from_secs(30);
/// How long an operator command waits for a group of masters to have a leader.
const OPERATOR_LEADER_WAIT: Duration = Duration::from_secs(5);
/// Most leader hints followed in a row before trying the next master given.
const MAX_HINTS: usize = 3;
/// Pause between rounds over the given masters when none leads.
const LEADER_RETRY: Duration = Duration::from_millis(100);

/// Why a command did not get what it asked for.
#[derive(Debug)]
pub enum Failure {
    /// Bad input, an unreachable master, or a refusal (exit 2).
    Refused(String),
    /// The framework ran and failed, or was removed without a result (exit 1).
    Failed(String),
}

impl Failure {
    /// The reason, without the kind.
    pub fn message(&self) -> &str {
        match self {
            Failure::Refused(m) | Failure::Failed(m) => m,
        }
    }

    /// Prints the reason on stderr, prefixed with `who`, and returns the exit status.
    pub fn report(&self, who: &str) -> ExitCode {
        match self {
            Failure::Refused(why) => {
                eprintln!("{who}: {}", escape_controls_keep_lines(why));
                ExitCode::from(2)
            }
            Failure::Failed(why) => {
                eprintln!(
                    "{who}: the framework failed: {}",
                    escape_controls_keep_lines(why)
                );
                ExitCode::from(1)
            }
        }
    }
}

/// The addresses in a `--master` value (`ADDR[,ADDR...]`).
pub fn master_list(master: &str) -> Vec<String> {
    let list: Vec<String> = master
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(String::from)
        .collect();
    if list.is_empty() {
        vec![master.to_string()]
    } else {
        list
    }
}

/// Finds the master that leads among `masters` (following the not-leader hints they answer
/// with), waiting up to [`LEADER_WAIT`] for one to take over. A single master that answers
/// at all is taken as it is, so that its own errors are reported as they are; when none of
/// them can be reached at the first try, that is the answer at once.
pub async fn find_leader(masters: &[String]) -> Result<String, Failure> {
    find_leader_within(masters, LEADER_WAIT).await
}

/// [`find_leader`], waiting at most `wait` for a leader.
pub async fn find_leader_within(masters: &[String], wait: Duration) -> Result<String, Failure> {
    let deadline = Instant::now() + wait;
    let mut last = String::new();
    let mut first_round = true;
    loop {
        let mut answered = false;
        for start in masters {
            let mut candidate = start.clone();
            for _ in 0..=MAX_HINTS {
                let mut op = match connect(&candidate).await {
                    Ok(op) => op,
                    Err(f) => {
                        last = f.message().to_string();
                        break;
                    }
                };
                answered = true;
                match op
                    .get_framework_result(pb::GetFrameworkResultRequest {
                        framework_id: "leader-probe".into(),
                    })
                    .await
                {
                    Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                        last = status_text(&s);
                        match wasmos_api::leader::leader_hint(&s) {
                            Some(leader) => candidate = leader,
                            None => break,
                        }
                    }
                    Err(s) if s.code() == tonic::Code::Unavailable => {
                        last = status_text(&s);
                        break;
                    }
                    _ => return Ok(candidate),
                }
            }
        }
        if first_round && !answered {
            return Err(Failure::Refused(last));
        }
        first_round = false;
        if Instant::now() >= deadline {
            return Err(Failure::Refused(format!(
                "no leading master among {} in {}: {last}",
                masters.join(","),
                crate::display::duration(wait)
            )));
        }
        tokio::time::sleep(LEADER_RETRY).await;
    }
}

/// Finds the leader again after a master answered `s` (not the leader, or unavailable): the
/// master `s` names first, then every one of `masters`; returns a client of it and its address.
pub async fn find_new_leader(
    s: &tonic::Status,
    masters: &[String],
) -> Result<(OperatorClient, String), Failure> {
    let mut candidates = Vec::new();
    candidates.extend(wasmos_api::leader::leader_hint(s));
    candidates.extend(masters.iter().cloned());
    let leader = find_leader(&candidates).await?;
    Ok((connect(&leader).await?, leader))
}

/// Connects to the operator API of the leader among `master` (`ADDR[,ADDR...]`), waiting up to
/// 5 s for one; returns the client and the leader's address.
pub async fn connect_leader(master: &str) -> Result<(OperatorClient, String), Failure> {
    let leader = find_leader_within(&master_list(master), OPERATOR_LEADER_WAIT).await?;
    Ok((connect(&leader).await?, leader))
}

/// The environment variables that give the CLI's operator and scheduler clients their TLS
/// files: a client (or master) certificate, its key, and the cluster CA. All three or none.
pub const TLS_ENV: [&str; 3] = ["WASMOS_TLS_CERT", "WASMOS_TLS_KEY", "WASMOS_TLS_CA"];

/// The CLI clients' TLS material: from [`TLS_ENV`] on first use, or given by [`set_client_tls`].
static TLS: std::sync::OnceLock<Result<Option<wasmos_api::tls::TlsMaterial>, String>> =
    std::sync::OnceLock::new();

/// Makes the CLI's clients in this process use `material` (a client certificate) instead of
/// [`TLS_ENV`]; refused once a client has connected.
pub fn set_client_tls(material: wasmos_api::tls::TlsMaterial) -> Result<(), String> {
    TLS.set(Ok(Some(material)))
        .map_err(|_| "the clients' TLS files were chosen already".to_string())
}

/// The CLI's TLS files from [`TLS_ENV`], read once per process: `None` when none of the
/// variables is set (plain text), an error when only some are or the files are unusable.
pub fn client_tls() -> Result<Option<&'static wasmos_api::tls::TlsMaterial>, Failure> {
    let loaded = TLS.get_or_init(|| {
        let [cert, key, ca] = TLS_ENV.map(|name| std::env::var_os(name).filter(|v| !v.is_empty()));
        match (cert, key, ca) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => wasmos_api::tls::TlsFiles {
                cert: cert.into(),
                key: key.into(),
                ca: ca.into(),
            }
            .load(None)
            .map(Some)
            .map_err(|e| e.to_string()),
            _ => Err(format!("set all of {} or none of them", TLS_ENV.join(", "))),
        }
    });
    loaded
        .as_ref()
        .map(Option::as_ref)
        .map_err(|e| Failure::Refused(e.clone()))
}

/// Connects to the operator API of the master at `master` (waiting up to 5 s), over mutual
/// TLS when [`client_tls`] gives files.
pub async fn connect(master: &str) -> Result<OperatorClient, Failure> {
    let tls = client_tls()?;
    let endpoint = wasmos_api::tls::endpoint(master, tls, CONNECT_TIMEOUT)
        .map_err(|e| Failure::Refused(format!("{e}; write --master HOST:PORT")))?;
    let channel = endpoint.connect().await.map_err(|e| {
        let mut why = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            why = format!("{why}: {s}");
            source = s.source();
        }
        let hint = if tls.is_some() {
            "is `wasmos master` running there, serving TLS with a certificate from the same CA \
             as WASMOS_TLS_CA?"
        } else {
            "is `wasmos master` (or `wasmos dev`) running there? pass its address with \
             --master. If it serves TLS, set WASMOS_TLS_CERT, WASMOS_TLS_KEY and WASMOS_TLS_CA"
        };
        Failure::Refused(format!(
            "cannot connect to a master at {master} ({why}); {hint}"
        ))
    })?;
    Ok(
        OperatorServiceClient::with_interceptor(channel, BearerToken)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
}

/// What to add to a broken-connection status: a TLS master closes a plain-text connection
/// at its first bytes, and refuses a foreign certificate after the client thinks the handshake
/// done, which the client sees only as a cancelled or unavailable call ("transport error").
fn plain_text_hint(s: &tonic::Status) -> &'static str {
    // The close may also land in the middle of the client's HTTP/2 preface, as an h2 error.
    let broken = match s.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown => true,
        tonic::Code::Internal => s.message().contains("h2 protocol error"),
        _ => false,
    };
    if !broken || wasmos_api::leader::leader_hint(s).is_some() {
        return "";
    }
    match client_tls() {
        Ok(None) => {
            " (the connection broke; if the master serves TLS, set WASMOS_TLS_CERT, \
             WASMOS_TLS_KEY and WASMOS_TLS_CA to a client certificate, its key and the cluster CA)"
        }
        Ok(Some(_)) => {
            " (the connection broke; the master may have refused the certificate in \
             WASMOS_TLS_CERT: is it issued by this cluster's CA, and not expired?)"
        }
        Err(_) => "",
    }
}

/// A gRPC status as a sentence, naming the leader when the master is not it ("this master is
/// not the leader; try --master LEADER"). A status without a message shows its code.
pub fn status_text(s: &tonic::Status) -> String {
    let hint = plain_text_hint(s);
    let text = status_text_bare(s);
    format!("{text}{hint}")
}

fn status_text_bare(s: &tonic::Status) -> String {
    match wasmos_api::leader::leader_hint(s) {
        Some(leader) => format!(
            "{} (this master is not the leader; try --master {leader})",
            s.message()
        ),
        None if s.message().is_empty() => format!("{:?}", s.code()),
        None => s.message().to_string(),
    }
}

/// [`status_text`] naming the master that answered: "the master at MASTER is not the leader;
/// try --master LEADER". A status without a message shows its code.
pub fn status_text_at(master: &str, s: &tonic::Status) -> String {
    let text = if s.message().is_empty() {
        format!("{:?}", s.code())
    } else {
        s.message().to_string()
    };
    match wasmos_api::leader::leader_hint(s) {
        Some(leader) => {
            format!("{text} (the master at {master} is not the leader; try --master {leader})")
        }
        None => format!("{text}{}", plain_text_hint(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_master_list_splits_on_commas_and_keeps_a_lone_value() {
        assert_eq!(master_list("a:1, b:2,,c:3"), ["a:1", "b:2", "c:3"]);
        assert_eq!(master_list(""), [""]);
    }

    #[test]
    fn status_texts_name_the_leader() {
        let hinted = wasmos_api::leader::not_leader_status(Some("m2:5050"));
        assert!(
            status_text(&hinted).ends_with("(this master is not the leader; try --master m2:5050)")
        );
        assert!(
            status_text_at("m1:5050", &hinted)
                .ends_with("(the master at m1:5050 is not the leader; try --master m2:5050)")
        );
        let bare = tonic::Status::not_found("");
        assert_eq!(status_text(&bare), "NotFound");
        assert_eq!(status_text_at("m1:5050", &bare), "NotFound");
        // A broken connection of a plain-text client (the test runs without WASMOS_TLS_*)
        // says how to speak TLS.
        let broken = tonic::Status::unavailable("");
        assert!(status_text(&broken).starts_with("Unavailable (the connection broke"));
        assert!(status_text_at("m1:5050", &broken).contains("WASMOS_TLS_CERT"));
    }
}
