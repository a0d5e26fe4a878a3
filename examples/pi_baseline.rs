//! The baseline for the `pi` example: the same sampling with the same generator, on two plain
//! threads, without Ember.
//!
//! `pi_baseline [slices] [samples]`; compare with `pi` on two single-core executors.

use std::time::Instant;

#[path = "pi_sampling.rs"]
mod pi_sampling;

const THREADS: usize = 2;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let slices: usize = args
        .first()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2)
        .max(1);
    let samples: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000 * slices as u64);
    let start = Instant::now();
    let inside = pi_sampling::count_on_threads(samples, slices, THREADS);
    let elapsed = start.elapsed();
    println!("Pi is roughly {}", 4.0 * inside as f64 / samples as f64);
    println!(
        "{samples} samples in {slices} slices on {THREADS} threads: {:.3} s",
        elapsed.as_secs_f64()
    );
}
