//! Local mode: jobs run on the driver's task threads through the full scheduler path.

use std::sync::atomic::{AtomicU32, Ordering};

use ember_core::{Context, CoreError};
use ember_rpc::EmberConf;
use serde_closure::Fn;

fn context(master: &str) -> Context {
    let conf = EmberConf::from_pairs([
        ("ember.master", master),
        ("ember.app.name", "local-test"),
        ("ember.ui.showConsoleProgress", "false"),
    ]);
    Context::new(conf).expect("context starts")
}

#[test]
fn jobs_return_results_in_partition_order() {
    for master in ["local", "local[2]", "local[*]"] {
        let ctx = context(master);
        let offset = 1000u64;
        let squares = ctx
            .run_job(16, Fn!(move |p: usize| (p as u64) * (p as u64) + offset))
            .unwrap();
        let want: Vec<u64> = (0..16u64).map(|p| p * p + 1000).collect();
        assert_eq!(squares, want, "{master}");
        let words = ctx
            .run_job(3, Fn!(|p: usize| format!("partition-{}", p)))
            .unwrap();
        assert_eq!(
            words,
            ["partition-0", "partition-1", "partition-2"],
            "{master}"
        );
        ctx.stop();
    }
}

#[test]
fn subsets_empty_jobs_and_bad_partitions() {
    let ctx = context("local[2]");
    let picked = ctx
        .run_job_on_partitions(10, vec![7, 2, 9], Fn!(|p: usize| p * 10))
        .unwrap();
    assert_eq!(picked, vec![70, 20, 90]);
    let none: Vec<usize> = ctx.run_job(0, Fn!(|p: usize| p)).unwrap();
    assert!(none.is_empty());
    let err = ctx
        .run_job_on_partitions(2, vec![5], Fn!(|p: usize| p))
        .unwrap_err();
    assert!(
        err.to_string().contains("partition 5 does not exist"),
        "{err}"
    );
    assert_eq!(ctx.default_parallelism(), 2);
}

#[test]
fn a_panicking_task_fails_the_job_with_its_message() {
    // Spark parity: local mode makes one attempt per task unless the URL says local[N,F].
    let ctx = context("local[2]");
    let err = ctx
        .run_job(
            4,
            Fn!(|p: usize| {
                if p == 3 {
                    panic!("partition 3 is broken");
                }
                p
            }),
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, CoreError::JobFailed { .. }), "{err:?}");
    assert!(text.contains("partition 3 is broken"), "{text}");
    assert!(text.contains("failed 1 time,"), "{text}");
    assert!(!err.is_retryable());
    // The context survives a failed job.
    assert_eq!(ctx.run_job(2, Fn!(|p: usize| p + 1)).unwrap(), vec![1, 2]);
}

static FLAKY_OK: AtomicU32 = AtomicU32::new(0);
static FLAKY_FAIL: AtomicU32 = AtomicU32::new(0);

#[test]
fn local_n_f_allows_f_attempts() {
    let ctx = context("local[2,3]");
    // Fails twice, then succeeds on the third attempt.
    let got = ctx
        .run_job(
            1,
            Fn!(|p: usize| {
                if FLAKY_OK.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("flaky");
                }
                p + 40
            }),
        )
        .unwrap();
    assert_eq!(got, vec![40]);
    assert_eq!(FLAKY_OK.load(Ordering::SeqCst), 3);

    let ctx = context("local[2,2]");
    let err = ctx
        .run_job(
            1,
            Fn!(|_p: usize| -> u32 {
                FLAKY_FAIL.fetch_add(1, Ordering::SeqCst);
                panic!("always broken")
            }),
        )
        .unwrap_err();
    assert_eq!(FLAKY_FAIL.load(Ordering::SeqCst), 2);
    assert!(err.to_string().contains("failed 2 times"), "{err}");
    match err.task_failure() {
        Some(ember_core::scheduler::messages::TaskFailureReason::Panic { message }) => {
            assert_eq!(message, "always broken")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_context_is_shared_between_threads() {
    let ctx = context("local[4]");
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let ctx = ctx.clone();
            std::thread::spawn(move || ctx.run_job(8, Fn!(move |p: usize| p as u64 * t)).unwrap())
        })
        .collect();
    for (t, h) in handles.into_iter().enumerate() {
        let got = h.join().unwrap();
        assert_eq!(got, (0..8u64).map(|p| p * t as u64).collect::<Vec<_>>());
    }
}

#[test]
fn stopped_contexts_refuse_jobs_and_stop_is_idempotent() {
    let ctx = context("local");
    ctx.stop();
    ctx.stop();
    assert!(ctx.is_stopped());
    let err = ctx.run_job(1, Fn!(|p: usize| p)).unwrap_err();
    assert!(matches!(err, CoreError::ContextStopped { .. }), "{err:?}");
}

#[test]
fn bad_master_urls_and_oversized_executors_are_errors() {
    let err = Context::new(EmberConf::from_pairs([("ember.master", "local[0]")])).unwrap_err();
    assert!(err.to_string().contains("local[0]"), "{err}");
    // Spark parity: an executor larger than a local-cluster worker is refused before anything
    // starts.
    let err = Context::new(EmberConf::from_pairs([
        ("ember.master", "local-cluster[2,1,512]"),
        ("ember.executor.memory", "1g"),
    ]))
    .unwrap_err();
    assert!(matches!(err, CoreError::ModeNotAvailable { .. }), "{err:?}");
    assert!(err.to_string().contains("ember.executor.memory"), "{err}");
}

#[test]
fn get_or_create_shares_one_context() {
    let a = Context::builder()
        .master("local[2]")
        .conf("ember.ui.showConsoleProgress", "false")
        .get_or_create()
        .unwrap();
    let b = Context::builder().get_or_create().unwrap();
    assert_eq!(a.driver_address(), b.driver_address());
    a.stop();
    let c = Context::builder().master("local").get_or_create().unwrap();
    assert_ne!(a.driver_address(), c.driver_address());
}
