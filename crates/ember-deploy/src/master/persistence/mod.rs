//! Where a leading master keeps what its successor needs to recover.
//!
//! Spark counterparts: `PersistenceEngine`, `BlackHolePersistenceEngine`,
//! `FileSystemPersistenceEngine` (and `ZooKeeperPersistenceEngine`, a later issue). As in Spark,
//! an engine only stores named byte strings ([`PersistenceEngine::persist`], `unpersist`,
//! `read`); the typed operations ([`PersistOp`]) and the record format ([`record`]) are shared,
//! so a new engine (ZooKeeper) implements three methods and the state machine does not change.
//!
//! The state machine decides *what* to persist (it emits [`PersistOp`]s in its effects; what it
//! acknowledges, it applies only once stored); the endpoint applies them through the engine
//! chosen by `ember.deploy.recoveryMode`.

mod filesystem;
pub mod record;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use filesystem::FileSystemPersistenceEngine;
pub use record::{ApplicationRecord, DriverRecord, Record, RecordError, RecordKind, WorkerRecord};

use crate::ids::{AppId, DriverId, WorkerId};

/// Why persisting or reading recovery state failed.
#[derive(Debug, thiserror::Error)]
pub enum PersistenceError {
    /// The store (directory) could not be opened or created.
    #[error("could not open the recovery store {location}: {source}")]
    Open {
        /// The directory.
        location: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record could not be written.
    #[error("could not write recovery record {location}: {source}")]
    Write {
        /// Where.
        location: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record could not be removed.
    #[error("could not remove recovery record {location}: {source}")]
    Remove {
        /// Where.
        location: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The store or a record could not be read.
    #[error("could not read recovery state at {location}: {source}")]
    Read {
        /// Where.
        location: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record is damaged or not a record; recovery skips it.
    #[error("recovery record {location} is unreadable and was skipped: {reason}")]
    Corrupt {
        /// Where (for files, the path).
        location: String,
        /// What is wrong with it.
        reason: RecordError,
    },
    /// The engine refused the write (tests inject this).
    #[error("the recovery store refused to write {name}")]
    Refused {
        /// The record's name.
        name: String,
    },
}

/// A record as read back from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Its name (`worker_<id>`, …).
    pub name: String,
    /// Where it is, for error messages (a file path for the filesystem engine).
    pub location: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// One change to the persisted state, emitted by the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersistOp {
    /// A worker registered.
    AddWorker(WorkerRecord),
    /// A worker was removed (dead or decommissioned).
    RemoveWorker(WorkerId),
    /// An application registered.
    AddApplication(ApplicationRecord),
    /// An application ended.
    RemoveApplication(AppId),
    /// A driver was submitted (or relaunched under a new id).
    AddDriver(DriverRecord),
    /// A driver ended.
    RemoveDriver(DriverId),
}

impl PersistOp {
    /// Whether the operation adds state (a successor would miss it if it failed).
    pub fn is_add(&self) -> bool {
        matches!(
            self,
            PersistOp::AddWorker(_) | PersistOp::AddApplication(_) | PersistOp::AddDriver(_)
        )
    }
}

/// Everything read back at election.
#[derive(Debug, Default)]
pub struct PersistedData {
    /// Applications, by id.
    pub apps: Vec<ApplicationRecord>,
    /// Drivers, by id.
    pub drivers: Vec<DriverRecord>,
    /// Workers, by id.
    pub workers: Vec<WorkerRecord>,
    /// Records that could not be read (each a [`PersistenceError::Corrupt`]); recovery goes on
    /// without them and the endpoint logs them.
    pub skipped: Vec<PersistenceError>,
}

impl PersistedData {
    /// Whether there is nothing to recover.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty() && self.drivers.is_empty() && self.workers.is_empty()
    }
}

/// A store for recovery records. Implementations must make each `persist` atomic (a reader
/// sees the old bytes or the new ones, never a mix) and durable when it returns.
pub trait PersistenceEngine: Send + Sync + fmt::Debug {
    /// Stores `bytes` under `name`, replacing what was there.
    fn persist(&self, name: &str, bytes: &[u8]) -> Result<(), PersistenceError>;

    /// Removes `name`; removing a name that is not stored is not an error.
    fn unpersist(&self, name: &str) -> Result<(), PersistenceError>;

    /// Every stored record whose name starts with `prefix`.
    fn read(&self, prefix: &str) -> Result<Vec<StoredRecord>, PersistenceError>;

    /// Whether calls do blocking I/O (the endpoint then runs them off the async threads).
    fn blocks(&self) -> bool {
        true
    }

    /// Applies one operation.
    fn apply(&self, op: &PersistOp) -> Result<(), PersistenceError> {
        let add = |record: Record| self.persist(&record.name(), &record.encode());
        match op {
            PersistOp::AddWorker(r) => add(Record::Worker(r.clone())),
            PersistOp::AddApplication(r) => add(Record::Application(r.clone())),
            PersistOp::AddDriver(r) => add(Record::Driver(r.clone())),
            PersistOp::RemoveWorker(id) => self.unpersist(&RecordKind::Worker.name(id.as_str())),
            PersistOp::RemoveApplication(id) => {
                self.unpersist(&RecordKind::Application.name(id.as_str()))
            }
            PersistOp::RemoveDriver(id) => self.unpersist(&RecordKind::Driver.name(id.as_str())),
        }
    }

    /// Reads every record back. A store that cannot be read is an error; a record that cannot
    /// be decoded is skipped and reported in [`PersistedData::skipped`].
    fn read_persisted_data(&self) -> Result<PersistedData, PersistenceError> {
        let mut data = PersistedData::default();
        for kind in RecordKind::ALL {
            for stored in self.read(kind.prefix())? {
                let decoded = Record::decode(&stored.bytes).and_then(|record| {
                    if record.name() == stored.name {
                        Ok(record)
                    } else {
                        Err(RecordError::WrongName {
                            name: stored.name.clone(),
                            actual: record.name(),
                        })
                    }
                });
                match decoded {
                    Ok(Record::Worker(r)) => data.workers.push(r),
                    Ok(Record::Application(r)) => data.apps.push(r),
                    Ok(Record::Driver(r)) => data.drivers.push(r),
                    Err(reason) => data.skipped.push(PersistenceError::Corrupt {
                        location: stored.location,
                        reason,
                    }),
                }
            }
        }
        data.workers.sort_by(|a, b| a.id.cmp(&b.id));
        data.apps.sort_by(|a, b| a.id.cmp(&b.id));
        data.drivers.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(data)
    }
}

/// `NONE`: keeps nothing, recovers nothing (Spark's `BlackHolePersistenceEngine`).
#[derive(Debug, Clone, Copy, Default)]
pub struct BlackHolePersistenceEngine;

impl PersistenceEngine for BlackHolePersistenceEngine {
    fn persist(&self, _: &str, _: &[u8]) -> Result<(), PersistenceError> {
        Ok(())
    }

    fn unpersist(&self, _: &str) -> Result<(), PersistenceError> {
        Ok(())
    }

    fn read(&self, _: &str) -> Result<Vec<StoredRecord>, PersistenceError> {
        Ok(Vec::new())
    }

    fn blocks(&self) -> bool {
        false
    }
}

/// Records in memory, for tests: clones share the same records (so a "restarted" master can
/// read what the first one wrote), and writes can be made to fail.
#[derive(Debug, Clone, Default)]
pub struct MemoryPersistenceEngine {
    records: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    refuse_writes: Arc<AtomicBool>,
}

impl MemoryPersistenceEngine {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Stores raw bytes under a name (to plant damaged records).
    pub fn insert_raw(&self, name: &str, bytes: Vec<u8>) {
        self.lock().insert(name.to_owned(), bytes);
    }

    /// Makes every later `persist` fail (or succeed again).
    pub fn refuse_writes(&self, refuse: bool) {
        self.refuse_writes.store(refuse, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PersistenceEngine for MemoryPersistenceEngine {
    fn persist(&self, name: &str, bytes: &[u8]) -> Result<(), PersistenceError> {
        if self.refuse_writes.load(Ordering::SeqCst) {
            return Err(PersistenceError::Refused {
                name: name.to_owned(),
            });
        }
        self.lock().insert(name.to_owned(), bytes.to_vec());
        Ok(())
    }

    fn unpersist(&self, name: &str) -> Result<(), PersistenceError> {
        self.lock().remove(name);
        Ok(())
    }

    fn read(&self, prefix: &str) -> Result<Vec<StoredRecord>, PersistenceError> {
        Ok(self
            .lock()
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, bytes)| StoredRecord {
                name: name.clone(),
                location: format!("memory:{name}"),
                bytes: bytes.clone(),
            })
            .collect())
    }

    fn blocks(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::description::{AppBinary, BinaryLocation, Command, DriverDescription};
    use ember_rpc::RpcAddress;

    pub(crate) fn worker_record(id: &str) -> WorkerRecord {
        WorkerRecord {
            id: id.into(),
            host: "h".into(),
            port: 7078,
            address: RpcAddress::new("h", 7078),
            cores: 4,
            memory_mb: 1024,
            web_ui_url: "http://h:8081".into(),
        }
    }

    pub(crate) fn driver_record(id: &str) -> DriverRecord {
        DriverRecord {
            id: id.into(),
            desc: DriverDescription {
                mem_mb: 512,
                cores: 1,
                supervise: true,
                command: Command {
                    binary: AppBinary {
                        name: "pi".into(),
                        digest: "ab".into(),
                        size: 3,
                        location: BinaryLocation::LocalPath("/bin/pi".into()),
                    },
                    arguments: vec!["10".into()],
                    environment: vec![],
                },
            },
            start_time_ms: 42,
        }
    }

    /// Exercises an engine through the typed operations: add, replace, remove, read back.
    pub(crate) fn engine_round_trip(engine: &dyn PersistenceEngine) {
        assert!(engine.read_persisted_data().unwrap().is_empty());
        engine
            .apply(&PersistOp::AddWorker(worker_record("w1")))
            .unwrap();
        engine
            .apply(&PersistOp::AddWorker(worker_record("w2")))
            .unwrap();
        engine
            .apply(&PersistOp::AddDriver(driver_record("d1")))
            .unwrap();
        let mut replaced = worker_record("w1");
        replaced.cores = 16;
        engine
            .apply(&PersistOp::AddWorker(replaced.clone()))
            .unwrap();
        engine.apply(&PersistOp::RemoveWorker("w2".into())).unwrap();
        engine
            .apply(&PersistOp::RemoveWorker("never".into()))
            .unwrap();
        let data = engine.read_persisted_data().unwrap();
        assert_eq!(data.workers, vec![replaced]);
        assert_eq!(data.drivers, vec![driver_record("d1")]);
        assert!(data.apps.is_empty() && data.skipped.is_empty());
        engine.apply(&PersistOp::RemoveDriver("d1".into())).unwrap();
        engine.apply(&PersistOp::RemoveWorker("w1".into())).unwrap();
        assert!(engine.read_persisted_data().unwrap().is_empty());
    }

    #[test]
    fn memory_engine_round_trip_and_damage() {
        let engine = MemoryPersistenceEngine::new();
        engine_round_trip(&engine);
        engine.insert_raw("worker_bad", b"garbage".to_vec());
        let mut wrong = Record::Worker(worker_record("w9")).encode();
        engine.insert_raw("worker_w8", std::mem::take(&mut wrong));
        engine
            .apply(&PersistOp::AddWorker(worker_record("ok")))
            .unwrap();
        let data = engine.read_persisted_data().unwrap();
        assert_eq!(data.workers, vec![worker_record("ok")]);
        let problems: Vec<String> = data.skipped.iter().map(|e| e.to_string()).collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("memory:worker_bad"), "{problems:?}");
        assert!(problems[1].contains("worker_w9"), "{problems:?}");
        engine.refuse_writes(true);
        assert!(
            engine
                .apply(&PersistOp::AddWorker(worker_record("x")))
                .is_err()
        );
    }

    #[test]
    fn black_hole_keeps_nothing() {
        let engine = BlackHolePersistenceEngine;
        engine
            .apply(&PersistOp::AddWorker(worker_record("w1")))
            .unwrap();
        assert!(engine.read_persisted_data().unwrap().is_empty());
    }
}
