//! The executor proper: a pool of task threads, the tasks it holds, and the reporter that sends
//! their status updates in batches.
//!
//! Spark counterpart: `Executor` and its `TaskRunner`. The same code runs tasks in executor
//! processes (reporting to the driver over RPC) and in the driver in local mode (reporting to
//! the local backend); [`StatusSink`] is the difference.
//!
//! Each task attempt decodes its own copy of the stage's closure from the binary, runs it under
//! `catch_unwind`, and discards it: a panic cannot leave state behind that a later task sees
//! (see [`TaskFn::run`](crate::closure::TaskFn::run) for why catching is sound).

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tracing::debug;

use crate::closure::TaskFn;
use crate::ids::{ExecutorId, TaskId};
use crate::scheduler::messages::{
    StatusData, TaskBinary, TaskDescription, TaskFailureReason, TaskKind, TaskResult, TaskState,
    TaskStatus,
};
use crate::storage::{BlockId, BlockStore};
use crate::task_context::TaskContext;
use crate::util::ByteBuf;

/// Where an executor's status updates go: the driver (over RPC) or the local backend.
pub trait StatusSink: Send + Sync + 'static {
    /// Delivers a batch of updates, in the order they happened.
    fn send_updates(&self, updates: Vec<TaskStatus>);
}

/// How an executor keeps results.
#[derive(Debug, Clone)]
pub struct ResultPolicy {
    /// Results up to this size travel in the status update.
    pub max_direct_size: usize,
    /// Larger results are put here and fetched by the driver; without a store every result is
    /// direct (local mode).
    pub store: Option<Arc<BlockStore>>,
}

struct QueuedTask {
    desc: TaskDescription,
    binary: Arc<TaskBinary>,
    /// The attempt's context: what the task sees of itself, and its kill switch.
    context: TaskContext,
}

struct Shared {
    executor_id: ExecutorId,
    queue: Mutex<VecDeque<QueuedTask>>,
    ready: Condvar,
    stopping: AtomicBool,
    tasks: Mutex<HashMap<TaskId, TaskContext>>,
    reporter: UnboundedSender<TaskStatus>,
    results: ResultPolicy,
}

impl Shared {
    fn lock_queue(&self) -> MutexGuard<'_, VecDeque<QueuedTask>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_tasks(&self) -> MutexGuard<'_, HashMap<TaskId, TaskContext>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&self, task_id: TaskId, state: TaskState, data: StatusData) {
        let _ = self.reporter.send(TaskStatus {
            task_id,
            state,
            data,
        });
    }
}

/// Runs task attempts on `cores` threads.
pub struct Executor {
    shared: Arc<Shared>,
    cores: usize,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("executor_id", &self.shared.executor_id)
            .field("cores", &self.cores)
            .finish()
    }
}

impl Executor {
    /// Starts `cores` task threads and a reporter task on `runtime` that delivers status
    /// updates to `sink`.
    pub fn start(
        executor_id: ExecutorId,
        cores: usize,
        results: ResultPolicy,
        sink: Arc<dyn StatusSink>,
        runtime: &tokio::runtime::Handle,
    ) -> std::io::Result<Executor> {
        let (tx, rx) = unbounded_channel();
        let shared = Arc::new(Shared {
            executor_id,
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            stopping: AtomicBool::new(false),
            tasks: Mutex::new(HashMap::new()),
            reporter: tx,
            results,
        });
        runtime.spawn(report_loop(rx, sink));
        let cores = cores.max(1);
        for i in 0..cores {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("ember-task-{i}"))
                .spawn(move || task_thread(&shared))?;
        }
        Ok(Executor { shared, cores })
    }

    /// The executor's id.
    pub fn executor_id(&self) -> &ExecutorId {
        &self.shared.executor_id
    }

    /// Task threads.
    pub fn cores(&self) -> usize {
        self.cores
    }

    /// Queues a task attempt; a free thread runs it.
    pub fn launch_task(&self, desc: TaskDescription, binary: Arc<TaskBinary>) {
        let context = TaskContext::new(
            desc.stage,
            desc.partition as usize,
            desc.attempt,
            desc.task_id,
        );
        self.shared
            .lock_tasks()
            .insert(desc.task_id, context.clone());
        self.shared.lock_queue().push_back(QueuedTask {
            desc,
            binary,
            context,
        });
        self.shared.ready.notify_one();
    }

    /// Kills a task attempt: a queued one is dropped and reported KILLED at once; a running one
    /// sees [`TaskContext::is_interrupted`] and is reported KILLED when it returns. Threads
    /// cannot be stopped from outside, so killing is cooperative whatever `interrupt_thread`
    /// says (see [`task_context`](crate::task_context)).
    pub fn kill_task(&self, task_id: TaskId, _interrupt_thread: bool, reason: &str) {
        let Some(context) = self.shared.lock_tasks().get(&task_id).cloned() else {
            return;
        };
        context.kill(reason);
        let queued = {
            let mut queue = self.shared.lock_queue();
            let before = queue.len();
            queue.retain(|t| t.desc.task_id != task_id);
            before != queue.len()
        };
        if queued {
            self.shared.lock_tasks().remove(&task_id);
            self.shared.report(
                task_id,
                TaskState::Killed,
                StatusData::Failure(TaskFailureReason::Killed {
                    reason: reason.to_owned(),
                }),
            );
        }
    }

    /// Task attempts held (queued or running).
    pub fn num_tasks(&self) -> usize {
        self.shared.lock_tasks().len()
    }

    /// Stops the task threads once their current tasks return; queued tasks are dropped.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.lock_queue().clear();
        self.shared.ready.notify_all();
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.stop();
    }
}

