//! The sampling the π programs (`pi`, `pi_baseline`, `app_bench`) share: a SplitMix64 generator
//! seeded by the slice index, so a slice draws the same points wherever it runs.

/// How many of the points of slice `slice` (of `samples` points in `slices` slices) fall inside
/// the unit circle.
pub(crate) fn count_slice(samples: u64, slices: usize, slice: usize) -> u64 {
    count_inside(slice as u64, share(samples, slices, slice))
}

/// The baseline: [`count_slice`] for every slice on `threads` plain threads (slice `s` on thread
/// `s % threads`), summed.
#[allow(dead_code)] // `pi` runs the slices on Ember instead.
pub(crate) fn count_on_threads(samples: u64, slices: usize, threads: usize) -> u64 {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t..slices)
                        .step_by(threads)
                        .map(|slice| count_slice(samples, slices, slice))
                        .sum::<u64>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a sampling thread panicked"))
            .sum()
    })
}

/// How many of `samples` the slice `slice` of `slices` draws.
fn share(samples: u64, slices: usize, slice: usize) -> u64 {
    let slices = slices.max(1) as u64;
    samples / slices + u64::from((slice as u64) < samples % slices)
}

/// Draws `n` points in the square [-1, 1)² from the generator seeded by `slice` and counts
/// those inside the unit circle.
fn count_inside(slice: u64, n: u64) -> u64 {
    let mut state = slice.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0x2545_F491_4F6C_DD1D;
    let mut inside = 0;
    for _ in 0..n {
        let x = unit(splitmix64(&mut state)) * 2.0 - 1.0;
        let y = unit(splitmix64(&mut state)) * 2.0 - 1.0;
        inside += u64::from(x * x + y * y <= 1.0);
    }
    inside
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The top 53 bits as a float in [0, 1).
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}
