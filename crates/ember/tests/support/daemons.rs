//! `ember master` and `ember worker` processes, and what their web UIs say.

use std::time::Duration;

use serde_json::Value;

use super::{Proc, TempDir, eventually, get_json, log_field};

/// A running `ember master`.
#[derive(Debug)]
pub struct Master {
    /// The process.
    pub proc: Proc,
    /// `ember://127.0.0.1:PORT`.
    pub url: String,
    /// `http://127.0.0.1:PORT`.
    pub web_ui: String,
}

impl Master {
    /// Starts `ember master -h 127.0.0.1 -p 0 --webui-port 0 <extra>` in `dir` and waits until it
    /// listens.
    pub fn start(dir: &TempDir, name: &str, extra: &[&str]) -> Master {
        Master::start_on(dir, name, 0, extra)
    }

    /// [`start`](Self::start) on a given RPC port.
    pub fn start_on(dir: &TempDir, name: &str, port: u16, extra: &[&str]) -> Master {
        let port = port.to_string();
        let mut args = vec![
            "master",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "--webui-port",
            "0",
        ];
        args.extend_from_slice(extra);
        Master::attach(Proc::ember(name, dir.path(), &args, &[]))
    }

    /// Waits for `proc` (an `ember master`) to listen and learns its addresses.
    pub fn attach(mut proc: Proc) -> Master {
        let line = proc.wait_for_line("master listening");
        let url = log_field(&line, "url").expect("url= in the listening line");
        let web_ui = log_field(&line, "web_ui").expect("web_ui= in the listening line");
        Master { proc, url, web_ui }
    }

    /// The RPC port.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the master URL")
    }

    /// `GET /json/`.
    pub fn json(&self) -> Value {
        get_json(&format!("{}/json/", self.web_ui))
    }

    /// The state of worker `id` as `/json/` lists it (`None` if it is not listed).
    pub fn worker_state(&self, id: &str) -> Option<String> {
        worker_state(&self.json(), id)
    }

    /// Waits until `/json/` lists worker `id` in `state`.
    pub fn await_worker_state(&self, id: &str, state: &str, timeout: Duration) {
        eventually(timeout, &format!("worker {id} to be {state}"), || {
            (self.worker_state(id).as_deref() == Some(state)).then_some(())
        });
    }

    /// The ids and states of the applications `/json/` lists under `field` (`activeapps` or
    /// `completedapps`).
    pub fn apps(&self, field: &str) -> Vec<(String, String)> {
        self.json()[field]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|a| {
                (
                    a["id"].as_str().unwrap_or_default().to_owned(),
                    a["state"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

/// The `state` of worker `id` in a master's `/json/`.
pub fn worker_state(json: &Value, id: &str) -> Option<String> {
    json["workers"]
        .as_array()?
        .iter()
        .find(|w| w["id"] == id)
        .and_then(|w| w["state"].as_str())
        .map(str::to_owned)
}

/// A running `ember worker`.
#[derive(Debug)]
pub struct Worker {
    /// The process.
    pub proc: Proc,
    /// Its worker id.
    pub id: String,
    /// `http://127.0.0.1:PORT` of its web UI.
    pub web_ui: String,
}

impl Worker {
    /// Starts `ember worker <master_url> -h 127.0.0.1 -p 0 --webui-port 0 -d <dir>/<name>-work
    /// <extra>` (with `-c 1 -m 512m` unless `extra` sets them) in `dir` and waits until it has
    /// chosen its id (not for registration: see [`registered`](Self::registered)).
    pub fn start(dir: &TempDir, name: &str, master_url: &str, extra: &[&str]) -> Worker {
        let work = dir.join(&format!("{name}-work"));
        let work = work.to_str().expect("a UTF-8 temp path");
        let mut args = vec![
            "worker",
            master_url,
            "-h",
            "127.0.0.1",
            "-p",
            "0",
            "--webui-port",
            "0",
            "-d",
            work,
        ];
        if !extra.contains(&"-c") {
            args.extend(["-c", "1"]);
        }
        if !extra.contains(&"-m") {
            args.extend(["-m", "512m"]);
        }
        args.extend_from_slice(extra);
        Worker::attach(Proc::ember(name, dir.path(), &args, &[]))
    }

    /// Waits for `proc` (an `ember worker`) to choose its id and learns its web UI.
    pub fn attach(mut proc: Proc) -> Worker {
        let line = proc.wait_for_line("worker settings");
        let id = log_field(&line, "worker_id").expect("worker_id= in the settings line");
        let web_ui = log_field(&line, "web_ui").expect("web_ui= in the settings line");
        Worker { proc, id, web_ui }
    }

    /// Waits until it logged its registration with a master.
    pub fn registered(mut self) -> Worker {
        self.proc
            .wait_for_line("successfully registered with master");
        self
    }

    /// `GET /json/` of its web UI.
    pub fn json(&self) -> Value {
        get_json(&format!("{}/json/", self.web_ui))
    }
}
