//! Placement tables. Cases marked "Spark parity" port the scheduling cases of Spark's
//! `MasterSuite` (three workers of 10 cores and 4096 MiB unless said otherwise).

use proptest::prelude::*;

use super::*;

fn workers(n: usize, cores: u32, memory_mb: u32) -> Vec<Capacity> {
    vec![
        Capacity {
            cores_free: cores,
            memory_free_mb: memory_mb
        };
        n
    ]
}

/// Spark's `makeAppInfo(memoryPerExecutorMb, coresPerExecutor, maxCores)` with an executor limit.
fn ask(memory: u32, cpe: Option<u32>, max_cores: Option<u32>, limit: Option<u32>) -> ExecutorAsk {
    ExecutorAsk {
        cores_per_executor: cpe,
        memory_per_executor_mb: memory,
        cores_left: max_cores.unwrap_or(u32::MAX),
        executors_now: 0,
        executor_limit: limit.unwrap_or(u32::MAX),
    }
}

struct Case {
    name: &'static str,
    ask: ExecutorAsk,
    spread: [u32; 3],
    consolidate: [u32; 3],
}

#[test]
fn executor_placement_matches_spark() {
    let three = workers(3, 10, 4096);
    let cases = [
        // Spark parity: MasterSuite "basic scheduling" (spread out and not).
        Case {
            name: "basic",
            ask: ask(1024, None, None, None),
            spread: [10, 10, 10],
            consolidate: [10, 10, 10],
        },
        // Spark parity: "basic scheduling with more memory".
        Case {
            name: "more memory",
            ask: ask(3072, None, None, None),
            spread: [10, 10, 10],
            consolidate: [10, 10, 10],
        },
        // Spark parity: "scheduling with max cores" (8, 16, 20).
        Case {
            name: "max cores 8",
            ask: ask(1024, None, Some(8), None),
            spread: [3, 3, 2],
            consolidate: [8, 0, 0],
        },
        Case {
            name: "max cores 16",
            ask: ask(1024, None, Some(16), None),
            spread: [6, 5, 5],
            consolidate: [10, 6, 0],
        },
        Case {
            name: "max cores 20",
            ask: ask(1024, None, Some(20), None),
            spread: [7, 7, 6],
            consolidate: [10, 10, 0],
        },
        // Spark parity: "scheduling with cores per executor": 4 x 2 cores fit the memory...
        Case {
            name: "2 cores per executor, 1024 MiB",
            ask: ask(1024, Some(2), None, None),
            spread: [8, 8, 8],
            consolidate: [8, 8, 8],
        },
        // ...5 x 2 cores...
        Case {
            name: "2 cores per executor, 256 MiB",
            ask: ask(256, Some(2), None, None),
            spread: [10, 10, 10],
            consolidate: [10, 10, 10],
        },
        // ...3 x 3 cores (one core per worker stays free).
        Case {
            name: "3 cores per executor, 256 MiB",
            ask: ask(256, Some(3), None, None),
            spread: [9, 9, 9],
            consolidate: [9, 9, 9],
        },
        // Spark parity: "scheduling with cores per executor AND max cores".
        Case {
            name: "2 cores per executor, max 4",
            ask: ask(256, Some(2), Some(4), None),
            spread: [2, 2, 0],
            consolidate: [4, 0, 0],
        },
        Case {
            name: "2 cores per executor, max 20",
            ask: ask(256, Some(2), Some(20), None),
            spread: [8, 6, 6],
            consolidate: [10, 10, 0],
        },
        Case {
            name: "3 cores per executor, max 20",
            ask: ask(256, Some(3), Some(20), None),
            spread: [6, 6, 6],
            consolidate: [9, 9, 0],
        },
        // Spark parity: "scheduling with executor limit" (0, 2, 5).
        Case {
            name: "limit 0",
            ask: ask(256, None, None, Some(0)),
            spread: [0, 0, 0],
            consolidate: [0, 0, 0],
        },
        Case {
            name: "limit 2",
            ask: ask(256, None, None, Some(2)),
            spread: [10, 10, 0],
            consolidate: [10, 10, 0],
        },
        Case {
            name: "limit 5",
            ask: ask(256, None, None, Some(5)),
            spread: [10, 10, 10],
            consolidate: [10, 10, 10],
        },
        // Spark parity: "scheduling with executor limit AND max cores".
        Case {
            name: "limit 0, max 16",
            ask: ask(256, None, Some(16), Some(0)),
            spread: [0, 0, 0],
            consolidate: [0, 0, 0],
        },
        Case {
            name: "limit 2, max 16",
            ask: ask(256, None, Some(16), Some(2)),
            spread: [8, 8, 0],
            consolidate: [10, 6, 0],
        },
        Case {
            name: "limit 5, max 16",
            ask: ask(256, None, Some(16), Some(5)),
            spread: [6, 5, 5],
            consolidate: [10, 6, 0],
        },
        // Spark parity: "scheduling with executor limit AND cores per executor".
        Case {
            name: "limit 0, 2 cores per executor",
            ask: ask(256, Some(2), None, Some(0)),
            spread: [0, 0, 0],
            consolidate: [0, 0, 0],
        },
        Case {
            name: "limit 2, 2 cores per executor",
            ask: ask(256, Some(2), None, Some(2)),
            spread: [2, 2, 0],
            consolidate: [4, 0, 0],
        },
        Case {
            name: "limit 5, 2 cores per executor",
            ask: ask(256, Some(2), None, Some(5)),
            spread: [4, 4, 2],
            consolidate: [10, 0, 0],
        },
        // Spark parity: "scheduling with executor limit AND cores per executor AND max cores".
        Case {
            name: "limit 0, 2 cores per executor, max 12",
            ask: ask(256, Some(2), Some(12), Some(0)),
            spread: [0, 0, 0],
            consolidate: [0, 0, 0],
        },
        Case {
            name: "limit 2, 2 cores per executor, max 12",
            ask: ask(256, Some(2), Some(12), Some(2)),
            spread: [2, 2, 0],
            consolidate: [4, 0, 0],
        },
        Case {
            name: "limit 5, 2 cores per executor, max 12",
            ask: ask(256, Some(2), Some(12), Some(5)),
            spread: [4, 4, 2],
            // Five executors of two cores fill the first worker: the limit, not max cores,
            // is what stops it.
            consolidate: [10, 0, 0],
        },
        // Existing executors count against the limit.
        Case {
            name: "limit 3 with 2 executors already",
            ask: ExecutorAsk {
                executors_now: 2,
                ..ask(256, Some(2), None, Some(3))
            },
            spread: [2, 0, 0],
            consolidate: [2, 0, 0],
        },
    ];
    for case in cases {
        assert_eq!(
            schedule_executors_on_workers(&case.ask, &three, true),
            case.spread,
            "{} (spread out)",
            case.name
        );
        assert_eq!(
            schedule_executors_on_workers(&case.ask, &three, false),
            case.consolidate,
            "{} (consolidated)",
            case.name
        );
    }
}

