//! The soak's frameworks: what is submitted, with which arguments, and what its result must
//! be. Pure: the checker and the driver in `mod.rs` use it, and its tests pin the results.
//!
//! - `pi T S`: the result is known exactly. Each task samples with a seed fixed by its index,
//!   so the total inside the quarter circle, and so the printed estimate, does not depend on
//!   which attempt of a task was counted; [`pi_result`] recomputes pi's line.
//! - `logreg P N I 0`: the model does not depend on failures or where partitions were rebuilt
//!   (`examples-wasm/logreg`), so every run with the same arguments must report the same
//!   accuracy: the first one sets it for the run, every later one must match it.
//! - `benchguest N ...`: its JSON result must count N tasks. benchguest is a benchmark guest
//!   and does not survive faults by design: it fails as soon as one of its tasks ends other
//!   than FINISHED, and after a failover (its restarted scheduler never launched the tasks the
//!   reconciliation reports). Those two failures are [`Verdict::FailedByFault`], counted
//!   apart; any other failure, or a success with another count, is a violation.
//! - `service --for S K ...`: native `sleep` instances (cgroups) for S seconds; it must stop by
//!   itself with its summary.
//! - probes: `pi 1 1000`, submitted after each fault to time recovery, checked like `pi`.

use anyhow::{Context, bail};

/// A framework kind of the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Pi,
    Logreg,
    Benchguest,
    Service,
    /// A one-task pi submitted to time recovery.
    Probe,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Pi,
        Kind::Logreg,
        Kind::Benchguest,
        Kind::Service,
        Kind::Probe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Pi => "pi",
            Kind::Logreg => "logreg",
            Kind::Benchguest => "benchguest",
            Kind::Service => "service",
            Kind::Probe => "probe",
        }
    }

    /// The component it runs (file name in the components directory).
    pub fn component(self) -> &'static str {
        match self {
            Kind::Pi | Kind::Probe => "pi.wasm",
            Kind::Logreg => "logreg.wasm",
            Kind::Benchguest => "benchguest.wasm",
            Kind::Service => "service.wasm",
        }
    }

    /// The role it registers under: service's may run native tasks (`--command-task-roles`).
    pub fn role(self) -> &'static str {
        match self {
            Kind::Service => SERVICE_ROLE,
            _ => "chaos",
        }
    }

    /// The arguments of its `init`.
    pub fn args(self) -> Vec<String> {
        let a: &[&str] = match self {
            Kind::Pi => &["8", "20000"],
            Kind::Probe => &["1", "1000"],
            Kind::Logreg => &["2", "2000", "3", "0"],
            Kind::Benchguest => &["40", "10", "32", "2"],
            Kind::Service => &["--for", "20", "2", "0.1", "16", "--", "sleep", "1000"],
        };
        a.iter().map(|s| s.to_string()).collect()
    }

    /// Whether it is a batch job (ends by itself with a result to check).
    pub fn batch(self) -> bool {
        !matches!(self, Kind::Service)
    }
}

/// The role whose frameworks may run native tasks.
pub const SERVICE_ROLE: &str = "chaos-svc";

/// The kinds submitted continuously, drawn in turn from this cycle (probes come from faults):
/// pi twice as often as the others, at most one service at a time (the driver skips it while
/// one runs).
pub const MIX: [Kind; 5] = [
    Kind::Pi,
    Kind::Benchguest,
    Kind::Logreg,
    Kind::Pi,
    Kind::Service,
];

/// pi's own splitmix64 sampler (`examples-wasm/pi/src/sample.rs`), to know its answer.
fn count_inside(samples: u64, seed: u64) -> u64 {
    let mut state = seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0x5851_F42D_4C95_7F2D;
    let mut next_unit = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    };
    let mut inside = 0;
    for _ in 0..samples {
        let x = next_unit();
        let y = next_unit();
        if x * x + y * y <= 1.0 {
            inside += 1;
        }
    }
    inside
}

/// The exact line `pi TASKS SAMPLES` finishes with.
pub fn pi_result(tasks: u64, samples: u64) -> String {
    let inside: u64 = (0..tasks).map(|i| count_inside(samples, i)).sum();
    let sampled = tasks * samples;
    let estimate = 4.0 * inside as f64 / sampled as f64;
    format!(
        "pi ~= {estimate:.6} ({sampled} samples in {tasks} tasks, off by {:.1e})",
        (estimate - std::f64::consts::PI).abs()
    )
}

/// What logreg's result says of the model: `accuracy A on H held-out points after I
/// iterations over P partitions x N points`, which must be the same for every run with the
/// same arguments.
pub fn logreg_model(result: &str) -> anyhow::Result<String> {
    let start = result
        .find("accuracy ")
        .with_context(|| format!("no accuracy in logreg's result {result:?}"))?;
    let rest = &result[start..];
    let end = rest.find(';').unwrap_or(rest.len());
    Ok(rest[..end].trim().to_string())
}

/// A framework's outcome that is not a violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It reached its correct result.
    Correct,
    /// It failed the way a framework that does not survive faults fails under them.
    FailedByFault,
}

/// Whether benchguest's failure `result` is one a fault causes (see the module docs).
fn benchguest_fault(result: &str) -> bool {
    result.starts_with("benchguest: task ")
        && (result.contains(", not finished: ")
            || result.ends_with(" finished but was never launched"))
}

