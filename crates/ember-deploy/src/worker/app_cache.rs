//! The worker's content-addressed cache of application binaries: `<work dir>/app-binaries/<sha256>`.
//!
//! Spark counterpart: the jar download into each executor's or driver's directory
//! (`Utils.fetchFile`, with its per-application cache). Here a binary is identified by its
//! SHA-256, so it is fetched once per digest however many executors of however many
//! applications run it. Concurrent requests for one digest share one fetch (single-flight); the
//! bytes land in a temporary file, are checked against the digest (a mismatch is an error naming
//! both digests, and the file is removed), made executable (0755) and renamed into place, so a
//! path under the cache always holds a verified binary.
//!
//! The cache is shared by the worker endpoint and its runner tasks; its map of in-flight
//! fetches sits behind a mutex that is never held across an await.
//!
//! Each use of a binary renews its modification time, and the work-dir cleanup
//! ([`prune`](AppCache::prune), with `ember.worker.cleanup.*`) deletes binaries that no running
//! executor or driver uses and that were last used longer than the TTL ago, as it deletes old
//! application directories.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ember_rpc::RpcEnv;
use tokio::sync::OnceCell;
use tracing::{info, warn};

use crate::description::{AppBinary, BinaryLocation};
use crate::error::DeployError;
use crate::file_server::{self, check_digest, digest_file};

/// Name of the cache directory inside the work dir.
pub const CACHE_DIR_NAME: &str = "app-binaries";

/// Binaries by digest.
#[derive(Debug)]
pub struct AppCache {
    dir: PathBuf,
    env: RpcEnv,
    entries: Mutex<HashMap<String, Arc<OnceCell<PathBuf>>>>,
    fetches: AtomicU64,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl AppCache {
    /// A cache in `dir` that fetches from file servers through `env`.
    pub fn new(env: RpcEnv, dir: PathBuf) -> Self {
        AppCache {
            dir,
            env,
            entries: Mutex::new(HashMap::new()),
            fetches: AtomicU64::new(0),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many times a binary was fetched or copied into the cache (not counting cache hits).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The path of the verified binary, fetching it first if needed.
    pub async fn get(&self, binary: &AppBinary) -> Result<PathBuf, DeployError> {
        let digest = binary.digest.to_ascii_lowercase();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DeployError::InvalidDigest {
                name: binary.name.clone(),
                digest: binary.digest.clone(),
            });
        }
        let cell = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(digest.clone())
            .or_default()
            .clone();
        // The first caller fetches; the others wait for it. A failure is not cached: the next
        // caller tries again.
        let path = cell
            .get_or_try_init(|| self.materialize(binary, &digest))
            .await
            .cloned()?;
        // Used now: the cleanup's TTL counts from here.
        let touched = path.clone();
        let _ = tokio::task::spawn_blocking(move || {
            std::fs::File::open(&touched).and_then(|f| f.set_modified(SystemTime::now()))
        })
        .await;
        Ok(path)
    }

    /// Deletes the cached binaries whose digest is not in `in_use` and that were last used
    /// before `now - ttl`; returns their digests. Blocking (it walks the directory): run it off
    /// the async threads. A fetch under way is never touched.
    pub fn prune(&self, in_use: &HashSet<String>, ttl: Duration, now: SystemTime) -> Vec<String> {
        let cutoff = now.checked_sub(ttl).unwrap_or(SystemTime::UNIX_EPOCH);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let digest = entry.file_name().to_string_lossy().into_owned();
            // Temporary files of fetches start with a dot; anything else is not ours.
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            if in_use.contains(&digest) {
                continue;
            }
            let recent = entry
                .metadata()
                .and_then(|m| m.modified())
                .map_or(true, |m| m > cutoff);
            if recent {
                continue;
            }
            {
                // Forget it first, so that the next executor fetches it again; an entry still
                // being filled is a fetch under way.
                let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
                if entries.get(&digest).is_some_and(|c| !c.initialized()) {
                    continue;
                }
                entries.remove(&digest);
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    info!(%digest, "removed an application binary no longer used");
                    removed.push(digest);
                }
                Err(e) => warn!(%digest, error = %e, "could not remove a cached binary"),
            }
        }
        removed.sort();
        removed
    }

    async fn materialize(&self, binary: &AppBinary, digest: &str) -> Result<PathBuf, DeployError> {
        let path = self.dir.join(digest);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            // Left by an earlier worker process: verified before it was renamed into place, but
            // check again, once per process, in case it was damaged since.
            let actual = hash(path.clone()).await?;
            match check_digest(binary, &actual.0) {
                Ok(()) => return Ok(path),
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "cached binary is damaged; fetching it again");
                    let _ = tokio::fs::remove_file(&path).await;
                }
            }
        }
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|source| DeployError::Directory {
                path: self.dir.clone(),
                source,
            })?;
        let temp = self.dir.join(format!(
            ".{digest}.{}.{}.tmp",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = self.fill(binary, &temp, &path).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        result.map(|()| path)
    }

    async fn fill(&self, binary: &AppBinary, temp: &Path, path: &Path) -> Result<(), DeployError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        match &binary.location {
            BinaryLocation::FileServer(address) => {
                file_server::fetch(&self.env, address, binary, temp).await?;
            }
            BinaryLocation::LocalPath(source) => {
                let (from, to) = (PathBuf::from(source), temp.to_path_buf());
                let copied = tokio::task::spawn_blocking(move || copy_and_hash(&from, &to))
                    .await
                    .map_err(|e| DeployError::Io {
                        action: "copy",
                        path: PathBuf::from(source),
                        source: std::io::Error::other(e),
                    })??;
                if copied.1 != binary.size {
                    return Err(DeployError::SizeMismatch {
                        name: binary.name.clone(),
                        expected: binary.size,
                        actual: copied.1,
                    });
                }
                check_digest(binary, &copied.0)?;
            }
        }
        let io = |action, source| DeployError::Io {
            action,
            path: temp.to_path_buf(),
            source,
        };
        tokio::fs::set_permissions(temp, std::fs::Permissions::from_mode(0o755))
            .await
            .map_err(|e| io("chmod", e))?;
        tokio::fs::rename(temp, path)
            .await
            .map_err(|e| io("rename", e))?;
        info!(name = %binary.name, digest = %binary.digest, size = binary.size,
            elapsed_ms = started.elapsed().as_millis() as u64, "application binary cached");
        Ok(())
    }
}

