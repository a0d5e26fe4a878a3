//! The `CoarseGrainedScheduler` endpoint in one process: an RpcEnv on 127.0.0.1:0, the real task
//! scheduler behind it, and test endpoints in the executors' place that record what the driver
//! sends them (the executor processes themselves are tested in `tests/executor_processes.rs`
//! and the `ember` crate's application tests).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember_rpc::{
    EmberConf, EndpointContext, EndpointRef, HandlerResult, RpcEndpoint, RpcEnv, RpcEnvConfig,
};
use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::closure::BinaryDigest;
use crate::scheduler::dag::DagEvent;
use crate::scheduler::messages::{
    ExecutorMessage, StatusData, TaskDescription, TaskResult, TaskState,
};
use crate::scheduler::task::tests::task_set;
use crate::util::ByteBuf;

/// Stands in for an executor process: records the tasks and kills it is sent.
#[derive(Default)]
struct Recorder {
    launched: Arc<Mutex<Vec<TaskDescription>>>,
    other: Arc<Mutex<Vec<String>>>,
}

impl RpcEndpoint for Recorder {
    type Message = ExecutorMessage;

    async fn receive(
        &mut self,
        _: &EndpointContext<ExecutorMessage>,
        message: ExecutorMessage,
    ) -> HandlerResult {
        match message {
            ExecutorMessage::LaunchTask { tasks, .. } => {
                self.launched.lock().unwrap().extend(tasks);
            }
            other => self.other.lock().unwrap().push(format!("{other:?}")),
        }
        Ok(())
    }
}

struct Harness {
    env: RpcEnv,
    driver: EndpointRef<DriverMessage>,
    scheduler: Arc<TaskScheduler>,
    _dag_events: UnboundedReceiver<DagEvent>,
}

struct FakeExecutor {
    id: ExecutorId,
    endpoint: EndpointRef<ExecutorMessage>,
    launched: Arc<Mutex<Vec<TaskDescription>>>,
    other: Arc<Mutex<Vec<String>>>,
}

impl FakeExecutor {
    fn launched(&self) -> Vec<TaskDescription> {
        self.launched.lock().unwrap().clone()
    }
}

async fn harness(settings: &[(&str, &str)]) -> Harness {
    let env = RpcEnv::create(RpcEnvConfig::new("driver-test", "127.0.0.1", 0))
        .await
        .unwrap();
    let conf = EmberConf::from_pairs(settings.iter().copied());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let scheduler = Arc::new(TaskScheduler::new(4, tx));
    let endpoint_conf = DriverEndpointConf::from_conf(&conf, &env).unwrap();
    let shared = Arc::new(DriverShared::default());
    let driver = env
        .setup_endpoint(
            "CoarseGrainedScheduler",
            DriverEndpoint::new(scheduler.clone(), endpoint_conf, shared).unwrap(),
        )
        .await
        .unwrap();
    Harness {
        env,
        driver,
        scheduler,
        _dag_events: rx,
    }
}

impl Harness {
    async fn executor_endpoint(&self, id: &str) -> FakeExecutor {
        let recorder = Recorder::default();
        let (launched, other) = (recorder.launched.clone(), recorder.other.clone());
        let endpoint = self
            .env
            .setup_endpoint(&format!("executor-{id}"), recorder)
            .await
            .unwrap();
        FakeExecutor {
            id: ExecutorId::from(id),
            endpoint,
            launched,
            other,
        }
    }

    async fn register(
        &self,
        executor: &FakeExecutor,
        cores: u32,
        digest: BinaryDigest,
    ) -> Result<ExecutorRegistration, ember_rpc::RpcError> {
        self.driver
            .ask(DriverMessage::RegisterExecutor {
                executor_id: executor.id.clone(),
                executor_ref: executor.endpoint.clone(),
                hostname: "127.0.0.1".to_owned(),
                cores,
                log_urls: Vec::new(),
                binary_digest: digest,
            })
            .await
    }

    /// Registers `executor` with the driver's own digest and reports it launched.
    async fn start(&self, executor: &FakeExecutor, cores: u32) {
        self.register(executor, cores, *binary_digest().unwrap())
            .await
            .unwrap();
        self.driver
            .send(DriverMessage::LaunchedExecutor {
                executor_id: executor.id.clone(),
            })
            .unwrap();
    }

    fn finished(&self, executor: &FakeExecutor, task_id: TaskId) {
        self.driver
            .send(DriverMessage::StatusUpdate {
                executor_id: executor.id.clone(),
                updates: vec![TaskStatus {
                    task_id,
                    state: TaskState::Finished,
                    data: StatusData::Result(TaskResult::Direct(ByteBuf(vec![1]))),
                }],
            })
            .unwrap();
    }

