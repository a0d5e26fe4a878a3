//! `FILESYSTEM` recovery: one file per record in `ember.deploy.recoveryDirectory`.
//!
//! Spark counterpart: `FileSystemPersistenceEngine`. Files are named after the records
//! (`worker_<id>`, `app_<id>`, `driver_<id>`; characters outside `[A-Za-z0-9._:@+=,-]` are
//! percent-encoded, so an id sent by a peer can never name a path elsewhere).
//!
//! Writes are atomic and durable: the bytes go to a hidden temporary file (`.tmp-…`) in the same
//! directory, which is synced, renamed over the record's name, and then the directory itself is
//! synced so the rename survives a crash. Readers ignore hidden files, so a write cut short by a
//! crash leaves at worst a stray temporary file (removed when the store is next opened), never a
//! half-written record.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{debug, warn};

use super::{PersistenceEngine, PersistenceError, StoredRecord};

const TEMP_PREFIX: &str = ".tmp-";

/// Records as files in one directory.
#[derive(Debug)]
pub struct FileSystemPersistenceEngine {
    dir: PathBuf,
    next_temp: AtomicU64,
}

impl FileSystemPersistenceEngine {
    /// Opens (creating it if needed) the directory, and removes temporary files left by a
    /// write that a crash interrupted.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, PersistenceError> {
        let dir = dir.into();
        let open_err = |source| PersistenceError::Open {
            location: dir.display().to_string(),
            source,
        };
        fs::create_dir_all(&dir).map_err(open_err)?;
        for entry in fs::read_dir(&dir).map_err(open_err)? {
            let entry = entry.map_err(open_err)?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                debug!(path = %entry.path().display(), "removing an interrupted write");
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            dir,
            next_temp: AtomicU64::new(0),
        })
    }

    /// The directory.
    pub fn directory(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(file_name(name))
    }

    fn sync_dir(&self) -> std::io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}

impl PersistenceEngine for FileSystemPersistenceEngine {
    fn persist(&self, name: &str, bytes: &[u8]) -> Result<(), PersistenceError> {
        let path = self.path_of(name);
        let temp = self.dir.join(format!(
            "{TEMP_PREFIX}{}-{}-{}",
            std::process::id(),
            self.next_temp.fetch_add(1, Ordering::Relaxed),
            file_name(name)
        ));
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            drop(file);
            fs::rename(&temp, &path)?;
            self.sync_dir()
        };
        write().map_err(|source| {
            let _ = fs::remove_file(&temp);
            PersistenceError::Write {
                location: path.display().to_string(),
                source,
            }
        })
    }

    fn unpersist(&self, name: &str) -> Result<(), PersistenceError> {
        let path = self.path_of(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(PersistenceError::Remove {
                    location: path.display().to_string(),
                    source,
                });
            }
        }
        self.sync_dir().map_err(|source| PersistenceError::Remove {
            location: path.display().to_string(),
            source,
        })
    }

    fn read(&self, prefix: &str) -> Result<Vec<StoredRecord>, PersistenceError> {
        let read_err = |location: &Path, source| PersistenceError::Read {
            location: location.display().to_string(),
            source,
        };
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| read_err(&self.dir, e))? {
            let entry = entry.map_err(|e| read_err(&self.dir, e))?;
            let os_name = entry.file_name();
            let Some(file) = os_name.to_str() else {
                continue;
            };
            if file.starts_with('.') {
                continue;
            }
            let Some(name) = record_name(file) else {
                debug!(file, "ignoring a file that is not a recovery record");
                continue;
            };
            if !name.starts_with(prefix) {
                continue;
            }
            let path = entry.path();
            match fs::read(&path) {
                Ok(bytes) => out.push(StoredRecord {
                    name,
                    location: path.display().to_string(),
                    bytes,
                }),
                // Removed between listing and reading: it is simply gone.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => {
                    warn!(path = %path.display(), "ignoring a directory in the recovery directory");
                }
                Err(e) => return Err(read_err(&path, e)),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._:@+=,-".contains(&b)
}

