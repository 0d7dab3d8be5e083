//! `Resources`: an amount of CPU, memory and disk, with arithmetic that never wraps.
//!
//! CPU is counted in thousandths of a core (`millicpus`) so sums are exact; memory and disk in
//! MiB. Every operation that could overflow or go negative is checked and says which resource
//! failed, because an allocator that silently wraps over-commits a machine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An amount of resources. `Default` is zero of everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    /// Thousandths of a CPU core.
    pub millicpus: u64,
    /// Memory in MiB.
    pub mem_mb: u64,
    /// Disk in MiB.
    pub disk_mb: u64,
}

/// Cores as a short decimal, the way the CLI prints them: 1500 millicpus is `1.5`, 2000 is `2`.
pub fn cpus_text(millicpus: u64) -> String {
    let whole = millicpus / 1000;
    match millicpus % 1000 {
        0 => whole.to_string(),
        frac => format!("{whole}.{frac:03}")
            .trim_end_matches('0')
            .to_string(),
    }
}

/// Why an operation on [`Resources`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourcesError {
    /// A sum would overflow `u64`.
    #[error("{resource} would overflow")]
    Overflow {
        /// Which resource (`cpus`, `mem` or `disk`).
        resource: &'static str,
    },
    /// A difference would go below zero.
    #[error("not enough {resource}: need {need}, have {have}")]
    Insufficient {
        /// Which resource (`cpus`, `mem` or `disk`).
        resource: &'static str,
        /// How much was to be taken (millicpus or MiB).
        need: u64,
        /// How much there is (millicpus or MiB).
        have: u64,
    },
    /// A resources string (`cpus:4;mem:8192;disk:10000`) is malformed.
    #[error(
        "cannot parse resources {input:?}: {why}; expected e.g. \"cpus:4;mem:8192;disk:10000\" \
         (mem and disk in MiB)"
    )]
    Parse {
        /// The string as given.
        input: String,
        /// What is wrong with it.
        why: String,
    },
}

impl Resources {
    /// Zero of everything.
    pub const ZERO: Resources = Resources {
        millicpus: 0,
        mem_mb: 0,
        disk_mb: 0,
    };

    /// The most of everything: what a role without a quota limit may take.
    pub const UNLIMITED: Resources = Resources {
        millicpus: u64::MAX,
        mem_mb: u64::MAX,
        disk_mb: u64::MAX,
    };

    /// Builds an amount from whole-core-fraction CPUs (rounded to the nearest thousandth).
    pub fn new(cpus: f64, mem_mb: u64, disk_mb: u64) -> Self {
        let millicpus = if cpus.is_finite() && cpus > 0.0 {
            (cpus * 1000.0).round().min(u64::MAX as f64) as u64
        } else {
            0
        };
        Resources {
            millicpus,
            mem_mb,
            disk_mb,
        }
    }

    /// CPUs as a fraction of cores.
    pub fn cpus(&self) -> f64 {
        self.millicpus as f64 / 1000.0
    }

    /// True when every resource is zero.
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// `self + other`, or which resource overflowed.
    pub fn checked_add(&self, other: &Resources) -> Result<Resources, ResourcesError> {
        Ok(Resources {
            millicpus: add("cpus", self.millicpus, other.millicpus)?,
            mem_mb: add("mem", self.mem_mb, other.mem_mb)?,
            disk_mb: add("disk", self.disk_mb, other.disk_mb)?,
        })
    }

    /// `self - other`, or which resource is short.
    pub fn checked_sub(&self, other: &Resources) -> Result<Resources, ResourcesError> {
        Ok(Resources {
            millicpus: sub("cpus", self.millicpus, other.millicpus)?,
            mem_mb: sub("mem", self.mem_mb, other.mem_mb)?,
            disk_mb: sub("disk", self.disk_mb, other.disk_mb)?,
        })
    }

    /// `self + other`, each resource capped at `u64::MAX`: for sums of guest-given amounts that
    /// are only compared, where an overflow means "more than anything fits".
    pub fn saturating_add(&self, other: &Resources) -> Resources {
        Resources {
            millicpus: self.millicpus.saturating_add(other.millicpus),
            mem_mb: self.mem_mb.saturating_add(other.mem_mb),
            disk_mb: self.disk_mb.saturating_add(other.disk_mb),
        }
    }

