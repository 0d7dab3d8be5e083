//! The fault plan: which fault comes next, on what, after how long and for how long, all
//! drawn from the seed, so that a run is replayed by its seed.
//!
//! Kinds are drawn from a bag holding each kind once, reshuffled when empty, so any six
//! consecutive faults from a bag boundary cover every kind (a short soak meets them all). A
//! fault's target is a raw draw, taken modulo the candidates when it is injected (a follower of
//! two, an agent of four, a master of three): which master leads is up to the cluster.

use std::time::Duration;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, deterministic, good enough to draw a plan.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose stream is fixed by `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6368_616f_735f_7761) // "chaos_wa": seed 0 is not the all-zero state
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A draw in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo)
    }
}

/// What can go wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// SIGKILL of the leading master; restarted from its data dir after `hold`.
    KillLeader,
    /// SIGKILL of a following master; restarted after `hold`.
    KillFollower,
    /// SIGKILL of an agent; restarted from its work dir after `hold`.
    KillAgent,
    /// The leader's link to the bridge cut for `hold`: it reaches no master, agent or client.
    PartitionLeader,
    /// An agent's work dir (its own tmpfs) filled to the last byte for `hold`.
    FullDisk,
    /// A master (leader or follower) stopped with SIGSTOP for `hold`, then SIGCONT.
    PauseMaster,
}

impl FaultKind {
    /// Every kind, in the order the report lists them.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::KillLeader,
        FaultKind::KillFollower,
        FaultKind::KillAgent,
        FaultKind::PartitionLeader,
        FaultKind::FullDisk,
        FaultKind::PauseMaster,
    ];

    /// Its name in the report and the fault log.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillLeader => "kill_leader",
            FaultKind::KillFollower => "kill_follower",
            FaultKind::KillAgent => "kill_agent",
            FaultKind::PartitionLeader => "partition_leader",
            FaultKind::FullDisk => "full_disk",
            FaultKind::PauseMaster => "pause_master",
        }
    }
}

/// One planned fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Its number in the run, from 1.
    pub n: u32,
    pub kind: FaultKind,
    /// A raw draw; the target is `target % candidates` when it is injected.
    pub target: u64,
    /// How long the cluster runs undisturbed (and recovered) before this fault.
    pub gap: Duration,
    /// How long the fault lasts: down time, partition, full disk or pause.
    pub hold: Duration,
}

/// Bounds of a plan's draws.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Gap before a fault, in milliseconds: `gap_ms.0..gap_ms.1`.
    pub gap_ms: (u64, u64),
    /// How long a fault lasts, in milliseconds: `hold_ms.0..hold_ms.1`.
    pub hold_ms: (u64, u64),
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            gap_ms: (2_000, 5_000),
            hold_ms: (1_000, 4_000),
        }
    }
}

/// The seeded sequence of faults.
pub struct Plan {
    rng: Rng,
    timing: Timing,
    bag: Vec<FaultKind>,
    n: u32,
}

impl Plan {
    pub fn new(seed: u64, timing: Timing) -> Plan {
        Plan {
            rng: Rng::new(seed),
            timing,
            bag: Vec::new(),
            n: 0,
        }
    }

    /// The next fault.
    pub fn next_fault(&mut self) -> Fault {
        if self.bag.is_empty() {
            self.bag = FaultKind::ALL.to_vec();
            // Fisher-Yates; popped from the end.
            for i in (1..self.bag.len()).rev() {
                let j = self.rng.range(0, i as u64 + 1) as usize;
                self.bag.swap(i, j);
            }
        }
        let kind = self.bag.pop().unwrap_or(FaultKind::KillLeader);
        self.n += 1;
        let target = self.rng.next_u64();
        let gap = Duration::from_millis(self.rng.range(self.timing.gap_ms.0, self.timing.gap_ms.1));
        let hold =
            Duration::from_millis(self.rng.range(self.timing.hold_ms.0, self.timing.hold_ms.1));
        Fault {
            n: self.n,
            kind,
            target,
            gap,
            hold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn faults(seed: u64, n: usize) -> Vec<Fault> {
        let mut p = Plan::new(seed, Timing::default());
        (0..n).map(|_| p.next_fault()).collect()
    }

    #[test]
    fn a_seed_replays_the_same_plan_and_another_seed_does_not() {
        assert_eq!(faults(7, 50), faults(7, 50));
        assert_ne!(faults(7, 50), faults(8, 50));
        assert_ne!(faults(0, 50), faults(1, 50));
    }

    #[test]
    fn every_six_faults_from_a_bag_boundary_cover_every_kind() {
        for seed in 0..20 {
            for bag in faults(seed, 60).chunks(6) {
                let kinds: BTreeSet<FaultKind> = bag.iter().map(|f| f.kind).collect();
                assert_eq!(kinds.len(), 6, "seed {seed}: {bag:?}");
            }
        }
    }

    #[test]
    fn gaps_and_holds_stay_within_their_bounds_and_faults_are_numbered() {
        let t = Timing::default();
        for (i, f) in faults(42, 200).iter().enumerate() {
            assert_eq!(f.n as usize, i + 1);
            let gap = f.gap.as_millis() as u64;
            let hold = f.hold.as_millis() as u64;
            assert!((t.gap_ms.0..t.gap_ms.1).contains(&gap), "{f:?}");
            assert!((t.hold_ms.0..t.hold_ms.1).contains(&hold), "{f:?}");
        }
        let mut r = Rng::new(1);
        assert_eq!(r.range(5, 5), 5);
        assert_eq!(r.range(5, 3), 5);
        assert!((0..1000).all(|_| r.range(3, 4) == 3));
    }
}
