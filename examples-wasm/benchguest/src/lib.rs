//! `benchguest`: fixed CPU-bound workloads for `wasmos-bench`, which compares running them with
//! fuel, with epoch interruption and with no limit.
//!
//! | payload | work | result |
//! |---|---|---|
//! | `noop` | nothing (the task round-trip benchmark) | empty |
//! | `primes` | sum of primes below 200,000 by trial division | `1709600813` |
//! | `sieve` | sieve of Eratosthenes up to 20,000,000 | `1270607` (primes counted) |
//! | `fib` | naive recursive fib(30) | `832040` |
//!
//! Deterministic; inputs go through `black_box` so nothing is computed at compile time.
//!
//! The scheduler half (`wasmos-bench e2e`) launches `N` `noop` tasks as fast as offers allow and
//! times each one from its `driver::launch` to its `finished` update:
//!
//! ```text
//! wasmos submit benchguest.wasm -- N [MILLICPUS] [MEM_MB] [EXECUTORS]
//! ```
//!
//! Each task asks for `MILLICPUS` (default 10) and `MEM_MB` (default 32); tasks are spread over
//! `EXECUTORS` (default 4) executor instances per agent, `bench-0` .. `bench-{EXECUTORS-1}`, and
//! evenly over the offers of each round. The framework finishes with one JSON object (see
//! [`scheduler::BenchScheduler::report`]); a task that ends other than `finished` fails it, since its time
//! would not measure a task run.

mod scheduler;

use std::hint::black_box;

use wasmos_guest::{Executor, Task};

/// Sum of the primes below `limit`, each tested by trial division by odd numbers up to its root:
/// a tight loop of divisions and branches.
fn sum_primes_below(limit: u64) -> u64 {
    let mut sum = 0;
    for n in 2..limit {
        let mut is_prime = n == 2 || n % 2 == 1;
        let mut d = 3;
        while is_prime && d * d <= n {
            if n % d == 0 {
                is_prime = false;
            }
            d += 2;
        }
        if is_prime {
            sum += n;
        }
    }
    sum
}

/// Count of primes up to `limit` with a byte-per-number sieve: memory-bound stores over 20 MB.
fn sieve_count(limit: usize) -> usize {
    let mut composite = vec![false; limit + 1];
    let mut count = 0;
    for n in 2..=limit {
        if composite[n] {
            continue;
        }
        count += 1;
        let mut multiple = n.saturating_mul(n);
        while multiple <= limit {
            composite[multiple] = true;
            multiple += n;
        }
    }
    count
}

/// Naive doubly recursive Fibonacci: call-heavy.
fn fib(n: u32) -> u64 {
    if n < 2 {
        n as u64
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

struct Bench;

impl Executor for Bench {
    fn new() -> Self {
        Bench
    }

    fn launch(&mut self, task: Task) -> Result<Vec<u8>, String> {
        let result = match task.payload.as_slice() {
            b"noop" => return Ok(Vec::new()),
            b"primes" => sum_primes_below(black_box(200_000)),
            b"sieve" => sieve_count(black_box(20_000_000)) as u64,
            b"fib" => fib(black_box(30)),
            other => {
                return Err(format!(
                    "unknown benchguest payload {:?}; expected noop, primes, sieve or fib",
                    String::from_utf8_lossy(other)
                ));
            }
        };
        Ok(result.to_string().into_bytes())
    }
}

wasmos_guest::export!(scheduler = scheduler::BenchScheduler, executor = Bench);