/// The file name for a record name: safe bytes as they are, others (and a leading `.`) as `%XX`.
fn file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, &b) in name.as_bytes().iter().enumerate() {
        if is_plain(b) && !(i == 0 && b == b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The record name a file name stands for, or `None` if it is not one this engine writes.
fn record_name(file: &str) -> Option<String> {
    let bytes = file.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = file.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if is_plain(bytes[i]) {
            out.push(bytes[i]);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{driver_record, engine_round_trip, worker_record};
    use super::super::{PersistOp, PersistenceEngine, Record};
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "ember-fs-engine-{tag}-{}-{}",
                std::process::id(),
                crate::ids::now_millis()
            ));
            let _ = fs::remove_dir_all(&dir);
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn round_trip_through_files() {
        let dir = TempDir::new("round-trip");
        let engine = FileSystemPersistenceEngine::open(dir.0.join("nested")).unwrap();
        engine_round_trip(&engine);
        engine
            .apply(&PersistOp::AddWorker(worker_record(
                "worker-1-10.0.0.1-7078",
            )))
            .unwrap();
        engine
            .apply(&PersistOp::AddDriver(driver_record("driver-9")))
            .unwrap();
        assert_eq!(
            files(engine.directory()),
            ["driver_driver-9", "worker_worker-1-10.0.0.1-7078"]
        );
        // A second engine on the same directory (a restarted master) reads the same records.
        let again = FileSystemPersistenceEngine::open(engine.directory()).unwrap();
        let data = again.read_persisted_data().unwrap();
        assert_eq!(data.workers, vec![worker_record("worker-1-10.0.0.1-7078")]);
        assert_eq!(data.drivers, vec![driver_record("driver-9")]);
    }

    #[test]
    fn hostile_ids_stay_inside_the_directory() {
        let dir = TempDir::new("hostile");
        let engine = FileSystemPersistenceEngine::open(&dir.0).unwrap();
        for id in ["../../escape", "/abs", "a b\u{e9}", ".hidden", "%41"] {
            engine
                .apply(&PersistOp::AddWorker(worker_record(id)))
                .unwrap();
        }
        let names = files(&dir.0);
        assert_eq!(names.len(), 5, "{names:?}");
        assert!(
            names
                .iter()
                .all(|n| !n.contains('/') && !n.starts_with('.')),
            "{names:?}"
        );
        let data = engine.read_persisted_data().unwrap();
        let mut ids: Vec<&str> = data.workers.iter().map(|w| w.id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["%41", "../../escape", ".hidden", "/abs", "a b\u{e9}"]);
        assert!(data.skipped.is_empty());
        for id in ids.clone() {
            engine.apply(&PersistOp::RemoveWorker(id.into())).unwrap();
        }
        assert!(files(&dir.0).is_empty());
    }

    #[test]
    fn writes_leave_no_temporary_files_and_stale_ones_are_ignored_then_removed() {
        let dir = TempDir::new("atomic");
        let engine = FileSystemPersistenceEngine::open(&dir.0).unwrap();
        for i in 0..20 {
            engine
                .apply(&PersistOp::AddWorker(worker_record("w")))
                .unwrap();
            engine
                .apply(&PersistOp::AddDriver(driver_record(&format!("d{i}"))))
                .unwrap();
        }
        assert!(files(&dir.0).iter().all(|n| !n.starts_with('.')));
        // A crash between writing the temporary file and renaming it leaves this behind: a half
        // record that readers must not see.
        let half = &Record::Worker(worker_record("w-half")).encode()[..10];
        fs::write(dir.0.join(".tmp-1-0-worker_w-half"), half).unwrap();
        let data = engine.read_persisted_data().unwrap();
        assert_eq!(data.workers.len(), 1);
        assert!(data.skipped.is_empty());
        FileSystemPersistenceEngine::open(&dir.0).unwrap();
        assert!(files(&dir.0).iter().all(|n| !n.starts_with('.')));
    }

    #[test]
    fn corrupt_files_are_reported_by_path_and_skipped() {
        let dir = TempDir::new("corrupt");
        let engine = FileSystemPersistenceEngine::open(&dir.0).unwrap();
        engine
            .apply(&PersistOp::AddWorker(worker_record("good")))
            .unwrap();
        fs::write(dir.0.join("worker_bad"), b"not a record at all").unwrap();
        let mut damaged = Record::Driver(driver_record("d1")).encode();
        let last = damaged.len() - 1;
        damaged[last] ^= 0x40;
        fs::write(dir.0.join("driver_d1"), damaged).unwrap();
        fs::write(dir.0.join("app_empty"), b"").unwrap();
        fs::write(dir.0.join("README"), b"notes").unwrap();
        fs::create_dir(dir.0.join("app_dir")).unwrap();
        let data = engine.read_persisted_data().unwrap();
        assert_eq!(data.workers, vec![worker_record("good")]);
        assert!(data.drivers.is_empty() && data.apps.is_empty());
        let problems: Vec<String> = data.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        let path = |n: &str| dir.0.join(n).display().to_string();
        assert!(
            problems
                .iter()
                .any(|p| p.contains(&path("worker_bad")) && p.contains("magic")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains(&path("driver_d1")) && p.contains("checksum")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains(&path("app_empty")) && p.contains("too short")),
            "{problems:?}"
        );
    }

    #[test]
    fn an_unwritable_directory_is_an_error_naming_it() {
        let dir = TempDir::new("blocked");
        fs::write(&dir.0, b"a file, not a directory").unwrap();
        let err = FileSystemPersistenceEngine::open(&dir.0).unwrap_err();
        assert!(
            err.to_string().contains(&dir.0.display().to_string()),
            "{err}"
        );
        fs::remove_file(&dir.0).unwrap();
    }

    #[test]
    fn file_names_round_trip() {
        for name in [
            "worker_a-1",
            "app_x/y",
            "driver_.z",
            "worker_%",
            "worker_\u{1F600}",
        ] {
            let file = file_name(name);
            assert!(!file.contains('/') && !file.starts_with('.'), "{file}");
            assert_eq!(record_name(&file).as_deref(), Some(name));
        }
        assert_eq!(record_name("bad name"), None);
        assert_eq!(record_name("worker_%4"), None);
    }
}
