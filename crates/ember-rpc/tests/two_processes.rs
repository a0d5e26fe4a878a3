//! Two RpcEnvs in two processes: the child is this test binary re-run with `CHILD_ENV` set,
//! serving a `Recorder` named "rec" until the parent kills it or closes its stdin. Each child
//! sits behind a guard that kills it on drop, so a failing test leaves no process behind.

mod rpc_support;

use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ember_rpc::{ASK_TIMEOUT_KEY, EmberConf, EndpointRef, RpcAddress, RpcEnvConfig, RpcError};
use rpc_support::*;

const CHILD_ENV: &str = "EMBER_RPC_TEST_CHILD";
/// The port the child listens on (0, or unset, for any).
const CHILD_PORT_ENV: &str = "EMBER_RPC_TEST_CHILD_PORT";
/// The child's `ember.rpc.message.maxSize`, in bytes.
const CHILD_MAX_MESSAGE: usize = 64 * 1024;

/// Runs in a child process (see `spawn_child`); a no-op otherwise.
#[tokio::test]
async fn child_process_server() {
    if std::env::var(CHILD_ENV).is_err() {
        return;
    }
    let mut cfg = config("child");
    cfg.port = std::env::var(CHILD_PORT_ENV)
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    cfg.max_message_size = CHILD_MAX_MESSAGE;
    let (env, _) = recorder_env(cfg).await;
    println!("PORT={}", env.address().port);
    std::io::stdout().flush().unwrap();
    // Serve until the parent kills us or closes stdin.
    let _ = tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        let _ = std::io::stdin().read_line(&mut s);
    })
    .await;
    env.shutdown().await;
}

/// A child process, killed (and reaped) on drop.
struct ChildServer {
    child: Child,
    address: RpcAddress,
}

impl ChildServer {
    /// Starts a child serving on `port` (0 for any) and waits for it to listen.
    fn spawn(port: u16) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_process_server",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .env(CHILD_PORT_ENV, port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("re-run the test binary");
        let stdout = child.stdout.take().unwrap();
        // From here on a panic (the child dying before it prints) still kills it.
        let mut guard = ChildServer {
            child,
            address: RpcAddress::new("127.0.0.1", 0),
        };
        let mut lines = std::io::BufReader::new(stdout).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("the child printed its port before exiting")
                .unwrap();
            // libtest prints "test name ... " before the test's own output on the same line.
            if let Some((_, p)) = line.split_once("PORT=") {
                break p.trim().parse().unwrap();
            }
        };
        guard.address = RpcAddress::new("127.0.0.1", port);
        guard
    }

    /// Kills the child and waits until it is gone.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn two_processes_talk_and_a_killed_peer_fails_pending_asks_at_once() {
    let mut child = ChildServer::spawn(0);
    let client = env().await;
    let r: EndpointRef<Msg> = client
        .setup_endpoint_ref(&child.address, "rec")
        .await
        .unwrap();
    for i in 0..1000 {
        r.send(Msg::Push(i)).unwrap();
    }
    let log: Vec<u64> = r.ask(Msg::Log).await.unwrap();
    assert_eq!(log, (0..1000).collect::<Vec<_>>());

    let parked = {
        let r = r.clone();
        tokio::spawn(async move {
            r.ask_with_timeout::<String>(Msg::Park, Duration::from_secs(120), "test")
                .await
        })
    };
    let _: Vec<u64> = r.ask(Msg::Log).await.unwrap();
    let killed_at = Instant::now();
    child.kill();
    let err = parked.await.unwrap().unwrap_err();
    assert!(matches!(err, RpcError::ConnectionLost { .. }), "{err:?}");
    assert!(
        killed_at.elapsed() < Duration::from_secs(30),
        "failed at once"
    );
    client.shutdown().await;
}