/// Checks a framework's outcome against what it must be. `logreg_reference` is the model of
/// the run's first logreg, set by the first one to succeed.
pub fn check(
    kind: Kind,
    succeeded: bool,
    result: &str,
    logreg_reference: &mut Option<String>,
) -> anyhow::Result<Verdict> {
    if !succeeded {
        if kind == Kind::Benchguest && benchguest_fault(result) {
            return Ok(Verdict::FailedByFault);
        }
        bail!("failed: {result}");
    }
    let num = |i: usize| -> u64 { kind.args()[i].parse().unwrap_or(0) };
    match kind {
        Kind::Pi | Kind::Probe => {
            let want = pi_result(num(0), num(1));
            if result != want {
                bail!("result {result:?}, expected {want:?}");
            }
        }
        Kind::Logreg => {
            let model = logreg_model(result)?;
            let (p, n, i) = (num(0), num(1), num(2));
            let shape = format!("after {i} iterations over {p} partitions x {n} points");
            if !model.ends_with(&shape) {
                bail!("result {result:?} is not of {shape:?}");
            }
            match logreg_reference {
                None => *logreg_reference = Some(model),
                Some(r) if *r == model => {}
                Some(r) => bail!("model {model:?} differs from the run's first, {r:?}"),
            }
        }
        Kind::Benchguest => {
            let v: serde_json::Value = serde_json::from_str(result)
                .with_context(|| format!("result {result:?} is not JSON"))?;
            if v["tasks"].as_u64() != Some(num(0)) {
                bail!("result counts {} tasks, not {}", v["tasks"], num(0));
            }
        }
        Kind::Service => {
            if !result.starts_with("service: stopping after") {
                bail!("result {result:?} is not service's summary");
            }
        }
    }
    Ok(Verdict::Correct)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pi_result_is_pis_line() {
        // What `pi 1 1000` prints (cross-checked against the component in the soak).
        let one = pi_result(1, 1000);
        assert!(one.starts_with("pi ~= "), "{one}");
        assert!(one.contains("(1000 samples in 1 tasks, off by "), "{one}");
        // The total is per index: two tasks are the first plus the second.
        let (a, b) = (count_inside(1000, 0), count_inside(1000, 1));
        assert_ne!(a, b);
        let two = pi_result(2, 1000);
        let est = 4.0 * (a + b) as f64 / 2000.0;
        assert!(two.starts_with(&format!("pi ~= {est:.6} ")), "{two}");
    }

    #[test]
    fn pi_checks_catch_a_wrong_total_and_a_failure() {
        let mut r = None;
        let good = pi_result(8, 20000);
        check(Kind::Pi, true, &good, &mut r).unwrap();
        let wrong = good.replace("160000 samples", "140000 samples");
        assert!(check(Kind::Pi, true, &wrong, &mut r).is_err());
        // One task's result counted twice changes the estimate.
        let inside: u64 =
            (0..8).map(|i| count_inside(20000, i)).sum::<u64>() + count_inside(20000, 3);
        let twice = format!("pi ~= {:.6} (", 4.0 * inside as f64 / 180000.0);
        assert!(check(Kind::Pi, true, &twice, &mut r).is_err());
        assert!(check(Kind::Pi, false, &good, &mut r).is_err());
        check(Kind::Probe, true, &pi_result(1, 1000), &mut r).unwrap();
    }

    #[test]
    fn logreg_runs_must_agree_on_the_model() {
        let res = |acc: &str| {
            format!(
                "logreg: accuracy {acc} on 2000 held-out points after 3 iterations over 2 \
                 partitions x 2000 points; iteration ms: 5.0, 1.0, 1.0; first/median-later = \
                 5.0x; partitions parsed: 2 in the first iteration, 0 rebuilt later"
            )
        };
        let mut r = None;
        check(Kind::Logreg, true, &res("0.9500"), &mut r).unwrap();
        assert!(r.is_some());
        check(Kind::Logreg, true, &res("0.9500"), &mut r).unwrap();
        assert!(check(Kind::Logreg, true, &res("0.9400"), &mut r).is_err());
        let other = res("0.9500").replace("3 iterations", "2 iterations");
        assert!(check(Kind::Logreg, true, &other, &mut None).is_err());
        assert!(check(Kind::Logreg, true, "logreg: done", &mut None).is_err());
    }

    #[test]
    fn benchguest_and_service_results() {
        let mut r = None;
        check(
            Kind::Benchguest,
            true,
            r#"{"tasks":40,"tasks_per_s":10}"#,
            &mut r,
        )
        .unwrap();
        assert!(check(Kind::Benchguest, true, r#"{"tasks":39}"#, &mut r).is_err());
        assert!(check(Kind::Benchguest, true, "not json", &mut r).is_err());
        let lost = "benchguest: task noop-3 ended lost, not finished: agent removed";
        assert_eq!(
            check(Kind::Benchguest, false, lost, &mut r).unwrap(),
            Verdict::FailedByFault
        );
        let relaunched = "benchguest: task noop-3 finished but was never launched";
        assert_eq!(
            check(Kind::Benchguest, false, relaunched, &mut r).unwrap(),
            Verdict::FailedByFault
        );
        assert!(check(Kind::Benchguest, false, "benchguest: bad args", &mut r).is_err());
        // Only benchguest's failures are excused.
        assert!(check(Kind::Pi, false, lost, &mut r).is_err());
        check(
            Kind::Service,
            true,
            "service: stopping after 20.0 s (--for 20); ...",
            &mut r,
        )
        .unwrap();
        assert!(check(Kind::Service, true, "service: what", &mut r).is_err());
    }
}
