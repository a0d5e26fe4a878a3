//! An endpoint's lifecycle: `on_start` before the first message, `on_stop` after the last,
//! stopping one endpoint or the whole RpcEnv.

mod rpc_support;

use std::sync::{Arc, Mutex};

use ember_rpc::{EndpointContext, HandlerResult, RpcEndpoint, RpcError};
use rpc_support::*;

#[tokio::test]
async fn shutdown_runs_on_stop_and_refuses_later_work() {
    struct Stopper(Arc<Mutex<bool>>);
    impl RpcEndpoint for Stopper {
        type Message = Msg;
        async fn receive(&mut self, _: &EndpointContext<Msg>, _: Msg) -> HandlerResult {
            Ok(())
        }
        async fn on_stop(&mut self, _: &EndpointContext<Msg>) {
            *self.0.lock().unwrap() = true;
        }
    }
    let env = env().await;
    let stopped = Arc::new(Mutex::new(false));
    let r = env
        .setup_endpoint("s", Stopper(stopped.clone()))
        .await
        .unwrap();
    let dup = env
        .setup_endpoint("s", Stopper(stopped.clone()))
        .await
        .unwrap_err();
    assert!(matches!(dup, RpcError::DuplicateEndpoint { .. }));
    env.shutdown().await;
    assert!(*stopped.lock().unwrap());
    assert!(matches!(
        r.send(Msg::Push(1)).unwrap_err().error,
        RpcError::EnvStopped
    ));
    env.await_termination().await;
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
