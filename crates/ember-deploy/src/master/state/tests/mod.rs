//! Tests of the pure state machine: every rule with `now` as an input and effects as output.
//! Cases that mirror Spark's `MasterSuite` say so.

mod apps;
mod drivers;
mod persistence;
mod recovery;
mod workers;

use std::time::Duration;

use ember_rpc::RpcAddress;

use super::*;
use crate::description::{
    AppBinary, ApplicationDescription, BinaryLocation, Command, DriverDescription,
};
use crate::ids::{AppId, DriverId, ExecutorId, WorkerId};
use crate::master::persistence::PersistedData;

/// 2026-11-21 12:21:40 UTC.
pub(super) const T0: u64 = 1_795_263_700_000;
pub(super) const TIMEOUT_MS: u64 = 60_000;

pub(super) fn config() -> MasterConfig {
    let mut c = MasterConfig::local("127.0.0.1");
    c.worker_timeout = Duration::from_millis(TIMEOUT_MS);
    c.recovery_timeout = Duration::from_millis(TIMEOUT_MS);
    c
}

pub(super) fn identity() -> MasterIdentity {
    MasterIdentity {
        host: "127.0.0.1".into(),
        port: 7077,
        web_ui_url: "http://127.0.0.1:8080".into(),
    }
}

pub(super) const URL: &str = "ember://127.0.0.1:7077";

/// A STANDBY master.
pub(super) fn standby_with(config: MasterConfig) -> Master {
    Master::new(config, identity(), 42)
}

/// An ALIVE master with nothing recovered.
pub(super) fn alive_with(config: MasterConfig) -> Master {
    let mut m = standby_with(config);
    let effects = m.elected_leader(PersistedData::default(), T0);
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(m.status(), MasterState::Alive);
    m
}

pub(super) fn alive() -> Master {
    alive_with(config())
}

pub(super) fn worker_address(n: u16) -> RpcAddress {
    RpcAddress::new("10.0.0.1", 7000 + n)
}

pub(super) fn reg(id: &str, n: u16, cores: u32, memory_mb: u32) -> WorkerRegistration {
    WorkerRegistration {
        id: id.into(),
        host: "10.0.0.1".into(),
        port: 7000 + n,
        address: worker_address(n),
        cores,
        memory_mb,
        web_ui_url: format!("http://10.0.0.1:{}", 8000 + n),
        master_address: RpcAddress::new("127.0.0.1", 7077),
    }
}

/// `effects` of an input followed, if it ended with [`Effect::PersistThenApply`], by what
/// [`Master::persisted`] returns when the write succeeded.
pub(super) fn stored(m: &mut Master, mut effects: Vec<Effect>, now: u64) -> Vec<Effect> {
    if matches!(effects.last(), Some(Effect::PersistThenApply(_))) {
        effects.extend(m.persisted(true, now));
    }
    effects
}

/// Registers worker `id` at address number `n`, its record stored, expecting success.
pub(super) fn add_worker(
    m: &mut Master,
    id: &str,
    n: u16,
    cores: u32,
    memory_mb: u32,
    now: u64,
) -> Vec<Effect> {
    let effects = m.register_worker(reg(id, n, cores, memory_mb), now);
    let effects = stored(m, effects, now);
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::ToWorker {
                msg: ToWorker::Registered {
                    duplicate: false,
                    ..
                },
                ..
            }
        )),
        "{effects:?}"
    );
    effects
}

pub(super) fn command(name: &str) -> Command {
    Command {
        binary: AppBinary {
            name: name.into(),
            digest: "0123".into(),
            size: 4,
            location: BinaryLocation::LocalPath(format!("/bin/{name}")),
        },
        arguments: vec![],
        environment: vec![],
    }
}

pub(super) fn app_desc(
    memory_mb: u32,
    cores_per_executor: Option<u32>,
    max_cores: Option<u32>,
) -> ApplicationDescription {
    ApplicationDescription {
        name: "test-app".into(),
        max_cores,
        memory_per_executor_mb: memory_mb,
        cores_per_executor,
        initial_executor_limit: None,
        command: command("app"),
        app_ui_url: None,
        user: "tester".into(),
    }
}

pub(super) fn driver_address(n: u16) -> RpcAddress {
    RpcAddress::new("10.0.1.1", 9000 + n)
}

