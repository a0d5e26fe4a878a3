//! Task scheduler tests: offers (table-driven), status updates, executor loss, aborts.

use std::sync::Arc;

use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::*;
use crate::scheduler::messages::TaskKind;
use crate::util::ByteBuf;

pub(crate) fn task_set(job: u64, stage: u64, n: usize) -> TaskSet {
    let stage = StageAttempt {
        stage_id: StageId(stage),
        attempt: 0,
    };
    TaskSet {
        stage,
        priority: JobId(job),
        tasks: (0..n)
            .map(|p| TaskSpec {
                partition: p,
                output_id: p,
            })
            .collect(),
        binary: Arc::new(TaskBinary {
            stage,
            kind: TaskKind::Result,
            bytes: ByteBuf::default(),
        }),
    }
}

fn offer(id: &str, slots: u32) -> WorkerOffer {
    WorkerOffer {
        executor_id: id.into(),
        host: format!("host-{id}"),
        slots,
    }
}

fn finished(task_id: TaskId, result: &[u8]) -> TaskStatus {
    TaskStatus {
        task_id,
        state: TaskState::Finished,
        data: StatusData::Result(TaskResult::Direct(ByteBuf(result.to_vec()))),
    }
}

fn failed(task_id: TaskId, message: &str) -> TaskStatus {
    TaskStatus {
        task_id,
        state: TaskState::Failed,
        data: StatusData::Failure(TaskFailureReason::Panic {
            message: message.to_owned(),
        }),
    }
}

/// (stage, partition) of each launch, per offer.
fn shape(launches: &[Vec<TaskLaunch>]) -> Vec<Vec<(u64, u32)>> {
    launches
        .iter()
        .map(|l| {
            l.iter()
                .map(|t| (t.desc.stage.stage_id.0, t.desc.partition))
                .collect()
        })
        .collect()
}

#[test]
fn resource_offers_table() {
    // Spark parity: TaskSchedulerImpl.resourceOffers fills offers round-robin, one task per
    // offer per pass, earliest job (then stage) first.
    struct Case {
        name: &'static str,
        sets: Vec<TaskSet>,
        offers: Vec<WorkerOffer>,
        want: Vec<Vec<(u64, u32)>>,
    }
    let cases = vec![
        Case {
            name: "no tasks",
            sets: vec![],
            offers: vec![offer("0", 2)],
            want: vec![vec![]],
        },
        Case {
            name: "spread over executors",
            sets: vec![task_set(0, 0, 4)],
            offers: vec![offer("0", 2), offer("1", 2)],
            want: vec![vec![(0, 0), (0, 2)], vec![(0, 1), (0, 3)]],
        },
        Case {
            name: "more slots than tasks",
            sets: vec![task_set(0, 0, 3)],
            offers: vec![offer("0", 4), offer("1", 1)],
            want: vec![vec![(0, 0), (0, 2)], vec![(0, 1)]],
        },
        Case {
            name: "fewer slots than tasks",
            sets: vec![task_set(0, 0, 5)],
            offers: vec![offer("0", 1), offer("1", 0), offer("2", 1)],
            want: vec![vec![(0, 0)], vec![], vec![(0, 1)]],
        },
        Case {
            name: "earlier job first, later job gets the rest",
            sets: vec![task_set(1, 5, 2), task_set(0, 7, 1)],
            offers: vec![offer("0", 2), offer("1", 1)],
            want: vec![vec![(7, 0), (5, 0)], vec![(5, 1)]],
        },
    ];
    for case in cases {
        let mut s = TaskSchedulerImpl::new(4);
        for set in case.sets {
            s.submit_tasks(set);
        }
        let got = shape(&s.resource_offers(&case.offers));
        assert_eq!(got, case.want, "{}", case.name);
    }
}

