//! Which master leads.
//!
//! Spark counterparts: `LeaderElectable`, `LeaderElectionAgent`, `MonarchyLeaderAgent` (and
//! `ZooKeeperLeaderElectionAgent`, a later issue). An agent campaigns on behalf of one master
//! and tells it, through a [`LeaderElectable`], when it gains or loses leadership. With
//! `ember.deploy.recoveryMode` NONE or FILESYSTEM there is one master, so the monarchy agent
//! elects it at once.

use std::fmt;
use std::sync::Arc;

use tracing::debug;

use ember_rpc::EndpointRef;

use crate::messages::{MasterInternal, MasterMessage};

/// What an agent tells its master.
pub trait LeaderElectable: Send + Sync + fmt::Debug {
    /// This master now leads.
    fn elected_leader(&self);
    /// This master no longer leads; it must stop.
    fn revoked_leadership(&self);
}

/// Campaigns for one master's leadership until stopped.
pub trait LeaderElectionAgent: Send + Sync + fmt::Debug {
    /// Stops campaigning (and gives leadership up, where that means something).
    fn stop(&mut self);
}

/// The master endpoint as a [`LeaderElectable`]: each event becomes a message in its inbox, so
/// that it is handled in order with everything else.
#[derive(Debug, Clone)]
pub struct MasterCandidate {
    master: EndpointRef<MasterMessage>,
}

impl MasterCandidate {
    /// A candidate that notifies `master` (a local ref).
    pub fn new(master: EndpointRef<MasterMessage>) -> Self {
        Self { master }
    }
}

impl LeaderElectable for MasterCandidate {
    fn elected_leader(&self) {
        if self.master.send(MasterInternal::ElectedLeader).is_err() {
            debug!("master stopped before it could be told it leads");
        }
    }

    fn revoked_leadership(&self) {
        if self.master.send(MasterInternal::RevokedLeadership).is_err() {
            debug!("master stopped before it could be told it lost leadership");
        }
    }
}

/// The single master is always the leader (Spark's `MonarchyLeaderAgent`).
#[derive(Debug)]
pub struct MonarchyLeaderAgent {
    _candidate: Arc<dyn LeaderElectable>,
}

impl MonarchyLeaderAgent {
    /// Elects `candidate` immediately.
    pub fn start(candidate: Arc<dyn LeaderElectable>) -> Self {
        candidate.elected_leader();
        Self {
            _candidate: candidate,
        }
    }
}

impl LeaderElectionAgent for MonarchyLeaderAgent {
    fn stop(&mut self) {}
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<&'static str>>);

    impl LeaderElectable for Recorder {
        fn elected_leader(&self) {
            self.0.lock().unwrap().push("elected");
        }
        fn revoked_leadership(&self) {
            self.0.lock().unwrap().push("revoked");
        }
    }

    #[test]
    fn monarchy_elects_at_once_and_never_revokes() {
        let recorder = Arc::new(Recorder::default());
        let mut agent = MonarchyLeaderAgent::start(recorder.clone());
        assert_eq!(*recorder.0.lock().unwrap(), ["elected"]);
        agent.stop();
        assert_eq!(*recorder.0.lock().unwrap(), ["elected"]);
    }
}
