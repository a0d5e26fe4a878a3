//! Monte Carlo π on Ember (Spark's `SparkPi`).
//!
//! `pi [slices] [samples]`: draws `samples` points (default 100,000 per slice) in `slices`
//! tasks (default 2) and prints the estimate and the time taken. The master comes from
//! `EMBER_MASTER` or `conf/ember-defaults.conf`, else `local-cluster[2,1,1024]`: a Master and two
//! one-core Workers inside this process, whose executors are this very binary started again in
//! the executor role.
//!
//! ```text
//! cargo run --release -p ember --example pi
//! cargo run --release -p ember --example pi -- 20 100000000
//! EMBER_MASTER='local[*]' cargo run --release -p ember --example pi
//! EMBER_MASTER=ember://host:7077 cargo run --release -p ember --example pi -- 20 100000000
//! ```

use std::time::Instant;

use anyhow::Context as _;

use serde_closure::Fn;

#[path = "pi_sampling.rs"]
mod pi_sampling;

fn main() -> anyhow::Result<()> {
    ember::main(|| {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let slices: usize = match args.first() {
            Some(s) => s.parse().with_context(|| {
                format!("slices (the first argument) must be a whole number, not {s:?}")
            })?,
            None => 2,
        };
        let samples: u64 = match args.get(1) {
            Some(s) => s.parse().with_context(|| {
                format!("samples (the second argument) must be a whole number, not {s:?}")
            })?,
            None => 100_000 * slices as u64,
        };
        anyhow::ensure!(slices > 0, "slices must be at least 1");

        let start = Instant::now();
        let ctx = ember::Context::builder()
            .app_name("pi")
            .master_if_unset("local-cluster[2,1,1024]")
            .get_or_create()?;
        let started = start.elapsed();

        let job = Instant::now();
        let counts = ctx.run_job(
            slices,
            Fn!(move |slice: usize| pi_sampling::count_slice(samples, slices, slice)),
        )?;
        let elapsed = job.elapsed();
        let inside: u64 = counts.iter().sum();
        println!("Pi is roughly {}", 4.0 * inside as f64 / samples as f64);
        println!(
            "{samples} samples in {slices} slices on {}: job {:.3} s (context start {:.3} s)",
            ctx.master(),
            elapsed.as_secs_f64(),
            started.as_secs_f64()
        );
        ctx.stop();
        Ok(())
    })
}
