//! Work-dir cleanup: deleting application and driver directories nobody uses any more.
//!
//! Spark counterpart: the `WorkDirCleanup` handler of `Worker.scala` with
//! `Utils.doesDirectoryContainAnyNewFiles`. It walks the file system, so the endpoint runs it on a
//! blocking thread, off its own task.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

/// Deletes every directory directly under `work_dir` whose name is not in `in_use` and that holds
/// no file or directory modified after `now - ttl`. Returns the names deleted. Blocking.
pub fn clean_work_dir(
    work_dir: &Path,
    in_use: &HashSet<String>,
    ttl: Duration,
    now: SystemTime,
) -> Vec<String> {
    let cutoff = now.checked_sub(ttl).unwrap_or(SystemTime::UNIX_EPOCH);
    let entries = match std::fs::read_dir(work_dir) {
        Ok(entries) => entries,
        Err(e) => {
            warn!(dir = %work_dir.display(), error = %e, "work dir cleanup: cannot list the work dir");
            return Vec::new();
        }
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if !is_dir || in_use.contains(&name) {
            continue;
        }
        let path = entry.path();
        if contains_new_files(&path, cutoff) {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                info!(dir = %path.display(), "removed an old application directory");
                removed.push(name);
            }
            Err(e) => warn!(dir = %path.display(), error = %e, "could not remove an old directory"),
        }
    }
    removed.sort();
    removed
}

/// Whether anything below `dir` (not `dir` itself) was modified after `cutoff`. An entry whose
/// time cannot be read counts as new, so that doubt keeps data.
fn contains_new_files(dir: &Path, cutoff: SystemTime) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            return true;
        };
        if meta.modified().map_or(true, |m| m > cutoff) {
            return true;
        }
        if meta.is_dir() && contains_new_files(&entry.path(), cutoff) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(path: &Path, by: Duration) {
        // Opening read-only is enough to set the times of a file or directory we own.
        let file = std::fs::File::open(path).unwrap();
        file.set_modified(SystemTime::now() - by).unwrap();
    }

    #[test]
    fn removes_only_old_unused_directories() {
        let work = std::env::temp_dir().join(format!(
            "ember-cleanup-{}-{}",
            std::process::id(),
            crate::ids::now_millis()
        ));
        let day = Duration::from_secs(86_400);
        let apps = ["app-old", "app-new", "app-running", "app-nested-new"];
        for app in apps {
            std::fs::create_dir_all(work.join(app).join("0")).unwrap();
            std::fs::write(work.join(app).join("0").join("stdout"), "x").unwrap();
        }
        std::fs::write(work.join("app-nested-new").join("0").join("stderr"), "x").unwrap();
        std::fs::write(work.join("notes.txt"), "x").unwrap();
        for app in apps {
            age(&work.join(app).join("0").join("stdout"), 10 * day);
            age(&work.join(app).join("0"), 10 * day);
        }
        age(&work.join("notes.txt"), 10 * day);
        // A recent file at any depth keeps its directory.
        std::fs::write(work.join("app-new").join("fresh"), "x").unwrap();

        let in_use: HashSet<String> = ["app-running".to_owned()].into();
        let removed = clean_work_dir(&work, &in_use, 7 * day, SystemTime::now());
        assert_eq!(removed, vec!["app-old".to_owned()]);
        assert!(!work.join("app-old").exists());
        for kept in ["app-new", "app-running", "app-nested-new", "notes.txt"] {
            assert!(work.join(kept).exists(), "{kept}");
        }
        // With a longer TTL nothing more goes; with none, everything unused goes.
        assert!(clean_work_dir(&work, &in_use, 30 * day, SystemTime::now()).is_empty());
        let removed = clean_work_dir(&work, &in_use, Duration::ZERO, SystemTime::now() + day);
        assert_eq!(
            removed,
            vec!["app-nested-new".to_owned(), "app-new".to_owned()]
        );
        std::fs::remove_dir_all(&work).unwrap();
    }
}
