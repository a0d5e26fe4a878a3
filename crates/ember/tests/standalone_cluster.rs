//! The standalone cluster as real processes: `ember master` and `ember worker` started from the
//! built binary on 127.0.0.1 with port 0, observed through their logs and web UIs, with faults
//! injected by signals and by a misbehaving peer in the test process.
//!
//! These sit at the top rung of the test ladder (STYLE #11): the registration rules, timeouts
//! and recovery are pinned by the pure state tests and the in-process daemon tests of
//! `ember-deploy`; here we check that the processes, signals, sockets and UIs around them behave.

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use ember_deploy::ids::WorkerId;
use ember_deploy::messages::{
    ClientToMaster, MASTER_ENDPOINT, MasterMessage, MasterStateResponse, MasterToWorker,
    WORKER_ENDPOINT, WorkerMessage, WorkerToMaster,
};
use ember_deploy::state::MasterState;
use ember_rpc::{
    EmberConf, EndpointContext, HandlerResult, RpcAddress, RpcEndpoint, RpcEnv, RpcEnvConfig,
};
use serde_json::Value;
use support::{DEADLINE, Master, Signal, TempDir, Worker, free_port, http_get, wait_until};

/// `ember.worker.timeout` for both daemons: short, but long enough for a loaded 2-core machine.
const TIMEOUT: &str = "ember.worker.timeout=2s";
/// A worker silent for the timeout is DEAD within 1.25 timeouts; allow for a slow machine.
const DEAD_WITHIN: Duration = Duration::from_secs(8);

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

fn assert_has_keys(value: &Value, expected: &[&str], what: &str) {
    let present = keys(value);
    for key in expected {
        assert!(
            present.contains(key),
            "{what} lacks {key:?}; it has {present:?}"
        );
    }
}

/// The RPC port in a worker id `worker-<timestamp>-<host>-<port>`.
fn port_of(worker_id: &str) -> u64 {
    worker_id.rsplit('-').next().unwrap().parse().unwrap()
}

