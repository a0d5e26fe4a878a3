//! How `ember.deploy.recoveryMode` is carried out: where a leading master keeps what its
//! successor recovers, and who decides which master leads. The two go together (ZooKeeper will
//! provide both), so one factory makes both and start-up asks it for each.
//!
//! Spark counterpart: `StandaloneRecoveryModeFactory` (`FileSystemRecoveryModeFactory`,
//! `ZooKeeperRecoveryModeFactory`) and the `recoveryMode` match in `Master.onStart`. A new mode
//! adds a [`RecoveryConfig`] variant and a factory here; [`super::start`] does not change.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use tracing::info;

use super::config::RecoveryConfig;
use super::leader_election::{LeaderElectable, LeaderElectionAgent, MonarchyLeaderAgent};
use super::persistence::{
    BlackHolePersistenceEngine, FileSystemPersistenceEngine, PersistenceEngine,
};
use crate::error::DeployError;

/// Makes a master's persistence engine and its leader election agent.
pub trait RecoveryModeFactory: Send + Sync + fmt::Debug {
    /// The store for recovery records (opened before the master starts).
    fn create_persistence_engine(&self) -> Result<Arc<dyn PersistenceEngine>, DeployError>;

    /// Starts campaigning for `master`, which hears through [`LeaderElectable`] when it gains
    /// or loses leadership. By default the single master leads at once (Spark's
    /// `MonarchyLeaderAgent`); a mode with several masters (ZooKeeper) elects one.
    fn create_leader_election_agent(
        &self,
        master: Arc<dyn LeaderElectable>,
    ) -> Result<Box<dyn LeaderElectionAgent>, DeployError> {
        Ok(Box::new(MonarchyLeaderAgent::start(master)))
    }
}

/// The factory of the mode `recovery` names.
pub fn factory(recovery: &RecoveryConfig) -> Box<dyn RecoveryModeFactory> {
    match recovery {
        RecoveryConfig::None => Box::new(NoRecoveryFactory),
        RecoveryConfig::FileSystem { directory } => Box::new(FileSystemRecoveryFactory {
            directory: directory.clone(),
        }),
    }
}

/// `NONE`: nothing is kept; the single master leads at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRecoveryFactory;

impl RecoveryModeFactory for NoRecoveryFactory {
    fn create_persistence_engine(&self) -> Result<Arc<dyn PersistenceEngine>, DeployError> {
        Ok(Arc::new(BlackHolePersistenceEngine))
    }
}

/// `FILESYSTEM`: records in `ember.deploy.recoveryDirectory`; one master, which leads at once
/// (as Spark's `FileSystemRecoveryModeFactory`).
#[derive(Debug, Clone)]
pub struct FileSystemRecoveryFactory {
    directory: PathBuf,
}

impl RecoveryModeFactory for FileSystemRecoveryFactory {
    fn create_persistence_engine(&self) -> Result<Arc<dyn PersistenceEngine>, DeployError> {
        info!(directory = %self.directory.display(), "FILESYSTEM recovery");
        Ok(Arc::new(FileSystemPersistenceEngine::open(
            &self.directory,
        )?))
    }
}

/// A given engine (tests use [`MemoryPersistenceEngine`](super::persistence::MemoryPersistenceEngine))
/// with the single master leading at once.
#[derive(Debug, Clone)]
pub struct EngineRecoveryFactory {
    engine: Arc<dyn PersistenceEngine>,
}

impl EngineRecoveryFactory {
    /// Records go to `engine`.
    pub fn new(engine: Arc<dyn PersistenceEngine>) -> Self {
        Self { engine }
    }
}

impl RecoveryModeFactory for EngineRecoveryFactory {
    fn create_persistence_engine(&self) -> Result<Arc<dyn PersistenceEngine>, DeployError> {
        Ok(self.engine.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::master::persistence::{MemoryPersistenceEngine, PersistOp};

    #[derive(Debug, Default)]
    struct Candidate(Mutex<Vec<&'static str>>);

    impl LeaderElectable for Candidate {
        fn elected_leader(&self) {
            self.0.lock().unwrap().push("elected");
        }
        fn revoked_leadership(&self) {
            self.0.lock().unwrap().push("revoked");
        }
    }

    fn elects_at_once(factory: &dyn RecoveryModeFactory) {
        let candidate = Arc::new(Candidate::default());
        let mut agent = factory
            .create_leader_election_agent(candidate.clone())
            .unwrap();
        assert_eq!(*candidate.0.lock().unwrap(), ["elected"]);
        agent.stop();
        assert_eq!(*candidate.0.lock().unwrap(), ["elected"]);
    }

    fn worker_op() -> PersistOp {
        PersistOp::AddWorker(crate::master::persistence::WorkerRecord {
            id: "w1".into(),
            host: "h".into(),
            port: 7078,
            address: ember_rpc::RpcAddress::new("h", 7078),
            cores: 1,
            memory_mb: 512,
            web_ui_url: "http://h:8081".into(),
        })
    }

    #[test]
    fn none_keeps_nothing_and_elects_at_once() {
        let f = factory(&RecoveryConfig::None);
        let engine = f.create_persistence_engine().unwrap();
        engine.apply(&worker_op()).unwrap();
        assert!(engine.read_persisted_data().unwrap().is_empty());
        elects_at_once(&*f);
    }

    #[test]
    fn filesystem_keeps_records_in_its_directory_and_elects_at_once() {
        let directory = std::env::temp_dir().join(format!(
            "ember-recovery-mode-{}-{}",
            std::process::id(),
            crate::ids::now_millis()
        ));
        let f = factory(&RecoveryConfig::FileSystem {
            directory: directory.clone(),
        });
        let engine = f.create_persistence_engine().unwrap();
        engine.apply(&worker_op()).unwrap();
        let again = f.create_persistence_engine().unwrap();
        assert_eq!(again.read_persisted_data().unwrap().workers.len(), 1);
        assert!(directory.join("worker_w1").exists());
        elects_at_once(&*f);
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn a_given_engine_is_shared() {
        let store = MemoryPersistenceEngine::new();
        let f = EngineRecoveryFactory::new(Arc::new(store.clone()));
        f.create_persistence_engine()
            .unwrap()
            .apply(&worker_op())
            .unwrap();
        assert_eq!(store.names(), ["worker_w1"]);
        elects_at_once(&f);
    }
}
