//! Tokens: what a principal authenticates with, and the replicated ACL state that holds them.
//!
//! A token's secret is 256 random bits from the operating system (`getrandom`), shown once to
//! whoever created it and never stored: the registry (and so the Raft log, snapshots and every
//! master) keeps only its sha256. A token is named in listings and revocations by its
//! accessor, a public random id. [`AclState`] is plain data changed only through the
//! registry's commands, so every master knows the same tokens and policies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use wasmos_api::FrameworkId;

use super::policy::{MANAGEMENT, Policy, validate_policy_name};
use crate::allocator::Millis;

/// What every secret starts with, so that a leaked one is easy to recognise (and to scan for).
pub const SECRET_PREFIX: &str = "wasmos_";

/// Most tokens the registry holds; creating more is refused (revoke unused ones).
pub const MAX_TOKENS: usize = 10_000;

/// Most policies the registry holds.
pub const MAX_POLICIES: usize = 1_000;

/// Longest principal name, in bytes.
pub const MAX_PRINCIPAL_LEN: usize = 128;

/// Most policies one token may be bound to.
pub const MAX_TOKEN_POLICIES: usize = 32;

/// A token as the registry keeps it: no secret, only its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Its public id (32 hex digits), shown in listings and used to revoke it.
    pub accessor: String,
    /// The sha256 of its secret, 64 lowercase hex digits.
    pub secret_sha256: String,
    /// Who holds it: the name frameworks it registers belong to.
    pub principal: String,
    /// The policies it is bound to (their rights add up).
    pub policies: Vec<String>,
    /// When it was created (master clock, milliseconds since the Unix epoch).
    pub created_ms: Millis,
    /// When it stops being accepted; `None` never.
    pub expires_ms: Option<Millis>,
}

impl TokenRecord {
    /// Whether it is accepted at `now` (not expired).
    pub fn live_at(&self, now: Millis) -> bool {
        self.expires_ms.is_none_or(|e| now < e)
    }
}

/// A freshly minted token: the secret (to show once) and the record to store.
#[derive(Debug)]
pub struct NewToken {
    /// The secret: [`SECRET_PREFIX`] and 64 hex digits. Show it once, never log it.
    pub secret: String,
    /// What the registry keeps.
    pub record: TokenRecord,
}

/// The sha256 of a secret, as stored.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_hex(bytes: usize) -> Result<String, AclStateError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| {
        AclStateError::Invalid(format!(
            "the operating system's random source failed ({e}); no token was created"
        ))
    })?;
    Ok(hex::encode(buf))
}

/// Mints a token for `principal` bound to `policies`, valid until `expires_ms` (or forever).
pub fn mint(
    principal: &str,
    policies: Vec<String>,
    created_ms: Millis,
    expires_ms: Option<Millis>,
) -> Result<NewToken, AclStateError> {
    mint_with(new_secret()?, principal, policies, created_ms, expires_ms)
}

/// A new random secret: [`SECRET_PREFIX`] and 64 hex digits (256 bits).
pub fn new_secret() -> Result<String, AclStateError> {
    Ok(format!("{SECRET_PREFIX}{}", random_hex(32)?))
}

/// Checks a secret a caller chose: the shape of [`new_secret`]'s.
pub fn check_secret(secret: &str) -> Result<(), AclStateError> {
    let digits = secret.strip_prefix(SECRET_PREFIX).unwrap_or("");
    if digits.len() == 64
        && digits
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(AclStateError::Invalid(format!(
            "a chosen secret must be {SECRET_PREFIX} and 64 lowercase hex digits (256 bits)"
        )))
    }
}

/// [`mint`] with the given secret (checked by the caller).
pub fn mint_with(
    secret: String,
    principal: &str,
    policies: Vec<String>,
    created_ms: Millis,
    expires_ms: Option<Millis>,
) -> Result<NewToken, AclStateError> {
    Ok(NewToken {
        record: TokenRecord {
            accessor: random_hex(16)?,
            secret_sha256: hash_secret(&secret),
            principal: principal.to_string(),
            policies,
            created_ms,
            expires_ms,
        },
        secret,
    })
}

/// Why an ACL command was refused; the state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AclStateError {
    /// A malformed token or policy (the message says which field and why).
    #[error("{0}")]
    Invalid(String),
    /// The command does not fit the state (already bootstrapped, an unknown accessor, ...).
    #[error("{0}")]
    Conflict(String),
    /// The state holds the most tokens ([`MAX_TOKENS`]) or policies ([`MAX_POLICIES`]) it
    /// keeps; the message says what to revoke or reuse (`RESOURCE_EXHAUSTED`).
    #[error("{0}")]
    Exhausted(String),
}

