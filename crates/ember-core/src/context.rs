//! The [`Context`]: an application's connection to where its tasks run.
//!
//! Spark counterpart: `SparkContext`. Creating one parses the master URL, starts the driver's
//! RpcEnv on a small Tokio runtime of its own, the DAG and task schedulers, and the backend the
//! URL selects: local threads, a standalone cluster through the AppClient, or — for
//! `local-cluster[W,C,M]` — a Master and W Workers started in this process
//! ([`local_cluster`](crate::local_cluster)) used as a standalone cluster, whose executors are
//! this binary started again. Jobs are run
//! with [`Context::run_job`], which blocks the calling thread until the job's results are in.
//!
//! A `Context` is a cheap handle: clone it freely and use it from many threads. The runtime
//! stops with [`Context::stop`], or when the last handle is dropped.
//!
//! ```
//! use ember_core::Context;
//! use serde_closure::Fn;
//!
//! let ctx = Context::builder().master("local[2]").app_name("doc").create()?;
//! let squares = ctx.run_job(4, Fn!(|p: usize| p * p))?;
//! assert_eq!(squares, vec![0, 1, 4, 9]);
//! ctx.stop();
//! # Ok::<(), ember_core::CoreError>(())
//! ```
//!
//! Unlike Spark, several contexts may live in one process (tests start many);
//! [`ContextBuilder::get_or_create`] shares one per process the way `SparkContext.getOrCreate`
//! does.

use std::fmt;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use ember_rpc::{ConfLoader, EmberConf, RpcEnv, RpcEnvConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::closure::TaskFn;
use crate::config;
use crate::error::CoreError;
use crate::local_cluster::{LocalCluster, LocalClusterSpec};
use crate::master_url::MasterUrl;
use crate::scheduler::backend::SchedulerBackend;
use crate::scheduler::backend::local::LocalBackend;
use crate::scheduler::backend::standalone::{OnDead, StandaloneBackend};
use crate::scheduler::dag::{DagScheduler, run_event_loop};
use crate::scheduler::task::{StageProgress, TaskScheduler, starvation_watch};
use crate::ui::ConsoleProgressBar;
use crate::util::block_on_runtime;

/// How long stopping may take before the runtime is abandoned.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The application's handle on the runtime. Cheap to clone; usable from many threads.
#[derive(Clone)]
pub struct Context {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    conf: EmberConf,
    app_name: String,
    master: MasterUrl,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    env: RpcEnv,
    dag: DagScheduler,
    /// The DAG scheduler's event loop: stopping waits for it, so that every job has been
    /// failed (with the reason) before the runtime goes.
    dag_loop: Mutex<Option<tokio::task::JoinHandle<()>>>,
    scheduler: Arc<TaskScheduler>,
    backend: Arc<dyn SchedulerBackend>,
    stopped: Mutex<Option<String>>,
    shutdown: CancellationToken,
    progress: Option<ConsoleProgressBar>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("app_name", &self.inner.app_name)
            .field("master", &self.inner.master)
            .field("driver", self.inner.env.address())
            .finish_non_exhaustive()
    }
}

/// The context `get_or_create` hands out.
static ACTIVE: Mutex<Option<Weak<ContextInner>>> = Mutex::new(None);

/// Builds a [`Context`] from the configuration file, the environment and settings made in code.
#[derive(Debug, Default)]
pub struct ContextBuilder {
    settings: Vec<(String, String)>,
    conf: Option<EmberConf>,
    fallback_master: Option<String>,
}

impl ContextBuilder {
    /// Sets the master URL (`ember.master`).
    pub fn master(mut self, url: impl Into<String>) -> Self {
        self.settings
            .push((config::MASTER.key().to_owned(), url.into()));
        self
    }

    /// Uses this master URL unless `ember.master` is set in the configuration file, the
    /// environment (`EMBER_MASTER`) or code.
    pub fn master_if_unset(mut self, url: impl Into<String>) -> Self {
        self.fallback_master = Some(url.into());
        self
    }

    /// Sets the application name (`ember.app.name`).
    pub fn app_name(mut self, name: impl Into<String>) -> Self {
        self.settings
            .push((config::APP_NAME.key().to_owned(), name.into()));
        self
    }

    /// Sets any configuration key.
    pub fn conf(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((key.into(), value.into()));
        self
    }

    /// Starts from this configuration instead of loading `conf/ember-defaults.conf` and the
    /// `EMBER_*` environment variables.
    pub fn with_conf(mut self, conf: EmberConf) -> Self {
        self.conf = Some(conf);
        self
    }

