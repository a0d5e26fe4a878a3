//! `ember master` and `ember worker` as a user meets them: bad input gives a clear message
//! naming what is wrong and a non-zero exit (never a panic), and the configuration sources —
//! properties file, `EMBER_*` variables, flags — are honoured with flags winning.

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use support::{Master, Proc, Signal, TempDir, Worker};

/// Runs `ember <args>` with `envs` in `dir`, expects it to fail by itself, and returns its
/// `ember: error:` line after checking that it did not panic and that the message is not
/// repeated.
fn fails(dir: &TempDir, name: &str, args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut proc = Proc::ember(name, dir.path(), args, envs);
    let status = proc.wait_exit();
    let log = proc.log();
    assert!(
        !status.success(),
        "{name}: expected a failure, got {status}:\n{log}"
    );
    assert!(!log.contains("panicked"), "{name} panicked:\n{log}");
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("ember: error:") || l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{name}: one error line expected:\n{log}");
    let error = errors[0].to_owned();
    // An OS error quoted twice means a cause was printed both inside and after its parent.
    if let Some(at) = error.find("(os error") {
        assert!(
            !error[at + 1..].contains("(os error"),
            "{name}: the cause is repeated: {error}"
        );
    }
    error
}

fn assert_mentions(error: &str, words: &[&str]) {
    for word in words {
        assert!(
            error.to_lowercase().contains(&word.to_lowercase()),
            "{error:?} should mention {word:?}"
        );
    }
}

const MASTER: &[&str] = &["master", "-h", "127.0.0.1", "-p", "0", "--webui-port", "0"];

