//! The `sbin/` scripts start and stop a local cluster: `start-all.sh` starts a master and, for the
//! `localhost` line of `conf/workers`, `EMBER_WORKER_INSTANCES` workers; `ember-daemon.sh` keeps
//! pid files, refuses a second start, reports status and rotates logs; `stop-all.sh` stops it all.
//!
//! Everything lives in a temp dir (conf, pids, logs, work) and on 127.0.0.1. A fake `ssh` that
//! records its arguments (and runs nothing) is put first on `PATH`: local hosts must be run
//! directly, other hosts get the right command over ssh. A guard runs `stop-all.sh` and then
//! SIGKILLs every pid the scripts recorded, whatever happened.

mod support;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{DEADLINE, TempDir, hermetic, process_gone, wait_until};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Two consecutive free ports (worker instance i takes the web UI port + i - 1).
fn free_port_pair() -> u16 {
    support::eventually(DEADLINE, "two consecutive free ports", || {
        let first = TcpListener::bind("127.0.0.1:0").ok()?;
        let port = first.local_addr().ok()?.port();
        let second = TcpListener::bind(("127.0.0.1", port.checked_add(1)?)).ok()?;
        drop((first, second));
        Some(port)
    })
}

/// A local cluster run by the sbin scripts, stopped and killed on drop.
struct ScriptCluster {
    dir: TempDir,
    env: Vec<(String, String)>,
    /// Every daemon pid seen in a pid file.
    pids: BTreeSet<u32>,
    master_web_ui: String,
}

