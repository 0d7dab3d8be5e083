//! The fuzz targets' smoke mode, part of the test command (stable, no libFuzzer): each target
//! runs every committed seed in `fuzz/corpus/<target>/`, then a few thousand inputs made from
//! them by seeded mutations (bit flips, byte changes, truncation, insertions, splices of two
//! seeds). Deterministic: the same seed gives the same inputs. A panic prints the input, in hex,
//! and writes it to `target/fuzz-smoke-crashes/`, so it can be added to the corpus and replayed
//! with `cargo fuzz run TARGET FILE`. Longer runs: `scripts/fuzz.sh` (fuzz/README.md).

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Mutated inputs per target, at most.
const MUTATIONS: usize = 4000;
/// Each target stops mutating after this long (a slow machine runs fewer inputs, not longer).
const BUDGET: Duration = Duration::from_secs(4);

/// xorshift64*: a small deterministic generator, so the smoke inputs are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).expect("a corpus file"))
        .collect()
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = rng.next() as u8;
            }
            2 => {
                let n = rng.below(data.len() + 1);
                data.truncate(n);
            }
            3 => {
                let at = rng.below(data.len() + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let at = rng.below(data.len() + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            _ if !data.is_empty() => {
                // An interesting number: a boundary where sizes and counts overflow.
                let i = rng.below(data.len());
                data[i] = [0x00, 0x01, 0x7f, 0x80, 0xff][rng.below(5)];
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data
}

fn run_one(target: &str, f: fn(&[u8]), input: &[u8]) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(input))) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-smoke-crashes");
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!("{target}-{:016x}", fnv(input)));
        let _ = std::fs::write(&file, input);
        let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
        eprintln!(
            "target {target} panicked on the input written to {} (hex {hex})",
            file.display()
        );
        resume_unwind(panic);
    }
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn smoke(target: &str) {
    let f = wasmos_fuzz_harness::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, f)| *f)
        .expect("a known target");
    let seeds = seeds(target);
    assert!(
        seeds.len() >= 3,
        "the corpus of {target} has {} seeds; keep a few",
        seeds.len()
    );
    for s in &seeds {
        run_one(target, f, s);
    }
    let mut rng = Rng(0x5eed_0000 ^ fnv(target.as_bytes()));
    let start = Instant::now();
    let mut ran = 0;
    while ran < MUTATIONS && start.elapsed() < BUDGET {
        let input = mutate(&mut rng, &seeds);
        run_one(target, f, &input);
        ran += 1;
    }
    eprintln!("{target}: {} seeds, {ran} mutations", seeds.len());
}

#[test]
fn convert() {
    smoke("convert");
}

#[test]
fn core_calls() {
    smoke("core_calls");
}

#[test]
fn raft_log() {
    smoke("raft_log");
}

#[test]
fn snapshot() {
    smoke("snapshot");
}

#[test]
fn component_upload() {
    smoke("component_upload");
}

#[test]
fn agent_records() {
    smoke("agent_records");
}

#[test]
fn http_request() {
    smoke("http_request");
}

#[test]
fn every_target_has_a_smoke_test_and_a_fuzz_target() {
    let src = include_str!("smoke.rs");
    for (name, _) in wasmos_fuzz_harness::TARGETS {
        assert!(
            src.contains(&format!("smoke(\"{name}\")")),
            "no smoke test for {name}"
        );
        let target = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/fuzz_targets")
            .join(format!("{name}.rs"));
        assert!(target.is_file(), "no fuzz target {}", target.display());
    }
}