fn master_with(extra: &[&str]) -> Vec<String> {
    MASTER.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn worker_with(dir: &TempDir, master: &str, extra: &[&str]) -> Vec<String> {
    let work = dir.join("work");
    let mut args: Vec<String> = [
        "worker",
        master,
        "-h",
        "127.0.0.1",
        "-p",
        "0",
        "--webui-port",
        "0",
        "-d",
        work.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn unparsable_master_urls_are_named() {
    let dir = TempDir::new("bad-url");
    for (i, url) in [
        "http://127.0.0.1:7077",
        "ember://127.0.0.1",
        "ember://h:99999",
        "ember://",
    ]
    .into_iter()
    .enumerate()
    {
        let args = worker_with(&dir, url, &[]);
        let error = fails(&dir, &format!("worker{i}"), &strs(&args), &[]);
        assert_mentions(&error, &["master URL", url]);
    }
}

#[test]
fn ports_in_use_are_named() {
    let dir = TempDir::new("port-in-use");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let p = port.as_str();

    let error = fails(
        &dir,
        "master-rpc",
        &["master", "-h", "127.0.0.1", "-p", p, "--webui-port", "0"],
        &[],
    );
    assert_mentions(&error, &["RPC", "ember.master.port", p, "in use"]);

    let error = fails(
        &dir,
        "master-ui",
        &["master", "-h", "127.0.0.1", "-p", "0", "--webui-port", p],
        &[],
    );
    assert_mentions(&error, &["master web UI", p, "in use"]);

    let work = dir.join("work");
    let work = work.to_str().unwrap();
    let worker = |port_flag: &str, ui_flag: &str| {
        vec![
            "worker".to_owned(),
            "ember://127.0.0.1:7077".to_owned(),
            "-h".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port_flag.to_owned(),
            "--webui-port".to_owned(),
            ui_flag.to_owned(),
            "-d".to_owned(),
            work.to_owned(),
        ]
    };
    let error = fails(&dir, "worker-rpc", &strs(&worker(p, "0")), &[]);
    assert_mentions(&error, &["RPC", "ember.worker.port", p, "in use"]);

    let error = fails(&dir, "worker-ui", &strs(&worker("0", p)), &[]);
    assert_mentions(&error, &["worker web UI", p, "in use"]);
    drop(taken);
}

#[test]
fn bad_properties_files_are_named() {
    let dir = TempDir::new("bad-properties");
    let missing = dir.join("no-such.conf");
    let missing = missing.to_str().unwrap();
    let error = fails(
        &dir,
        "missing",
        &strs(&master_with(&["--properties-file", missing])),
        &[],
    );
    assert_mentions(&error, &["properties file", missing]);

    // A directory cannot be read as a file (and, unlike permissions, this holds for root too).
    let unreadable = dir.join("a-directory.conf");
    std::fs::create_dir(&unreadable).unwrap();
    let unreadable = unreadable.to_str().unwrap();
    let error = fails(
        &dir,
        "unreadable",
        &strs(&worker_with(
            &dir,
            "ember://127.0.0.1:7077",
            &["--properties-file", unreadable],
        )),
        &[],
    );
    assert_mentions(&error, &["properties file", unreadable]);

    // A bad value in a readable file: the key, the value and the file are named.
    let bad = dir.join("bad.conf");
    std::fs::write(&bad, "ember.deploy.recoveryMode etcd\n").unwrap();
    let bad = bad.to_str().unwrap();
    let error = fails(
        &dir,
        "bad-value",
        &strs(&master_with(&["--properties-file", bad])),
        &[],
    );
    assert_mentions(&error, &["ember.deploy.recoveryMode", "etcd", bad]);
}

#[test]
fn bad_values_name_their_key() {
    let dir = TempDir::new("bad-values");
    let url = "ember://127.0.0.1:7077";
    let cases: Vec<(&str, Vec<String>, Vec<&str>)> = vec![
        (
            "size",
            worker_with(&dir, url, &["-m", "12x"]),
            vec!["ember.worker.memory", "12x", "--memory"],
        ),
        (
            "worker-duration",
            worker_with(&dir, url, &["--conf", "ember.worker.timeout=abc"]),
            vec!["ember.worker.timeout", "abc"],
        ),
        (
            "master-duration",
            master_with(&["--conf", "ember.worker.timeout=abc"]),
            vec!["ember.worker.timeout", "abc"],
        ),
        (
            "recovery-mode",
            master_with(&["--conf", "ember.deploy.recoveryMode=etcd"]),
            vec!["ember.deploy.recoveryMode", "etcd", "FILESYSTEM"],
        ),
        (
            "recovery-dir",
            master_with(&["--conf", "ember.deploy.recoveryMode=FILESYSTEM"]),
            vec!["ember.deploy.recoveryDirectory", "FILESYSTEM"],
        ),
        (
            "conf-pair",
            master_with(&["--conf", "ember.worker.timeout"]),
            vec!["--conf", "key=value"],
        ),
        (
            "env-cores",
            worker_with(&dir, url, &[]),
            vec!["ember.worker.cores", "EMBER_WORKER_CORES", "lots"],
        ),
    ];
    for (name, args, words) in cases {
        let envs: &[(&str, &str)] = if name == "env-cores" {
            &[("EMBER_WORKER_CORES", "lots")]
        } else {
            &[]
        };
        let error = fails(&dir, name, &strs(&args), envs);
        assert_mentions(&error, &words);
    }
}

#[test]
fn properties_file_is_honoured_and_flags_override_it() {
    let dir = TempDir::new("properties");
    // The properties format: `key value`, `key=value` or `key: value`; '#' comments.
    let master_conf = dir.join("master.conf");
    std::fs::write(&master_conf, "# short timeouts\nember.worker.timeout 1s\n").unwrap();
    let worker_conf = dir.join("worker.conf");
    std::fs::write(
        &worker_conf,
        "ember.worker.timeout=1s\nember.worker.cores: 3\nember.worker.memory 700m\n",
    )
    .unwrap();
    let master = Master::start(
        &dir,
        "master",
        &["--properties-file", master_conf.to_str().unwrap()],
    );
    let mut worker = Worker::attach(Proc::ember(
        "worker",
        dir.path(),
        &strs(&worker_with(
            &dir,
            &master.url,
            &[
                "--properties-file",
                worker_conf.to_str().unwrap(),
                "--conf",
                "ember.worker.memory=600m",
            ],
        )),
        &[],
    ))
    .registered();
    let own = worker.json();
    assert_eq!(
        (own["cores"].as_u64(), own["memory"].as_u64()),
        (Some(3), Some(600))
    );

    // With the default 60 s, a stopped worker would stay ALIVE far longer than this.
    worker.proc.signal(Signal::SIGSTOP);
    master.await_worker_state(&worker.id, "DEAD", Duration::from_secs(8));
    worker.proc.signal(Signal::SIGCONT);
    assert!(worker.proc.is_running());
}

#[test]
fn environment_is_honoured_and_flags_override_it() {
    let dir = TempDir::new("environment");
    // EMBER_MASTER_PORT alone chooses the port.
    let port = support::free_port().to_string();
    let master = Master::attach(Proc::ember(
        "master-env",
        dir.path(),
        &["master", "-h", "127.0.0.1", "--webui-port", "0"],
        &[("EMBER_MASTER_PORT", &port)],
    ));
    assert_eq!(master.url, format!("ember://127.0.0.1:{port}"));

    // `-h`, `-p` and `--webui-port` beat EMBER_MASTER_HOST, EMBER_MASTER_PORT and
    // EMBER_MASTER_WEBUI_PORT (a host that does not resolve, a port in use).
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let other = Master::attach(Proc::ember(
        "master-flag",
        dir.path(),
        MASTER,
        &[
            ("EMBER_MASTER_HOST", "no-such-host.invalid"),
            ("EMBER_MASTER_PORT", &taken_port),
            ("EMBER_MASTER_WEBUI_PORT", &taken_port),
        ],
    ));
    assert!(other.url.starts_with("ember://127.0.0.1:"), "{}", other.url);
    assert_ne!(other.port().to_string(), taken_port);
    assert!(
        !other.web_ui.ends_with(&format!(":{taken_port}")),
        "{}",
        other.web_ui
    );

    // EMBER_WORKER_CORES and EMBER_WORKER_MEMORY, and `-c` over EMBER_WORKER_CORES.
    let env = [("EMBER_WORKER_CORES", "3"), ("EMBER_WORKER_MEMORY", "640m")];
    let from_env = Worker::attach(Proc::ember(
        "worker-env",
        dir.path(),
        &strs(&worker_with(&dir, &master.url, &[])),
        &env,
    ))
    .registered();
    let own = from_env.json();
    assert_eq!(
        (own["cores"].as_u64(), own["memory"].as_u64()),
        (Some(3), Some(640))
    );

    let from_flag = Worker::attach(Proc::ember(
        "worker-flag",
        dir.path(),
        &strs(&worker_with(&dir, &master.url, &["-c", "2"])),
        &env,
    ))
    .registered();
    assert_eq!(from_flag.json()["cores"], 2);
    assert_eq!(from_flag.json()["memory"], 640);

    // EMBER_CONF_DIR/ember-defaults.conf is read when no --properties-file is given; the
    // environment beats it.
    let conf_dir = dir.join("conf");
    std::fs::create_dir(&conf_dir).unwrap();
    std::fs::write(
        conf_dir.join("ember-defaults.conf"),
        "ember.worker.cores 4\nember.worker.memory 900m\n",
    )
    .unwrap();
    let conf_dir = conf_dir.to_str().unwrap();
    let from_defaults = Worker::attach(Proc::ember(
        "worker-defaults",
        dir.path(),
        &strs(&worker_with(&dir, &master.url, &[])),
        &[
            ("EMBER_CONF_DIR", conf_dir),
            ("EMBER_WORKER_MEMORY", "800m"),
        ],
    ))
    .registered();
    let own = from_defaults.json();
    assert_eq!(
        (own["cores"].as_u64(), own["memory"].as_u64()),
        (Some(4), Some(800))
    );
    drop(taken);
}

#[test]
fn master_host_and_web_ui_port_come_from_the_environment() {
    let dir = TempDir::new("master-host-env");
    let ui_port = support::free_port().to_string();
    // No -h and no --webui-port: without the variables the master would advertise this host's
    // name and serve its UI on 8080.
    let master = Master::attach(Proc::ember(
        "master",
        dir.path(),
        &["master", "-p", "0"],
        &[
            ("EMBER_MASTER_HOST", "127.0.0.1"),
            ("EMBER_MASTER_WEBUI_PORT", &ui_port),
        ],
    ));
    assert!(
        master.url.starts_with("ember://127.0.0.1:"),
        "{}",
        master.url
    );
    assert_eq!(master.web_ui, format!("http://127.0.0.1:{ui_port}"));
    let json = master.json();
    assert_eq!(json["url"], master.url.as_str());
    assert_eq!(json["status"], "ALIVE");
}

/// `ember worker <master> -h 127.0.0.1 -p 0 --webui-port 0 -c 1 <extra>`: no work dir and no
/// memory unless `extra` gives them.
fn bare_worker(master: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "worker",
        master,
        "-h",
        "127.0.0.1",
        "-p",
        "0",
        "--webui-port",
        "0",
        "-c",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A registered worker process started in `dir` with [`bare_worker`]'s arguments and `envs`.
fn bare_worker_process(
    dir: &TempDir,
    name: &str,
    master: &str,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Worker {
    Worker::attach(Proc::ember(
        name,
        dir.path(),
        &strs(&bare_worker(master, extra)),
        envs,
    ))
    .registered()
}

/// The work dir a worker logged in its settings line.
fn logged_work_dir(worker: &Worker) -> PathBuf {
    let log = worker.proc.log();
    let line = log
        .lines()
        .find(|l| l.contains("worker settings"))
        .unwrap_or_else(|| panic!("no settings line:\n{log}"));
    PathBuf::from(support::log_field(line, "work_dir").expect("work_dir= in the settings line"))
}

#[test]
fn work_dir_comes_from_the_long_flag_or_ember_worker_dir() {
    let dir = TempDir::new("work-dir");
    let master = Master::start(&dir, "master", &[]);
    let from_flag = dir.join("from-flag");
    let flag = bare_worker_process(
        &dir,
        "worker-flag",
        &master.url,
        &["-m", "512m", "--work-dir", from_flag.to_str().unwrap()],
        &[],
    );
    assert_eq!(logged_work_dir(&flag), from_flag);
    assert!(from_flag.is_dir(), "the worker creates its work dir");

    let from_env = dir.join("from-env");
    let env = bare_worker_process(
        &dir,
        "worker-env",
        &master.url,
        &["-m", "512m"],
        &[("EMBER_WORKER_DIR", from_env.to_str().unwrap())],
    );
    assert_eq!(logged_work_dir(&env), from_env);
    assert!(from_env.is_dir());

    // The flag beats the variable.
    let beaten = dir.join("beaten");
    let both = bare_worker_process(
        &dir,
        "worker-both",
        &master.url,
        &["-m", "512m", "--work-dir", from_flag.to_str().unwrap()],
        &[("EMBER_WORKER_DIR", beaten.to_str().unwrap())],
    );
    assert_eq!(logged_work_dir(&both), from_flag);
    assert!(!beaten.exists());

    // Neither: ./work in the directory it was started in.
    let neither = bare_worker_process(&dir, "worker-default", &master.url, &["-m", "512m"], &[]);
    assert_eq!(
        logged_work_dir(&neither).canonicalize().unwrap(),
        dir.join("work").canonicalize().unwrap()
    );
    assert!(dir.join("work").is_dir());
}

/// Spark's default worker memory from `/proc/meminfo`: total RAM minus 1 GiB, at least 1 GiB,
/// in MiB.
fn default_worker_memory_mb() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no MemTotal in /proc/meminfo:\n{meminfo}"));
    (total_kib / 1024).saturating_sub(1024).max(1024)
}

#[test]
fn worker_memory_defaults_to_total_ram_minus_one_gib() {
    let dir = TempDir::new("memory-default");
    let master = Master::start(&dir, "master", &[]);
    let work = dir.join("work");
    let worker = bare_worker_process(
        &dir,
        "worker",
        &master.url,
        &["--work-dir", work.to_str().unwrap()],
        &[],
    );
    let expected = default_worker_memory_mb();
    assert_eq!(worker.json()["memory"].as_u64(), Some(expected));
    let json = master.json();
    assert_eq!(json["workers"][0]["memory"].as_u64(), Some(expected));
}