#[test]
fn handing_out_whole_executors_avoids_fragmentation() {
    // Spark parity: SPARK-8881. Four workers of 16 cores, an application asking for 48 cores in
    // executors of 16: handing out one core at a time would give each worker 12 cores and no
    // worker could start an executor. Whole executors land on three workers.
    let four = workers(4, 16, 16_384);
    let a = ask(1024, Some(16), Some(48), None);
    assert_eq!(
        schedule_executors_on_workers(&a, &four, true),
        [16, 16, 16, 0]
    );
    assert_eq!(
        schedule_executors_on_workers(&a, &four, false),
        [16, 16, 16, 0]
    );
}

#[test]
fn uneven_workers_and_memory_bounds() {
    let mixed = [
        Capacity {
            cores_free: 8,
            memory_free_mb: 1024,
        },
        Capacity {
            cores_free: 2,
            memory_free_mb: 8192,
        },
        Capacity {
            cores_free: 5,
            memory_free_mb: 2048,
        },
    ];
    // Without cores per executor memory is checked once per worker: the executor grows to every
    // free core even though it takes the worker's whole memory.
    assert_eq!(
        schedule_executors_on_workers(&ask(1024, None, None, None), &mixed, true),
        [8, 2, 5]
    );
    // With 2 cores per executor each executor needs 1024 MiB: one on the first worker, one on
    // the second (two cores only), two on the third.
    assert_eq!(
        schedule_executors_on_workers(&ask(1024, Some(2), None, None), &mixed, true),
        [2, 2, 4]
    );
    // Nothing usable, nothing asked.
    assert!(schedule_executors_on_workers(&ask(1024, None, None, None), &[], true).is_empty());
    assert_eq!(
        schedule_executors_on_workers(&ask(1024, None, Some(0), None), &mixed, false),
        [0, 0, 0]
    );
}