#[test]
fn status_updates_reach_the_dag_and_free_the_task_set() {
    let mut s = TaskSchedulerImpl::new(4);
    s.submit_tasks(task_set(0, 0, 2));
    let launches = s.resource_offers(&[offer("0", 2)]);
    let ids: Vec<TaskId> = launches[0].iter().map(|l| l.desc.task_id).collect();
    assert_eq!(ids, vec![TaskId(0), TaskId(1)]);
    assert!(s.launched_any());
    s.status_update(
        &"0".into(),
        TaskStatus {
            task_id: ids[0],
            state: TaskState::Running,
            data: StatusData::None,
        },
    );
    assert_eq!(s.started_tasks(), 1);
    // The other attempt was launched but its executor has not started it yet.
    assert_eq!(s.progress()[0].active, 1);
    assert!(
        s.status_update(&"0".into(), finished(ids[0], b"a"))
            .is_none()
    );
    // A duplicate update is ignored.
    assert!(
        s.status_update(&"0".into(), finished(ids[0], b"a"))
            .is_none()
    );
    s.status_update(&"0".into(), finished(ids[1], b"b"));
    let events = s.take_events();
    let results: Vec<Vec<u8>> = events
        .into_iter()
        .filter_map(|e| match e {
            DagEvent::TaskEnded {
                outcome: TaskOutcome::Success(r),
                ..
            } => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(results, vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(s.take_finished_task_sets().len(), 1);
    assert!(s.progress().is_empty());
}

#[test]
fn failures_are_retried_then_abort_the_task_set() {
    let mut s = TaskSchedulerImpl::new(2);
    s.submit_tasks(task_set(0, 0, 1));
    let t = s.resource_offers(&[offer("0", 1)])[0][0].desc.task_id;
    s.status_update(&"0".into(), failed(t, "first"));
    assert!(s.has_pending_tasks());
    let retry = s.resource_offers(&[offer("0", 1)])[0][0].desc;
    assert_eq!((retry.partition, retry.attempt), (0, 1));
    s.status_update(&"0".into(), failed(retry.task_id, "second"));
    let aborted: Vec<JobFailure> = s
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            DagEvent::TaskSetFailed { failure, .. } => Some(failure),
            _ => None,
        })
        .collect();
    assert_eq!(aborted.len(), 1);
    assert!(
        aborted[0].to_string().contains("failed 2 times"),
        "{}",
        aborted[0]
    );
    assert!(aborted[0].to_string().contains("second"), "{}", aborted[0]);
    assert!(!s.has_pending_tasks());
}

#[test]
fn tasks_lost_with_their_executor_are_resubmitted() {
    let mut s = TaskSchedulerImpl::new(1);
    s.submit_tasks(task_set(0, 0, 4));
    let launches = s.resource_offers(&[offer("0", 2), offer("1", 2)]);
    let on_one: Vec<u32> = launches[1].iter().map(|l| l.desc.partition).collect();
    assert_eq!(on_one, vec![1, 3]);
    // Even with one attempt allowed, a loss not caused by the app does not abort.
    s.executor_lost(&"1".into(), "worker lost", false);
    assert_eq!(s.num_executors(), 1);
    assert!(s.has_pending_tasks());
    let again = s.resource_offers(&[offer("0", 4)]);
    let mut resubmitted: Vec<(u32, u32)> = again[0]
        .iter()
        .map(|l| (l.desc.partition, l.desc.attempt))
        .collect();
    resubmitted.sort();
    assert_eq!(resubmitted, vec![(1, 1), (3, 1)]);
    let lost_events = s
        .take_events()
        .into_iter()
        .filter(|e| matches!(e, DagEvent::ExecutorLost { .. }))
        .count();
    assert_eq!(lost_events, 1);
    // Late updates from the lost executor are ignored.
    let stale = launches[1][0].desc.task_id;
    assert!(
        s.status_update(&"1".into(), finished(stale, b"x"))
            .is_none()
    );
}

#[test]
fn indirect_results_are_fetched_before_counting() {
    let mut s = TaskSchedulerImpl::new(4);
    s.submit_tasks(task_set(0, 0, 1));
    let t = s.resource_offers(&[offer("0", 1)])[0][0].desc.task_id;
    let fetch = s
        .status_update(
            &"0".into(),
            TaskStatus {
                task_id: t,
                state: TaskState::Finished,
                data: StatusData::Result(TaskResult::Indirect {
                    block_id: BlockId::TaskResult(t),
                    size: 10,
                }),
            },
        )
        .unwrap();
    assert_eq!(fetch.block_id, BlockId::TaskResult(t));
    assert!(s.take_events().is_empty());
    assert_eq!(s.progress().len(), 1);
    s.handle_fetched_result(t, vec![1; 10]);
    assert_eq!(s.take_events().len(), 1);
    assert!(s.progress().is_empty());
}

#[test]
fn a_failed_fetch_retries_the_task() {
    let mut s = TaskSchedulerImpl::new(4);
    s.submit_tasks(task_set(0, 0, 1));
    let t = s.resource_offers(&[offer("0", 1)])[0][0].desc.task_id;
    s.status_update(
        &"0".into(),
        TaskStatus {
            task_id: t,
            state: TaskState::Finished,
            data: StatusData::Result(TaskResult::Indirect {
                block_id: BlockId::TaskResult(t),
                size: 10,
            }),
        },
    );
    s.handle_fetch_failure(t, "gone".into());
    assert!(s.has_pending_tasks());
}

#[test]
fn cancel_and_abort() {
    let mut s = TaskSchedulerImpl::new(4);
    s.submit_tasks(task_set(0, 0, 3));
    s.submit_tasks(task_set(1, 1, 1));
    let launches = s.resource_offers(&[offer("0", 2)]);
    assert_eq!(launches[0].len(), 2);
    let running = s.cancel_stage(StageId(0));
    assert_eq!(running.len(), 2);
    assert!(s.has_pending_tasks(), "stage 1 still waits");
    s.abort_all("stopping");
    let cancelled = s
        .take_events()
        .into_iter()
        .filter(|e| matches!(e, DagEvent::TaskSetFailed { .. }))
        .count();
    assert_eq!(cancelled, 1, "only stage 1 was still active");
    assert!(!s.has_pending_tasks());
}

#[test]
fn oversized_tasks_abort_their_task_set() {
    let mut s = TaskSchedulerImpl::new(4);
    s.submit_tasks(task_set(0, 0, 2));
    let launches = s.resource_offers(&[offer("0", 2)]);
    let ids: Vec<TaskId> = launches[0].iter().map(|l| l.desc.task_id).collect();
    let stage = launches[0][0].desc.stage;
    s.abort_task_set(stage, "too big", &ids);
    let failures: Vec<JobFailure> = s
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            DagEvent::TaskSetFailed { failure, .. } => Some(failure),
            _ => None,
        })
        .collect();
    assert_eq!(
        failures,
        vec![JobFailure::StageAborted {
            stage,
            message: "too big".into()
        }]
    );
    assert_eq!(s.take_finished_task_sets(), vec![stage]);
}

#[tokio::test]
async fn the_shared_handle_forwards_events() {
    let (tx, mut rx): (_, UnboundedReceiver<DagEvent>) = unbounded_channel();
    let scheduler = TaskScheduler::new(4, tx);
    scheduler.submit_tasks(task_set(0, 0, 1));
    let t = scheduler.with_state(|s| s.resource_offers(&[offer("0", 1)]))[0][0]
        .desc
        .task_id;
    scheduler.with_state(|s| s.status_update(&"0".into(), finished(t, b"r")));
    assert!(matches!(
        rx.recv().await,
        Some(DagEvent::TaskEnded {
            outcome: TaskOutcome::Success(_),
            ..
        })
    ));
}