/// The replicated ACL state: tokens by accessor, policies by name, whether the first
/// management token was created, and who frameworks belong to where the framework record
/// cannot say.
///
/// The fields after `policies` were appended later: postcard encodes a struct as its fields
/// in order and this struct is the registry's last field, so a snapshot written before them
/// decodes with their defaults appended (`raft::store`'s `decode_registry`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclState {
    /// Set once `wasmos acl bootstrap` created the first management token; never cleared.
    pub bootstrapped: bool,
    /// Every live (unrevoked) token by accessor; expired ones stay until revoked.
    pub tokens: BTreeMap<String, TokenRecord>,
    /// The defined policies by name (the built-in `management` is not stored).
    pub policies: BTreeMap<String, Policy>,
    /// The accessor of the token that submitted each registered hosted framework: its
    /// scheduler acts with that token's current rights (native launches), and no more once
    /// the token is revoked or expired. Dropped with the framework. Default: empty (frameworks
    /// submitted on an open master, or before this was kept, have none).
    #[serde(default)]
    pub submitted_with: BTreeMap<FrameworkId, String>,
    /// The principal of each removed framework whose outcome the registry keeps, so that the
    /// owner check of `GetFrameworkResult` still holds after removal. Default: empty.
    #[serde(default)]
    pub ended_owners: BTreeMap<FrameworkId, String>,
}

impl AclState {
    /// The token whose secret hashes to `secret_sha256`.
    pub fn by_hash(&self, secret_sha256: &str) -> Option<&TokenRecord> {
        self.tokens
            .values()
            .find(|t| t.secret_sha256 == secret_sha256)
    }

    fn check_token(&self, t: &TokenRecord) -> Result<(), AclStateError> {
        let bad = |m: String| Err(AclStateError::Invalid(m));
        if t.principal.is_empty() || t.principal.len() > MAX_PRINCIPAL_LEN {
            return bad(format!(
                "principal must be 1 to {MAX_PRINCIPAL_LEN} bytes, not {}",
                t.principal.len()
            ));
        }
        // Printable ASCII without spaces, so that a name is one word in every listing and
        // log line and cannot hold control characters or look-alike Unicode.
        if !t.principal.bytes().all(|b| b.is_ascii_graphic()) {
            return bad(format!(
                "principal {:?}: only printable ASCII characters without spaces are allowed",
                t.principal
            ));
        }
        if t.accessor.len() != 32 || t.secret_sha256.len() != 64 {
            return bad("malformed token record".into());
        }
        if t.policies.is_empty() {
            return bad("a token needs at least one policy (--policy)".into());
        }
        if t.policies.len() > MAX_TOKEN_POLICIES {
            return bad(format!(
                "a token may be bound to at most {MAX_TOKEN_POLICIES} policies, not {}; \
                 merge some into one policy",
                t.policies.len()
            ));
        }
        for p in &t.policies {
            if p != MANAGEMENT && !self.policies.contains_key(p) {
                return bad(format!(
                    "policy {p:?} is not defined; define it first with `wasmos acl policy \
                     apply {p} FILE`"
                ));
            }
        }
        if self.tokens.contains_key(&t.accessor) || self.by_hash(&t.secret_sha256).is_some() {
            return Err(AclStateError::Conflict(format!(
                "token {} already exists",
                t.accessor
            )));
        }
        if self.tokens.len() >= MAX_TOKENS {
            return Err(AclStateError::Exhausted(format!(
                "the cluster holds {MAX_TOKENS} tokens, the most it keeps; no token was \
                 created for principal {:?}: revoke unused or expired ones first (`wasmos \
                 tokens list`, `wasmos tokens revoke ACCESSOR`)",
                t.principal
            )));
        }
        Ok(())
    }

    /// Stores the first management token; refused once bootstrapped.
    pub fn bootstrap(&mut self, t: TokenRecord) -> Result<(), AclStateError> {
        if self.bootstrapped {
            return Err(AclStateError::Conflict(
                "the ACLs were already bootstrapped; ask a holder of a management token for a \
                 token (`wasmos tokens create`)"
                    .into(),
            ));
        }
        if t.policies != [MANAGEMENT] {
            return Err(AclStateError::Invalid(
                "the bootstrap token must be bound to the management policy only".into(),
            ));
        }
        self.check_token(&t)?;
        self.bootstrapped = true;
        self.tokens.insert(t.accessor.clone(), t);
        Ok(())
    }

    /// Stores a new token.
    pub fn put_token(&mut self, t: TokenRecord) -> Result<(), AclStateError> {
        self.check_token(&t)?;
        self.tokens.insert(t.accessor.clone(), t);
        Ok(())
    }

    /// Forgets a token: it is refused from now on.
    pub fn revoke(&mut self, accessor: &str) -> Result<TokenRecord, AclStateError> {
        self.tokens.remove(accessor).ok_or_else(|| {
            AclStateError::Conflict(format!(
                "no token has accessor {accessor:?}; `wasmos tokens list` shows them"
            ))
        })
    }

