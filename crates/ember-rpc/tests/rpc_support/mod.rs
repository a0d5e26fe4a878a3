//! Shared by the RPC tests: a recording endpoint, RpcEnv set-up on 127.0.0.1:0, and polling
//! with a deadline.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember_rpc::{
    EndpointContext, EndpointRef, HandlerResult, RpcAddress, RpcCallContext, RpcEndpoint, RpcEnv,
    RpcEnvConfig, RpcError,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub enum Msg {
    Push(u64),
    Echo(String),
    Log,
    Park,
    Release(String),
    Panic,
    Fail,
    Ignore,
    Blob(Vec<u8>),
    /// Reply to the carried ref with `Push(n)`.
    CallBack(EndpointRef<Msg>, u64),
    /// Ask → the connection events seen so far.
    Events,
}

/// Logs pushed numbers and connection events, parks requests until released.
#[derive(Default)]
pub struct Recorder {
    pub log: Vec<u64>,
    pub parked: Vec<RpcCallContext>,
    pub events: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn event(&self, event: String) {
        self.events.lock().unwrap().push(event);
    }
}

impl RpcEndpoint for Recorder {
    type Message = Msg;

    async fn receive(&mut self, _ctx: &EndpointContext<Msg>, msg: Msg) -> HandlerResult {
        match msg {
            Msg::Push(n) => self.log.push(n),
            Msg::CallBack(target, n) => {
                target.send(Msg::Push(n))?;
            }
            Msg::Release(text) => {
                for call in self.parked.drain(..) {
                    call.reply(text.clone());
                }
            }
            Msg::Panic => panic!("boom in receive"),
            _ => {}
        }
        Ok(())
    }

    async fn receive_and_reply(
        &mut self,
        _ctx: &EndpointContext<Msg>,
        msg: Msg,
        reply: RpcCallContext,
    ) -> HandlerResult {
        match msg {
            Msg::Echo(s) => reply.reply(s),
            Msg::Log => reply.reply(self.log.clone()),
            Msg::Park => self.parked.push(reply),
            Msg::Panic => panic!("boom in receive_and_reply"),
            Msg::Fail => return Err("the handler said no".into()),
            Msg::Ignore => drop(reply),
            Msg::Blob(b) => reply.reply(b.len()),
            Msg::Events => reply.reply(self.events.lock().unwrap().clone()),
            other => reply.send_error(&format!("unexpected {other:?}")),
        }
        Ok(())
    }

    async fn on_connected(&mut self, _ctx: &EndpointContext<Msg>, remote: RpcAddress) {
        self.event(format!("connected {remote}"));
    }

    async fn on_disconnected(&mut self, _ctx: &EndpointContext<Msg>, remote: RpcAddress) {
        self.event(format!("disconnected {remote}"));
    }

    async fn on_network_error(
        &mut self,
        _ctx: &EndpointContext<Msg>,
        remote: RpcAddress,
        error: RpcError,
    ) {
        self.event(format!("network error {remote}: {error:?}"));
    }
}

pub fn config(name: &str) -> RpcEnvConfig {
    RpcEnvConfig::new(name, "127.0.0.1", 0)
}

pub async fn env_with(config: RpcEnvConfig) -> RpcEnv {
    RpcEnv::create(config).await.expect("RpcEnv starts")
}

pub async fn env() -> RpcEnv {
    env_with(config("test")).await
}

/// An env with a `Recorder` named "rec"; returns the env and the recorder's event log.
pub async fn recorder_env(config: RpcEnvConfig) -> (RpcEnv, Arc<Mutex<Vec<String>>>) {
    let env = env_with(config).await;
    let events = Arc::new(Mutex::new(Vec::new()));
    env.setup_endpoint(
        "rec",
        Recorder {
            events: events.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    (env, events)
}

/// How long a condition may take before a test gives up on it.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `cond` until it holds, failing the test after [`DEADLINE`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls the async `check` until it returns `Some`, failing the test after [`DEADLINE`].
pub async fn eventually_some<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether one of `events` starts with `prefix`.
pub fn has_event(events: &Mutex<Vec<String>>, prefix: &str) -> bool {
    events.lock().unwrap().iter().any(|e| e.starts_with(prefix))
}
