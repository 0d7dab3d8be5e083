//! The caps on a hosted scheduler's callbacks: the defaults, the most an operator may ask for,
//! and the conversions between an operator's request, the [`TaskLimits`] the Wasm runtime
//! enforces, and the registry's record ([`HostedSpec`]) a new leader restarts the scheduler
//! from.
//!
//! The limits on what a scheduler asks of the master at run time (timers, state size) live
//! with the code that enforces them (`driving.rs`, `driver.rs`), not here.

use std::time::Duration;

use wasmos_api::proto as pb;
use wasmos_wasm_executor::TaskLimits;

use super::FrameworkHost;
use crate::registry::HostedSpec;

/// Most fuel an operator may give one callback.
const MAX_FUEL: u64 = 100_000_000_000;
/// Most memory an operator may give a scheduler, in MiB.
const MAX_MEMORY_MB: u64 = 1024;
/// Longest callback deadline an operator may set.
const MAX_CALLBACK_TIMEOUT: Duration = Duration::from_secs(60);

impl FrameworkHost {
    /// Limits for a scheduler's callbacks when the submitter gives none: 10^9 fuel units, 128
    /// MiB of memory and 10 s per callback.
    pub fn default_limits() -> TaskLimits {
        TaskLimits {
            fuel: Some(1_000_000_000),
            memory_bytes: 128 << 20,
            timeout: Duration::from_secs(10),
            ..TaskLimits::default()
        }
    }

    /// Limits from an operator's request: zero fields take [`FrameworkHost::default_limits`];
    /// every field is capped (10^11 fuel, 1 GiB, 60 s).
    pub fn limits_from(requested: Option<pb::SchedulerLimits>) -> TaskLimits {
        let d = Self::default_limits();
        let Some(r) = requested else { return d };
        let fuel = match r.fuel {
            0 => d.fuel,
            f => Some(f.min(MAX_FUEL)),
        };
        let memory_bytes = match r.memory_mb {
            0 => d.memory_bytes,
            mb => (mb.min(MAX_MEMORY_MB) as usize) << 20,
        };
        let t = r.callback_timeout_seconds;
        let timeout = if t.is_finite() && t > 0.0 {
            Duration::from_secs_f64(t.min(MAX_CALLBACK_TIMEOUT.as_secs_f64()))
        } else {
            d.timeout
        };
        TaskLimits {
            fuel,
            memory_bytes,
            timeout,
            ..d
        }
    }

    /// `limits` lowered to a principal's limits (`acl::Limits`: `max_scheduler_fuel`,
    /// `max_scheduler_memory_mb`, `max_callback_deadline_ms`); unset ones change nothing. A
    /// submit that asks for more than its principal's limit is refused by the authorization
    /// layer before this, so this lowers only the defaults it did not ask to change.
    pub fn capped(limits: TaskLimits, principal: &crate::acl::Limits) -> TaskLimits {
        let fuel = match (limits.fuel, principal.max_scheduler_fuel) {
            (Some(f), Some(m)) => Some(f.min(m)),
            // Unmetered is more than any limit.
            (None, Some(m)) => Some(m),
            (f, None) => f,
        };
        let memory_bytes = match principal.max_scheduler_memory_mb {
            Some(mb) => {
                let max = usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
                limits.memory_bytes.min(max)
            }
            None => limits.memory_bytes,
        };
        let timeout = match principal.max_callback_deadline_ms {
            Some(ms) => limits.timeout.min(Duration::from_millis(ms)),
            None => limits.timeout,
        };
        TaskLimits {
            fuel,
            memory_bytes,
            timeout,
            ..limits
        }
    }

    /// The registry's record of how a scheduler is hosted.
    pub fn spec_of(args: &[String], limits: &TaskLimits) -> HostedSpec {
        HostedSpec {
            args: args.to_vec(),
            fuel: limits.fuel,
            memory_bytes: limits.memory_bytes as u64,
            callback_timeout_ms: limits.timeout.as_millis().min(u64::MAX as u128) as u64,
        }
    }

    /// The limits a registry record of a hosted scheduler gives.
    pub fn limits_of(spec: &HostedSpec) -> TaskLimits {
        TaskLimits {
            fuel: spec.fuel,
            memory_bytes: spec.memory_bytes as usize,
            timeout: Duration::from_millis(spec.callback_timeout_ms),
            ..Self::default_limits()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_capped_at_the_principals_limits() {
        let d = FrameworkHost::default_limits();
        assert_eq!(
            FrameworkHost::capped(d.clone(), &crate::acl::Limits::NONE),
            d
        );
        let principal = crate::acl::Limits {
            max_scheduler_fuel: Some(1000),
            max_scheduler_memory_mb: Some(16),
            max_callback_deadline_ms: Some(1500),
            ..Default::default()
        };
        let c = FrameworkHost::capped(d, &principal);
        assert_eq!(c.fuel, Some(1000));
        assert_eq!(c.memory_bytes, 16 << 20);
        assert_eq!(c.timeout, Duration::from_millis(1500));
        // An unmetered request is metered at the limit; limits above the ask change nothing.
        let unmetered = TaskLimits {
            fuel: None,
            ..FrameworkHost::default_limits()
        };
        let loose = crate::acl::Limits {
            max_scheduler_fuel: Some(5),
            max_scheduler_memory_mb: Some(u64::MAX),
            max_callback_deadline_ms: Some(u64::MAX),
            ..Default::default()
        };
        let c = FrameworkHost::capped(unmetered, &loose);
        assert_eq!(c.fuel, Some(5));
        assert_eq!(c.memory_bytes, 128 << 20);
        assert_eq!(c.timeout, Duration::from_secs(10));
    }
}