    /// The configuration the context would get.
    pub fn build_conf(&self) -> Result<EmberConf, CoreError> {
        let mut conf = match &self.conf {
            Some(conf) => conf.clone(),
            None => ConfLoader::new()
                .entries(&crate::config_entries())
                .opts_env_vars(&["EMBER_DRIVER_OPTS"])
                .load()?,
        };
        for (key, value) in &self.settings {
            conf.set(key.clone(), value.clone());
        }
        if let Some(master) = &self.fallback_master {
            conf.set_if_missing(config::MASTER.key(), master.clone());
        }
        Ok(conf)
    }

    /// Creates a new context.
    pub fn create(self) -> Result<Context, CoreError> {
        Context::new(self.build_conf()?)
    }

    /// The process's active context if there is one (settings given here are then ignored,
    /// with a warning), else a new one that becomes active.
    pub fn get_or_create(self) -> Result<Context, CoreError> {
        let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(inner) = active.as_ref().and_then(Weak::upgrade)
            && !inner.is_stopped()
        {
            if !self.settings.is_empty() {
                warn!(
                    "using the existing Context; the settings given to get_or_create are ignored"
                );
            }
            return Ok(Context { inner });
        }
        let ctx = self.create()?;
        *active = Some(Arc::downgrade(&ctx.inner));
        Ok(ctx)
    }
}

impl Context {
    /// A builder that reads `conf/ember-defaults.conf` and the `EMBER_*` environment variables,
    /// then applies settings made in code.
    pub fn builder() -> ContextBuilder {
        ContextBuilder::default()
    }

    /// Starts a context with exactly this configuration.
    pub fn new(conf: EmberConf) -> Result<Context, CoreError> {
        let master_text = conf.get(&config::MASTER)?;
        let master = MasterUrl::parse(&master_text)?;
        let mut conf = conf;
        if let MasterUrl::LocalCluster {
            workers,
            cores_per_worker,
            memory_per_worker_mb,
        } = master
        {
            LocalClusterSpec {
                workers,
                cores_per_worker,
                memory_per_worker_mb,
            }
            .fit_conf(&mut conf, &master_text)?;
        }
        let app_name = conf
            .get_opt(&config::APP_NAME)?
            .unwrap_or_else(default_app_name);
        // Read before anything starts, so that no error can leave a started cluster behind.
        let show_progress = conf.get(&config::SHOW_CONSOLE_PROGRESS)?;
        // Every shipped closure is sealed with the binary's digest; hashing the executable
        // takes a moment, so start it now rather than in the first job.
        let _ = std::thread::Builder::new()
            .name("ember-digest".into())
            .spawn(|| {
                let _ = crate::closure::binary_digest();
            });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ember-driver")
            .enable_all()
            .build()
            .map_err(|source| CoreError::Io {
                what: "starting the driver's async runtime",
                source,
            })?;
        let handle = runtime.handle().clone();
        let context_cell: Arc<OnceLock<Weak<ContextInner>>> = Arc::new(OnceLock::new());
        let parts = {
            let (conf, master, app_name, cell) = (
                conf.clone(),
                master.clone(),
                app_name.clone(),
                context_cell.clone(),
            );
            block_on_runtime(&handle, start(conf, master, app_name, cell), None).unwrap_or_else(
                || {
                    Err(CoreError::ContextStopped {
                        reason: "the driver's runtime stopped while starting".to_owned(),
                    })
                },
            )
        };
        let parts = match parts {
            Ok(parts) => parts,
            Err(e) => {
                runtime.shutdown_background();
                return Err(e);
            }
        };
        let shutdown = parts.env.shutdown_token().child_token();
        let progress = if show_progress && std::io::stderr().is_terminal() {
            Some(ConsoleProgressBar::start(
                parts.scheduler.clone(),
                &handle,
                shutdown.clone(),
            ))
        } else {
            None
        };
        let inner = Arc::new(ContextInner {
            conf,
            app_name,
            master,
            runtime: Mutex::new(Some(runtime)),
            handle,
            env: parts.env,
            dag: parts.dag,
            dag_loop: Mutex::new(Some(parts.dag_loop)),
            scheduler: parts.scheduler,
            backend: parts.backend,
            stopped: Mutex::new(None),
            shutdown,
            progress,
        });
        let _ = context_cell.set(Arc::downgrade(&inner));
        info!(app = %inner.app_name, master = %inner.master, driver = %inner.env.address(),
            "Context started");
        Ok(Context { inner })
    }

