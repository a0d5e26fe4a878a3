//! RpcEnvs talking to each other over loopback TCP in one process: messaging, asks and their
//! failures, refs in messages, connection events, reconnection, authentication, size limits.

mod rpc_support;

use std::time::{Duration, Instant};

use ember_rpc::{
    ASK_TIMEOUT_KEY, CallFailure, EmberConf, EndpointRef, RpcAddress, RpcEnvConfig, RpcError,
    Secret,
};
use rpc_support::*;

#[tokio::test]
async fn one_way_messages_arrive_in_order_and_ask_replies() {
    let (server, _) = recorder_env(config("server")).await;
    let client = env().await;
    let r: EndpointRef<Msg> = client
        .setup_endpoint_ref(server.address(), "rec")
        .await
        .unwrap();
    for i in 0..10_000 {
        r.send(Msg::Push(i)).unwrap();
    }
    let log: Vec<u64> = r.ask(Msg::Log).await.unwrap();
    assert_eq!(log, (0..10_000).collect::<Vec<_>>());
    let echo: String = r.ask(Msg::Echo("hi".into())).await.unwrap();
    assert_eq!(echo, "hi");
    client.shutdown().await;
    server.shutdown().await;
}

/// Sends that race the connection being made (on another worker thread) stay in order: the
/// messages queued while connecting go out before any sent after the connection is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_racing_the_connection_stay_in_order() {
    let (server, _) = recorder_env(config("server")).await;
    for round in 0..5 {
        let client = env().await;
        // An unverified ref: the first send starts the connection.
        let r: EndpointRef<Msg> = client.endpoint_ref(server.address().clone(), "rec");
        let sender = r.clone();
        let n = 50_000u64;
        std::thread::spawn(move || {
            for i in 0..n {
                sender.send(Msg::Push(round * n + i)).unwrap();
            }
        })
        .join()
        .unwrap();
        let log: Vec<u64> = r.ask(Msg::Log).await.unwrap();
        let sent: Vec<u64> = (round * n..(round + 1) * n).collect();
        assert_eq!(&log[log.len() - sent.len()..], &sent[..], "round {round}");
        client.shutdown().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn local_refs_deliver_without_the_network_and_in_order() {
    let (env, events) = recorder_env(config("local")).await;
    let r: EndpointRef<Msg> = env.setup_endpoint_ref(env.address(), "rec").await.unwrap();
    assert!(r.is_local());
    for i in 0..1000 {
        r.send(Msg::Push(i)).unwrap();
    }
    let log: Vec<u64> = r.ask(Msg::Log).await.unwrap();
    assert_eq!(log.len(), 1000);
    // Asking for a type other than the one replied re-encodes instead of failing.
    let len: u64 = r.ask(Msg::Blob(vec![0; 7])).await.unwrap();
    assert_eq!(len, 7);
    assert!(events.lock().unwrap().is_empty(), "no connection was made");
    env.shutdown().await;
}

#[tokio::test]
async fn ask_timeout_names_address_endpoint_and_key() {
    let (server, _) = recorder_env(config("server")).await;
    let client = env().await;
    let r: EndpointRef<Msg> = client.endpoint_ref(server.address().clone(), "rec");
    let err = r
        .ask_with_timeout::<String>(
            Msg::Park,
            Duration::from_millis(100),
            "ember.rpc.askTimeout",
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RpcError::AskTimeout { .. }), "{err:?}");
    assert!(text.contains(&server.address().to_string()), "{text}");
    assert!(
        text.contains("\"rec\"") && text.contains("ember.rpc.askTimeout"),
        "{text}"
    );
    assert!(err.is_retryable());
    client.shutdown().await;
    server.shutdown().await;
}

