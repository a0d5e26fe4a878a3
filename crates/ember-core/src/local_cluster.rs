//! `local-cluster[W,C,M]`: a Master and W Workers inside the driver process, with real executor
//! processes.
//!
//! Spark counterpart: `LocalSparkCluster` (and the `LOCAL_CLUSTER_REGEX` arm of
//! `SparkContext.createTaskScheduler`). The daemons are the same library functions the `ember
//! master` and `ember worker` commands run ([`ember_deploy::master::start`],
//! [`ember_deploy::worker::start`]), on 127.0.0.1 with every port 0, sharing the driver's
//! runtime. The application then takes the ordinary standalone path against that master: the
//! workers fetch the driver's binary from its file server and start it in the executor role, so
//! one command exercises the whole system.
//!
//! ```text
//!   start: master (wait until ALIVE) → W workers (wait until the master lists W ALIVE) → app
//!   stop:  app (executors told to exit, app unregistered) → workers (kill what is left) → master
//! ```
//!
//! The workers' directories live in a scratch directory owned by the cluster and removed when it
//! stops. Unlike Spark, an unset `ember.executor.memory` does not fail a cluster whose workers
//! have less than the 1 GiB default: executors then get the workers' memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ember_deploy::master::{self, MasterConfig, MasterHandle};
use ember_deploy::messages::{ClientToMaster, MasterStateResponse};
use ember_deploy::state::{MasterState, WorkerState};
use ember_deploy::worker::{self, WorkerConfig, WorkerHandle};
use ember_rpc::{EmberConf, RpcAddress};
use tracing::{debug, info, warn};

use crate::config;
use crate::error::CoreError;

/// How long the in-process master may take to lead and the workers to register.
pub const START_DEADLINE: Duration = Duration::from_secs(30);
/// How often start-up polls the master's state.
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// Every daemon of a local cluster listens here.
const HOST: &str = "127.0.0.1";

/// The shape of a local cluster: `local-cluster[workers,cores_per_worker,memory_per_worker_mb]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalClusterSpec {
    /// Workers to start.
    pub workers: u32,
    /// Cores each worker offers.
    pub cores_per_worker: u32,
    /// Memory each worker offers, in MiB.
    pub memory_per_worker_mb: u32,
}

impl LocalClusterSpec {
    /// Makes `conf` fit this cluster: an unset `ember.executor.memory` becomes at most the
    /// workers' memory; a set one larger than a worker offers is an error (Spark parity:
    /// `SparkContext` refuses "Asked to launch cluster with M MiB/worker but requested E
    /// MiB/executor").
    pub fn fit_conf(&self, conf: &mut EmberConf, master_url: &str) -> Result<(), CoreError> {
        let key = config::EXECUTOR_MEMORY.key();
        if conf.get_raw(key).is_none() {
            let default_mb = conf.get(&config::EXECUTOR_MEMORY)?.as_mib();
            if default_mb > u64::from(self.memory_per_worker_mb) {
                conf.set(key, format!("{}m", self.memory_per_worker_mb));
            }
            return Ok(());
        }
        let asked_mb = conf.get(&config::EXECUTOR_MEMORY)?.as_mib();
        if asked_mb > u64::from(self.memory_per_worker_mb) {
            return Err(CoreError::ModeNotAvailable {
                master: master_url.to_owned(),
                reason: format!(
                    "{key} asks for {asked_mb} MiB per executor but each worker offers only {} \
                     MiB; lower {key} or give the workers more memory",
                    self.memory_per_worker_mb
                ),
            });
        }
        Ok(())
    }
}

/// A directory removed when dropped.
#[derive(Debug)]
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create() -> Result<ScratchDir, CoreError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ember-local-cluster-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|source| CoreError::Io {
            what: "creating the local cluster's work directory",
            source,
        })?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(dir = %self.0.display(), error = %e, "could not remove the local cluster's directory");
        }
    }
}

/// A running local cluster.
#[derive(Debug)]
pub struct LocalCluster {
    master: MasterHandle,
    workers: Vec<WorkerHandle>,
    dir: ScratchDir,
}

impl LocalCluster {
    /// Starts the master, then the workers, and returns once the master lists every worker as
    /// ALIVE. Daemon settings come from `conf` (timeouts, registration intervals,
    /// authentication); hosts, ports, cores, memory and directories are the cluster's own.
    pub async fn start(
        spec: LocalClusterSpec,
        conf: &EmberConf,
    ) -> Result<LocalCluster, CoreError> {
        let began = Instant::now();
        let dir = ScratchDir::create()?;
        let master = start_master(conf).await?;
        let mut cluster = LocalCluster {
            master,
            workers: Vec::new(),
            dir,
        };
        match cluster.start_workers(spec, conf).await {
            Ok(()) => {
                info!(master = %cluster.master_url(), workers = spec.workers,
                    cores_per_worker = spec.cores_per_worker,
                    memory_per_worker_mb = spec.memory_per_worker_mb,
                    startup_ms = began.elapsed().as_secs_f64() * 1000.0,
                    "local cluster started");
                Ok(cluster)
            }
            Err(e) => {
                cluster.stop().await;
                Err(e)
            }
        }
    }

