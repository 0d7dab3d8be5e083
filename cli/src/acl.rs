//! `wasmos acl bootstrap|policy apply`, `wasmos tokens create|list|revoke` and `wasmos audit`:
//! the principals, tokens and policies of a master that enforces ACLs (`wasmos master --acl`),
//! and its audit log.
//!
//! Secrets are printed once, by the command that created them, and never again: `tokens list`
//! shows accessors. `audit` reads the log from the master's data dir (the file, not an RPC:
//! it works while the master is down, and reading it needs access to the master's host).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use wasmos_api::proto as pb;

use crate::client::{self, DEFAULT_MASTER, Failure};

/// `wasmos acl ...`.
#[derive(clap::Subcommand)]
pub enum AclCommand {
    /// Create the first management token (once per cluster) and print its secret. Keep it:
    /// it is shown only now.
    #[command(
        after_help = "Example:\n  wasmos acl bootstrap --master 10.0.0.1:5050   # prints the token: keep it"
    )]
    Bootstrap(MasterArg),
    /// Define policies.
    #[command(after_help = "Example:\n  wasmos acl policy apply eng eng-policy.json")]
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

/// `wasmos acl policy ...`.
#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Define or replace policy NAME from the JSON document in FILE: any of `roles`,
    /// `native_task_roles` (role patterns: `eng`, `eng/*`, `*`), `upload_components`,
    /// `see_all_frameworks`, `manage_all_frameworks`, `weights_and_quotas`, `raft_membership`,
    /// `manage_tokens`, `register_agents` (booleans; the last is an agent token's right); every
    /// right is off unless listed. Per-principal limits (numbers, unset: none from this
    /// policy): `max_frameworks` (registered frameworks), `max_upload_bytes` (one component),
    /// `max_scheduler_fuel`, `max_scheduler_memory_mb`, `max_callback_deadline_ms` (what its
    /// hosted schedulers may ask for; without an ask the master's default, capped at the
    /// limit). A token's limit is the loosest among its policies that set it. `management` is
    /// built in: every right, no limit.
    #[command(
        after_help = "Example:\n  echo '{\"roles\": [\"eng/*\"], \"upload_components\": true}' | wasmos acl policy apply eng -"
    )]
    Apply {
        /// The policy's name.
        name: String,
        /// The JSON document (`-` for stdin).
        file: PathBuf,
        #[command(flatten)]
        master: MasterArg,
    },
}

/// `wasmos tokens ...`.
#[derive(clap::Subcommand)]
pub enum TokensCommand {
    /// Create a token and print its secret (shown only now).
    #[command(
        after_help = "Example:\n  wasmos tokens create --principal alice --policy eng --ttl 30d"
    )]
    Create {
        /// Who holds it; frameworks it registers belong to this principal.
        #[arg(long)]
        principal: String,
        /// A policy it is bound to; repeat for more (their rights add up).
        #[arg(long = "policy", required = true)]
        policies: Vec<String>,
        /// How long it is valid (`30d`, `12h`, `1h30m`, `90s`) [default: forever].
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
        /// Print a JSON object instead of the secret alone.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        master: MasterArg,
    },
    /// List the tokens: accessor, principal, policies, expiry (never secrets).
    #[command(after_help = "Example:\n  wasmos tokens list --json")]
    List {
        /// Print a JSON array of objects.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        master: MasterArg,
    },
    /// Revoke a token at once, by accessor: its calls are refused and its open scheduler
    /// streams closed.
    #[command(
        after_help = "Example:\n  wasmos tokens revoke 6f1c2d3e   # an accessor from `wasmos tokens list`"
    )]
    Revoke {
        /// The token's accessor (`wasmos tokens list`).
        accessor: String,
        #[command(flatten)]
        master: MasterArg,
    },
}

/// `--master`.
#[derive(clap::Args)]
pub struct MasterArg {
    /// The master(s) to ask.
    #[arg(long, value_name = "ADDR[,ADDR...]", env = "WASMOS_MASTER", default_value = DEFAULT_MASTER)]
    master: String,
}

/// `wasmos audit`.
#[derive(clap::Args)]
pub struct AuditArgs {
    /// The master's --data-dir, which holds audit.jsonl (and audit.jsonl.1 after a rotation).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Only records of the last DURATION (`10m`, `2h`, `7d`) [default: all].
    #[arg(long, value_parser = parse_duration)]
    since: Option<Duration>,
    /// Print the records as JSON lines, as stored.
    #[arg(long)]
    json: bool,
}

/// Parses `30d`, `12h`, `1h30m`, `90s`, `2w` (or a bare number of seconds), as every time
/// flag does.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::duration_secs(s)
}

fn refused(s: &tonic::Status) -> Failure {
    Failure::Refused(client::status_text(s))
}

/// How long `wasmos acl bootstrap` retries while the group changes leader.
const BOOTSTRAP_RETRY: Duration = Duration::from_secs(15);

