//! The leader-hint protocol: how a master that is not the leader points callers at the one
//! that is.
//!
//! A master that is not the leader answers any `AgentService`, `SchedulerService` or
//! `OperatorService` call with gRPC status `FAILED_PRECONDITION` and the metadata key
//! [`LEADER_METADATA_KEY`] (`wasmos-leader`) set to the leader's address, `host:port` or
//! `http(s)://host:port`. The key is absent when it does not know the leader; callers then back
//! off and try the next master they know of. A `FAILED_PRECONDITION` without the key is an
//! ordinary refusal (or an unknown leader): no hint to follow.
//!
//! Servers build the status with [`not_leader_status`]; clients read it with [`leader_hint`],
//! which ignores anything that is not a well-formed address (the metadata comes off the
//! network).
//!
//! A master that shuts down cleanly ends its open streams with [`shutting_down_status`]
//! (`UNAVAILABLE`, marked with [`SHUTTING_DOWN_METADATA_KEY`]): its peers reconnect, and an
//! agent logs that as a normal stop ([`is_shutting_down`]), not a warning.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// The gRPC metadata key that carries the leader's address.
pub const LEADER_METADATA_KEY: &str = "wasmos-leader";

/// The gRPC metadata key present (value `1`) on every not-leader answer, hint or not, so that
/// callers can tell "no leader right now" (an election: retry soon) from other refusals.
pub const NOT_LEADER_METADATA_KEY: &str = "wasmos-not-leader";

/// The longest address accepted in a hint (a DNS name is at most 253 bytes, plus scheme and
/// port).
const MAX_ADDRESS_LEN: usize = 300;

/// The status a master that is not the leader answers every call with: `FAILED_PRECONDITION`
/// and, when `leader` is known and a well-formed address, the `wasmos-leader` metadata key set
/// to it. A malformed `leader` is left out, as if unknown.
pub fn not_leader_status(leader: Option<&str>) -> Status {
    let leader = leader.filter(|l| is_valid_address(l));
    let message = match leader {
        Some(l) => format!("this master is not the leader; the leader is {l}"),
        None => "this master is not the leader, and the leader is unknown".to_string(),
    };
    let mut status = Status::failed_precondition(message);
    status
        .metadata_mut()
        .insert(NOT_LEADER_METADATA_KEY, MetadataValue::from_static("1"));
    if let Some(value) = leader.and_then(|l| MetadataValue::try_from(l).ok()) {
        status.metadata_mut().insert(LEADER_METADATA_KEY, value);
    }
    status
}

/// The leader's address if `status` is a not-leader answer that names one: code
/// `FAILED_PRECONDITION` and a `wasmos-leader` value that is `host:port` or
/// `http(s)://host:port`. Anything else (another code, no key, a value that is not visible
/// ASCII or not an address) gives `None`.
pub fn leader_hint(status: &Status) -> Option<String> {
    if status.code() != Code::FailedPrecondition {
        return None;
    }
    let value = status.metadata().get(LEADER_METADATA_KEY)?.to_str().ok()?;
    is_valid_address(value).then(|| value.to_string())
}

/// Whether `status` is a not-leader answer (with or without a hint): `FAILED_PRECONDITION`
/// carrying [`NOT_LEADER_METADATA_KEY`].
pub fn is_not_leader(status: &Status) -> bool {
    status.code() == Code::FailedPrecondition
        && status.metadata().get(NOT_LEADER_METADATA_KEY).is_some()
}

/// The gRPC metadata key present (value `1`) on the status a master ends its open streams
/// with when it shuts down cleanly (Ctrl-C, SIGTERM), so that an agent or a scheduler can tell
/// a normal stop, worth an `info` line, from a failure.
pub const SHUTTING_DOWN_METADATA_KEY: &str = "wasmos-shutting-down";

/// The status a master ends every open stream with when it shuts down cleanly: `UNAVAILABLE`
/// (reconnect, to another master if there is one) marked with
/// [`SHUTTING_DOWN_METADATA_KEY`].
pub fn shutting_down_status() -> Status {
    let mut status =
        Status::unavailable("the master is shutting down; reconnect to another master");
    status
        .metadata_mut()
        .insert(SHUTTING_DOWN_METADATA_KEY, MetadataValue::from_static("1"));
    status
}

/// Whether `status` is a master's clean shutdown ([`shutting_down_status`]).
pub fn is_shutting_down(status: &Status) -> bool {
    status.code() == Code::Unavailable
        && status.metadata().get(SHUTTING_DOWN_METADATA_KEY).is_some()
}