    /// Runs `func` over partitions `0..num_partitions` and returns its results in partition
    /// order. Blocks until the job ends.
    ///
    /// `func` is a serializable closure (`serde_closure::Fn!(move |partition: usize| …)`); each
    /// task runs it once, on an executor thread. A task that panics or fails is retried up to
    /// `ember.task.maxFailures` attempts in all (local mode: once, or F times for
    /// `local[N,F]`); when a task runs out of attempts the job fails with an `Err` carrying
    /// that task's panic message or error ([`CoreError::task_failure`]).
    pub fn run_job<F, R>(&self, num_partitions: usize, func: F) -> Result<Vec<R>, CoreError>
    where
        F: serde_closure::traits::Fn<(usize,), Output = R>
            + Serialize
            + DeserializeOwned
            + Send
            + Sync
            + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.run_job_on_partitions(num_partitions, (0..num_partitions).collect(), func)
    }

    /// Runs `func` over the given partitions (each below `num_partitions`) and returns its
    /// results in the order of `partitions` (Spark's `runJob(rdd, func, partitions)`).
    pub fn run_job_on_partitions<F, R>(
        &self,
        num_partitions: usize,
        partitions: Vec<usize>,
        func: F,
    ) -> Result<Vec<R>, CoreError>
    where
        F: serde_closure::traits::Fn<(usize,), Output = R>
            + Serialize
            + DeserializeOwned
            + Send
            + Sync
            + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        if let Some(reason) = self.inner.stopped_reason() {
            return Err(CoreError::ContextStopped { reason });
        }
        let (task, decoder) = TaskFn::new(func)?;
        let waiter = self
            .inner
            .dag
            .submit_job(num_partitions, partitions.clone(), &task)?;
        let encoded = waiter.wait();
        if let Some(progress) = &self.inner.progress {
            // Spark's ConsoleProgressBar.finishAll: the bar goes when the job ends.
            progress.clear();
        }
        let encoded = encoded?;
        encoded
            .iter()
            .zip(&partitions)
            .map(|(bytes, &partition)| {
                decoder
                    .decode(bytes)
                    .map_err(|source| CoreError::ResultDecode { partition, source })
            })
            .collect()
    }

    /// The number of partitions to use when the application does not choose: the task threads
    /// in local mode, the cores of the registered executors (at least 2) on a cluster.
    pub fn default_parallelism(&self) -> usize {
        self.inner.backend.default_parallelism()
    }

    /// How many executors are registered and ready to take tasks now (1 in local mode: the
    /// driver itself).
    pub fn num_executors(&self) -> usize {
        self.inner.backend.num_executors()
    }

    /// Cancels every job running or waiting (Spark: `SparkContext.cancelAllJobs`): each fails
    /// with [`JobFailure::Cancelled`](crate::JobFailure::Cancelled), and their running tasks
    /// are killed (see [`TaskContext`](crate::TaskContext)). Jobs submitted afterwards run.
    pub fn cancel_all_jobs(&self) {
        self.inner
            .dag
            .cancel_jobs("the application cancelled all jobs");
    }

    /// The ids of the executors registered and ready for tasks (`["driver"]` in local mode).
    pub fn executor_ids(&self) -> Vec<String> {
        self.inner
            .backend
            .executor_ids()
            .into_iter()
            .map(|id| id.0)
            .collect()
    }

    /// Asks the cluster manager for `total` executors in all (Spark:
    /// `SparkContext.requestTotalExecutors`): more are launched as resources allow, and
    /// executors that end beyond that number are not replaced. `Ok(false)` when the cluster
    /// manager did not take the request (the application is not registered yet).
    pub fn request_total_executors(&self, total: u32) -> Result<bool, CoreError> {
        self.allocate("requesting executors", move |a| {
            a.request_total_executors(total)
        })
    }

    /// Asks for `additional` executors beyond the current target (Spark:
    /// `SparkContext.requestExecutors`); the target starts as `ember.executor.instances`, or
    /// the executors granted so far when that is unset.
    pub fn request_executors(&self, additional: u32) -> Result<bool, CoreError> {
        self.allocate("requesting executors", move |a| {
            a.request_executors(additional)
        })
    }

    /// Kills these executors and lowers the target so that they are not replaced (Spark:
    /// `SparkContext.killExecutors`). Their running tasks are resubmitted elsewhere without
    /// counting as failures. Ids that are not registered executors are skipped; `Ok(false)`
    /// when none was.
    pub fn kill_executors<S: AsRef<str>>(&self, executor_ids: &[S]) -> Result<bool, CoreError> {
        let ids: Vec<crate::ids::ExecutorId> = executor_ids
            .iter()
            .map(|id| crate::ids::ExecutorId::from(id.as_ref()))
            .collect();
        self.allocate("killing executors", move |a| a.kill_executors(ids))
    }

    /// Kills one executor; see [`kill_executors`](Self::kill_executors).
    pub fn kill_executor(&self, executor_id: &str) -> Result<bool, CoreError> {
        self.kill_executors(&[executor_id])
    }

    fn allocate(
        &self,
        operation: &'static str,
        request: impl FnOnce(
            &dyn crate::scheduler::backend::ExecutorAllocation,
        )
            -> crate::scheduler::backend::BoxFuture<'static, Result<bool, CoreError>>,
    ) -> Result<bool, CoreError> {
        if let Some(reason) = self.inner.stopped_reason() {
            return Err(CoreError::ContextStopped { reason });
        }
        let Some(allocation) = self.inner.backend.executor_allocation() else {
            return Err(CoreError::NeedsClusterManager {
                operation,
                master: self.inner.master.to_string(),
            });
        };
        let pending = request(allocation);
        block_on_runtime(&self.inner.handle, pending, None).unwrap_or_else(|| {
            Err(CoreError::ContextStopped {
                reason: "the driver's runtime stopped".to_owned(),
            })
        })
    }

    /// The application's name.
    pub fn app_name(&self) -> &str {
        &self.inner.app_name
    }

    /// The master URL.
    pub fn master(&self) -> &MasterUrl {
        &self.inner.master
    }

    /// The configuration the context started with.
    pub fn conf(&self) -> &EmberConf {
        &self.inner.conf
    }

    /// The application's id from the cluster manager (`None` in local mode, or before the
    /// master answered).
    pub fn application_id(&self) -> Option<String> {
        self.inner.backend.application_id()
    }

    /// The driver's RPC address.
    pub fn driver_address(&self) -> &ember_rpc::RpcAddress {
        self.inner.env.address()
    }

    /// How far the running stages are.
    pub fn stage_progress(&self) -> Vec<StageProgress> {
        self.inner.scheduler.progress()
    }

    /// Whether the context has stopped.
    pub fn is_stopped(&self) -> bool {
        self.inner.is_stopped()
    }

    /// Why the context stopped, once it has.
    pub fn stop_reason(&self) -> Option<String> {
        self.inner.stopped_reason()
    }

    /// Stops the runtime: running jobs fail, executors are told to exit, the cluster manager is
    /// told the application finished. Idempotent.
    pub fn stop(&self) {
        self.inner.stop_with("the application stopped the Context");
    }
}

