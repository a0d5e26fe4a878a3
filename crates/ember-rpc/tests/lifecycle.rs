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

/// Logs what it handles.
#[derive(Default)]
struct Scripted {
    log: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    fn note(&self, what: impl Into<String>) {
        self.log.lock().unwrap().push(what.into());
    }
}

impl RpcEndpoint for Scripted {
    type Message = Life;

    async fn on_start(&mut self, _: &EndpointContext<Life>) -> HandlerResult {
        self.note("on_start");
        Ok(())
    }

    async fn receive(&mut self, ctx: &EndpointContext<Life>, msg: Life) -> HandlerResult {
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
        self.note("on_stop");
    }
}

fn log_of(log: &Mutex<Vec<String>>) -> Vec<String> {
    log.lock().unwrap().clone()
}

#[tokio::test]
async fn shutdown_runs_on_stop_and_refuses_later_work() {
    let env = env().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let r = env
        .setup_endpoint("s", Scripted { log: log.clone() })
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