/// Whether `address` is `host:port` or `http(s)://host:port`, where host is a DNS name, an
/// IPv4 address or a bracketed IPv6 address, and port is 1 to 65535. No path, user info,
/// query or whitespace.
pub fn is_valid_address(address: &str) -> bool {
    if address.is_empty() || address.len() > MAX_ADDRESS_LEN {
        return false;
    }
    let rest = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
        .unwrap_or(address);
    let Some((host, port)) = rest.rsplit_once(':') else {
        return false;
    };
    let port_ok = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0);
    port_ok && is_valid_host(host)
}

fn is_valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    // A DNS name (which also covers dotted IPv4): labels of letters, digits and '-', not
    // starting or ending with '-'.
    host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_shutdown_is_told_apart_from_other_unavailable_answers() {
        assert!(is_shutting_down(&shutting_down_status()));
        assert!(!is_shutting_down(&Status::unavailable(
            "the master is shutting down; reconnect to another master"
        )));
        assert!(!is_shutting_down(&not_leader_status(None)));
    }
    use tonic::metadata::MetadataValue;

    fn with_metadata(code: Code, value: &str) -> Status {
        let mut s = Status::new(code, "x");
        let value = MetadataValue::try_from(value).expect("a valid header value");
        s.metadata_mut().insert(LEADER_METADATA_KEY, value);
        s
    }

    #[test]
    fn round_trips_a_known_leader() {
        for addr in [
            "10.0.0.2:5050",
            "master-2.example.com:5050",
            "http://127.0.0.1:5050",
            "https://m2:443",
            "[::1]:5050",
            "http://[fe80::1]:7000",
        ] {
            let s = not_leader_status(Some(addr));
            assert_eq!(s.code(), Code::FailedPrecondition);
            assert!(s.message().contains(addr), "{}", s.message());
            assert_eq!(leader_hint(&s).as_deref(), Some(addr), "{addr}");
        }
    }

    #[test]
    fn an_unknown_leader_sets_no_key() {
        let s = not_leader_status(None);
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(s.metadata().get(LEADER_METADATA_KEY).is_none());
        assert_eq!(leader_hint(&s), None);
    }

    #[test]
    fn a_malformed_leader_is_left_out() {
        for bad in ["", "no-port", "evil\r\nx: y:1", "host:0", "a b:1"] {
            let s = not_leader_status(Some(bad));
            assert_eq!(s.code(), Code::FailedPrecondition);
            assert!(s.metadata().get(LEADER_METADATA_KEY).is_none(), "{bad:?}");
            assert_eq!(leader_hint(&s), None);
        }
    }

    #[test]
    fn other_codes_carry_no_hint() {
        for code in [Code::Unavailable, Code::Ok, Code::Internal, Code::NotFound] {
            assert_eq!(leader_hint(&with_metadata(code, "m2:5050")), None);
        }
        assert_eq!(
            leader_hint(&Status::failed_precondition(
                "the first message must be register"
            )),
            None
        );
    }

    #[test]
    fn garbage_metadata_is_ignored() {
        for garbage in [
            "",
            "m2",
            "m2:",
            ":5050",
            "m2:port",
            "m2:65536",
            "m2:0",
            "m2:+50",
            "m2:123456",
            "ftp://m2:21",
            "http://m2:5050/path",
            "http://user@m2:5050",
            "m2:5050?x=1",
            "-m2:5050",
            "m2-:5050",
            "m..2:5050",
            "[::1:5050",
            "[not-ipv6]:5050",
            "::1:5050",
            "http://",
            "m 2:5050",
        ] {
            assert_eq!(
                leader_hint(&with_metadata(Code::FailedPrecondition, garbage)),
                None,
                "{garbage:?}"
            );
        }
        // Not visible ASCII: `to_str` fails.
        let mut s = Status::failed_precondition("x");
        s.metadata_mut().insert(
            LEADER_METADATA_KEY,
            MetadataValue::try_from(&b"m\xe92:5050"[..]).expect("opaque bytes are allowed"),
        );
        assert_eq!(leader_hint(&s), None);
        // Too long.
        let long = format!("{}a:5050", "a.".repeat(200));
        assert_eq!(
            leader_hint(&with_metadata(Code::FailedPrecondition, &long)),
            None
        );
    }

    #[test]
    fn survives_the_header_map_round_trip() {
        let s = not_leader_status(Some("127.0.0.1:5051"));
        let mut headers = tonic::codegen::http::HeaderMap::new();
        s.add_header(&mut headers).expect("valid headers");
        let back = Status::from_header_map(&headers).expect("a status");
        assert_eq!(back.code(), Code::FailedPrecondition);
        assert_eq!(leader_hint(&back).as_deref(), Some("127.0.0.1:5051"));
    }
}