    /// `self - other`, each resource floored at zero: what is left of `self`, where taking more
    /// than there is leaves none rather than failing.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            millicpus: self.millicpus.saturating_sub(other.millicpus),
            mem_mb: self.mem_mb.saturating_sub(other.mem_mb),
            disk_mb: self.disk_mb.saturating_sub(other.disk_mb),
        }
    }

    /// The smaller of `self` and `other` on each resource (what fits in both).
    pub fn min_each(&self, other: &Resources) -> Resources {
        Resources {
            millicpus: self.millicpus.min(other.millicpus),
            mem_mb: self.mem_mb.min(other.mem_mb),
            disk_mb: self.disk_mb.min(other.disk_mb),
        }
    }

    /// True when `self` fits within `available` on every resource.
    pub fn fits_in(&self, available: &Resources) -> bool {
        self.millicpus <= available.millicpus
            && self.mem_mb <= available.mem_mb
            && self.disk_mb <= available.disk_mb
    }

    /// The largest of `self`'s shares of `total` across resources (the DRF dominant share).
    /// A resource of which `total` has none does not count.
    pub fn dominant_share(&self, total: &Resources) -> f64 {
        fn share(used: u64, total: u64) -> f64 {
            if total == 0 {
                0.0
            } else {
                used as f64 / total as f64
            }
        }
        share(self.millicpus, total.millicpus)
            .max(share(self.mem_mb, total.mem_mb))
            .max(share(self.disk_mb, total.disk_mb))
    }
}

fn add(resource: &'static str, a: u64, b: u64) -> Result<u64, ResourcesError> {
    a.checked_add(b)
        .ok_or(ResourcesError::Overflow { resource })
}

fn sub(resource: &'static str, have: u64, need: u64) -> Result<u64, ResourcesError> {
    have.checked_sub(need).ok_or(ResourcesError::Insufficient {
        resource,
        need,
        have,
    })
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpus:{};mem:{};disk:{}",
            self.cpus(),
            self.mem_mb,
            self.disk_mb
        )
    }
}

impl FromStr for Resources {
    type Err = ResourcesError;

    /// Parses `"cpus:4;mem:8192;disk:10000"`; missing resources are zero, order is free.
    fn from_str(input: &str) -> Result<Self, ResourcesError> {
        let err = |why: String| ResourcesError::Parse {
            input: input.to_string(),
            why,
        };
        let mut r = Resources::ZERO;
        for part in input.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once(':')
                .ok_or_else(|| err(format!("{part:?} has no ':'")))?;
            let value = value.trim();
            match name.trim() {
                "cpus" => {
                    let cpus: f64 = value
                        .parse()
                        .map_err(|_| err(format!("cpus value {value:?} is not a number")))?;
                    if !cpus.is_finite() || !(0.0..=1.0e12).contains(&cpus) {
                        return Err(err(format!("cpus value {value:?} is out of range")));
                    }
                    r.millicpus = (cpus * 1000.0).round() as u64;
                }
                "mem" => {
                    r.mem_mb = value
                        .parse()
                        .map_err(|_| err(format!("mem value {value:?} is not a whole number")))?
                }
                "disk" => {
                    r.disk_mb = value
                        .parse()
                        .map_err(|_| err(format!("disk value {value:?} is not a whole number")))?
                }
                other => return Err(err(format!("unknown resource {other:?}"))),
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_and_display_round_trip() {
        let r: Resources = "cpus:1.5; mem:512;disk:10".parse().unwrap();
        assert_eq!(
            r,
            Resources {
                millicpus: 1500,
                mem_mb: 512,
                disk_mb: 10
            }
        );
        assert_eq!(r.to_string().parse::<Resources>().unwrap(), r);
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let e = "cpus:x".parse::<Resources>().unwrap_err().to_string();
        assert!(e.contains("cpus value \"x\" is not a number"), "{e}");
        let e = "gpus:1".parse::<Resources>().unwrap_err().to_string();
        assert!(e.contains("unknown resource \"gpus\""), "{e}");
        assert!("cpus:-1".parse::<Resources>().is_err());
    }

    #[test]
    fn sub_names_the_short_resource() {
        let have = Resources::new(1.0, 100, 0);
        let need = Resources::new(0.5, 200, 0);
        assert_eq!(
            have.checked_sub(&need),
            Err(ResourcesError::Insufficient {
                resource: "mem",
                need: 200,
                have: 100
            })
        );
    }

    #[test]
    fn add_overflow_is_an_error() {
        let big = Resources {
            millicpus: u64::MAX,
            mem_mb: 0,
            disk_mb: 0,
        };
        assert_eq!(
            big.checked_add(&Resources::new(0.001, 0, 0)),
            Err(ResourcesError::Overflow { resource: "cpus" })
        );
    }

    #[test]
    fn saturating_ops_stop_at_the_bounds() {
        let one = Resources::new(1.0, 1, 1);
        assert_eq!(Resources::ZERO.saturating_sub(&one), Resources::ZERO);
        assert_eq!(
            Resources::UNLIMITED.saturating_add(&one),
            Resources::UNLIMITED
        );
        assert_eq!(
            Resources::new(2.0, 1, 9).min_each(&Resources::new(1.0, 5, 3)),
            Resources::new(1.0, 1, 3)
        );
    }

    #[test]
    fn dominant_share_is_the_max_share() {
        let total = Resources::new(10.0, 1000, 0);
        assert_eq!(Resources::new(1.0, 500, 7).dominant_share(&total), 0.5);
        assert_eq!(Resources::new(5.0, 100, 0).dominant_share(&total), 0.5);
    }

    /// One component, weighted towards the values where a `<`/`<=` or an overflow bug shows:
    /// zero, one, and the top of the range.
    fn component() -> impl Strategy<Value = u64> {
        prop_oneof![
            2 => Just(0u64),
            1 => Just(1u64),
            2 => Just(u64::MAX),
            1 => Just(u64::MAX - 1),
            1 => (u64::MAX - 1_000)..=u64::MAX,
            3 => 0u64..1 << 40,
            1 => any::<u64>(),
        ]
    }

    fn arb() -> impl Strategy<Value = Resources> {
        (component(), component(), component()).prop_map(|(c, m, d)| Resources {
            millicpus: c,
            mem_mb: m,
            disk_mb: d,
        })
    }

    /// A component related to `a`'s: equal, one off either side, or unrelated.
    fn near(a: u64) -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(a),
            Just(a.saturating_add(1)),
            Just(a.saturating_sub(1)),
            Just(u64::MAX - a),
            Just((u64::MAX - a).saturating_add(1)),
            component(),
        ]
    }

