//! An endpoint's lifecycle: `on_start` before the first message, `on_stop` after the last,
//! stopping one endpoint or the whole RpcEnv, and who answers a request that its handler leaves
//! unanswered.

mod rpc_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ember_rpc::{
    CallFailure, EndpointContext, EndpointRef, HandlerResult, RpcCallContext, RpcEndpoint, RpcError,
};
use rpc_support::*;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

#[derive(Debug, Serialize, Deserialize)]
enum Life {
    Push(u64),
    /// The endpoint stops itself.
    Quit,
    /// Ask → the log so far.
    Log,
    /// Ask; the context is dropped unanswered on another thread while the handler returns.
    DropOnThread,
    /// Ask; the context is dropped unanswered on another task.
    DropOnTask,
    /// Ask; the context goes to a thread that panics.
    DropInPanickingThread,
}

/// A point where a handler tells the test it got there, then waits for the test to go on.
#[derive(Default)]
struct Gate {
    entered: Option<oneshot::Sender<()>>,
    open: Option<oneshot::Receiver<()>>,
}

/// The test's side of a [`Gate`].
struct GateControl {
    entered: oneshot::Receiver<()>,
    open: oneshot::Sender<()>,
}

fn gate() -> (Gate, GateControl) {
    let (entered_tx, entered_rx) = oneshot::channel();
    let (open_tx, open_rx) = oneshot::channel();
    (
        Gate {
            entered: Some(entered_tx),
            open: Some(open_rx),
        },
        GateControl {
            entered: entered_rx,
            open: open_tx,
        },
    )
}

impl Gate {
    async fn pass(&mut self) {
        if let Some(entered) = self.entered.take() {
            let _ = entered.send(());
        }
        if let Some(open) = self.open.take() {
            let _ = open.await;
        }
    }
}

/// Logs what it handles; each gate, when set, holds up one step.
#[derive(Default)]
struct Scripted {
    log: Arc<Mutex<Vec<String>>>,
    start: Gate,
    first_message: Gate,
    stop: Gate,
}

impl Scripted {
    fn note(&self, what: impl Into<String>) {
        self.log.lock().unwrap().push(what.into());
    }
}

impl RpcEndpoint for Scripted {
    type Message = Life;

    async fn on_start(&mut self, _: &EndpointContext<Life>) -> HandlerResult {
        self.start.pass().await;
        self.note("on_start");
        Ok(())
    }

    async fn receive(&mut self, ctx: &EndpointContext<Life>, msg: Life) -> HandlerResult {
        self.first_message.pass().await;
        match msg {
            Life::Push(n) => self.note(format!("push {n}")),
            Life::Quit => {
                self.note("quit");
                ctx.stop_self();
            }
            other => self.note(format!("unexpected {other:?}")),
        }
        Ok(())
    }

    async fn receive_and_reply(
        &mut self,
        ctx: &EndpointContext<Life>,
        msg: Life,
        reply: RpcCallContext,
    ) -> HandlerResult {
        match msg {
            Life::Log => reply.reply(self.log.lock().unwrap().clone()),
            Life::DropOnThread => {
                // Both sides go at once: the drop races the handler's return.
                let barrier = Arc::new(std::sync::Barrier::new(2));
                let theirs = barrier.clone();
                std::thread::spawn(move || {
                    theirs.wait();
                    drop(reply);
                });
                barrier.wait();
            }
            Life::DropOnTask => ctx.spawn(async move { drop(reply) }),
            Life::DropInPanickingThread => {
                std::thread::spawn(move || {
                    let _held = reply;
                    panic!("a helper thread failed while holding the reply");
                });
            }
            other => reply.send_error(&format!("unexpected {other:?}")),
        }
        Ok(())
    }

    async fn on_stop(&mut self, _: &EndpointContext<Life>) {
        self.stop.pass().await;
        self.note("on_stop");
    }
}