#[test]
fn usable_workers_filter_and_order() {
    let cap = |cores_free, memory_free_mb| Capacity {
        cores_free,
        memory_free_mb,
    };
    let alive = vec![
        ("w1", cap(4, 4096)),
        ("w2", cap(8, 1024)),
        ("w3", cap(8, 512)),  // too little memory for 1024 MiB executors
        ("w4", cap(0, 8192)), // no free core
        ("w5", cap(2, 8192)),
    ];
    let a = ask(1024, None, None, None);
    let ids = |policy| -> Vec<&str> {
        usable_workers(alive.clone(), &a, policy)
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    };
    use WorkerSelectionPolicy as P;
    // Spark parity: CORES_FREE_DESC sorts by (coresFree, id) and reverses.
    assert_eq!(ids(P::CoresFreeDesc), ["w2", "w1", "w5"]);
    assert_eq!(ids(P::CoresFreeAsc), ["w5", "w1", "w2"]);
    assert_eq!(ids(P::MemoryFreeDesc), ["w5", "w1", "w2"]);
    assert_eq!(ids(P::MemoryFreeAsc), ["w2", "w1", "w5"]);
    assert_eq!(ids(P::WorkerId), ["w1", "w2", "w5"]);
    // Ties go by id in the policy's direction.
    let tied = vec![
        ("a", cap(4, 1024)),
        ("c", cap(4, 1024)),
        ("b", cap(4, 1024)),
    ];
    let order: Vec<&str> = usable_workers(tied.clone(), &a, P::CoresFreeDesc)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(order, ["c", "b", "a"]);
    let order: Vec<&str> = usable_workers(tied, &a, P::CoresFreeAsc)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(order, ["a", "b", "c"]);
    // A worker needs cores for a whole executor when cores per executor is set.
    let four_cores = ask(1024, Some(4), None, None);
    let ids: Vec<&str> = usable_workers(alive, &four_cores, P::WorkerId)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["w1", "w2"]);
}

#[test]
fn assigned_cores_become_executors() {
    // Spark parity: allocateWorkerResourceToExecutors.
    assert_eq!(executors_from_cores(10, None), (1, 10));
    assert_eq!(executors_from_cores(0, None), (0, 0));
    assert_eq!(executors_from_cores(8, Some(2)), (4, 2));
    assert_eq!(executors_from_cores(9, Some(3)), (3, 3));
    assert_eq!(executors_from_cores(0, Some(3)), (0, 3));
}

fn driver(cores: u32, memory_mb: u32) -> DriverAsk {
    DriverAsk { cores, memory_mb }
}

