//! A master restarted with FILESYSTEM recovery finds its workers again, as real processes: the
//! master is SIGKILLed and started anew on the same port and recovery directory while the worker
//! processes keep running.
//!
//! The recovery rules themselves (UNKNOWN workers, `MasterChanged`, the recovery timeout) are
//! pinned by `ember-deploy`'s state and in-process tests; this checks the files, the port reuse
//! and that the running workers come back through `MasterChanged` →
//! `WorkerSchedulerStateResponse` across a real process crash. Their registration retries are
//! spaced far apart (`ember.worker.registration.initialInterval`), so the retry that follows
//! the lost connection cannot reach the new master before its `MasterChanged` does.

mod support;

use support::{DEADLINE, Master, Signal, TempDir, Worker, free_port, wait_until};

// Spark parity: Master.beginRecovery / completeRecovery with FileSystemPersistenceEngine.
#[test]
fn master_restarted_with_filesystem_recovery_gets_its_workers_back() {
    let dir = TempDir::new("recovery");
    let recovery_dir = dir.join("recovery");
    let recovery_dir_conf = format!(
        "ember.deploy.recoveryDirectory={}",
        recovery_dir.to_str().unwrap()
    );
    let master_args = [
        "--conf",
        "ember.deploy.recoveryMode=FILESYSTEM",
        "--conf",
        &recovery_dir_conf,
        "--conf",
        "ember.worker.timeout=2s",
    ];
    let worker_args = [
        "--conf",
        "ember.worker.timeout=2s",
        "--conf",
        "ember.worker.registration.initialInterval=60s",
    ];
    // A fixed port, so that the restarted master is found at the address the workers know.
    let port = free_port();
    let mut master = Master::start_on(&dir, "master1", port, &master_args);
    let mut workers: Vec<Worker> = ["worker1", "worker2"]
        .into_iter()
        .map(|name| Worker::start(&dir, name, &master.url, &worker_args).registered())
        .collect();
    for w in &workers {
        master.await_worker_state(&w.id, "ALIVE", DEADLINE);
    }
    let pids: Vec<u32> = workers.iter().map(|w| w.proc.pid()).collect();
    let persisted = std::fs::read_dir(&recovery_dir)
        .expect("the recovery directory exists")
        .count();
    assert!(
        persisted >= 2,
        "expected a record per worker, found {persisted} files"
    );

    master.proc.signal(Signal::SIGKILL);
    master.proc.wait_exit();
    for w in &workers {
        wait_until("the worker to notice the master is gone", || {
            w.proc.log().contains("connection to the master lost")
        });
    }

    let restarted = Master::start_on(&dir, "master2", port, &master_args);
    assert_eq!(restarted.url, master.url);
    wait_until("the master to recover and be ALIVE", || {
        let json = restarted.json();
        json["status"] == "ALIVE"
            && workers
                .iter()
                .all(|w| support::worker_state(&json, &w.id).as_deref() == Some("ALIVE"))
    });
    let log = restarted.proc.log();
    let recovering = log
        .find("elected leader; recovering")
        .unwrap_or_else(|| panic!("the master should have recovered state:\n{log}"));
    let recovered = log
        .find("recovery complete; ALIVE")
        .unwrap_or_else(|| panic!("the master should have finished recovering:\n{log}"));
    assert!(recovering < recovered, "{log}");

    // Each worker came back by answering MasterChanged, not by registering anew.
    for w in &workers {
        let needle = format!("worker_id={}", w.id);
        assert!(
            log.lines().any(|l| {
                l.contains("worker re-registered after the master change") && l.contains(&needle)
            }),
            "{} should have answered MasterChanged:\n{log}",
            w.id
        );
        let worker_log = w.proc.log();
        assert!(
            worker_log.contains("master has changed"),
            "{}:\n{worker_log}",
            w.id
        );
        assert_eq!(
            worker_log
                .matches("successfully registered with master")
                .count(),
            1,
            "{} registered only with the first master:\n{worker_log}",
            w.id
        );
    }
    assert!(!log.contains("registered worker worker_id="), "{log}");
    assert!(!log.contains("duplicate registration"), "{log}");

    let json = restarted.json();
    assert_eq!(json["aliveworkers"], 2, "{json:#}");
    assert_eq!(json["workers"].as_array().unwrap().len(), 2, "{json:#}");
    for (w, pid) in workers.iter_mut().zip(pids) {
        assert_eq!(w.proc.pid(), pid);
        assert!(w.proc.is_running(), "{} should not have restarted", w.id);
        assert_eq!(w.json()["masterurl"], restarted.url.as_str());
    }
}