/// A `Scripted` endpoint named "life" in `env` whose first message waits at a gate; its ref,
/// its log and the gate's control.
async fn gated_endpoint(
    env: &ember_rpc::RpcEnv,
) -> (EndpointRef<Life>, Arc<Mutex<Vec<String>>>, GateControl) {
    let (first_message, control) = gate();
    let log = Arc::new(Mutex::new(Vec::new()));
    let r = env
        .setup_endpoint(
            "life",
            Scripted {
                log: log.clone(),
                first_message,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (r, log, control)
}

fn log_of(log: &Mutex<Vec<String>>) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// Polls `future` once, so that what it does synchronously (queueing a request) has happened.
async fn poll_once<F: std::future::Future + Unpin>(future: &mut F) {
    tokio::select! {
        biased;
        _ = future => panic!("finished on its first poll"),
        _ = std::future::ready(()) => {}
    }
}

#[tokio::test]
async fn on_start_runs_before_the_first_message() {
    let (server, _) = recorder_env(config("server")).await;
    let client = env().await;
    let (start, control) = gate();
    let log = Arc::new(Mutex::new(Vec::new()));
    let setup = {
        let (server, log) = (server.clone(), log.clone());
        tokio::spawn(async move {
            let endpoint = Scripted {
                log,
                start,
                ..Default::default()
            };
            server.setup_endpoint("life", endpoint).await.unwrap()
        })
    };
    control.entered.await.unwrap();

    // While on_start waits: a local send, a remote send and a local ask are queued.
    let local: EndpointRef<Life> = server.endpoint_ref(server.address().clone(), "life");
    local.send(Life::Push(1)).unwrap();
    let remote: EndpointRef<Life> = client.endpoint_ref(server.address().clone(), "life");
    remote.send(Life::Push(2)).unwrap();
    // Frames on one connection are routed in order: once "rec" answers, Push(2) is queued.
    let rec: EndpointRef<Msg> = client.endpoint_ref(server.address().clone(), "rec");
    let _: String = rec.ask(Msg::Echo("x".into())).await.unwrap();
    let mut ask = Box::pin(local.ask::<Vec<String>>(Life::Log));
    poll_once(&mut ask).await;
    assert!(log_of(&log).is_empty(), "nothing handled during on_start");

    control.open.send(()).unwrap();
    let r = setup.await.unwrap();
    assert_eq!(ask.await.unwrap(), ["on_start", "push 1", "push 2"]);
    let _: Vec<String> = r.ask(Life::Log).await.unwrap();
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn stop_runs_on_stop_after_the_queued_messages_and_refuses_later_ones() {
    let (server, _) = recorder_env(config("server")).await;
    let client = env().await;
    let (r, log, control) = gated_endpoint(&server).await;
    r.send(Life::Push(0)).unwrap();
    control.entered.await.unwrap();
    for i in 1..=3 {
        r.send(Life::Push(i)).unwrap();
    }
    let mut queued_ask = Box::pin(r.ask::<Vec<String>>(Life::Log));
    poll_once(&mut queued_ask).await;

    server.stop(&r);
    let refused = r.send(Life::Push(99)).unwrap_err();
    assert!(
        matches!(refused.error, RpcError::EndpointStopped { .. }),
        "{refused:?}"
    );
    assert!(matches!(refused.message, Some(Life::Push(99))));
    let err = r.ask::<Vec<String>>(Life::Log).await.unwrap_err();
    assert!(matches!(err, RpcError::EndpointStopped { .. }), "{err:?}");
    let remote: EndpointRef<Life> = client.endpoint_ref(server.address().clone(), "life");
    let err = remote.ask::<Vec<String>>(Life::Log).await.unwrap_err();
    assert!(matches!(err, RpcError::EndpointNotFound { .. }), "{err:?}");

    control.open.send(()).unwrap();
    assert_eq!(
        queued_ask.await.unwrap(),
        ["on_start", "push 0", "push 1", "push 2", "push 3"]
    );
    eventually("on_stop", || {
        log_of(&log).last().map(String::as_str) == Some("on_stop")
    })
    .await;
    assert_eq!(
        log_of(&log),
        [
            "on_start", "push 0", "push 1", "push 2", "push 3", "on_stop"
        ]
    );
    // The name is free again, and the old ref reaches the new endpoint.
    server
        .setup_endpoint("life", Scripted::default())
        .await
        .unwrap();
    let _: Vec<String> = r.ask(Life::Log).await.unwrap();
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn stop_self_finishes_the_queue_then_stops() {
    let env = env().await;
    let (r, log, control) = gated_endpoint(&env).await;
    r.send(Life::Push(0)).unwrap();
    control.entered.await.unwrap();
    r.send(Life::Quit).unwrap();
    r.send(Life::Push(2)).unwrap();
    control.open.send(()).unwrap();
    eventually("on_stop", || {
        log_of(&log).last().map(String::as_str) == Some("on_stop")
    })
    .await;
    assert_eq!(
        log_of(&log),
        ["on_start", "push 0", "quit", "push 2", "on_stop"]
    );
    let refused = r.send(Life::Push(3)).unwrap_err();
    assert!(
        matches!(refused.error, RpcError::EndpointStopped { .. }),
        "{refused:?}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn await_termination_returns_once_shutdown_has_finished() {
    let env = env().await;
    let (stop, control) = gate();
    let log = Arc::new(Mutex::new(Vec::new()));
    env.setup_endpoint(
        "life",
        Scripted {
            log: log.clone(),
            stop,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let waiter = {
        let (env, log) = (env.clone(), log.clone());
        tokio::spawn(async move {
            env.await_termination().await;
            log_of(&log)
        })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished(), "returned before shutdown was called");

    let shutdown = {
        let env = env.clone();
        tokio::spawn(async move { env.shutdown().await })
    };
    control.entered.await.unwrap();
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "returned while on_stop was running");
    assert!(!shutdown.is_finished());

    control.open.send(()).unwrap();
    assert_eq!(waiter.await.unwrap(), ["on_start", "on_stop"]);
    shutdown.await.unwrap();
    // Once terminated, it returns at once.
    env.await_termination().await;
}

#[tokio::test]
async fn shutdown_runs_on_stop_and_refuses_later_work() {
    let env = env().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let r = env
        .setup_endpoint(
            "s",
            Scripted {
                log: log.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let dup = env
        .setup_endpoint("s", Scripted::default())
        .await
        .unwrap_err();
    assert!(matches!(dup, RpcError::DuplicateEndpoint { .. }));
    env.shutdown().await;
    assert_eq!(log_of(&log), ["on_start", "on_stop"]);
    assert!(matches!(
        r.send(Life::Push(1)).unwrap_err().error,
        RpcError::EnvStopped
    ));
}

#[tokio::test]
async fn a_failing_on_start_is_reported_by_setup_endpoint() {
    struct Broken;
    impl RpcEndpoint for Broken {
        type Message = Msg;
        async fn on_start(&mut self, _: &EndpointContext<Msg>) -> HandlerResult {
            Err("cannot create work dir /nope".into())
        }
        async fn receive(&mut self, _: &EndpointContext<Msg>, _: Msg) -> HandlerResult {
            Ok(())
        }
    }
    let env = env().await;
    let err = env.setup_endpoint("b", Broken).await.unwrap_err();
    assert!(err.to_string().contains("/nope"), "{err}");
    // The name is free again.
    env.setup_endpoint("b", Recorder::default()).await.unwrap();
    env.shutdown().await;
}

/// A reply context handed to another thread or task and dropped there unanswered fails the ask
/// at once with `NoReply`, however the drop and the handler's return interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_dropped_elsewhere_fails_the_ask_at_once() {
    let server = env().await;
    server
        .setup_endpoint("life", Scripted::default())
        .await
        .unwrap();
    let client = env().await;
    let remote: EndpointRef<Life> = client.endpoint_ref(server.address().clone(), "life");
    let local: EndpointRef<Life> = server.endpoint_ref(server.address().clone(), "life");
    let cases: [(fn() -> Life, usize); 3] = [
        (|| Life::DropOnThread, 300),
        (|| Life::DropOnTask, 300),
        (|| Life::DropInPanickingThread, 5),
    ];
    for (make, rounds) in cases {
        for r in [&remote, &local] {
            for _ in 0..rounds {
                let message = make();
                let what = format!("{message:?}");
                // Far below the default timeout, far above a prompt answer.
                let err = r
                    .ask_with_timeout::<()>(message, Duration::from_secs(5), "test")
                    .await
                    .unwrap_err();
                assert!(
                    matches!(
                        err,
                        RpcError::Remote {
                            failure: CallFailure::NoReply,
                            ..
                        }
                    ),
                    "{what}: {err:?}"
                );
            }
        }
    }
    client.shutdown().await;
    server.shutdown().await;
}
