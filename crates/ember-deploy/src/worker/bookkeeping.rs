//! The worker endpoint's records of its executors and drivers, and the small rules around them:
//! how finished ones are trimmed for the UI, which ids may become directory names.
//!
//! Spark counterpart: the `executors`, `finishedExecutors`, `drivers`, `finishedDrivers` maps of
//! `Worker.scala` and its `trimFinishedExecutorsIfNecessary`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::app_cache::CACHE_DIR_NAME;
use super::command::RunnerHandle;
use crate::description::{ApplicationDescription, DriverDescription, ExecutorDescription};
use crate::error::DeployError;
use crate::ids::{AppId, DriverId, ExecutorId};
use crate::messages::{DriverRunnerSummary, ExecutorRunnerSummary};
use crate::state::{DriverState, ExecutorState};

#[derive(Debug)]
pub(super) struct ExecutorEntry {
    pub(super) app_id: AppId,
    pub(super) exec_id: ExecutorId,
    pub(super) cores: u32,
    pub(super) memory_mb: u32,
    pub(super) app_desc: ApplicationDescription,
    pub(super) state: ExecutorState,
    pub(super) exit_status: Option<i32>,
    pub(super) dir: PathBuf,
    pub(super) handle: RunnerHandle,
}

impl ExecutorEntry {
    pub(super) fn summary(&self) -> ExecutorRunnerSummary {
        ExecutorRunnerSummary {
            app_id: self.app_id.clone(),
            exec_id: self.exec_id,
            cores: self.cores,
            memory_mb: self.memory_mb,
            state: self.state,
            app_desc: self.app_desc.clone(),
            exit_status: self.exit_status,
            work_dir: self.dir.display().to_string(),
        }
    }

    pub(super) fn description(&self) -> ExecutorDescription {
        ExecutorDescription {
            app_id: self.app_id.clone(),
            exec_id: self.exec_id,
            cores: self.cores,
            memory_mb: self.memory_mb,
            state: self.state,
        }
    }
}

#[derive(Debug)]
pub(super) struct DriverEntry {
    pub(super) driver_id: DriverId,
    pub(super) desc: DriverDescription,
    pub(super) dir: PathBuf,
    pub(super) handle: RunnerHandle,
}

impl DriverEntry {
    pub(super) fn summary(
        &self,
        state: DriverState,
        exception: Option<String>,
    ) -> DriverRunnerSummary {
        DriverRunnerSummary {
            driver_id: self.driver_id.clone(),
            desc: self.desc.clone(),
            state,
            exception,
            work_dir: self.dir.display().to_string(),
        }
    }
}

/// Drops the oldest tenth (at least one) once `list` holds more than `retained` (Spark's trim of
/// finished executors and drivers).
pub(super) fn trim<T>(list: &mut VecDeque<T>, retained: usize) {
    if list.len() > retained {
        let drop = (list.len() / 10).max(1).min(list.len());
        list.drain(..drop);
    }
}

/// Ids become directory names: refuse the ones that would leave the work dir.
pub(super) fn safe_component(id: &str) -> Result<(), DeployError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id != CACHE_DIR_NAME
        && !id.contains(['/', '\\', '\0']);
    if ok {
        Ok(())
    } else {
        Err(DeployError::Directory {
            path: PathBuf::from(id),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "an id used as a directory name must be one plain path component",
            ),
        })
    }
}

pub(super) fn create_dir(dir: &Path) -> Result<(), DeployError> {
    std::fs::create_dir_all(dir).map_err(|source| DeployError::Directory {
        path: dir.to_path_buf(),
        source,
    })
}

pub(super) fn create_private_dir(dir: &Path) -> Result<(), DeployError> {
    use std::os::unix::fs::PermissionsExt;
    create_dir(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|source| {
        DeployError::Directory {
            path: dir.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_lists_drop_the_oldest_tenth() {
        let mut list: VecDeque<u32> = (0..21).collect();
        trim(&mut list, 20);
        assert_eq!(list.front(), Some(&2));
        assert_eq!(list.len(), 19);
        let mut small: VecDeque<u32> = (0..3).collect();
        trim(&mut small, 2);
        assert_eq!(small, VecDeque::from(vec![1, 2]));
        trim(&mut small, 2);
        assert_eq!(small.len(), 2);
    }

    #[test]
    fn ids_must_be_plain_path_components() {
        for bad in ["", ".", "..", "../x", "a/b", "app-binaries"] {
            assert!(safe_component(bad).is_err(), "{bad:?}");
        }
        assert!(safe_component("app-20260101000000-0000").is_ok());
    }
}