    async fn start_workers(
        &mut self,
        spec: LocalClusterSpec,
        conf: &EmberConf,
    ) -> Result<(), CoreError> {
        let deadline = Instant::now() + START_DEADLINE;
        // A worker that registers before the master leads is told to wait for a whole retry
        // interval, so let the master lead first.
        self.wait_for("the master to lead", deadline, |state| {
            state.status == MasterState::Alive
        })
        .await?;
        let masters = vec![self.master.rpc_address().clone()];
        for index in 0..spec.workers {
            let work_dir = self.dir.0.join(format!("worker-{index}"));
            let worker_conf = worker_conf(conf, spec, &work_dir);
            let config = WorkerConfig::from_conf(&worker_conf, masters.clone())?;
            let handle = worker::start(config, Arc::new(worker_conf)).await?;
            self.workers.push(handle);
        }
        let wanted = spec.workers as usize;
        self.wait_for("every worker to register", deadline, |state| {
            state
                .workers
                .iter()
                .filter(|w| w.state == WorkerState::Alive)
                .count()
                >= wanted
        })
        .await
    }

    /// Polls the master's state until `done` holds or `deadline` passes.
    async fn wait_for(
        &self,
        what: &str,
        deadline: Instant,
        done: impl Fn(&MasterStateResponse) -> bool,
    ) -> Result<(), CoreError> {
        loop {
            let state: MasterStateResponse = self
                .master
                .master_ref()
                .ask_with_timeout(
                    ClientToMaster::RequestMasterState,
                    START_DEADLINE,
                    ember_rpc::ASK_TIMEOUT_KEY,
                )
                .await?;
            if done(&state) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(CoreError::ModeNotAvailable {
                    master: "local-cluster".to_owned(),
                    reason: format!(
                        "timed out after {START_DEADLINE:?} waiting for {what} (master {}, \
                         workers: {:?})",
                        state.status,
                        state
                            .workers
                            .iter()
                            .map(|w| (w.id.to_string(), w.state))
                            .collect::<Vec<_>>()
                    ),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The master's RPC address.
    pub fn master_address(&self) -> &RpcAddress {
        self.master.rpc_address()
    }

    /// `ember://127.0.0.1:port`.
    pub fn master_url(&self) -> String {
        self.master.master_url()
    }

    /// The master.
    pub fn master(&self) -> &MasterHandle {
        &self.master
    }

    /// The workers, in start order.
    pub fn workers(&self) -> &[WorkerHandle] {
        &self.workers
    }

    /// The directory holding the workers' directories (removed by [`stop`](Self::stop)).
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// Stops the workers (each kills its executors and waits for them), then the master, then
    /// removes the directory.
    pub async fn stop(self) {
        let LocalCluster {
            master,
            workers,
            dir,
        } = self;
        for worker in workers {
            let id = worker.worker_id().clone();
            if let Err(e) = worker.shutdown().await {
                warn!(worker_id = %id, error = %e, "a local-cluster worker had stopped by itself");
            }
        }
        master.shutdown().await;
        drop(dir);
        debug!("local cluster stopped");
    }
}

async fn start_master(conf: &EmberConf) -> Result<MasterHandle, CoreError> {
    let mut conf = conf.clone();
    conf.set(master::config::MASTER_HOST.key(), HOST)
        .set(master::config::MASTER_PORT.key(), "0")
        .set(master::config::MASTER_UI_PORT.key(), "0");
    let config = MasterConfig::from_conf(&conf)?;
    Ok(master::start(config, Arc::new(conf)).await?)
}

fn worker_conf(conf: &EmberConf, spec: LocalClusterSpec, work_dir: &Path) -> EmberConf {
    use ember_deploy::worker::config as keys;
    let mut conf = conf.clone();
    conf.set(keys::HOST.key(), HOST)
        .set(keys::PORT.key(), "0")
        .set(keys::UI_PORT.key(), "0")
        .set(keys::CORES.key(), spec.cores_per_worker.to_string())
        .set(
            keys::MEMORY.key(),
            format!("{}m", spec.memory_per_worker_mb),
        )
        .set(keys::DIR.key(), work_dir.display().to_string())
        // The whole directory goes when the cluster stops.
        .set(keys::CLEANUP_ENABLED.key(), "false");
    conf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executor_memory_fits_the_workers() {
        let spec = LocalClusterSpec {
            workers: 1,
            cores_per_worker: 2,
            memory_per_worker_mb: 512,
        };
        let url = "local-cluster[1,2,512]";
        // Unset: the workers' memory, not the 1 GiB default.
        let mut conf = EmberConf::new();
        spec.fit_conf(&mut conf, url).unwrap();
        assert_eq!(conf.get(&config::EXECUTOR_MEMORY).unwrap().as_mib(), 512);
        // Set and fitting: kept.
        let mut conf = EmberConf::from_pairs([("ember.executor.memory", "256m")]);
        spec.fit_conf(&mut conf, url).unwrap();
        assert_eq!(conf.get(&config::EXECUTOR_MEMORY).unwrap().as_mib(), 256);
        // Set and too large: refused, naming the key.
        let mut conf = EmberConf::from_pairs([("ember.executor.memory", "1g")]);
        let err = spec.fit_conf(&mut conf, url).unwrap_err().to_string();
        assert!(
            err.contains("ember.executor.memory") && err.contains("512"),
            "{err}"
        );
        // Large workers keep the default.
        let big = LocalClusterSpec {
            memory_per_worker_mb: 4096,
            ..spec
        };
        let mut conf = EmberConf::new();
        big.fit_conf(&mut conf, url).unwrap();
        assert_eq!(conf.get(&config::EXECUTOR_MEMORY).unwrap().as_mib(), 1024);
    }
}