    /// Defines or replaces a policy.
    pub fn put_policy(&mut self, name: String, policy: Policy) -> Result<(), AclStateError> {
        validate_policy_name(&name).map_err(AclStateError::Invalid)?;
        if name == MANAGEMENT {
            return Err(AclStateError::Invalid(
                "the management policy is built in and cannot be redefined".into(),
            ));
        }
        policy.validate().map_err(AclStateError::Invalid)?;
        if !self.policies.contains_key(&name) && self.policies.len() >= MAX_POLICIES {
            return Err(AclStateError::Exhausted(format!(
                "the cluster holds {MAX_POLICIES} policies, the most it keeps; policy {name:?} \
                 was not defined: redefine an unused one instead (`wasmos acl policy apply \
                 EXISTING_NAME FILE`)"
            )));
        }
        self.policies.insert(name, policy);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_long_and_only_hashed() {
        let a = mint("alice", vec![MANAGEMENT.into()], 0, None).unwrap();
        let b = mint("alice", vec![MANAGEMENT.into()], 0, None).unwrap();
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret.len(), SECRET_PREFIX.len() + 64);
        assert_eq!(a.record.secret_sha256, hash_secret(&a.secret));
        let dump = format!("{:?}", a.record);
        assert!(!dump.contains(&a.secret[SECRET_PREFIX.len()..]));
    }

    #[test]
    fn bootstrap_once_and_revoke() {
        let mut s = AclState::default();
        let t = mint("root", vec![MANAGEMENT.into()], 0, None).unwrap();
        s.bootstrap(t.record.clone()).unwrap();
        let again = mint("root", vec![MANAGEMENT.into()], 0, None).unwrap();
        assert!(matches!(
            s.bootstrap(again.record),
            Err(AclStateError::Conflict(_))
        ));
        let undefined = mint("bob", vec!["dev".into()], 0, None).unwrap();
        assert!(s.put_token(undefined.record).is_err());
        assert!(s.by_hash(&hash_secret(&t.secret)).is_some());
        s.revoke(&t.record.accessor).unwrap();
        assert!(s.by_hash(&hash_secret(&t.secret)).is_none());
        assert!(
            s.bootstrapped,
            "a revoked bootstrap token does not reopen bootstrap"
        );
    }

    #[test]
    fn expiry() {
        let t = mint("a", vec![MANAGEMENT.into()], 0, Some(10))
            .unwrap()
            .record;
        assert!(t.live_at(9) && !t.live_at(10));
    }

    fn record(i: usize, principal: &str, policies: Vec<String>) -> TokenRecord {
        TokenRecord {
            accessor: format!("{i:032x}"),
            secret_sha256: format!("{i:064x}"),
            principal: principal.into(),
            policies,
            created_ms: 0,
            expires_ms: None,
        }
    }

    #[test]
    fn tokens_are_capped_and_one_past_is_exhausted() {
        let mut s = AclState::default();
        for i in 0..MAX_TOKENS - 1 {
            let t = record(i, "p", vec![MANAGEMENT.into()]);
            s.tokens.insert(t.accessor.clone(), t);
        }
        s.put_token(record(MAX_TOKENS - 1, "p", vec![MANAGEMENT.into()]))
            .expect("the last token fits");
        let err = s
            .put_token(record(MAX_TOKENS, "p", vec![MANAGEMENT.into()]))
            .unwrap_err();
        assert!(matches!(err, AclStateError::Exhausted(_)), "{err:?}");
        assert!(err.to_string().contains("wasmos tokens revoke"), "{err}");
        assert_eq!(s.tokens.len(), MAX_TOKENS);
        let err = crate::core::CoreError::from(crate::registry::RegistryError::Acl(err));
        assert_eq!(
            crate::core::to_status(&err).code(),
            tonic::Code::ResourceExhausted
        );
    }

    #[test]
    fn policies_are_capped_and_one_past_is_exhausted() {
        let mut s = AclState::default();
        for i in 0..MAX_POLICIES {
            s.put_policy(format!("p{i}"), Policy::default())
                .expect("fits");
        }
        let err = s
            .put_policy("one-more".into(), Policy::default())
            .unwrap_err();
        assert!(matches!(err, AclStateError::Exhausted(_)), "{err:?}");
        assert!(err.to_string().contains("redefine an unused one"), "{err}");
        // Redefining one at the cap is allowed.
        s.put_policy("p0".into(), Policy::default()).unwrap();
        assert_eq!(s.policies.len(), MAX_POLICIES);
    }

    #[test]
    fn principal_names_and_policies_per_token_are_bounded() {
        let mut s = AclState::default();
        let mut i = 0;
        let mut put = |s: &mut AclState, principal: &str, n: usize| {
            i += 1;
            s.put_token(record(i, principal, vec![MANAGEMENT.into(); n]))
        };
        assert!(put(&mut s, &"a".repeat(MAX_PRINCIPAL_LEN), 1).is_ok());
        assert!(put(&mut s, &"a".repeat(MAX_PRINCIPAL_LEN + 1), 1).is_err());
        assert!(put(&mut s, "", 1).is_err());
        assert!(put(&mut s, "spiffe://x/y+z=1~!", 1).is_ok());
        for bad in ["a b", "tab\t", "caf\u{e9}", "nl\n"] {
            let err = put(&mut s, bad, 1).unwrap_err();
            assert!(matches!(err, AclStateError::Invalid(_)), "{bad:?}: {err:?}");
        }
        assert!(put(&mut s, "p", MAX_TOKEN_POLICIES).is_ok());
        let err = put(&mut s, "p", MAX_TOKEN_POLICIES + 1).unwrap_err();
        assert!(err.to_string().contains("at most 32 policies"), "{err}");
    }
}
