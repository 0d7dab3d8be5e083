//! The data and the math of `logreg`: a deterministic synthetic data set, its text form (what a
//! Spark job would read from HDFS), parsing it back into points, the logistic-loss gradient, and
//! the payload/result formats that carry weights and gradients between the two halves.
//!
//! Everything here is pure and deterministic, so a partition rebuilt on another agent (lineage)
//! is bit-for-bit the one that was lost, and the final model does not depend on scheduling.

/// Features per point. Fixed, so that payloads and results need not carry it.
pub const DIMS: usize = 10;

/// The partition index whose points are held out to measure accuracy; never a training
/// partition (those are bounded by `MAX_PARTITIONS` in the scheduler).
pub const HELD_OUT_PARTITION: u32 = u32::MAX;

/// Seed of the hidden "true" separating hyperplane the labels come from.
const TRUE_WEIGHTS_SEED: u64 = 0x6c6f_6772_6567_0001;

/// Share of labels flipped at random, so the data is not perfectly separable.
const LABEL_NOISE: f64 = 0.03;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, statistically good enough; no dependency.
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose stream is fixed by `seed` (mixed, so seeds 0, 1, 2 ... are far apart).
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0x5851_F42D_4C95_7F2D)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in [0, 1) from the top 53 bits.
    pub fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform float in [-1, 1).
    pub fn next_signed(&mut self) -> f64 {
        2.0 * self.next_unit() - 1.0
    }
}

/// Parsed points of one partition, features flattened (`DIMS` per point) for cache locality.
#[derive(Debug, Clone, PartialEq)]
pub struct Points {
    pub xs: Vec<f64>,
    pub ys: Vec<f64>,
}

impl Points {
    pub fn len(&self) -> usize {
        self.ys.len()
    }
}

fn true_weights() -> [f64; DIMS] {
    let mut rng = SplitMix64::new(TRUE_WEIGHTS_SEED);
    std::array::from_fn(|_| rng.next_signed())
}

/// Calls `f(label, features)` for each of the `count` points of `partition`, in order.
fn for_each_point(partition: u32, count: usize, mut f: impl FnMut(f64, &[f64; DIMS])) {
    let truth = true_weights();
    let mut rng = SplitMix64::new(u64::from(partition));
    for _ in 0..count {
        let x: [f64; DIMS] = std::array::from_fn(|_| rng.next_signed());
        let margin: f64 = x.iter().zip(&truth).map(|(a, b)| a * b).sum();
        let mut y = if margin >= 0.0 { 1.0 } else { -1.0 };
        if rng.next_unit() < LABEL_NOISE {
            y = -y;
        }
        f(y, &x);
    }
}

/// The source of a partition as text, one point a line: `LABEL X1 ... X10`, six decimals.
/// This stands in for the file a Spark job reads; producing and parsing it is the cost the
/// first iteration pays and later ones skip.
pub fn partition_text(partition: u32, count: usize) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(count * (DIMS * 10 + 4));
    for_each_point(partition, count, |y, x| {
        // Writing to a String cannot fail.
        let _ = write!(text, "{y}");
        for v in x {
            let _ = write!(text, " {v:.6}");
        }
        text.push('\n');
    });
    text
}

/// Parses text produced by [`partition_text`] (Spark's `readPoint`).
pub fn parse_points(text: &str) -> Result<Points, String> {
    let lines = text.lines().filter(|l| !l.trim().is_empty());
    let mut points = Points {
        xs: Vec::new(),
        ys: Vec::new(),
    };
    for (n, line) in lines.enumerate() {
        let mut words = line.split_ascii_whitespace();
        let label = words.next().unwrap_or_default();
        let y: f64 = label
            .parse()
            .map_err(|e| format!("line {}: bad label {label:?}: {e}", n + 1))?;
        points.ys.push(y);
        let mut dims = 0;
        for word in words {
            let v: f64 = word
                .parse()
                .map_err(|e| format!("line {}: bad feature {word:?}: {e}", n + 1))?;
            points.xs.push(v);
            dims += 1;
        }
        if dims != DIMS {
            return Err(format!("line {}: {dims} features, expected {DIMS}", n + 1));
        }
    }
    Ok(points)
}

