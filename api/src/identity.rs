//! Who is on the other end of a TLS connection: the [`Role`] and name that a cluster
//! certificate carries, read from a peer certificate the TLS layer has already verified
//! against the cluster CA.
//!
//! A certificate says its role as Nomad's `server.<region>.nomad` does: one DNS
//! subject-alternative name `<role>.wasmos` ([`Role::san`]): `master.wasmos`, `agent.wasmos`
//! or `client.wasmos`. Its subject common name is the name given to `wasmos certs issue`.
//! Clients check the master's certificate for `master.wasmos` (not for the address dialled),
//! so a certificate of any other role cannot serve as a master.
//!
//! The master puts a [`PeerIdentity`] into every request's extensions
//! (`request.extensions().get::<PeerIdentity>()`) when it serves TLS; a plain-text master puts
//! none.

use std::fmt;

/// The DNS domain under which certificates name their role (`master.wasmos`, ...).
pub const CLUSTER_DOMAIN: &str = "wasmos";

/// Which side of the cluster a certificate belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A master: serves the cluster APIs, and takes part in Raft with the other masters.
    Master,
    /// An agent: registers with the masters and runs their tasks.
    Agent,
    /// An operator or scheduler client (the `wasmos` CLI, a remote scheduler).
    Client,
}

impl Role {
    /// Every role, in the order certificates are checked.
    pub const ALL: [Role; 3] = [Role::Master, Role::Agent, Role::Client];

    /// The role's word: `master`, `agent` or `client`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Agent => "agent",
            Role::Client => "client",
        }
    }

    /// The DNS subject-alternative name that marks a certificate of this role, e.g.
    /// `master.wasmos`.
    pub fn san(self) -> String {
        format!("{}.{CLUSTER_DOMAIN}", self.as_str())
    }

    /// The role named `word` (`master`, `agent`, `client`), if any.
    pub fn parse(word: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == word)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verified peer of a TLS connection: what its certificate says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The role its certificate carries (its `<role>.wasmos` name).
    pub role: Role,
    /// The certificate's subject common name (the name given to `wasmos certs issue`); empty
    /// when it has none.
    pub name: String,
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.role, self.name)
    }
}

/// Why a certificate does not name one role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The bytes are not a DER X.509 certificate.
    #[error("the peer certificate cannot be parsed: {0}")]
    Unparsable(String),
    /// No DNS name of the form `<role>.wasmos`.
    #[error(
        "the peer certificate names no role (no DNS name master.wasmos, agent.wasmos or \
         client.wasmos); issue it with `wasmos certs issue`"
    )]
    NoRole,
    /// More than one role name: such a certificate is refused rather than guessed at.
    #[error("the peer certificate names several roles ({0}); issue one certificate per role")]
    SeveralRoles(String),
}

impl PeerIdentity {
    /// The identity in the DER certificate `der`. It does not verify the certificate: the TLS
    /// layer has done that before.
    pub fn from_der(der: &[u8]) -> Result<PeerIdentity, IdentityError> {
        use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| IdentityError::Unparsable(e.to_string()))?;
        let mut roles = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(dns) = name {
                    for role in Role::ALL {
                        if dns.eq_ignore_ascii_case(&role.san()) && !roles.contains(&role) {
                            roles.push(role);
                        }
                    }
                }
            }
        }
        let role = match roles.as_slice() {
            [] => return Err(IdentityError::NoRole),
            [one] => *one,
            several => {
                let words: Vec<&str> = several.iter().map(|r| r.as_str()).collect();
                return Err(IdentityError::SeveralRoles(words.join(", ")));
            }
        };
        let name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string();
        Ok(PeerIdentity { role, name })
    }
}
