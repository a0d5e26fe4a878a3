//! Where executors and drivers go: the master's placement decisions, as pure functions.
//!
//! Spark counterparts: `Master.scheduleExecutorsOnWorkers`, the usable-worker filter and sort of
//! `startExecutorsOnWorkers` (with `spark.deploy.workerSelectionPolicy`), the arithmetic of
//! `allocateWorkerResourceToExecutors`, and the driver loop of `schedule()`. The state machine
//! ([`super::state`]) gathers the inputs, calls these functions and applies their answers; the
//! functions know nothing of ids, messages or time, so their tests are plain tables.
//!
//! # Executors
//!
//! An application asks for `cores_left` more cores (`ember.cores.max` or
//! `ember.deploy.defaultCores`, less what it holds), `memory_per_executor_mb` per executor, an
//! optional `cores_per_executor` and a limit on how many executors it may hold.
//!
//! * Without `cores_per_executor`, a worker gets at most one executor of the application per
//!   round, and that executor grows one core at a time; memory and the executor limit are checked
//!   only when it is created. (A later round may still put a second executor of the same
//!   application on a worker whose cores were freed, as in Spark.)
//! * With `cores_per_executor = k`, cores are handed out `k` at a time and each hand-out is a new
//!   executor that needs its own memory and counts against the limit. Handing out whole
//!   executors avoids the fragmentation of SPARK-8881, where cores spread one by one over many
//!   workers never added up to an executor anywhere.
//! * Spread out (`ember.deploy.spreadOut`, the default): one hand-out per worker per pass,
//!   round-robin, so the application lands on as many workers as possible. Otherwise each worker
//!   is filled before the next one is used.
//!
//! # Drivers
//!
//! Drivers are placed first-fit, in submission order, over the ALIVE workers: visited
//! round-robin from a cursor that keeps moving across drivers in random order when
//! `ember.deploy.spreadOutDrivers` is on, or from the lowest worker id each time otherwise. At
//! most `ember.deploy.maxDrivers` run at once.

use crate::master::config::WorkerSelectionPolicy;

/// What one worker can still give, as placement sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Free cores.
    pub cores_free: u32,
    /// Free memory, MiB.
    pub memory_free_mb: u32,
}

/// What an application asks of one scheduling round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutorAsk {
    /// `ember.executor.cores`; `None` means one executor per worker, grown one core at a time.
    pub cores_per_executor: Option<u32>,
    /// `ember.executor.memory`, MiB.
    pub memory_per_executor_mb: u32,
    /// Cores the application still wants.
    pub cores_left: u32,
    /// Executors it holds now.
    pub executors_now: u32,
    /// Most executors it may hold (`u32::MAX`: no limit).
    pub executor_limit: u32,
}

impl ExecutorAsk {
    /// The cores of one hand-out: `cores_per_executor`, or 1. A zero from a confused client is
    /// read as 1, so that placement always makes progress.
    pub fn min_cores(&self) -> u32 {
        self.cores_per_executor.unwrap_or(1).max(1)
    }

    /// Whether a worker could take one more executor of this application (Spark's
    /// `canLaunchExecutor`): enough free memory for one executor and cores for one hand-out.
    pub fn fits(&self, worker: Capacity) -> bool {
        worker.memory_free_mb >= self.memory_per_executor_mb
            && worker.cores_free >= self.min_cores()
    }
}

/// The ALIVE workers that could take an executor of `ask`, in the order `policy` offers them.
///
/// `alive` pairs each worker's id (any ordered key) with its capacity. Ties in the policy's
/// measure are broken by id in the same direction (Spark sorts by `(measure, id)` and reverses
/// for the descending policies).
pub fn usable_workers<K: Ord>(
    alive: impl IntoIterator<Item = (K, Capacity)>,
    ask: &ExecutorAsk,
    policy: WorkerSelectionPolicy,
) -> Vec<(K, Capacity)> {
    let mut usable: Vec<(K, Capacity)> = alive.into_iter().filter(|(_, c)| ask.fits(*c)).collect();
    order_workers(&mut usable, policy);
    usable
}

/// Sorts workers as `policy` says.
pub fn order_workers<K: Ord>(workers: &mut [(K, Capacity)], policy: WorkerSelectionPolicy) {
    use WorkerSelectionPolicy as P;
    match policy {
        P::CoresFreeAsc => {
            workers.sort_by(|a, b| (a.1.cores_free, &a.0).cmp(&(b.1.cores_free, &b.0)))
        }
        P::CoresFreeDesc => {
            workers.sort_by(|a, b| (b.1.cores_free, &b.0).cmp(&(a.1.cores_free, &a.0)))
        }
        P::MemoryFreeAsc => {
            workers.sort_by(|a, b| (a.1.memory_free_mb, &a.0).cmp(&(b.1.memory_free_mb, &b.0)))
        }
        P::MemoryFreeDesc => {
            workers.sort_by(|a, b| (b.1.memory_free_mb, &b.0).cmp(&(a.1.memory_free_mb, &a.0)))
        }
        P::WorkerId => workers.sort_by(|a, b| a.0.cmp(&b.0)),
    }
}