/// `ask` without an explicit timeout waits `ember.rpc.askTimeout`, and says so.
#[tokio::test]
async fn the_default_ask_timeout_comes_from_the_conf_and_is_named() {
    let (server, _) = recorder_env(config("server")).await;
    let mut conf = EmberConf::new();
    conf.set(ASK_TIMEOUT_KEY, "200ms");
    let client = env_with(RpcEnvConfig::from_conf("client", "127.0.0.1", 0, &conf).unwrap()).await;
    let r: EndpointRef<Msg> = client.endpoint_ref(server.address().clone(), "rec");
    let started = Instant::now();
    let err = r.ask::<String>(Msg::Park).await.unwrap_err();
    let waited = started.elapsed();
    assert_eq!(
        err,
        RpcError::AskTimeout {
            address: server.address().clone(),
            endpoint: "rec".into(),
            timeout: Duration::from_millis(200),
            key: "ember.rpc.askTimeout",
        }
    );
    let text = err.to_string();
    assert!(
        text.contains(&server.address().to_string())
            && text.contains("\"rec\"")
            && text.contains("ember.rpc.askTimeout"),
        "{text}"
    );
    assert!(
        waited >= Duration::from_millis(200) && waited < DEADLINE,
        "{waited:?}"
    );
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_reply_can_come_later_from_another_message() {
    let (server, _) = recorder_env(config("server")).await;
    let client = env().await;
    let r: EndpointRef<Msg> = client.endpoint_ref(server.address().clone(), "rec");
    let waiting = {
        let r = r.clone();
        tokio::spawn(async move { r.ask::<String>(Msg::Park).await })
    };
    // Release only once the request is parked (the log ask is ordered after it).
    let _: Vec<u64> = r.ask(Msg::Log).await.unwrap();
    r.send(Msg::Release("later".into())).unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), "later");
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn missing_endpoints_are_reported_clearly() {
    let (server, _) = recorder_env(config("server")).await;
    let client = env().await;
    let err = client
        .setup_endpoint_ref::<Msg>(server.address(), "nope")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RpcError::EndpointNotFound {
            address: server.address().clone(),
            endpoint: "nope".into()
        }
    );
    let unverified: EndpointRef<Msg> = client.endpoint_ref(server.address().clone(), "nope");
    let err = unverified
        .ask::<String>(Msg::Echo("x".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::EndpointNotFound { .. }), "{err:?}");
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn handler_errors_and_panics_reach_the_asker_and_the_endpoint_keeps_serving() {
    let (server, _) = recorder_env(config("server")).await;
    let client = env().await;
    let r: EndpointRef<Msg> = client.endpoint_ref(server.address().clone(), "rec");
    let err = r.ask::<String>(Msg::Panic).await.unwrap_err();
    assert!(
        matches!(&err, RpcError::Remote { failure: CallFailure::HandlerPanicked { message }, .. }
            if message.contains("boom in receive_and_reply")),
        "{err:?}"
    );
    let err = r.ask::<String>(Msg::Fail).await.unwrap_err();
    assert!(err.to_string().contains("the handler said no"), "{err}");
    let err = r.ask::<String>(Msg::Ignore).await.unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::Remote {
                failure: CallFailure::NoReply,
                ..
            }
        ),
        "{err:?}"
    );
    r.send(Msg::Panic).unwrap();
    let echo: String = r.ask(Msg::Echo("still here".into())).await.unwrap();
    assert_eq!(echo, "still here");
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn refs_travel_inside_messages() {
    let (a, _) = recorder_env(config("a")).await;
    let (b, _) = recorder_env(config("b")).await;
    let a_self: EndpointRef<Msg> = a.endpoint_ref(a.address().clone(), "rec");
    let b_from_a: EndpointRef<Msg> = a.endpoint_ref(b.address().clone(), "rec");
    b_from_a.send(Msg::CallBack(a_self.clone(), 42)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log: Vec<u64> = a_self.ask(Msg::Log).await.unwrap();
        if log == vec![42] {
            break;
        }
        assert!(Instant::now() < deadline, "callback never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn endpoints_see_peers_connect_and_disconnect() {
    let (server, events) = recorder_env(config("server")).await;
    let client = env().await;
    let client_addr = client.address().to_string();
    let r: EndpointRef<Msg> = client.endpoint_ref(server.address().clone(), "rec");
    let _: String = r.ask(Msg::Echo("x".into())).await.unwrap();
    eventually("connected event", || {
        events
            .lock()
            .unwrap()
            .contains(&format!("connected {client_addr}"))
    })
    .await;
    client.shutdown().await;
    eventually("disconnected event", || {
        events
            .lock()
            .unwrap()
            .contains(&format!("disconnected {client_addr}"))
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn reconnects_after_the_peer_restarts() {
    let (server, _) = recorder_env(config("server")).await;
    let port = server.address().port;
    let client = env().await;
    let r: EndpointRef<Msg> = client.endpoint_ref(server.address().clone(), "rec");
    let _: String = r.ask(Msg::Echo("before".into())).await.unwrap();
    server.shutdown().await;
    let err = r.ask::<String>(Msg::Echo("down".into())).await.unwrap_err();
    assert!(err.is_connection_error(), "{err:?}");
    let mut cfg = config("server");
    cfg.port = port;
    let (server2, _) = recorder_env(cfg).await;
    let echo: String = r.ask(Msg::Echo("after".into())).await.unwrap();
    assert_eq!(echo, "after");
    client.shutdown().await;
    server2.shutdown().await;
}

#[tokio::test]
async fn a_connect_failure_fails_queued_asks_at_once() {
    // Bind and drop a listener to get a port that is very likely closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (client, events) = recorder_env(config("client")).await;
    let r: EndpointRef<Msg> = client.endpoint_ref(RpcAddress::new("127.0.0.1", port), "rec");
    let started = Instant::now();
    let err = r.ask::<String>(Msg::Echo("x".into())).await.unwrap_err();
    assert!(matches!(err, RpcError::ConnectFailed { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "failed at once, not at the timeout"
    );
    // The endpoints of the env that dialled hear of it too.
    let expected = format!("network error 127.0.0.1:{port}: ConnectFailed");
    eventually("on_network_error", || has_event(&events, &expected)).await;
    client.shutdown().await;
}

#[tokio::test]
async fn authentication_succeeds_with_the_same_secret() {
    let mut s = config("server");
    s.secret = Some(Secret::new("correct horse"));
    let (server, _) = recorder_env(s).await;
    let mut c = config("client");
    c.secret = Some(Secret::new("correct horse"));
    let client = env_with(c).await;
    let r: EndpointRef<Msg> = client
        .setup_endpoint_ref(server.address(), "rec")
        .await
        .unwrap();
    let echo: String = r.ask(Msg::Echo("authed".into())).await.unwrap();
    assert_eq!(echo, "authed");
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn authentication_refuses_missing_and_wrong_secrets() {
    let mut s = config("server");
    s.secret = Some(Secret::new("correct horse"));
    let (server, _) = recorder_env(s).await;
    for secret in [None, Some("battery staple")] {
        let mut c = config("client");
        c.secret = secret.map(Secret::new);
        let client = env_with(c).await;
        let r: EndpointRef<Msg> = client.endpoint_ref(server.address().clone(), "rec");
        r.send(Msg::Push(1)).unwrap();
        let err = r.ask::<String>(Msg::Echo("x".into())).await.unwrap_err();
        assert!(
            matches!(err, RpcError::Authentication { .. }),
            "{secret:?}: {err:?}"
        );
        assert!(!err.to_string().contains("correct horse"));
        client.shutdown().await;
    }
    // Nothing from the refused peers reached the endpoint.
    let mut c = config("client");
    c.secret = Some(Secret::new("correct horse"));
    let good = env_with(c).await;
    let r: EndpointRef<Msg> = good.endpoint_ref(server.address().clone(), "rec");
    let log: Vec<u64> = r.ask(Msg::Log).await.unwrap();
    assert!(log.is_empty());
    good.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_messages_are_refused_on_write_and_on_read() {
    let mut small = config("small");
    small.max_message_size = 1024;
    let (server, events) = recorder_env(small.clone()).await;
    // On write: the sender's own limit.
    let limited = env_with(small).await;
    let r: EndpointRef<Msg> = limited.endpoint_ref(server.address().clone(), "rec");
    let err = r.send(Msg::Blob(vec![0; 4096])).unwrap_err();
    assert!(
        matches!(err.error, RpcError::MessageTooLarge { max: 1024, .. }),
        "{err:?}"
    );
    assert!(err.message.is_some(), "the message is handed back");
    // On read: a peer with a larger limit sends too much; only that connection closes.
    let big = env().await;
    let r: EndpointRef<Msg> = big.endpoint_ref(server.address().clone(), "rec");
    let err = r.ask::<u64>(Msg::Blob(vec![0; 4096])).await.unwrap_err();
    assert!(matches!(err, RpcError::ConnectionLost { .. }), "{err:?}");
    // The receiving side reports why it closed the connection to its endpoints.
    let expected = format!("network error {}: ConnectionClosed", big.address());
    eventually("on_network_error", || has_event(&events, &expected)).await;
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.starts_with(&expected)
                && e.contains("exceeds the limit of 1024 bytes (ember.rpc.message.maxSize)")),
        "{:?}",
        events.lock().unwrap()
    );
    let r2: EndpointRef<Msg> = limited.endpoint_ref(server.address().clone(), "rec");
    let echo: String = r2.ask(Msg::Echo("fine".into())).await.unwrap();
    assert_eq!(echo, "fine");
    big.shutdown().await;
    limited.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn endpoint_names_that_do_not_fit_the_wire_are_refused_clearly() {
    let (server, _) = recorder_env(config("server")).await;
    let client = env().await;
    let long = "n".repeat(256);
    let invalid = RpcError::InvalidName {
        endpoint: long.clone(),
    };
    let err = server
        .setup_endpoint(&long, Recorder::default())
        .await
        .unwrap_err();
    assert_eq!(err, invalid);
    assert!(err.to_string().contains("1 to 255 bytes"), "{err}");
    let err = client
        .setup_endpoint_ref::<Msg>(server.address(), &long)
        .await
        .unwrap_err();
    assert_eq!(err, invalid);
    // An unverified ref refuses before anything is queued, remote or local.
    for at in [server.address(), client.address()] {
        let r: EndpointRef<Msg> = client.endpoint_ref(at.clone(), &long);
        let refused = r.send(Msg::Push(1)).unwrap_err();
        assert_eq!(refused.error, invalid);
        assert!(matches!(refused.message, Some(Msg::Push(1))));
        assert_eq!(r.ask::<String>(Msg::Log).await.unwrap_err(), invalid);
    }
    // A message carrying a ref with such a name does not decode, and the asker learns why.
    let bad: EndpointRef<Msg> = client.endpoint_ref(server.address().clone(), &long);
    assert!(
        server
            .decode::<EndpointRef<Msg>>(&client.encode(&bad).unwrap())
            .is_err()
    );
    let rec: EndpointRef<Msg> = client.endpoint_ref(server.address().clone(), "rec");
    let err = rec.ask::<()>(Msg::CallBack(bad, 1)).await.unwrap_err();
    assert!(
        matches!(&err, RpcError::Remote { failure: CallFailure::UndecodableRequest { reason }, .. }
            if reason.contains("endpoint of 256 bytes")),
        "{err:?}"
    );
    let longest: EndpointRef<Msg> = client.endpoint_ref(server.address().clone(), &long[..255]);
    let back: EndpointRef<Msg> = server.decode(&client.encode(&longest).unwrap()).unwrap();
    assert_eq!(back.name().len(), 255);
    client.shutdown().await;
    server.shutdown().await;
}
