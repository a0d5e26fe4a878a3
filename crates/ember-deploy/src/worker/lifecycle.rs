//! How the worker endpoint wakes itself and how it tells its owner that it stopped.
//!
//! [`Armed`] turns a deadline of the registration machine into a one-shot timer message, re-armed
//! only when the deadline changes. [`ExitSignal`] carries the error of a worker that stopped by
//! itself from the endpoint to the [`WorkerHandle`](super::WorkerHandle).

use std::sync::Mutex;
use std::time::Instant;

use ember_rpc::{EndpointContext, TimerHandle};
use tokio_util::sync::CancellationToken;

use crate::error::DeployError;
use crate::messages::{WorkerInternal, WorkerMessage};

/// How a worker that stops by itself tells its owner why. Shared by the endpoint and the
/// [`WorkerHandle`](super::WorkerHandle).
#[derive(Debug, Default)]
pub(crate) struct ExitSignal {
    token: CancellationToken,
    error: Mutex<Option<DeployError>>,
}

impl ExitSignal {
    /// Records the first fatal error and wakes the waiters.
    pub(crate) fn fail(&self, error: DeployError) {
        let mut slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(error);
        }
        drop(slot);
        self.token.cancel();
    }

    pub(crate) fn take(&self) -> Option<DeployError> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub(crate) async fn wait(&self) {
        self.token.cancelled().await;
    }
}

/// A timer the endpoint armed for a deadline of the registration machine.
#[derive(Debug, Default)]
pub(super) struct Armed {
    at: Option<Instant>,
    handle: Option<TimerHandle>,
}

impl Armed {
    pub(super) fn arm(
        &mut self,
        ctx: &EndpointContext<WorkerMessage>,
        deadline: Option<Instant>,
        make: fn() -> WorkerInternal,
    ) {
        if self.at == deadline && (deadline.is_none() || self.handle.is_some()) {
            return;
        }
        self.handle = None;
        self.at = deadline;
        if let Some(at) = deadline {
            let delay = at.saturating_duration_since(now());
            self.handle = Some(ctx.schedule_once(delay, WorkerMessage::Internal(make())));
        }
    }

    /// The timer fired: the next `arm` must schedule again even for the same deadline.
    pub(super) fn fired(&mut self) {
        self.handle = None;
    }
}

/// The time the registration machine sees (tokio's clock, so paused-time tests work).
pub(super) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