/// How many cores each of `workers` (usable, in offer order) gives the application this round.
///
/// Spark's `scheduleExecutorsOnWorkers`. Turn each answer into executors with
/// [`executors_from_cores`].
pub fn schedule_executors_on_workers(
    ask: &ExecutorAsk,
    workers: &[Capacity],
    spread_out: bool,
) -> Vec<u32> {
    let n = workers.len();
    let min_cores = ask.min_cores();
    let one_per_worker = ask.cores_per_executor.is_none();
    let memory = u64::from(ask.memory_per_executor_mb);
    let mut assigned_cores = vec![0u32; n];
    let mut assigned_execs = vec![0u32; n];
    let mut total_execs = u64::from(ask.executors_now);
    let free_cores: u64 = workers.iter().map(|w| u64::from(w.cores_free)).sum();
    let mut cores_to_assign = u64::from(ask.cores_left).min(free_cores);

    let can_launch = |pos: usize,
                      assigned_cores: &[u32],
                      assigned_execs: &[u32],
                      cores_to_assign: u64,
                      total_execs: u64| {
        let keep_going = cores_to_assign >= u64::from(min_cores);
        let enough_cores = u64::from(workers[pos].cores_free)
            >= u64::from(assigned_cores[pos]) + u64::from(min_cores);
        let new_executor = !one_per_worker || assigned_execs[pos] == 0;
        if new_executor {
            let enough_memory = u64::from(workers[pos].memory_free_mb)
                >= (u64::from(assigned_execs[pos]) + 1) * memory;
            let under_limit = total_execs < u64::from(ask.executor_limit);
            keep_going && enough_cores && enough_memory && under_limit
        } else {
            // Growing the one executor this worker already has: no memory or limit check.
            keep_going && enough_cores
        }
    };

    let mut free: Vec<usize> = (0..n)
        .filter(|&pos| {
            can_launch(
                pos,
                &assigned_cores,
                &assigned_execs,
                cores_to_assign,
                total_execs,
            )
        })
        .collect();
    while !free.is_empty() {
        for &pos in &free {
            loop {
                if !can_launch(
                    pos,
                    &assigned_cores,
                    &assigned_execs,
                    cores_to_assign,
                    total_execs,
                ) {
                    break;
                }
                cores_to_assign -= u64::from(min_cores);
                assigned_cores[pos] += min_cores;
                if one_per_worker {
                    if assigned_execs[pos] == 0 {
                        total_execs += 1;
                    }
                    assigned_execs[pos] = 1;
                } else {
                    assigned_execs[pos] += 1;
                    total_execs += 1;
                }
                if spread_out {
                    // One hand-out per worker per pass.
                    break;
                }
            }
        }
        free.retain(|&pos| {
            can_launch(
                pos,
                &assigned_cores,
                &assigned_execs,
                cores_to_assign,
                total_execs,
            )
        });
    }
    assigned_cores
}

/// The executors that `assigned_cores` on one worker become: `(count, cores each)`.
///
/// Spark's `allocateWorkerResourceToExecutors`: with `cores_per_executor = k`, `assigned / k`
/// executors of `k` cores; without it, one executor holding all the cores.
pub fn executors_from_cores(assigned_cores: u32, cores_per_executor: Option<u32>) -> (u32, u32) {
    match cores_per_executor {
        Some(k) => {
            let k = k.max(1);
            (assigned_cores / k, k)
        }
        None if assigned_cores == 0 => (0, 0),
        None => (1, assigned_cores),
    }
}

/// What one waiting driver needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverAsk {
    /// Cores.
    pub cores: u32,
    /// Memory, MiB.
    pub memory_mb: u32,
}

impl DriverAsk {
    /// Whether a worker has room for the driver (Spark's `canLaunchDriver`).
    pub fn fits(&self, worker: Capacity) -> bool {
        worker.cores_free >= self.cores && worker.memory_free_mb >= self.memory_mb
    }
}

/// Places waiting drivers (in submission order) on ALIVE workers; returns, per driver, the index
/// of its worker or `None` if it keeps waiting.
///
/// `workers` is the visiting order: shuffled by the caller when spreading out, sorted by id
/// otherwise. With `spread_out`, a cursor walks the workers round-robin and keeps its position
/// from one driver to the next (so consecutive drivers land on different workers); without it,
/// each driver takes the first worker that fits. `running` drivers already run; at most
/// `max_drivers` may.
pub fn place_drivers(
    drivers: &[DriverAsk],
    workers: &[Capacity],
    spread_out: bool,
    running: u32,
    max_drivers: u32,
) -> Vec<Option<usize>> {
    let mut capacity = workers.to_vec();
    let mut running = running;
    let n = capacity.len();
    let mut cursor = 0;
    let mut placed = Vec::with_capacity(drivers.len());
    for driver in drivers {
        let mut choice = None;
        if running < max_drivers && n > 0 {
            if spread_out {
                for _ in 0..n {
                    let pos = cursor;
                    cursor = (cursor + 1) % n;
                    if driver.fits(capacity[pos]) {
                        choice = Some(pos);
                        break;
                    }
                }
            } else {
                choice = capacity.iter().position(|c| driver.fits(*c));
            }
        }
        if let Some(pos) = choice {
            capacity[pos].cores_free -= driver.cores;
            capacity[pos].memory_free_mb -= driver.memory_mb;
            running += 1;
        }
        placed.push(choice);
    }
    placed
}

#[cfg(test)]
mod tests;