    /// Round trip through the endpoint: everything sent before has been handled.
    async fn sync(&self) {
        let _: usize = self
            .driver
            .ask(DriverMessage::Internal(DriverInternal::NumExecutors))
            .await
            .unwrap();
    }
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// No `ReviveOffers` timer gets in the way of counting offers.
const NO_REVIVE: [(&str, &str); 2] = [
    ("ember.scheduler.revive.interval", "1h"),
    ("ember.scheduler.executorTaskQueue", "0"),
];

#[tokio::test]
async fn a_duplicate_id_and_another_binary_are_refused() {
    let h = harness(&NO_REVIVE).await;
    let e = h.executor_endpoint("1").await;
    h.register(&e, 1, *binary_digest().unwrap()).await.unwrap();
    let err = h
        .register(&e, 1, *binary_digest().unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Duplicate executor ID: 1"),
        "{err}"
    );
    let other = h.executor_endpoint("2").await;
    let err = h
        .register(&other, 1, BinaryDigest::from_bytes([7; 32]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("binary"), "{err}");
    let registered: usize = h
        .driver
        .ask(DriverMessage::Internal(DriverInternal::NumExecutors))
        .await
        .unwrap();
    assert_eq!(registered, 1, "only the first registration counts");
    h.env.shutdown().await;
}

#[tokio::test]
async fn a_finished_task_frees_its_slot_and_a_bogus_update_frees_none() {
    let h = harness(&NO_REVIVE).await;
    let e = h.executor_endpoint("1").await;
    h.start(&e, 1).await;
    h.scheduler.submit_tasks(task_set(0, 0, 3));
    eventually("the first task", || e.launched().len() == 1).await;
    // An update for a task the executor never had, and a repeated one: no slot is freed.
    h.finished(&e, TaskId(999));
    h.sync().await;
    assert_eq!(e.launched().len(), 1, "one core, one task");
    let first = e.launched()[0].task_id;
    h.finished(&e, first);
    eventually("the second task", || e.launched().len() == 2).await;
    h.finished(&e, first);
    h.sync().await;
    assert_eq!(e.launched().len(), 2, "a repeated update frees nothing");
    h.env.shutdown().await;
}

#[tokio::test]
async fn the_task_queue_adds_slots_beyond_the_cores_and_huge_core_counts_do_not_overflow() {
    let h = harness(&[
        ("ember.scheduler.revive.interval", "1h"),
        ("ember.scheduler.executorTaskQueue", "2"),
    ])
    .await;
    let e = h.executor_endpoint("1").await;
    h.start(&e, 1).await;
    h.scheduler.submit_tasks(task_set(0, 0, 10));
    eventually("three tasks", || e.launched().len() == 3).await;
    let big = h.executor_endpoint("2").await;
    h.start(&big, u32::MAX).await;
    eventually("the rest on the big executor", || big.launched().len() == 7).await;
    h.env.shutdown().await;
}

#[tokio::test]
async fn pending_tasks_are_offered_on_the_revive_timer() {
    let h = harness(&[
        ("ember.scheduler.revive.interval", "20ms"),
        ("ember.scheduler.executorTaskQueue", "0"),
    ])
    .await;
    let e = h.executor_endpoint("1").await;
    h.start(&e, 2).await;
    h.sync().await;
    // Added behind the backend's back: only the timer can offer them.
    h.scheduler
        .with_state(|s| s.submit_tasks(task_set(0, 0, 2)));
    eventually("tasks launched by the revive timer", || {
        e.launched().len() == 2
    })
    .await;
    h.env.shutdown().await;
}

#[tokio::test]
async fn a_silent_executor_is_removed_and_its_tasks_go_elsewhere() {
    let h = harness(&[
        ("ember.scheduler.revive.interval", "1h"),
        ("ember.scheduler.executorTaskQueue", "0"),
        ("ember.network.timeout", "200ms"),
    ])
    .await;
    let silent = h.executor_endpoint("1").await;
    h.start(&silent, 1).await;
    h.scheduler.submit_tasks(task_set(0, 0, 1));
    eventually("the task on the first executor", || {
        silent.launched().len() == 1
    })
    .await;
    let alive = h.executor_endpoint("2").await;
    h.start(&alive, 1).await;
    // Only the second executor keeps sending heartbeats.
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive.launched().is_empty() {
        assert!(Instant::now() < deadline, "the task was not resubmitted");
        let _: HeartbeatResponse = h
            .driver
            .ask(DriverMessage::Heartbeat {
                executor_id: alive.id.clone(),
                tasks: 0,
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resubmitted = alive.launched()[0];
    assert_eq!(resubmitted.partition, 0);
    assert_eq!(resubmitted.attempt, 1, "a new attempt of the lost task");
    eventually("the silent executor told to stop", || {
        silent
            .other
            .lock()
            .unwrap()
            .iter()
            .any(|m| m == "StopExecutor")
    })
    .await;
    let known: HeartbeatResponse = h
        .driver
        .ask(DriverMessage::Heartbeat {
            executor_id: silent.id.clone(),
            tasks: 1,
        })
        .await
        .unwrap();
    assert!(!known.known, "a removed executor is forgotten");
    h.env.shutdown().await;
}