/// Points generated directly, without the text round trip: the held-out set the scheduler
/// scores the model on.
pub fn points(partition: u32, count: usize) -> Points {
    let mut points = Points {
        xs: Vec::with_capacity(count * DIMS),
        ys: Vec::with_capacity(count),
    };
    for_each_point(partition, count, |y, x| {
        points.ys.push(y);
        points.xs.extend_from_slice(x);
    });
    points
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The gradient of the logistic loss summed over `points` (the Spark example's
/// `(1 / (1 + exp(-y * w.x)) - 1) * y * x`).
pub fn gradient(points: &Points, weights: &[f64; DIMS]) -> [f64; DIMS] {
    let mut g = [0.0; DIMS];
    for (x, &y) in points.xs.chunks_exact(DIMS).zip(&points.ys) {
        let scale = (1.0 / (1.0 + (-y * dot(weights, x)).exp()) - 1.0) * y;
        for (gi, xi) in g.iter_mut().zip(x) {
            *gi += scale * xi;
        }
    }
    g
}

/// Share of `points` that `weights` classifies correctly.
pub fn accuracy(points: &Points, weights: &[f64; DIMS]) -> f64 {
    if points.len() == 0 {
        return 0.0;
    }
    let right = points
        .xs
        .chunks_exact(DIMS)
        .zip(&points.ys)
        .filter(|(x, y)| (dot(weights, x) >= 0.0) == (**y > 0.0))
        .count();
    right as f64 / points.len() as f64
}

/// A task's payload: `"PARTITION POINTS W1 ... W10"`.
pub fn format_payload(partition: u32, count: usize, weights: &[f64; DIMS]) -> String {
    // `{}` on f64 prints the shortest text that parses back to the same value.
    let mut s = format!("{partition} {count}");
    for w in weights {
        s.push_str(&format!(" {w}"));
    }
    s
}

/// Parses [`format_payload`]'s text.
pub fn parse_payload(payload: &[u8]) -> Result<(u32, usize, [f64; DIMS]), String> {
    let text = std::str::from_utf8(payload).map_err(|e| {
        format!("payload is not UTF-8 ({e}); expected \"PARTITION POINTS W1 ... W{DIMS}\"")
    })?;
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    if words.len() != 2 + DIMS {
        return Err(format!(
            "payload has {} words, expected \"PARTITION POINTS W1 ... W{DIMS}\" ({} words)",
            words.len(),
            2 + DIMS
        ));
    }
    let partition: u32 = words[0]
        .parse()
        .map_err(|e| format!("bad PARTITION {:?} in payload: {e}", words[0]))?;
    let count: usize = words[1]
        .parse()
        .map_err(|e| format!("bad POINTS {:?} in payload: {e}", words[1]))?;
    let mut weights = [0.0f64; DIMS];
    for (w, word) in weights.iter_mut().zip(&words[2..]) {
        *w = word
            .parse()
            .map_err(|e| format!("bad weight {word:?} in payload: {e}"))?;
        if !w.is_finite() {
            return Err(format!("weight {word:?} in payload is not finite"));
        }
    }
    Ok((partition, count, weights))
}

/// Whether a task parsed its partition (`loaded`) or found it in the executor (`cached`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Loaded,
    Cached,
}

impl Source {
    fn word(self) -> &'static str {
        match self {
            Source::Loaded => "loaded",
            Source::Cached => "cached",
        }
    }
}

/// A task's result: `"loaded|cached POINTS G1 ... G10"`.
pub fn format_result(source: Source, count: usize, g: &[f64; DIMS]) -> String {
    let mut s = format!("{} {count}", source.word());
    for v in g {
        s.push_str(&format!(" {v}"));
    }
    s
}

/// Parses [`format_result`]'s text.
pub fn parse_result(data: &[u8]) -> Result<(Source, usize, [f64; DIMS]), String> {
    let text = std::str::from_utf8(data).map_err(|e| format!("result is not UTF-8: {e}"))?;
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    if words.len() != 2 + DIMS {
        return Err(format!(
            "result {text:?} is not \"SOURCE POINTS G1 ... G{DIMS}\""
        ));
    }
    let source = match words[0] {
        "loaded" => Source::Loaded,
        "cached" => Source::Cached,
        other => return Err(format!("result names unknown source {other:?}")),
    };
    let count: usize = words[1]
        .parse()
        .map_err(|e| format!("bad POINTS in result {text:?}: {e}"))?;
    let mut g = [0.0f64; DIMS];
    for (gi, word) in g.iter_mut().zip(&words[2..]) {
        *gi = word
            .parse()
            .map_err(|e| format!("bad gradient {word:?} in result: {e}"))?;
        if !gi.is_finite() {
            return Err(format!("gradient {word:?} in result is not finite"));
        }
    }
    Ok((source, count, g))
}

#[cfg(test)]
mod tests {
    //! Run on the host: `cargo test -p logreg --target x86_64-unknown-linux-gnu` in examples-wasm/.

    use super::*;

    #[test]
    fn text_round_trip_matches_direct_points() {
        let parsed = parse_points(&partition_text(3, 200)).unwrap();
        let direct = points(3, 200);
        assert_eq!(parsed.ys, direct.ys);
        for (a, b) in parsed.xs.iter().zip(&direct.xs) {
            assert!((a - b).abs() <= 5e-7, "{a} vs {b}");
        }
        assert_ne!(partition_text(3, 10), partition_text(4, 10));
    }

    #[test]
    fn gradient_descent_learns() {
        let train: Vec<Points> = (0..4)
            .map(|p| parse_points(&partition_text(p, 2000)).unwrap())
            .collect();
        let n: usize = train.iter().map(Points::len).sum();
        let mut w = [0.0; DIMS];
        for _ in 0..10 {
            let mut total = [0.0; DIMS];
            for p in &train {
                for (t, g) in total.iter_mut().zip(gradient(p, &w)) {
                    *t += g;
                }
            }
            for (wi, t) in w.iter_mut().zip(total) {
                *wi -= crate::LEARNING_RATE * t / n as f64;
            }
        }
        let acc = accuracy(&points(HELD_OUT_PARTITION, 2000), &w);
        assert!(acc >= 0.9, "accuracy {acc}");
    }

    #[test]
    fn payloads_and_results_round_trip() {
        let w: [f64; DIMS] = std::array::from_fn(|i| i as f64 / 3.0 - 1.0);
        assert_eq!(
            parse_payload(format_payload(2, 500, &w).as_bytes()),
            Ok((2, 500, w))
        );
        assert!(parse_payload(b"2 500 1").unwrap_err().contains("words"));
        assert!(parse_payload(&[0xff]).unwrap_err().contains("UTF-8"));
        let r = format_result(Source::Cached, 500, &w);
        assert_eq!(parse_result(r.as_bytes()), Ok((Source::Cached, 500, w)));
        assert!(parse_result(b"stale 1 2").is_err());
    }
}