    /// Pairs whose components are often equal, adjacent, or sum to exactly `u64::MAX` or one
    /// past it.
    fn pair() -> impl Strategy<Value = (Resources, Resources)> {
        arb().prop_flat_map(|a| {
            (near(a.millicpus), near(a.mem_mb), near(a.disk_mb)).prop_map(move |(c, m, d)| {
                (
                    a,
                    Resources {
                        millicpus: c,
                        mem_mb: m,
                        disk_mb: d,
                    },
                )
            })
        })
    }

    fn parts(r: &Resources) -> [u64; 3] {
        [r.millicpus, r.mem_mb, r.disk_mb]
    }

    const NAMES: [&str; 3] = ["cpus", "mem", "disk"];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// Every operation against the same arithmetic done in `u128`, which cannot overflow.
        #[test]
        fn operations_match_wide_arithmetic((a, b) in pair()) {
            let (pa, pb) = (parts(&a), parts(&b));
            let sums: Vec<u128> = (0..3).map(|i| pa[i] as u128 + pb[i] as u128).collect();
            let max = u64::MAX as u128;
            match sums.iter().position(|s| *s > max) {
                None => {
                    let sum = a.checked_add(&b).unwrap();
                    prop_assert_eq!(parts(&sum).map(u128::from).to_vec(), sums.clone());
                }
                Some(i) => prop_assert_eq!(
                    a.checked_add(&b),
                    Err(ResourcesError::Overflow { resource: NAMES[i] })
                ),
            }
            let sat: Vec<u64> = sums.iter().map(|s| (*s).min(max) as u64).collect();
            prop_assert_eq!(parts(&a.saturating_add(&b)).to_vec(), sat);

            match (0..3).find(|&i| pb[i] > pa[i]) {
                None => {
                    let d = a.checked_sub(&b).unwrap();
                    prop_assert_eq!(parts(&d), [0, 1, 2].map(|i| pa[i] - pb[i]));
                    prop_assert!(b.fits_in(&a));
                }
                Some(i) => {
                    prop_assert_eq!(
                        a.checked_sub(&b),
                        Err(ResourcesError::Insufficient {
                            resource: NAMES[i],
                            need: pb[i],
                            have: pa[i],
                        })
                    );
                    prop_assert!(!b.fits_in(&a));
                }
            }
            let floor = [0, 1, 2].map(|i| pa[i].saturating_sub(pb[i]));
            prop_assert_eq!(parts(&a.saturating_sub(&b)), floor);
            prop_assert_eq!(parts(&a.min_each(&b)), [0, 1, 2].map(|i| pa[i].min(pb[i])));
            prop_assert_eq!(b.fits_in(&a), (0..3).all(|i| pb[i] <= pa[i]));
            prop_assert!(a.fits_in(&a), "fits in itself");
            prop_assert_eq!(a.min_each(&Resources::UNLIMITED), a);
            prop_assert!(Resources::ZERO.fits_in(&a) && a.fits_in(&Resources::UNLIMITED));
            prop_assert_eq!(a.is_zero(), pa == [0, 0, 0]);
        }

        /// The dominant share against its definition: the largest share over resources the
        /// total has, 1.0 when the amount equals the total, and zero against a zero total.
        #[test]
        fn dominant_share_matches_its_definition((used, total) in pair()) {
            let (pu, pt) = (parts(&used), parts(&total));
            let want = (0..3)
                .filter(|&i| pt[i] > 0)
                .map(|i| pu[i] as f64 / pt[i] as f64)
                .fold(0.0f64, f64::max);
            prop_assert_eq!(used.dominant_share(&total), want);
            if !total.is_zero() {
                prop_assert_eq!(total.dominant_share(&total), 1.0);
            }
            prop_assert_eq!(used.dominant_share(&Resources::ZERO), 0.0);
            prop_assert_eq!(Resources::ZERO.dominant_share(&total), 0.0);
        }
    }
}