impl ScriptCluster {
    /// A cluster whose `conf/workers` is `workers`.
    fn new(workers: &str) -> ScriptCluster {
        let dir = TempDir::new("sbin");
        for sub in ["conf", "pids", "logs", "work", "bin", "ssh-calls"] {
            std::fs::create_dir(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("conf/workers"), workers).unwrap();
        // Each call writes its arguments, one per line, to a file of its own (calls run in
        // parallel).
        let fake_ssh = dir.join("bin/ssh");
        std::fs::write(
            &fake_ssh,
            format!(
                "#!/bin/sh\nfor arg in \"$@\"; do printf '%s\\n' \"$arg\"; done > '{}/'$$\n",
                dir.join("ssh-calls").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake_ssh, std::fs::Permissions::from_mode(0o755)).unwrap();

        let master_port = support::free_port();
        let master_ui_port = support::free_port();
        let worker_ui_port = free_port_pair();
        let path = format!(
            "{}:{}",
            dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let d = |sub: &str| dir.join(sub).to_str().unwrap().to_owned();
        let env: Vec<(String, String)> = [
            ("PATH", path),
            ("EMBER_HOME", repo_root().to_str().unwrap().to_owned()),
            (
                "EMBER_BIN",
                support::ember_bin().to_str().unwrap().to_owned(),
            ),
            ("EMBER_CONF_DIR", d("conf")),
            ("EMBER_PID_DIR", d("pids")),
            ("EMBER_LOG_DIR", d("logs")),
            ("EMBER_WORKER_DIR", d("work")),
            ("EMBER_IDENT_STRING", "test".to_owned()),
            ("EMBER_MASTER_HOST", "127.0.0.1".to_owned()),
            ("EMBER_WORKER_HOST", "127.0.0.1".to_owned()),
            ("EMBER_MASTER_PORT", master_port.to_string()),
            ("EMBER_MASTER_WEBUI_PORT", master_ui_port.to_string()),
            ("EMBER_WORKER_WEBUI_PORT", worker_ui_port.to_string()),
            ("EMBER_WORKER_INSTANCES", "2".to_owned()),
            ("EMBER_WORKER_CORES", "1".to_owned()),
            ("EMBER_WORKER_MEMORY", "1g".to_owned()),
            ("EMBER_LOG_MAX_FILES", "1".to_owned()),
            ("EMBER_STOP_TIMEOUT", "10".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        ScriptCluster {
            dir,
            env,
            pids: BTreeSet::new(),
            master_web_ui: format!("http://127.0.0.1:{master_ui_port}"),
        }
    }

    fn env(&self, key: &str) -> &str {
        &self.env.iter().find(|(k, _)| k == key).unwrap().1
    }

    /// Runs `sbin/<script> <args>` with `extra` environment and returns its output.
    fn run(&mut self, script: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut command = Command::new(repo_root().join("sbin").join(script));
        hermetic(&mut command)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .current_dir(self.dir.path());
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("run {script}: {e}"));
        self.record_pids();
        output
    }

    /// Like [`run`](Self::run), expecting success.
    fn ok(&mut self, script: &str, args: &[&str]) -> String {
        let output = self.run(script, args, &[]);
        let text = describe(&output);
        assert!(output.status.success(), "{script} {args:?} failed: {text}");
        text
    }

    fn pid_file(&self, role: &str, instance: u32) -> PathBuf {
        self.dir
            .join(&format!("pids/ember-test-{role}-{instance}.pid"))
    }

    fn log_file(&self, role: &str, instance: u32) -> PathBuf {
        let host = Command::new("hostname").output().unwrap();
        let host = String::from_utf8_lossy(&host.stdout).trim().to_owned();
        self.dir
            .join(&format!("logs/ember-test-{role}-{instance}-{host}.out"))
    }

    fn pid(&self, role: &str, instance: u32) -> u32 {
        let text = std::fs::read_to_string(self.pid_file(role, instance))
            .unwrap_or_else(|e| panic!("pid file of {role} {instance}: {e}"));
        text.trim().parse().unwrap()
    }

    fn record_pids(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.dir.join("pids")) {
            for entry in entries.flatten() {
                if let Ok(text) = std::fs::read_to_string(entry.path())
                    && let Ok(pid) = text.trim().parse()
                {
                    self.pids.insert(pid);
                }
            }
        }
    }

    fn status(&mut self, role: &str, instance: &str) -> Option<i32> {
        self.run("ember-daemon.sh", &["status", role, instance], &[])
            .status
            .code()
    }

    /// The arguments of every `ssh` call so far, sorted.
    fn ssh_calls(&self) -> Vec<Vec<String>> {
        let mut calls: Vec<Vec<String>> = std::fs::read_dir(self.dir.join("ssh-calls"))
            .unwrap()
            .flatten()
            .map(|entry| {
                std::fs::read_to_string(entry.path())
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect()
            })
            .collect();
        calls.sort();
        calls
    }

    fn master_json(&self) -> Option<serde_json::Value> {
        let response = support::http_get(&format!("{}/json/", self.master_web_ui)).ok()?;
        serde_json::from_str(&response.body).ok()
    }
}

impl Drop for ScriptCluster {
    fn drop(&mut self) {
        let _ = self.run("stop-all.sh", &[], &[("EMBER_STOP_TIMEOUT", "3")]);
        for &pid in &self.pids {
            if !process_gone(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if std::thread::panicking()
            && let Ok(entries) = std::fs::read_dir(self.dir.join("logs"))
        {
            for entry in entries.flatten() {
                eprintln!(
                    "----- {} -----\n{}",
                    entry.path().display(),
                    std::fs::read_to_string(entry.path()).unwrap_or_default()
                );
            }
        }
    }
}

fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// Spark parity: sbin/start-all.sh, stop-all.sh, spark-daemon.sh (pid files, status codes, the
// "running as process" refusal, log rotation).
#[test]
fn start_all_and_stop_all_run_a_local_cluster() {
    let mut cluster = ScriptCluster::new("# the test machine\nlocalhost\n");

    let started = cluster.ok("start-all.sh", &[]);
    assert!(started.contains("starting master"), "{started}");

    wait_until("2 ALIVE workers in the master's JSON", || {
        cluster.master_json().is_some_and(|json| {
            json["aliveworkers"] == 2
                && json["workers"]
                    .as_array()
                    .is_some_and(|ws| ws.iter().all(|w| w["state"] == "ALIVE"))
        })
    });
    let json = cluster.master_json().unwrap();
    assert_eq!(
        json["url"],
        format!("ember://127.0.0.1:{}", cluster.env("EMBER_MASTER_PORT"))
    );
    let ui_port: u16 = cluster.env("EMBER_WORKER_WEBUI_PORT").parse().unwrap();
    let mut ui_addresses: Vec<String> = json["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            assert_eq!(
                (w["cores"].as_u64(), w["memory"].as_u64()),
                (Some(1), Some(1024))
            );
            w["webuiaddress"].as_str().unwrap().to_owned()
        })
        .collect();
    ui_addresses.sort();
    assert_eq!(
        ui_addresses,
        [
            format!("http://127.0.0.1:{ui_port}"),
            format!("http://127.0.0.1:{}", ui_port + 1)
        ]
    );

    for (role, instance) in [("master", "1"), ("worker", "1"), ("worker", "2")] {
        assert_eq!(
            cluster.status(role, instance),
            Some(0),
            "{role} {instance} status"
        );
    }
    let master_pid = cluster.pid("master", 1);
    let daemon_pids = [
        master_pid,
        cluster.pid("worker", 1),
        cluster.pid("worker", 2),
    ];

    // A second master is refused while the first runs.
    let again = cluster.run("start-master.sh", &[], &[]);
    let text = describe(&again);
    assert!(!again.status.success(), "{text}");
    assert!(
        text.contains(&format!("running as process {master_pid}")),
        "{text}"
    );
    assert_eq!(cluster.pid("master", 1), master_pid);

    // Logs: the launch command, then the daemon's own lines.
    let master_log = std::fs::read_to_string(cluster.log_file("master", 1)).unwrap();
    assert!(master_log.contains("Ember command:"), "{master_log}");
    assert!(master_log.contains("master listening"), "{master_log}");
    for instance in [1, 2] {
        let log = std::fs::read_to_string(cluster.log_file("worker", instance)).unwrap();
        assert!(log.contains("successfully registered"), "{log}");
    }

    // A daemon that died without the scripts: its pid file stays, and status says so (exit 1)
    // as soon as the process is gone, even while it is an unreaped zombie.
    let dead_pid = daemon_pids[2];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dead_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("the killed worker to be gone", || process_gone(dead_pid));
    assert_eq!(
        cluster.status("worker", "2"),
        Some(1),
        "status of a dead worker"
    );

    let stopped = cluster.ok("stop-all.sh", &[]);
    assert!(stopped.contains("no worker to stop"), "{stopped}");
    assert!(stopped.contains("stopping master"), "{stopped}");
    for pid in daemon_pids {
        wait_until(&format!("daemon {pid} to be gone"), || process_gone(pid));
    }
    let pid_files: Vec<_> = std::fs::read_dir(cluster.dir.join("pids"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(pid_files.is_empty(), "pid files left: {pid_files:?}");
    for (role, instance) in [("master", "1"), ("worker", "1"), ("worker", "2")] {
        assert_eq!(
            cluster.status(role, instance),
            Some(2),
            "{role} {instance} status"
        );
    }
    let text = cluster.ok("stop-master.sh", &[]);
    assert!(text.contains("no master to stop"), "{text}");

    // Restarting rotates the log: EMBER_LOG_MAX_FILES=1 keeps one old generation.
    let log = cluster.log_file("master", 1);
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", log.display()));
    for generation in 1..=2 {
        let marker = format!("end of generation {generation}");
        std::fs::write(
            &log,
            format!("{}{marker}\n", std::fs::read_to_string(&log).unwrap()),
        )
        .unwrap();
        cluster.ok("start-master.sh", &[]);
        let current = std::fs::read_to_string(&log).unwrap();
        assert!(!current.contains(&marker), "{current}");
        let previous = std::fs::read_to_string(rotated(1)).unwrap();
        assert!(previous.contains(&marker), "{previous}");
        assert!(
            !rotated(2).exists(),
            "EMBER_LOG_MAX_FILES=1 keeps one rotated log"
        );
        cluster.ok("stop-master.sh", &[]);
    }

    // A non-positive EMBER_LOG_MAX_FILES is refused before anything starts.
    let refused = cluster.run("start-master.sh", &[], &[("EMBER_LOG_MAX_FILES", "0")]);
    let text = describe(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains("EMBER_LOG_MAX_FILES"), "{text}");
    assert!(!cluster.pid_file("master", 1).exists(), "{text}");

    // A daemon that fails at start (its port is taken) is reported, with its log, and leaves no
    // pid file.
    let taken =
        TcpListener::bind(format!("127.0.0.1:{}", cluster.env("EMBER_MASTER_PORT"))).unwrap();
    let failed = cluster.run("start-master.sh", &[], &[]);
    let text = describe(&failed);
    assert!(!failed.status.success(), "{text}");
    assert!(text.contains("failed to launch"), "{text}");
    assert!(text.contains("Address already in use"), "{text}");
    assert!(!cluster.pid_file("master", 1).exists(), "{text}");
    drop(taken);

    assert_eq!(
        cluster.ssh_calls(),
        Vec::<Vec<String>>::new(),
        "ssh was used for localhost"
    );
}

// Spark parity: sbin/workers.sh, start-workers.sh, stop-workers.sh.
#[test]
fn start_and_stop_workers_ssh_to_other_hosts_only() {
    let mut cluster = ScriptCluster::new(
        "localhost\n# a comment\nworker-a.example  # trailing comment\n\n  worker-b.example\n",
    );
    let one = [("EMBER_WORKER_INSTANCES", "1")];
    let started = cluster.run("start-workers.sh", &[], &one);
    assert!(started.status.success(), "{}", describe(&started));
    // localhost runs start-worker.sh itself: its worker is up (registering with no master).
    assert_eq!(cluster.status("worker", "1"), Some(0));
    let home = repo_root();
    let sbin = home.join("sbin");
    let remote = |host: &str, command: String| {
        vec![
            "-o".to_owned(),
            "StrictHostKeyChecking=no".to_owned(),
            host.to_owned(),
            command,
        ]
    };
    // ssh joins its command arguments with spaces for the remote shell, so the call is exactly
    // what start-workers.sh asks workers.sh to run on each host.
    let start = format!(
        "cd {} ; {}/start-worker.sh ember://127.0.0.1:{}",
        home.display(),
        sbin.display(),
        cluster.env("EMBER_MASTER_PORT")
    );
    let joined = |calls: Vec<Vec<String>>| -> Vec<Vec<String>> {
        calls
            .into_iter()
            .map(|call| {
                let (options, command) = call.split_at(3.min(call.len()));
                let mut joined = options.to_vec();
                joined.push(command.join(" "));
                joined
            })
            .collect()
    };
    assert_eq!(
        joined(cluster.ssh_calls()),
        [
            remote("worker-a.example", start.clone()),
            remote("worker-b.example", start.clone())
        ]
    );
    let text = describe(&started);
    assert!(!text.contains("localhost: ssh"), "{text}");

    let stopped = cluster.run("stop-workers.sh", &[], &one);
    let text = describe(&stopped);
    assert!(stopped.status.success(), "{text}");
    assert!(text.contains("localhost: stopping worker"), "{text}");
    assert_eq!(cluster.status("worker", "1"), Some(2));
    let stop = format!("cd {} ; {}/stop-worker.sh", home.display(), sbin.display());
    let calls = joined(cluster.ssh_calls());
    for host in ["worker-a.example", "worker-b.example"] {
        assert!(calls.contains(&remote(host, stop.clone())), "{calls:?}");
    }
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(
        calls.iter().all(|c| c[2] != "localhost"),
        "localhost went through ssh: {calls:?}"
    );
}
