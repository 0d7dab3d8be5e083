//! The executor's work: count random points of the unit square that fall in the quarter circle.
//!
//! Pure and deterministic (a seeded SplitMix64), so a relaunched task returns exactly what the
//! lost one would have, and the final estimate does not depend on scheduling.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and statistically good enough for Monte
/// Carlo; no dependency needed.
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in [0, 1) from the top 53 bits (all an f64 mantissa holds).
    pub fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// How many of `samples` points drawn with `seed` land inside the quarter circle of radius 1.
pub fn count_inside(samples: u64, seed: u64) -> u64 {
    // Mixing the seed keeps streams of neighbouring seeds (0, 1, 2, ...) apart.
    let mut rng = SplitMix64::new(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0x5851_F42D_4C95_7F2D);
    let mut inside = 0u64;
    for _ in 0..samples {
        let x = rng.next_unit();
        let y = rng.next_unit();
        if x * x + y * y <= 1.0 {
            inside += 1;
        }
    }
    inside
}

/// Parses a task payload `"SAMPLES SEED"`.
pub fn parse_payload(payload: &[u8]) -> Result<(u64, u64), String> {
    let text = std::str::from_utf8(payload)
        .map_err(|e| format!("payload is not UTF-8 ({e}); expected \"SAMPLES SEED\""))?;
    let mut words = text.split_ascii_whitespace();
    let (Some(samples), Some(seed), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!("payload {text:?} is not \"SAMPLES SEED\""));
    };
    let samples = samples
        .parse()
        .map_err(|e| format!("bad SAMPLES {samples:?} in payload: {e}"))?;
    let seed = seed
        .parse()
        .map_err(|e| format!("bad SEED {seed:?} in payload: {e}"))?;
    Ok((samples, seed))
}

/// Parses a task result `"INSIDE SAMPLES"`, checking that it is plausible.
pub fn parse_result(data: &[u8]) -> Result<(u64, u64), String> {
    let text = std::str::from_utf8(data).map_err(|e| format!("result is not UTF-8: {e}"))?;
    let mut words = text.split_ascii_whitespace();
    let (Some(inside), Some(samples), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!("result {text:?} is not \"INSIDE SAMPLES\""));
    };
    let inside: u64 = inside
        .parse()
        .map_err(|e| format!("bad INSIDE in {text:?}: {e}"))?;
    let samples: u64 = samples
        .parse()
        .map_err(|e| format!("bad SAMPLES in {text:?}: {e}"))?;
    if inside > samples {
        return Err(format!(
            "result {text:?} has more points inside than sampled"
        ));
    }
    Ok((inside, samples))
}

#[cfg(test)]
mod tests {
    //! Run on the host: `cargo test -p pi --target x86_64-unknown-linux-gnu` in examples-wasm/.

    use super::*;

    #[test]
    fn deterministic_and_close_to_pi() {
        assert_eq!(count_inside(10_000, 3), count_inside(10_000, 3));
        assert_ne!(count_inside(10_000, 3), count_inside(10_000, 4));
        let (inside, total) = (0..20).fold((0, 0), |(i, t), seed| {
            (i + count_inside(100_000, seed), t + 100_000)
        });
        let estimate = 4.0 * inside as f64 / total as f64;
        assert!((estimate - std::f64::consts::PI).abs() < 0.01, "{estimate}");
    }

    #[test]
    fn payloads_and_results() {
        assert_eq!(parse_payload(b"1000 7"), Ok((1000, 7)));
        assert!(parse_payload(b"1000").is_err());
        assert!(parse_payload(b"1000 7 9").is_err());
        assert!(parse_payload(b"x 7").unwrap_err().contains("bad SAMPLES"));
        assert!(parse_payload(&[0xff]).unwrap_err().contains("UTF-8"));
        assert_eq!(parse_result(b"785 1000"), Ok((785, 1000)));
        assert!(parse_result(b"1001 1000").is_err());
    }
}