/// Runs `wasmos acl ...`.
pub async fn acl(command: AclCommand) -> ExitCode {
    let result: Result<(), Failure> = async {
        match command {
            AclCommand::Bootstrap(m) => {
                // The secret is drawn here, so that a call repeated after a lost answer (the
                // leader changed while it committed) gets the same token back.
                let secret = wasmos_master::acl::tokens::new_secret()
                    .map_err(|e| Failure::Refused(e.to_string()))?;
                let deadline = std::time::Instant::now() + BOOTSTRAP_RETRY;
                let t = loop {
                    let (mut op, _) = client::connect_leader(&m.master).await?;
                    match op
                        .bootstrap_acl(pb::BootstrapAclRequest {
                            secret: secret.clone(),
                        })
                        .await
                    {
                        Ok(t) => break t.into_inner(),
                        Err(s)
                            if (s.code() == tonic::Code::Unavailable
                                || wasmos_api::leader::is_not_leader(&s))
                                && std::time::Instant::now() < deadline =>
                        {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(s) => return Err(refused(&s)),
                    }
                };
                eprintln!(
                    "created the management token {} (principal {}); its secret follows, \
                     shown only now: keep it, pass it as WASMOS_TOKEN",
                    t.accessor, t.principal
                );
                println!("{}", t.secret);
                Ok(())
            }
            AclCommand::Policy {
                command: PolicyCommand::Apply { name, file, master },
            } => {
                let text = if file.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin())
                } else {
                    std::fs::read_to_string(&file)
                }
                .map_err(|e| {
                    Failure::Refused(format!("cannot read the policy {}: {e}", file.display()))
                })?;
                let (mut op, _) = client::connect_leader(&master.master).await?;
                op.apply_policy(pb::ApplyPolicyRequest {
                    name: name.clone(),
                    policy_json: text,
                })
                .await
                .map_err(|s| refused(&s))?;
                eprintln!("policy {name} applied");
                Ok(())
            }
        }
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report("wasmos acl"),
    }
}

/// Runs `wasmos tokens ...`.
pub async fn tokens(command: TokensCommand) -> ExitCode {
    let result: Result<(), Failure> = async {
        match command {
            TokensCommand::Create {
                principal,
                policies,
                ttl,
                json,
                master,
            } => {
                let (mut op, _) = client::connect_leader(&master.master).await?;
                let t = op
                    .create_token(pb::CreateTokenRequest {
                        principal,
                        policies,
                        ttl_seconds: ttl.map_or(0, |d| d.as_secs().max(1)),
                    })
                    .await
                    .map_err(|s| refused(&s))?
                    .into_inner();
                if json {
                    println!(
                        "{}",
                        json!({
                            "accessor": t.accessor,
                            "secret": t.secret,
                            "principal": t.principal,
                            "policies": t.policies,
                            "expires_unix_ms": (t.expires_unix_ms > 0).then_some(t.expires_unix_ms),
                        })
                    );
                } else {
                    eprintln!(
                        "created token {} for {}; its secret follows, shown only now",
                        t.accessor, t.principal
                    );
                    println!("{}", t.secret);
                }
                Ok(())
            }
            TokensCommand::List { json, master } => {
                let (mut op, _) = client::connect_leader(&master.master).await?;
                let list = op
                    .list_tokens(pb::ListTokensRequest {})
                    .await
                    .map_err(|s| refused(&s))?
                    .into_inner();
                if json {
                    let rows: Vec<_> = list
                        .tokens
                        .iter()
                        .map(|t| {
                            json!({
                                "accessor": t.accessor,
                                "principal": t.principal,
                                "policies": t.policies,
                                "created_unix_ms": t.created_unix_ms,
                                "expires_unix_ms": (t.expires_unix_ms > 0).then_some(t.expires_unix_ms),
                            })
                        })
                        .collect();
                    println!("{}", serde_json::Value::Array(rows));
                } else {
                    println!("ACCESSOR\tPRINCIPAL\tPOLICIES\tEXPIRES");
                    for t in &list.tokens {
                        let expires = if t.expires_unix_ms == 0 {
                            "never".to_string()
                        } else {
                            wasmos_master::acl::audit::rfc3339(t.expires_unix_ms)
                        };
                        println!(
                            "{}\t{}\t{}\t{expires}",
                            t.accessor,
                            t.principal,
                            t.policies.join(",")
                        );
                    }
                }
                Ok(())
            }
            TokensCommand::Revoke { accessor, master } => {
                let (mut op, _) = client::connect_leader(&master.master).await?;
                op.revoke_token(pb::RevokeTokenRequest {
                    accessor: accessor.clone(),
                })
                .await
                .map_err(|s| refused(&s))?;
                eprintln!("token {accessor} revoked");
                Ok(())
            }
        }
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report("wasmos tokens"),
    }
}

/// Runs `wasmos audit`.
pub fn audit(args: AuditArgs) -> ExitCode {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let since = args
        .since
        .map_or(0, |d| now.saturating_sub(d.as_millis() as u64));
    let records = match wasmos_master::acl::audit::read(&args.data_dir, since) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "wasmos audit: cannot read the audit log in {}: {e}; give the master's --data-dir",
                args.data_dir.display()
            );
            return ExitCode::from(2);
        }
    };
    for r in &records {
        if args.json {
            match serde_json::to_string(r) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("wasmos audit: a record did not serialize: {e}"),
            }
        } else {
            println!(
                "{}\t{}\t{}\t{}\t{:?}\t{}\t{}",
                r.time,
                r.principal,
                r.action,
                r.object,
                r.outcome,
                r.peer,
                crate::display::escape_controls_keep_lines(&r.reason)
            );
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("0.25").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("3x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