// Spark parity: JsonProtocol.writeMasterState / writeWorkerInfo / writeWorkerState, MasterPage.
#[test]
fn workers_register_and_both_web_uis_show_them() {
    let dir = TempDir::new("register");
    let master = Master::start(&dir, "master", &[]);
    let w1 = Worker::start(&dir, "worker1", &master.url, &[]).registered();
    let w2 = Worker::start(&dir, "worker2", &master.url, &["-c", "2", "-m", "768m"]).registered();

    let json = master.json();
    assert_has_keys(
        &json,
        &[
            "url",
            "workers",
            "aliveworkers",
            "cores",
            "coresused",
            "memory",
            "memoryused",
            "activeapps",
            "completedapps",
            "activedrivers",
            "completeddrivers",
            "status",
        ],
        "master /json/",
    );
    assert_eq!(json["url"], master.url.as_str());
    assert_eq!(json["status"], "ALIVE");
    assert_eq!(json["aliveworkers"], 2);
    assert_eq!(
        (json["cores"].as_u64(), json["coresused"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(
        (json["memory"].as_u64(), json["memoryused"].as_u64()),
        (Some(512 + 768), Some(0))
    );
    for list in [
        "activeapps",
        "completedapps",
        "activedrivers",
        "completeddrivers",
    ] {
        assert_eq!(json[list], Value::Array(vec![]), "{list}");
    }
    let workers = json["workers"].as_array().expect("workers is a list");
    assert_eq!(workers.len(), 2, "{json:#}");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for (worker, cores, memory) in [(&w1, 1, 512), (&w2, 2, 768)] {
        let info = workers
            .iter()
            .find(|w| w["id"] == worker.id.as_str())
            .unwrap_or_else(|| panic!("{} not in {json:#}", worker.id));
        assert_has_keys(
            info,
            &[
                "id",
                "host",
                "port",
                "webuiaddress",
                "cores",
                "coresused",
                "coresfree",
                "memory",
                "memoryused",
                "memoryfree",
                "state",
                "lastheartbeat",
            ],
            "a worker of master /json/",
        );
        assert_eq!(info["host"], "127.0.0.1");
        assert_eq!(info["port"].as_u64(), Some(port_of(&worker.id)));
        assert_eq!(info["webuiaddress"], worker.web_ui.as_str());
        assert_eq!(info["cores"], cores);
        assert_eq!(
            (info["coresused"].as_u64(), info["coresfree"].as_u64()),
            (Some(0), Some(cores))
        );
        assert_eq!(info["memory"], memory);
        assert_eq!(
            (info["memoryused"].as_u64(), info["memoryfree"].as_u64()),
            (Some(0), Some(memory))
        );
        assert_eq!(info["state"], "ALIVE");
        let heartbeat = info["lastheartbeat"].as_u64().expect("lastheartbeat in ms");
        assert!(
            heartbeat.abs_diff(now_ms) < 60_000,
            "lastheartbeat {heartbeat} is not near now ({now_ms})"
        );

        let own = worker.json();
        assert_has_keys(
            &own,
            &[
                "id",
                "masterurl",
                "masterwebuiurl",
                "cores",
                "coresused",
                "memory",
                "memoryused",
                "executors",
                "finishedexecutors",
            ],
            "worker /json/",
        );
        assert_eq!(own["id"], worker.id.as_str());
        assert_eq!(own["masterurl"], master.url.as_str());
        assert_eq!(own["masterwebuiurl"], master.web_ui.as_str());
        assert_eq!(
            (own["cores"].as_u64(), own["coresused"].as_u64()),
            (Some(cores), Some(0))
        );
        assert_eq!(
            (own["memory"].as_u64(), own["memoryused"].as_u64()),
            (Some(memory), Some(0))
        );
        assert_eq!(own["executors"], Value::Array(vec![]));
        assert_eq!(own["finishedexecutors"], Value::Array(vec![]));

        let page = http_get(&format!("{}/", worker.web_ui)).unwrap();
        assert_eq!(page.status, 200, "worker page: {}", page.body);
        assert!(page.body.contains(&worker.id), "worker page lacks its id");
    }

    // A single field, as Spark's /json/<field>.
    let alive = support::get_json(&format!("{}/json/aliveworkers", master.web_ui));
    assert_eq!(alive, serde_json::json!({ "aliveworkers": 2 }));

    let page = http_get(&format!("{}/", master.web_ui)).unwrap();
    assert_eq!(page.status, 200, "master page: {}", page.body);
    for worker in [&w1, &w2] {
        assert!(
            page.body.contains(&worker.id),
            "master page lacks {}",
            worker.id
        );
    }
}

/// The master's log line removing worker `id` (`removing worker worker_id=… reason=…`).
fn removal_line(master: &Master, id: &str) -> String {
    let log = master.proc.log();
    let needle = format!("worker_id={id}");
    log.lines()
        .find(|l| l.contains("removing worker") && l.contains(&needle))
        .unwrap_or_else(|| panic!("the master did not log removing {id}:\n{log}"))
        .to_owned()
}

// Spark parity: Master.onDisconnected. A SIGKILLed worker's connection closes at once, so the
// master removes it for the disconnect, well before ember.worker.timeout could expire; the
// timeout path is what `stopped_worker_times_out_and_comes_back_after_sigcont` exercises.
#[test]
fn killed_worker_is_dead() {
    let dir = TempDir::new("sigkill");
    let master = Master::start(&dir, "master", &["--conf", TIMEOUT]);
    let mut worker = Worker::start(&dir, "worker", &master.url, &["--conf", TIMEOUT]).registered();
    master.await_worker_state(&worker.id, "ALIVE", DEADLINE);

    worker.proc.signal(Signal::SIGKILL);
    worker.proc.wait_exit();
    master.await_worker_state(&worker.id, "DEAD", DEAD_WITHIN);
    assert_eq!(master.json()["aliveworkers"], 0);
    let line = removal_line(&master, &worker.id);
    assert!(line.contains("got disassociated"), "{line}");
}

// Spark parity: Master.timeOutDeadWorkers, then the Heartbeat of a DEAD worker answered with
// ReconnectWorker, and Worker.reregisterWithMaster.
#[test]
fn stopped_worker_times_out_and_comes_back_after_sigcont() {
    let dir = TempDir::new("sigstop");
    let master = Master::start(&dir, "master", &["--conf", TIMEOUT]);
    let mut worker = Worker::start(&dir, "worker", &master.url, &["--conf", TIMEOUT]).registered();
    let pid = worker.proc.pid();
    master.await_worker_state(&worker.id, "ALIVE", DEADLINE);

    // Stopped, the worker keeps its connection open but sends no heartbeat: nothing tells the
    // master it is gone, so it stays ALIVE until the timeout expires.
    let stopped_at = std::time::Instant::now();
    worker.proc.signal(Signal::SIGSTOP);
    assert_eq!(
        master.worker_state(&worker.id).as_deref(),
        Some("ALIVE"),
        "a stopped worker is ALIVE until ember.worker.timeout expires"
    );
    master.await_worker_state(&worker.id, "DEAD", DEAD_WITHIN);
    // The last heartbeat came at most timeout/4 before the stop: DEAD no sooner than 1.5 s.
    let silent = stopped_at.elapsed();
    assert!(
        silent >= Duration::from_millis(1400),
        "DEAD after {silent:?}, before ember.worker.timeout could expire"
    );
    let line = removal_line(&master, &worker.id);
    assert!(
        line.contains("Not receiving heartbeat for 2 seconds"),
        "DEAD through the timeout, not a disconnect: {line}"
    );
    assert!(
        worker.proc.is_running(),
        "the stopped worker should still exist"
    );

    worker.proc.signal(Signal::SIGCONT);
    master.await_worker_state(&worker.id, "ALIVE", DEADLINE);
    assert_eq!(worker.proc.pid(), pid);
    let log = worker.proc.log();
    assert!(
        log.contains("master asks this worker to register again"),
        "the worker should have been told to reconnect:\n{log}"
    );
    assert_eq!(
        log.matches("successfully registered with master").count(),
        2,
        "one registration at start, one after ReconnectWorker:\n{log}"
    );
    let json = master.json();
    assert_eq!(json["aliveworkers"], 1, "{json:#}");
    assert_eq!(
        json["workers"].as_array().unwrap().len(),
        1,
        "the DEAD entry is replaced: {json:#}"
    );
}

// A worker stopped for longer than its DEAD entry is kept ((ember.dead.worker.persistence + 1)
// timeouts) is forgotten by the master; once it runs again, its heartbeats name an id the master
// does not know, which is answered with ReconnectWorker (Spark would ignore them), and it
// registers again.
#[test]
fn worker_forgotten_by_the_master_registers_again_after_sigcont() {
    let dir = TempDir::new("forgotten");
    let master = Master::start(
        &dir,
        "master",
        &[
            "--conf",
            TIMEOUT,
            "--conf",
            "ember.dead.worker.persistence=1",
        ],
    );
    let worker = Worker::start(&dir, "worker", &master.url, &["--conf", TIMEOUT]).registered();
    master.await_worker_state(&worker.id, "ALIVE", DEADLINE);

    worker.proc.signal(Signal::SIGSTOP);
    master.await_worker_state(&worker.id, "DEAD", DEAD_WITHIN);
    // Listed as DEAD for (1 + 1) timeouts after its last heartbeat, then dropped.
    support::eventually(DEAD_WITHIN, "the DEAD worker to be forgotten", || {
        master.worker_state(&worker.id).is_none().then_some(())
    });
    assert_eq!(master.json()["workers"], Value::Array(vec![]));

    worker.proc.signal(Signal::SIGCONT);
    master.await_worker_state(&worker.id, "ALIVE", DEADLINE);
    let master_log = master.proc.log();
    assert!(
        master_log.lines().any(|l| {
            l.contains("got heartbeat from unregistered worker") && l.contains(&worker.id)
        }),
        "{master_log}"
    );
    let log = worker.proc.log();
    assert!(
        log.contains("master asks this worker to register again"),
        "{log}"
    );
    assert_eq!(
        log.matches("successfully registered with master").count(),
        2,
        "one registration at start, one after ReconnectWorker:\n{log}"
    );
    assert_eq!(master.json()["aliveworkers"], 1);
}

/// A stand-in worker endpoint that passes on whatever it receives.
struct Recorder(mpsc::Sender<WorkerMessage>);

impl RpcEndpoint for Recorder {
    type Message = WorkerMessage;

    async fn receive(
        &mut self,
        _ctx: &EndpointContext<WorkerMessage>,
        message: WorkerMessage,
    ) -> HandlerResult {
        let _ = self.0.send(message);
        Ok(())
    }
}

fn test_env(rt: &tokio::runtime::Runtime, name: &str) -> RpcEnv {
    let config = RpcEnvConfig::from_conf(name, "127.0.0.1", 0, &EmberConf::new()).unwrap();
    rt.block_on(RpcEnv::create(config))
        .expect("an RpcEnv for the test")
}

fn rpc_address(url: &str) -> RpcAddress {
    RpcAddress::parse_master_urls(url).unwrap().remove(0)
}

// Spark parity: Master.handleRegisterWorker; Ember refuses a live id from another address.
//
// The claimant is an RpcEnv of the test rather than a second `ember worker` process: a worker's
// id is `worker-<start time>-<host>-<RPC port>` and neither the command line nor the
// configuration can set it, so two worker processes cannot claim one id (the second could not
// bind the first one's host and port).
#[test]
fn a_second_worker_claiming_a_live_id_is_refused() {
    let dir = TempDir::new("duplicate");
    let master = Master::start(&dir, "master", &[]);
    let worker = Worker::start(&dir, "worker", &master.url, &[]).registered();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let _context = rt.enter();
    let env = test_env(&rt, "impostor");
    let (tx, rx) = mpsc::channel();
    let me = rt
        .block_on(env.setup_endpoint(WORKER_ENDPOINT, Recorder(tx)))
        .unwrap();
    let master_address = rpc_address(&master.url);
    let master_ref = env.endpoint_ref::<MasterMessage>(master_address.clone(), MASTER_ENDPOINT);
    master_ref
        .send(WorkerToMaster::RegisterWorker {
            id: WorkerId::from(worker.id.as_str()),
            host: "127.0.0.1".to_owned(),
            port: env.address().port,
            worker: me,
            cores: 64,
            memory_mb: 65536,
            web_ui_url: "http://127.0.0.1:1".to_owned(),
            master_address,
        })
        .map_err(|e| e.error)
        .unwrap();

    match rx
        .recv_timeout(DEADLINE)
        .expect("an answer to the registration")
    {
        WorkerMessage::Master(MasterToWorker::RegisterWorkerFailed { message }) => {
            assert_eq!(message, "Duplicate worker ID");
        }
        other => panic!("expected RegisterWorkerFailed, got {other:?}"),
    }
    // The real worker keeps its record.
    let json = master.json();
    assert_eq!(json["workers"].as_array().unwrap().len(), 1, "{json:#}");
    assert_eq!(json["workers"][0]["state"], "ALIVE");
    assert_eq!(json["workers"][0]["cores"], 1);
    assert_eq!(json["workers"][0]["webuiaddress"], worker.web_ui.as_str());
    rt.block_on(env.shutdown());
}

#[test]
fn sigterm_stops_worker_and_master_cleanly() {
    let dir = TempDir::new("sigterm");
    let mut master = Master::start(&dir, "master", &["--conf", TIMEOUT]);
    let mut worker = Worker::start(&dir, "worker", &master.url, &["--conf", TIMEOUT]).registered();

    worker.proc.signal(Signal::SIGTERM);
    let status = worker.proc.wait_exit();
    assert!(
        status.success(),
        "worker exited with {status}:\n{}",
        worker.proc.log()
    );
    assert!(worker.proc.log().contains("received a stop signal"));
    master.await_worker_state(&worker.id, "DEAD", DEAD_WITHIN);

    master.proc.signal(Signal::SIGTERM);
    let status = master.proc.wait_exit();
    assert!(
        status.success(),
        "master exited with {status}:\n{}",
        master.proc.log()
    );
    assert!(master.proc.log().contains("master stopped"));
}

// Spark parity: Worker.registerWithMaster's bounded retries, then System.exit(1).
#[test]
fn worker_without_a_master_gives_up_and_names_it() {
    let dir = TempDir::new("no-master");
    // Nothing listens on these ports (they were free a moment ago): connections are refused.
    let (p1, p2) = (free_port(), free_port());
    let masters = format!("ember://127.0.0.1:{p1},127.0.0.1:{p2}");
    let mut worker = Worker::start(
        &dir,
        "worker",
        &masters,
        &[
            "--conf",
            "ember.worker.registration.initialInterval=100ms",
            "--conf",
            "ember.worker.initialRegistrationRetries=2",
            "--conf",
            "ember.worker.maxRegistrationRetries=3",
            "--conf",
            "ember.worker.registration.prolongedInterval=200ms",
        ],
    );
    let status = worker.proc.wait_exit();
    let log = worker.proc.log();
    assert!(
        !status.success(),
        "worker should fail, exited with {status}:\n{log}"
    );
    assert_eq!(status.code(), Some(1), "{log}");
    let error = log
        .lines()
        .find(|l| l.starts_with("ember: error:"))
        .unwrap_or_else(|| panic!("no error line:\n{log}"));
    assert!(error.contains("giving up"), "{error}");
    for port in [p1, p2] {
        assert!(
            error.contains(&format!("ember://127.0.0.1:{port}")),
            "the error should name master port {port}: {error}"
        );
    }
    assert!(!log.contains("panicked"), "{log}");
}

/// Bytes that are no Ember handshake nor frame.
fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn garbage_from_a_peer_does_not_disturb_the_master() {
    let dir = TempDir::new("garbage");
    let mut master = Master::start(&dir, "master", &["--conf", "ember.rpc.connect.timeout=1s"]);
    let first = Worker::start(&dir, "worker1", &master.url, &[]).registered();
    let address = format!("127.0.0.1:{}", master.port());

    // Raw TCP: random bytes; a length prefix far over any frame limit; the start of a handshake
    // frame and then nothing (the master must give up on it after ember.rpc.connect.timeout).
    let mut raw_peers = Vec::new();
    for bytes in [
        garbage(4096, 0x5eed),
        [&[0xff, 0xff, 0xff, 0xff][..], &garbage(64, 7)].concat(),
        [&[0, 0, 0, 32][..], b"EMBR"].concat(),
    ] {
        let mut raw = TcpStream::connect(&address).unwrap();
        raw.write_all(&bytes).unwrap();
        raw_peers.push(raw);
    }
    // A well-handshaken connection carrying messages the master cannot decode.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _context = rt.enter();
    let env = test_env(&rt, "garbler");
    let master_address = rpc_address(&master.url);
    let wrong = env.endpoint_ref::<(u32, u32, Vec<u8>)>(master_address.clone(), MASTER_ENDPOINT);
    for n in 0..4u32 {
        wrong
            .send((250 + n, u32::MAX, garbage(100, u64::from(n))))
            .map_err(|e| e.error)
            .unwrap();
    }
    let refused = rt.block_on(wrong.ask::<()>((251u32, 0u32, vec![1u8, 2, 3])));
    assert!(
        refused.is_err(),
        "an undecodable ask should fail, not be answered"
    );
    // The same connection still works for a well-formed ask.
    let ok = env.endpoint_ref::<MasterMessage>(master_address, MASTER_ENDPOINT);
    let state: MasterStateResponse = rt
        .block_on(ok.ask(ClientToMaster::RequestMasterState))
        .expect("the master answers after the garbage");
    assert_eq!(state.status, MasterState::Alive);

    // The master hangs up on each raw peer (a read sees EOF or a reset, not a timeout).
    for mut raw in raw_peers {
        raw.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut buf = [0u8; 256];
        loop {
            match raw.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("the master did not close a garbage connection: {e}"),
            }
        }
    }
    assert!(
        master.proc.log().contains("no handshake in time"),
        "{}",
        master.proc.log()
    );

    // Still serving: alive, its UI answers, a new worker registers, the old one stays ALIVE.
    assert!(master.proc.is_running(), "{}", master.proc.log());
    let second = Worker::start(&dir, "worker2", &master.url, &[]).registered();
    wait_until("both workers ALIVE", || {
        let json = master.json();
        json["aliveworkers"] == 2
            && support::worker_state(&json, &first.id).as_deref() == Some("ALIVE")
            && support::worker_state(&json, &second.id).as_deref() == Some("ALIVE")
    });
    let log = master.proc.log();
    assert!(!log.contains("panicked"), "{log}");
    rt.block_on(env.shutdown());
}