#[test]
fn driver_placement_matches_spark() {
    // Spark parity: MasterSuite, spark.deploy.spreadOutDrivers on and off: 3 workers (10 cores, 512 MiB),
    // 3 drivers of 1 core and 1 MiB: spread out one per worker, otherwise all on the first.
    let three = workers(3, 10, 512);
    let drivers = [driver(1, 1); 3];
    assert_eq!(
        place_drivers(&drivers, &three, true, 0, u32::MAX),
        [Some(0), Some(1), Some(2)]
    );
    assert_eq!(
        place_drivers(&drivers, &three, false, 0, u32::MAX),
        [Some(0), Some(0), Some(0)]
    );
    // Spark parity: maxDrivers = 4 with one worker: 3 drivers launch; with 3 more submitted
    // (3 running), one more launches and two wait.
    let one = workers(1, 10, 512);
    assert_eq!(
        place_drivers(&drivers, &one, true, 0, 4),
        [Some(0), Some(0), Some(0)]
    );
    assert_eq!(
        place_drivers(&drivers, &one, true, 3, 4),
        [Some(0), None, None]
    );
    assert_eq!(
        place_drivers(&drivers, &one, false, 3, 4),
        [Some(0), None, None]
    );
}

#[test]
fn drivers_skip_full_workers_and_wait_when_nothing_fits() {
    let ws = [
        Capacity {
            cores_free: 1,
            memory_free_mb: 1024,
        },
        Capacity {
            cores_free: 4,
            memory_free_mb: 512,
        },
        Capacity {
            cores_free: 4,
            memory_free_mb: 4096,
        },
    ];
    // The first driver needs 2 cores and 1 GiB: only the third worker fits. The second (1 core,
    // 256 MiB) continues from the cursor, which wrapped to the first worker.
    assert_eq!(
        place_drivers(
            &[driver(2, 1024), driver(1, 256), driver(8, 1)],
            &ws,
            true,
            0,
            u32::MAX
        ),
        [Some(2), Some(0), None]
    );
    assert_eq!(
        place_drivers(
            &[driver(2, 1024), driver(1, 256), driver(8, 1)],
            &ws,
            false,
            0,
            u32::MAX
        ),
        [Some(2), Some(0), None]
    );
    // Placed drivers use up capacity: the third 4-core driver finds no room.
    assert_eq!(
        place_drivers(
            &[driver(4, 1), driver(4, 1), driver(4, 1)],
            &ws,
            false,
            0,
            u32::MAX
        ),
        [Some(1), Some(2), None]
    );
    assert_eq!(
        place_drivers(&[driver(1, 1)], &[], true, 0, u32::MAX),
        [None]
    );
}

proptest! {
    /// Whatever the inputs, placement never hands out more than the workers have or the
    /// application wants, never breaks the executor limit, and hands out whole executors.
    #[test]
    fn executor_placement_respects_every_bound(
        caps in proptest::collection::vec((0u32..40, 0u32..20_000), 0..12),
        cpe in proptest::option::of(0u32..6),
        memory in 0u32..6000,
        cores_left in 0u32..200,
        executors_now in 0u32..4,
        limit in proptest::option::of(0u32..10),
        spread in any::<bool>(),
    ) {
        let ws: Vec<Capacity> = caps
            .iter()
            .map(|&(cores_free, memory_free_mb)| Capacity { cores_free, memory_free_mb })
            .collect();
        let a = ExecutorAsk {
            cores_per_executor: cpe,
            memory_per_executor_mb: memory,
            cores_left,
            executors_now,
            executor_limit: limit.unwrap_or(u32::MAX),
        };
        let assigned = schedule_executors_on_workers(&a, &ws, spread);
        prop_assert_eq!(assigned.len(), ws.len());
        let total: u64 = assigned.iter().map(|&c| u64::from(c)).sum();
        prop_assert!(total <= u64::from(cores_left));
        let mut new_execs = 0u64;
        for (w, &cores) in ws.iter().zip(&assigned) {
            prop_assert!(cores <= w.cores_free);
            let (count, each) = executors_from_cores(cores, cpe);
            if cpe.is_some() {
                prop_assert_eq!(cores % a.min_cores(), 0);
                prop_assert_eq!(count * each, cores);
            }
            if count > 0 {
                prop_assert!(u64::from(count) * u64::from(memory) <= u64::from(w.memory_free_mb));
            }
            new_execs += u64::from(count);
        }
        if limit.is_some() && new_execs > 0 {
            prop_assert!(new_execs + u64::from(executors_now) <= u64::from(a.executor_limit));
        }
    }
}