async fn hash(path: PathBuf) -> Result<(String, u64), DeployError> {
    let p = path.clone();
    tokio::task::spawn_blocking(move || digest_file(&p))
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|source| DeployError::Io {
            action: "hash",
            path,
            source,
        })
}

/// Copies `from` to `to` (created or truncated) and returns the SHA-256 and size of the bytes
/// copied. Blocking.
fn copy_and_hash(from: &Path, to: &Path) -> Result<(String, u64), DeployError> {
    use sha2::{Digest as _, Sha256};
    use std::io::{Read, Write};
    let mut input = std::fs::File::open(from).map_err(|source| DeployError::Io {
        action: "open",
        path: from.to_path_buf(),
        source,
    })?;
    let write_err = |source| DeployError::Io {
        action: "write",
        path: to.to_path_buf(),
        source,
    };
    let mut output = std::fs::File::create(to).map_err(write_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(|source| DeployError::Io {
            action: "read",
            path: from.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n]).map_err(write_err)?;
        size += n as u64;
    }
    // No fsync, as in `file_server::fetch`: the cache re-verifies a file once per process.
    output.flush().map_err(write_err)?;
    Ok((file_server::hex(&hasher.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_rpc::RpcEnvConfig;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ember-cache-{name}-{}-{}",
            std::process::id(),
            crate::ids::now_millis()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn local(path: &Path) -> AppBinary {
        let (digest, size) = digest_file(path).unwrap();
        AppBinary {
            name: "app".into(),
            digest,
            size,
            location: BinaryLocation::LocalPath(path.display().to_string()),
        }
    }

    #[tokio::test]
    async fn local_paths_are_copied_verified_and_made_executable_once() {
        let dir = temp_dir("local");
        let source = dir.join("source");
        std::fs::write(&source, b"#!/bin/sh\necho hi\n").unwrap();
        let env = ember_rpc::RpcEnv::create(RpcEnvConfig::new("t", "127.0.0.1", 0))
            .await
            .unwrap();
        let cache = AppCache::new(env.clone(), dir.join(CACHE_DIR_NAME));
        let binary = local(&source);
        let path = cache.get(&binary).await.unwrap();
        assert_eq!(path, dir.join(CACHE_DIR_NAME).join(&binary.digest));
        assert_eq!(std::fs::read(&path).unwrap(), b"#!/bin/sh\necho hi\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(cache.get(&binary).await.unwrap(), path);
        assert_eq!(cache.fetch_count(), 1);

        // A wrong digest: refused, named, nothing left behind.
        let mut wrong = binary.clone();
        wrong.digest = "0".repeat(64);
        let err = cache.get(&wrong).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&wrong.digest) && text.contains(&binary.digest),
            "{text}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.join(CACHE_DIR_NAME))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from(&binary.digest)]);

        // A digest that could escape the directory is refused before any file access.
        let mut evil = binary.clone();
        evil.digest = "../../etc/passwd".into();
        assert!(matches!(
            cache.get(&evil).await.unwrap_err(),
            DeployError::InvalidDigest { .. }
        ));

        // A damaged cache file (from an earlier process) is fetched again.
        let fresh = AppCache::new(env.clone(), dir.join(CACHE_DIR_NAME));
        std::fs::write(&path, b"tampered").unwrap();
        assert_eq!(fresh.get(&binary).await.unwrap(), path);
        assert_eq!(std::fs::read(&path).unwrap(), b"#!/bin/sh\necho hi\n");
        env.shutdown().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn prune_removes_unused_binaries_not_used_within_the_ttl() {
        let dir = temp_dir("prune");
        let (old_src, kept_src, fresh_src) = (dir.join("old"), dir.join("kept"), dir.join("fresh"));
        std::fs::write(&old_src, b"old").unwrap();
        std::fs::write(&kept_src, b"kept").unwrap();
        std::fs::write(&fresh_src, b"fresh").unwrap();
        let env = ember_rpc::RpcEnv::create(RpcEnvConfig::new("t", "127.0.0.1", 0))
            .await
            .unwrap();
        let cache = AppCache::new(env.clone(), dir.join(CACHE_DIR_NAME));
        let (old, kept, fresh) = (local(&old_src), local(&kept_src), local(&fresh_src));
        for b in [&old, &kept, &fresh] {
            cache.get(b).await.unwrap();
        }
        let day = Duration::from_secs(86_400);
        for b in [&old, &kept] {
            let file = std::fs::File::open(cache.dir().join(&b.digest)).unwrap();
            file.set_modified(SystemTime::now() - 10 * day).unwrap();
        }
        let in_use: HashSet<String> = [kept.digest.clone()].into();
        let removed = cache.prune(&in_use, 7 * day, SystemTime::now());
        assert_eq!(removed, vec![old.digest.clone()]);
        assert!(!cache.dir().join(&old.digest).exists());
        assert!(cache.dir().join(&kept.digest).exists(), "in use");
        assert!(
            cache.dir().join(&fresh.digest).exists(),
            "used within the TTL"
        );

        // A use renews the time; a pruned binary is fetched again when needed.
        let file = std::fs::File::open(cache.dir().join(&fresh.digest)).unwrap();
        file.set_modified(SystemTime::now() - 10 * day).unwrap();
        cache.get(&fresh).await.unwrap();
        assert!(
            cache
                .prune(&HashSet::new(), 7 * day, SystemTime::now())
                .len()
                == 1
        );
        assert!(
            cache.dir().join(&fresh.digest).exists(),
            "renewed by its use"
        );
        let fetches = cache.fetch_count();
        let again = cache.get(&old).await.unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), b"old");
        assert_eq!(cache.fetch_count(), fetches + 1);
        env.shutdown().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