/// Registers an application from driver address number `n`, its record stored; returns its id.
pub(super) fn add_app(
    m: &mut Master,
    desc: ApplicationDescription,
    n: u16,
    now: u64,
) -> (AppId, Vec<Effect>) {
    let effects = m.register_application(desc, driver_address(n), now);
    let effects = stored(m, effects, now);
    let id = effects
        .iter()
        .find_map(|e| match e {
            Effect::ToApp {
                app_id,
                msg: ToApp::Registered,
                ..
            } => Some(app_id.clone()),
            _ => None,
        })
        .expect("the application is registered");
    (id, effects)
}

pub(super) fn driver_desc(cores: u32, mem_mb: u32, supervise: bool) -> DriverDescription {
    DriverDescription {
        mem_mb,
        cores,
        supervise,
        command: command("driver"),
    }
}

/// The plain messages sent to worker `id`, in order.
pub(super) fn to_worker<'a>(effects: &'a [Effect], id: &str) -> Vec<&'a MasterToWorkerPlain> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ToWorker {
                worker_id,
                msg: ToWorker::Message(m),
                ..
            } if worker_id.as_str() == id => Some(m),
            _ => None,
        })
        .collect()
}

/// The plain messages sent to application `id`, in order.
pub(super) fn to_app<'a>(effects: &'a [Effect], id: &AppId) -> Vec<&'a MasterToAppPlain> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ToApp {
                app_id,
                msg: ToApp::Message(m),
                ..
            } if app_id == id => Some(m),
            _ => None,
        })
        .collect()
}

/// `(worker, app, executor, cores)` of every `LaunchExecutor`, in order.
pub(super) fn launches(effects: &[Effect]) -> Vec<(String, AppId, ExecutorId, u32)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ToWorker {
                worker_id,
                msg:
                    ToWorker::Message(MasterToWorkerPlain::LaunchExecutor {
                        app_id,
                        exec_id,
                        cores,
                        ..
                    }),
                ..
            } => Some((worker_id.to_string(), app_id.clone(), *exec_id, *cores)),
            _ => None,
        })
        .collect()
}

/// `(worker, driver)` of every `LaunchDriver`, in order.
pub(super) fn driver_launches(effects: &[Effect]) -> Vec<(String, DriverId)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ToWorker {
                worker_id,
                msg: ToWorker::Message(MasterToWorkerPlain::LaunchDriver { driver_id, .. }),
                ..
            } => Some((worker_id.to_string(), driver_id.clone())),
            _ => None,
        })
        .collect()
}

/// Every write in `effects`, of either kind, in order.
pub(super) fn persisted(effects: &[Effect]) -> Vec<&PersistOp> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Persist(op) | Effect::PersistThenApply(op) => Some(op),
            _ => None,
        })
        .collect()
}

/// Index of the first effect matching `pred`.
pub(super) fn position(effects: &[Effect], pred: impl Fn(&Effect) -> bool) -> usize {
    effects.iter().position(pred).expect("effect present")
}

pub(super) fn worker<'a>(m: &'a Master, id: &str) -> &'a crate::master::info::WorkerInfo {
    m.worker(&WorkerId::from(id)).expect("live worker")
}

/// Bookkeeping that must hold after every input: a worker's used resources are the sum of what
/// it holds, an application's granted cores the sum of its executors', and each live executor is
/// on its worker.
pub(super) fn check_invariants(m: &Master) {
    for w in m.workers() {
        if w.state == crate::state::WorkerState::Dead {
            continue;
        }
        let cores: u32 = w
            .executors
            .values()
            .chain(w.drivers.values())
            .map(|a| a.cores)
            .sum();
        let memory: u32 = w
            .executors
            .values()
            .chain(w.drivers.values())
            .map(|a| a.memory_mb)
            .sum();
        assert_eq!(w.cores_used, cores, "cores of {}", w.id);
        assert_eq!(w.memory_used_mb, memory, "memory of {}", w.id);
        assert!(w.cores_used <= w.cores, "{} over-committed", w.id);
    }
    for app in m.apps() {
        let cores: u32 = app.executors.values().map(|e| e.cores).sum();
        assert_eq!(app.cores_granted, cores, "cores of {}", app.id);
        for e in app.executors.values() {
            if let Some(w) = m.worker(&e.worker_id)
                && w.state != crate::state::WorkerState::Decommissioned
            {
                assert!(
                    w.executors.contains_key(&e.key()),
                    "{} not on {}",
                    e.id,
                    w.id
                );
            }
        }
    }
    for d in m.drivers() {
        if let Some(w) = d.worker.as_ref().and_then(|id| m.worker(id)) {
            assert!(w.drivers.contains_key(&d.id), "{} not on {}", d.id, w.id);
        }
    }
}