/// Ask timeout, a reply sent later from another message, a missing endpoint and an oversized
/// frame, against one child.
#[tokio::test]
async fn across_processes_asks_time_out_replies_come_later_and_bad_requests_are_refused() {
    let child = ChildServer::spawn(0);
    let mut conf = EmberConf::new();
    conf.set(ASK_TIMEOUT_KEY, "300ms");
    let client = env_with(RpcEnvConfig::from_conf("parent", "127.0.0.1", 0, &conf).unwrap()).await;
    let r: EndpointRef<Msg> = client
        .setup_endpoint_ref(&child.address, "rec")
        .await
        .unwrap();

    // The default timeout, named with its key.
    let err = r.ask::<String>(Msg::Park).await.unwrap_err();
    assert_eq!(
        err,
        RpcError::AskTimeout {
            address: child.address.clone(),
            endpoint: "rec".into(),
            timeout: Duration::from_millis(300),
            key: ASK_TIMEOUT_KEY,
        }
    );

    // A reply the child sends while handling a later message.
    let waiting = {
        let r = r.clone();
        tokio::spawn(async move {
            r.ask_with_timeout::<String>(Msg::Park, DEADLINE, "test")
                .await
        })
    };
    // Release only once the request is parked (the log ask is ordered after it).
    let _: Vec<u64> = r.ask(Msg::Log).await.unwrap();
    r.send(Msg::Release("later".into())).unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), "later");

    // A missing endpoint, verified and unverified.
    let err = client
        .setup_endpoint_ref::<Msg>(&child.address, "nope")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RpcError::EndpointNotFound {
            address: child.address.clone(),
            endpoint: "nope".into()
        }
    );
    let unverified: EndpointRef<Msg> = client.endpoint_ref(child.address.clone(), "nope");
    let err = unverified.ask::<String>(Msg::Log).await.unwrap_err();
    assert!(matches!(err, RpcError::EndpointNotFound { .. }), "{err:?}");

    // A frame over the child's limit closes that connection only; the next ask reconnects.
    let err = r
        .ask::<u64>(Msg::Blob(vec![0; 2 * CHILD_MAX_MESSAGE]))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::ConnectionLost { .. }), "{err:?}");
    let echo: String = r.ask(Msg::Echo("still serving".into())).await.unwrap();
    assert_eq!(echo, "still serving");
    let events: Vec<String> = r.ask(Msg::Events).await.unwrap();
    let refused = format!("network error {}: ConnectionClosed", client.address());
    assert!(
        events
            .iter()
            .any(|e| e.starts_with(&refused) && e.contains("ember.rpc.message.maxSize")),
        "{events:?}"
    );
    client.shutdown().await;
}

#[tokio::test]
async fn across_processes_endpoints_see_peers_connect_and_disconnect() {
    let mut child = ChildServer::spawn(0);
    let (parent, events) = recorder_env(config("parent")).await;
    let r: EndpointRef<Msg> = parent.endpoint_ref(child.address.clone(), "rec");
    let _: String = r.ask(Msg::Echo("x".into())).await.unwrap();

    // Both sides hear of the connection.
    let child_seen = format!("connected {}", child.address);
    eventually("the parent's connected event", || {
        has_event(&events, &child_seen)
    })
    .await;
    let child_events: Vec<String> = r.ask(Msg::Events).await.unwrap();
    assert!(
        child_events.contains(&format!("connected {}", parent.address())),
        "{child_events:?}"
    );

    // The child hears of a peer that goes away.
    let passer_by = env().await;
    let gone = format!("disconnected {}", passer_by.address());
    let via_passer_by: EndpointRef<Msg> = passer_by.endpoint_ref(child.address.clone(), "rec");
    let _: String = via_passer_by.ask(Msg::Echo("x".into())).await.unwrap();
    passer_by.shutdown().await;
    eventually_some("the child's disconnected event", || {
        let (r, gone) = (r.clone(), gone.clone());
        async move {
            let events: Vec<String> = r.ask(Msg::Events).await.ok()?;
            events.contains(&gone).then_some(())
        }
    })
    .await;

    // The parent hears of the child going away.
    child.kill();
    let child_gone = format!("disconnected {}", child.address);
    eventually("the parent's disconnected event", || {
        has_event(&events, &child_gone)
    })
    .await;
    parent.shutdown().await;
}

#[tokio::test]
async fn across_processes_a_ref_reconnects_to_a_child_restarted_on_its_port() {
    let mut first = ChildServer::spawn(0);
    let port = first.address.port;
    let client = env().await;
    let r: EndpointRef<Msg> = client.endpoint_ref(first.address.clone(), "rec");
    r.send(Msg::Push(1)).unwrap();
    let log: Vec<u64> = r.ask(Msg::Log).await.unwrap();
    assert_eq!(log, [1]);

    first.kill();
    let err = r.ask::<Vec<u64>>(Msg::Log).await.unwrap_err();
    assert!(
        err.is_connection_error(),
        "a dead peer is a connection error: {err:?}"
    );

    let second = ChildServer::spawn(port);
    assert_eq!(second.address, first.address);
    // The same ref, without anything re-resolved, reaches the new process.
    let log: Vec<u64> = r.ask(Msg::Log).await.unwrap();
    assert!(log.is_empty(), "a fresh process: {log:?}");
    r.send(Msg::Push(2)).unwrap();
    let log: Vec<u64> = r.ask(Msg::Log).await.unwrap();
    assert_eq!(log, [2]);
    client.shutdown().await;
}