impl ContextInner {
    fn stopped_reason(&self) -> Option<String> {
        self.stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn is_stopped(&self) -> bool {
        self.stopped_reason().is_some()
    }

    fn stop_with(&self, reason: &str) {
        {
            let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
            if stopped.is_some() {
                return;
            }
            *stopped = Some(reason.to_owned());
        }
        info!(app = %self.app_name, %reason, "stopping the Context");
        self.dag.cancel_all_jobs(reason);
        let backend = self.backend.clone();
        let env = self.env.clone();
        let dag_loop = self
            .dag_loop
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let finished = block_on_runtime(
            &self.handle,
            async move {
                backend.stop().await;
                env.shutdown().await;
                // The loop ends on the RpcEnv's shutdown token; once it has, no job waits.
                if let Some(dag_loop) = dag_loop {
                    let _ = dag_loop.await;
                }
            },
            Some(STOP_TIMEOUT),
        );
        if finished.is_none() {
            warn!("stopping the Context took longer than {STOP_TIMEOUT:?}; abandoning it");
        }
        self.shutdown.cancel();
        if let Some(progress) = &self.progress {
            progress.clear();
        }
        if let Some(runtime) = self
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            runtime.shutdown_background();
        }
    }
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        self.stop_with("the last handle to the Context was dropped");
    }
}

/// What `start` builds on the runtime.
struct Parts {
    env: RpcEnv,
    dag: DagScheduler,
    dag_loop: tokio::task::JoinHandle<()>,
    scheduler: Arc<TaskScheduler>,
    backend: Arc<dyn SchedulerBackend>,
}