fn task_thread(shared: &Shared) {
    loop {
        let task = {
            let mut queue = shared.lock_queue();
            loop {
                if shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(task) = queue.pop_front() {
                    break task;
                }
                queue = shared.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
        };
        run_task(shared, task);
    }
}

fn run_task(shared: &Shared, task: QueuedTask) {
    let task_id = task.desc.task_id;
    let outcome = if let Some(reason) = task.context.kill_reason() {
        Err(TaskFailureReason::Killed { reason })
    } else {
        shared.report(task_id, TaskState::Running, StatusData::None);
        let ran = {
            let _current = task.context.enter();
            catch_unwind(AssertUnwindSafe(|| execute(&task)))
        };
        let ran = match ran {
            Ok(result) => result,
            Err(payload) => Err(TaskFailureReason::Panic {
                message: ember_rpc::panic_message(payload.as_ref()),
            }),
        };
        // A kill wins over whatever the task did after it (including unwinding on
        // `kill_task_if_interrupted`).
        match task.context.kill_reason() {
            Some(reason) => Err(TaskFailureReason::Killed { reason }),
            None => ran,
        }
    };
    let (state, data) = match outcome {
        Ok(bytes) => (
            TaskState::Finished,
            StatusData::Result(keep_result(shared, task_id, bytes)),
        ),
        Err(reason) => {
            debug!(%task_id, %reason, "task failed");
            (reason.state(), StatusData::Failure(reason))
        }
    };
    shared.lock_tasks().remove(&task_id);
    shared.report(task_id, state, data);
}

/// Decodes the closure and runs it for the task's partition.
fn execute(task: &QueuedTask) -> Result<Vec<u8>, TaskFailureReason> {
    match task.binary.kind {
        TaskKind::Result => {
            let func = TaskFn::from_bytes(task.binary.bytes.as_slice()).map_err(|e| {
                TaskFailureReason::Error {
                    message: format!("cannot decode the task: {e}"),
                }
            })?;
            func.run(task.desc.partition as usize)
                .map_err(|e| TaskFailureReason::Error {
                    message: e.to_string(),
                })
        }
    }
}

fn keep_result(shared: &Shared, task_id: TaskId, bytes: Vec<u8>) -> TaskResult {
    match &shared.results.store {
        Some(store) if bytes.len() > shared.results.max_direct_size => {
            let block_id = BlockId::TaskResult(task_id);
            let size = bytes.len() as u64;
            debug!(%task_id, size, "result too large to send directly; keeping it as a block");
            store.put(block_id, bytes);
            TaskResult::Indirect { block_id, size }
        }
        _ => TaskResult::Direct(ByteBuf(bytes)),
    }
}

/// Sends status updates in batches: whatever accumulated while the previous batch was being
/// handed over goes in the next one, so a quiet executor reports each update at once and a busy
/// one sends few large messages. A RUNNING update is dropped when the same batch ends the task.
async fn report_loop(mut rx: UnboundedReceiver<TaskStatus>, sink: Arc<dyn StatusSink>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(next) = rx.try_recv() {
            batch.push(next);
        }
        if batch.len() > 1 {
            let ended: HashSet<TaskId> = batch
                .iter()
                .filter(|u| u.state.is_finished())
                .map(|u| u.task_id)
                .collect();
            batch.retain(|u| u.state.is_finished() || !ended.contains(&u.task_id));
        }
        sink.send_updates(batch);
    }
    debug!("status reporter stopped: the executor is gone");
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_closure::Fn;

    use super::*;
    use crate::ids::{StageAttempt, StageId};

    #[derive(Default)]
    struct Collect(Mutex<Vec<TaskStatus>>);

    impl StatusSink for Collect {
        fn send_updates(&self, updates: Vec<TaskStatus>) {
            self.0.lock().unwrap().extend(updates);
        }
    }

    impl Collect {
        fn wait_for(&self, n_finished: usize) -> Vec<TaskStatus> {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let all = self.0.lock().unwrap().clone();
                if all.iter().filter(|u| u.state.is_finished()).count() >= n_finished {
                    return all;
                }
                assert!(Instant::now() < deadline, "updates: {all:?}");
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    fn binary(task: &TaskFn) -> Arc<TaskBinary> {
        Arc::new(TaskBinary {
            stage: StageAttempt {
                stage_id: StageId(0),
                attempt: 0,
            },
            kind: TaskKind::Result,
            bytes: ByteBuf(task.to_bytes().unwrap()),
        })
    }

    fn desc(id: u64, partition: u32) -> TaskDescription {
        TaskDescription {
            task_id: TaskId(id),
            attempt: 0,
            stage: StageAttempt {
                stage_id: StageId(0),
                attempt: 0,
            },
            partition,
            index: partition,
        }
    }

    #[test]
    fn runs_tasks_and_reports_results_panics_and_large_results() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let handle = rt.handle().clone();
        let sink = Arc::new(Collect::default());
        let store = Arc::new(BlockStore::new());
        let executor = Executor::start(
            "1".into(),
            2,
            ResultPolicy {
                max_direct_size: 64,
                store: Some(store.clone()),
            },
            sink.clone(),
            &handle,
        )
        .unwrap();
        let (task, decoder) = TaskFn::new(Fn!(|p: usize| {
            if p == 1 {
                panic!("partition one is cursed");
            }
            std::iter::repeat_n(p as u8, p * 100).collect::<Vec<u8>>()
        }))
        .unwrap();
        let bin = binary(&task);
        for p in 0..3 {
            executor.launch_task(desc(p as u64, p), bin.clone());
        }
        let updates = sink.wait_for(3);
        let end = |id: u64| {
            updates
                .iter()
                .find(|u| u.task_id == TaskId(id) && u.state.is_finished())
                .unwrap()
                .clone()
        };
        match end(0).data {
            StatusData::Result(TaskResult::Direct(bytes)) => {
                assert!(decoder.decode(bytes.as_slice()).unwrap().is_empty())
            }
            other => panic!("{other:?}"),
        }
        match end(1).data {
            StatusData::Failure(TaskFailureReason::Panic { message }) => {
                assert_eq!(message, "partition one is cursed")
            }
            other => panic!("{other:?}"),
        }
        match end(2).data {
            StatusData::Result(TaskResult::Indirect { block_id, size }) => {
                let bytes = store.get(&block_id).unwrap();
                assert_eq!(bytes.len() as u64, size);
                assert_eq!(decoder.decode(&bytes).unwrap(), vec![2u8; 200]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(executor.num_tasks(), 0);
        executor.stop();
    }

    #[test]
    fn a_killed_running_task_sees_it_and_is_reported_killed() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let sink = Arc::new(Collect::default());
        let executor = Executor::start(
            "1".into(),
            1,
            ResultPolicy {
                max_direct_size: 1 << 20,
                store: None,
            },
            sink.clone(),
            rt.handle(),
        )
        .unwrap();
        // Partition 0 waits to be killed; partition 1 unwinds as soon as it is.
        let (task, _) = TaskFn::new(Fn!(|p: usize| {
            let ctx = crate::TaskContext::get().expect("a task has a context");
            assert_eq!(ctx.partition_id(), p);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                if p == 1 {
                    ctx.kill_task_if_interrupted();
                } else if ctx.is_interrupted() {
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            false
        }))
        .unwrap();
        let bin = binary(&task);
        for p in 0..2 {
            executor.launch_task(desc(p as u64, p), bin.clone());
            let running = |s: &Collect| {
                s.0.lock()
                    .unwrap()
                    .iter()
                    .any(|u| u.task_id == TaskId(p as u64) && u.state == TaskState::Running)
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while !running(&sink) {
                assert!(Instant::now() < deadline, "task {p} did not start");
                std::thread::sleep(Duration::from_millis(2));
            }
            executor.kill_task(TaskId(p as u64), true, "its job was cancelled");
            let updates = sink.wait_for(p as usize + 1);
            let end = updates
                .iter()
                .find(|u| u.task_id == TaskId(p as u64) && u.state.is_finished())
                .unwrap();
            assert_eq!(end.state, TaskState::Killed, "{end:?}");
            match &end.data {
                StatusData::Failure(TaskFailureReason::Killed { reason }) => {
                    assert_eq!(reason, "its job was cancelled")
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(executor.num_tasks(), 0);
        executor.stop();
    }
}