async fn start(
    conf: EmberConf,
    master: MasterUrl,
    app_name: String,
    context: Arc<OnceLock<Weak<ContextInner>>>,
) -> Result<Parts, CoreError> {
    let host = match &master {
        MasterUrl::Local { .. } | MasterUrl::LocalCluster { .. } => "127.0.0.1".to_owned(),
        MasterUrl::Standalone { .. } => conf
            .get_opt(&config::DRIVER_HOST)?
            .unwrap_or_else(ember_deploy::config::local_hostname),
    };
    let port = conf.get(&config::DRIVER_PORT)?;
    let env = RpcEnv::create(RpcEnvConfig::from_conf("ember-driver", host, port, &conf)?).await?;
    let (dag, events) = DagScheduler::channel();
    let max_failures = match &master {
        MasterUrl::Local { max_failures, .. } => *max_failures,
        _ => conf.get(&config::TASK_MAX_FAILURES)?,
    };
    let scheduler = Arc::new(TaskScheduler::new(max_failures, dag.sender()));
    let stop_token = env.shutdown_token();
    let dag_loop = tokio::spawn(run_event_loop(
        events,
        scheduler.clone(),
        stop_token.clone(),
    ));
    let backend: Arc<dyn SchedulerBackend> = match &master {
        MasterUrl::Local { threads, .. } => {
            LocalBackend::start(&env, scheduler.clone(), *threads).await?
        }
        MasterUrl::Standalone { masters } => {
            StandaloneBackend::start(
                &env,
                scheduler.clone(),
                &conf,
                &app_name,
                masters.clone(),
                stop_when_dead(context),
            )
            .await?
        }
        MasterUrl::LocalCluster {
            workers,
            cores_per_worker,
            memory_per_worker_mb,
        } => {
            let spec = LocalClusterSpec {
                workers: *workers,
                cores_per_worker: *cores_per_worker,
                memory_per_worker_mb: *memory_per_worker_mb,
            };
            let started = start_on_local_cluster(spec, &env, &scheduler, &conf, &app_name, context);
            match started.await {
                Ok(backend) => backend,
                Err(e) => {
                    env.shutdown().await;
                    return Err(e);
                }
            }
        }
    };
    scheduler.set_backend(backend.clone());
    if !master.is_local() {
        // Standalone and local-cluster: executors may never come; say why while tasks wait.
        let interval = conf.get(&config::STARVATION_TIMEOUT)?;
        tokio::spawn(starvation_watch(scheduler.clone(), interval, stop_token));
    }
    Ok(Parts {
        env,
        dag,
        dag_loop,
        scheduler,
        backend,
    })
}

/// Starts the in-process cluster `spec`, then the standalone backend against its master; the
/// backend stops the cluster after the application. On failure the cluster is stopped again.
async fn start_on_local_cluster(
    spec: LocalClusterSpec,
    env: &RpcEnv,
    scheduler: &Arc<TaskScheduler>,
    conf: &EmberConf,
    app_name: &str,
    context: Arc<OnceLock<Weak<ContextInner>>>,
) -> Result<Arc<StandaloneBackend>, CoreError> {
    let cluster = LocalCluster::start(spec, conf).await?;
    let standalone = match StandaloneBackend::start(
        env,
        scheduler.clone(),
        conf,
        app_name,
        vec![cluster.master_address().clone()],
        stop_when_dead(context),
    )
    .await
    {
        Ok(standalone) => standalone,
        Err(e) => {
            cluster.stop().await;
            return Err(e);
        }
    };
    // Stopped after the application, as Spark's `LocalSparkCluster`.
    standalone.set_shutdown_callback(Box::pin(cluster.stop()));
    Ok(standalone)
}

/// What the standalone backend calls when the cluster gives up on the application: stop the
/// Context with the reason (running jobs fail with it).
fn stop_when_dead(context: Arc<OnceLock<Weak<ContextInner>>>) -> OnDead {
    Box::new(move |reason: String| {
        // Stopping blocks on the runtime this callback runs on: do it elsewhere.
        let context = context.clone();
        let _ = std::thread::Builder::new()
            .name("ember-context-stopper".into())
            .spawn(move || {
                if let Some(inner) = context.get().and_then(Weak::upgrade) {
                    inner.stop_with(&reason);
                }
            });
    })
}

/// The executable's file name, as Spark uses the main class name.
fn default_app_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "ember-app".to_owned())
}
