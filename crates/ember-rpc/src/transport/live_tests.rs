//! A live server against raw sockets: refusals on the wire, and garbage that must only ever
//! close the connection it came on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::transport::envelope;
use crate::transport::frame::frame;
use crate::transport::handshake::{self, ClientHandshake, MAGIC, Step};
use crate::transport::outbox::{read_handshake_frame, write_handshake_frame};
use crate::{
    EndpointContext, EndpointRef, HandlerResult, RpcAddress, RpcCallContext, RpcEndpoint, RpcEnv,
    RpcEnvConfig,
};

#[derive(Debug, Serialize, Deserialize)]
enum Msg {
    Echo(String),
    Count,
    Note(u32),
}

#[derive(Default)]
struct Echo {
    notes: u32,
}

impl RpcEndpoint for Echo {
    type Message = Msg;

    async fn receive(&mut self, _: &EndpointContext<Msg>, msg: Msg) -> HandlerResult {
        if let Msg::Note(_) = msg {
            self.notes += 1;
        }
        Ok(())
    }

    async fn receive_and_reply(
        &mut self,
        _: &EndpointContext<Msg>,
        msg: Msg,
        reply: RpcCallContext,
    ) -> HandlerResult {
        match msg {
            Msg::Echo(s) => reply.reply(s),
            Msg::Count => reply.reply(self.notes),
            Msg::Note(_) => reply.reply(()),
        }
        Ok(())
    }
}

async fn server() -> RpcEnv {
    let env = RpcEnv::create(RpcEnvConfig::new("live", "127.0.0.1", 0))
        .await
        .unwrap();
    env.setup_endpoint("echo", Echo::default()).await.unwrap();
    env
}

/// Connects and completes a client handshake by hand; returns the stream ready for envelopes.
async fn handshaken(server: &RpcAddress) -> TcpStream {
    let mut stream = TcpStream::connect((server.host.as_str(), server.port))
        .await
        .unwrap();
    let mut machine =
        ClientHandshake::new(RpcAddress::new("127.0.0.1", 1), None, handshake::nonce());
    let mut buf = BytesMut::new();
    write_handshake_frame(&mut stream, &machine.start())
        .await
        .unwrap();
    loop {
        let f = read_handshake_frame(&mut stream, &mut buf).await.unwrap();
        match machine.on_frame(&f) {
            Step::Send(body) => write_handshake_frame(&mut stream, &body).await.unwrap(),
            Step::Done(_) => return stream,
            other => panic!("handshake failed: {other:?}"),
        }
    }
}

/// A well-formed peer can still talk to the server.
async fn still_serving(server: &RpcAddress, client: &RpcEnv) {
    let r: EndpointRef<Msg> = client.endpoint_ref(server.clone(), "echo");
    let back: String = r
        .ask_with_timeout(Msg::Echo("ok".into()), Duration::from_secs(10), "test")
        .await
        .expect("the server keeps serving well-formed peers");
    assert_eq!(back, "ok");
}

/// Reads until the peer closes; returns what arrived.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    out
}

#[tokio::test]
async fn a_version_mismatch_is_refused_on_the_wire_naming_both_versions() {
    let env = server().await;
    let mut stream = TcpStream::connect(("127.0.0.1", env.address().port))
        .await
        .unwrap();
    let mut hello = Vec::from(MAGIC);
    hello.extend_from_slice(&99u16.to_be_bytes());
    hello.extend_from_slice(&[1, 0, 0]);
    stream
        .write_all(&frame(&hello, 4096).unwrap())
        .await
        .unwrap();
    let reply = read_to_close(&mut stream).await;
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.contains("the server speaks version 1, the client speaks version 99"),
        "refusal: {text:?}"
    );
    let client = RpcEnv::create(RpcEnvConfig::new("c", "127.0.0.1", 0))
        .await
        .unwrap();
    still_serving(env.address(), &client).await;
    client.shutdown().await;
    env.shutdown().await;
}

#[tokio::test]
async fn an_unknown_envelope_kind_closes_only_that_connection() {
    let env = server().await;
    let client = RpcEnv::create(RpcEnvConfig::new("c", "127.0.0.1", 0))
        .await
        .unwrap();
    still_serving(env.address(), &client).await;
    let mut raw = handshaken(env.address()).await;
    raw.write_all(&frame(&[42, 1, 2, 3], 1 << 20).unwrap())
        .await
        .unwrap();
    let _ = read_to_close(&mut raw).await;
    still_serving(env.address(), &client).await;
    client.shutdown().await;
    env.shutdown().await;
}

#[tokio::test]
async fn an_undecodable_request_gets_an_error_reply_and_the_connection_stays() {
    let env = server().await;
    let mut raw = handshaken(env.address()).await;
    // A request whose payload is not a `Msg`.
    let bad = envelope::encode_request(7, "echo", &(255u8, 255u8, 255u8), 1 << 20).unwrap();
    raw.write_all(&bad).await.unwrap();
    let mut buf = BytesMut::new();
    let decoder = crate::transport::frame::FrameDecoder::new(1 << 20);
    let reply = loop {
        if let Some(f) = decoder.decode(&mut buf).unwrap() {
            break envelope::Envelope::decode(f).unwrap();
        }
        assert!(
            raw.read_buf(&mut buf).await.unwrap() > 0,
            "connection closed"
        );
    };
    assert!(
        matches!(
            reply,
            envelope::Envelope::Failure {
                id: 7,
                failure: crate::CallFailure::UndecodableRequest { .. }
            }
        ),
        "{reply:?}"
    );
    // The same connection still works.
    let good = envelope::encode_request(8, "echo", &Msg::Echo("again".into()), 1 << 20).unwrap();
    raw.write_all(&good).await.unwrap();
    let reply = loop {
        if let Some(f) = decoder.decode(&mut buf).unwrap() {
            break envelope::Envelope::decode(f).unwrap();
        }
        assert!(
            raw.read_buf(&mut buf).await.unwrap() > 0,
            "connection closed"
        );
    };
    let envelope::Envelope::Response { id: 8, payload } = reply else {
        panic!("expected a response, got {reply:?}")
    };
    assert_eq!(postcard::from_bytes::<String>(&payload).unwrap(), "again");
    env.shutdown().await;
}

/// What a hostile or broken peer sends.
#[derive(Debug, Clone)]
enum Garbage {
    /// Bytes before any handshake.
    Raw(Vec<u8>),
    /// Bytes after a valid handshake.
    AfterHandshake(Vec<u8>),
    /// Well-framed random bodies after a valid handshake.
    Frames(Vec<Vec<u8>>),
    /// A valid request cut short, after a valid handshake.
    Truncated(usize),
}

fn garbage() -> impl Strategy<Value = Garbage> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..512);
    prop_oneof![
        bytes.clone().prop_map(Garbage::Raw),
        bytes.prop_map(Garbage::AfterHandshake),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..64), 1..6)
            .prop_map(Garbage::Frames),
        (0usize..64).prop_map(Garbage::Truncated),
    ]
}

/// Counts the panics on the threads of one runtime, even those tokio or a `catch_unwind`
/// absorbs: a connection task that panics is a bug even if the process survives it.
struct PanicCounter {
    count: Arc<AtomicUsize>,
}

impl PanicCounter {
    /// Installs a panic hook that counts panics on threads named `thread_name` (and then runs
    /// the hook that was there before).
    fn install(thread_name: &'static str) -> Self {
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(thread_name) {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
        Self { count }
    }

    fn get(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

#[test]
fn a_live_server_survives_random_and_truncated_bytes() {
    const THREADS: &str = "live-server-proptest";
    let panics = PanicCounter::install(THREADS);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(THREADS)
        .enable_all()
        .build()
        .unwrap();
    // The counter sees a panic that tokio absorbs.
    let _ = rt.block_on(rt.spawn(async { panic!("a deliberate panic in a task") }));
    assert_eq!(panics.get(), 1, "the panic counter works");
    let (env, client) = rt.block_on(async {
        let env = server().await;
        let client = RpcEnv::create(RpcEnvConfig::new("c", "127.0.0.1", 0))
            .await
            .unwrap();
        (env, client)
    });
    let address = env.address().clone();
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    runner
        .run(&garbage(), |g| {
            rt.block_on(async {
                let mut stream = match &g {
                    Garbage::Raw(_) => TcpStream::connect(("127.0.0.1", address.port))
                        .await
                        .unwrap(),
                    _ => handshaken(&address).await,
                };
                let bytes = match &g {
                    Garbage::Raw(b) | Garbage::AfterHandshake(b) => b.clone(),
                    Garbage::Frames(bodies) => bodies
                        .iter()
                        .flat_map(|b| frame(b, 1 << 20).unwrap())
                        .collect(),
                    Garbage::Truncated(cut) => {
                        let whole =
                            envelope::encode_request(1, "echo", &Msg::Note(5), 1 << 20).unwrap();
                        whole[..(*cut).min(whole.len().saturating_sub(1))].to_vec()
                    }
                };
                let _ = stream.write_all(&bytes).await;
                drop(stream);
                still_serving(&address, &client).await;
            });
            prop_assert_eq!(panics.get(), 1, "a task panicked on {:?}", g);
            Ok(())
        })
        .unwrap();
    rt.block_on(async {
        client.shutdown().await;
        env.shutdown().await;
    });
    assert_eq!(panics.get(), 1, "a task panicked");
}

/// A message whose `Deserialize` panics on the byte 0xEE.
#[derive(Debug, Serialize)]
struct Fragile(u8);

impl<'de> Deserialize<'de> for Fragile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b = u8::deserialize(d)?;
        assert_ne!(b, 0xEE, "Fragile cannot take 0xEE");
        Ok(Fragile(b))
    }
}

struct FragileEcho;

impl RpcEndpoint for FragileEcho {
    type Message = Fragile;

    async fn receive(&mut self, _: &EndpointContext<Fragile>, _: Fragile) -> HandlerResult {
        Ok(())
    }

    async fn receive_and_reply(
        &mut self,
        _: &EndpointContext<Fragile>,
        msg: Fragile,
        reply: RpcCallContext,
    ) -> HandlerResult {
        // Replies 0xEE for 1: the asker's decoding panics.
        reply.reply(Fragile(if msg.0 == 1 { 0xEE } else { msg.0 }));
        Ok(())
    }
}

/// Reads the next envelope from a raw connection.
async fn next_envelope(raw: &mut TcpStream, buf: &mut BytesMut) -> envelope::Envelope {
    let decoder = crate::transport::frame::FrameDecoder::new(1 << 20);
    loop {
        if let Some(f) = decoder.decode(buf).unwrap() {
            return envelope::Envelope::decode(f).unwrap();
        }
        assert!(raw.read_buf(buf).await.unwrap() > 0, "connection closed");
    }
}

#[tokio::test]
async fn a_panicking_deserialize_is_an_undecodable_message_and_the_connection_stays() {
    let env = server().await;
    env.setup_endpoint("fragile", FragileEcho).await.unwrap();
    let mut raw = handshaken(env.address()).await;
    let mut buf = BytesMut::new();
    // A one-way message that panics is dropped (and logged); a request gets an error reply.
    let one_way = envelope::encode_one_way("fragile", &0xEEu8, 1 << 20).unwrap();
    raw.write_all(&one_way).await.unwrap();
    let request = envelope::encode_request(7, "fragile", &0xEEu8, 1 << 20).unwrap();
    raw.write_all(&request).await.unwrap();
    let reply = next_envelope(&mut raw, &mut buf).await;
    assert!(
        matches!(&reply, envelope::Envelope::Failure {
            id: 7,
            failure: crate::CallFailure::UndecodableRequest { reason },
        } if reason.contains("decoding panicked") && reason.contains("cannot take 0xEE")),
        "{reply:?}"
    );
    // The same connection still carries requests.
    let good = envelope::encode_request(8, "fragile", &5u8, 1 << 20).unwrap();
    raw.write_all(&good).await.unwrap();
    let reply = next_envelope(&mut raw, &mut buf).await;
    let envelope::Envelope::Response { id: 8, payload } = reply else {
        panic!("expected a response, got {reply:?}")
    };
    assert_eq!(payload.as_ref(), [5]);

    // A reply whose decoding panics fails that ask, not the asker's task.
    let client = RpcEnv::create(RpcEnvConfig::new("c", "127.0.0.1", 0))
        .await
        .unwrap();
    let r: EndpointRef<Fragile> = client.endpoint_ref(env.address().clone(), "fragile");
    let err = r.ask::<Fragile>(Fragile(1)).await.unwrap_err();
    assert!(
        matches!(&err, crate::RpcError::DecodeReply { reason, .. } if reason.contains("decoding panicked")),
        "{err:?}"
    );
    let back: Fragile = r.ask(Fragile(2)).await.unwrap();
    assert_eq!(back.0, 2);
    client.shutdown().await;
    env.shutdown().await;
}

/// A connection whose reader is dropped unfinished (its runtime went away) still fails its
/// pending asks, instead of leaving them to their timeout.
#[test]
fn a_reader_that_ends_unfinished_fails_its_pending_asks() {
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = server_rt.block_on(async {
        let env = server().await;
        env.setup_endpoint("park", Parker::default()).await.unwrap();
        env
    });
    let client = client_rt.block_on(async {
        RpcEnv::create(RpcEnvConfig::new("c", "127.0.0.1", 0))
            .await
            .unwrap()
    });
    let r: EndpointRef<Msg> = client.endpoint_ref(server.address().clone(), "park");
    // The asker runs on the test's own runtime, apart from the client's connection tasks.
    let asker = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = asker.block_on(async {
        let _: String = r
            .ask_with_timeout(Msg::Echo("up".into()), Duration::from_secs(10), "test")
            .await
            .unwrap();
        let parked = r.ask_with_timeout::<String>(Msg::Count, Duration::from_secs(20), "test");
        let drop_runtime = async {
            // Once the ask is queued, take the client's runtime and its tasks away.
            tokio::task::yield_now().await;
            tokio::task::spawn_blocking(move || drop(client_rt))
                .await
                .unwrap();
        };
        let (outcome, ()) = tokio::join!(parked, drop_runtime);
        outcome
    });
    let err = outcome.unwrap_err();
    assert!(
        matches!(err, crate::RpcError::ConnectionLost { .. }),
        "{err:?}"
    );
    server_rt.block_on(server.shutdown());
}

/// Parks every `Count` request unanswered (for as long as it lives); echoes `Echo`.
#[derive(Default)]
struct Parker {
    parked: Vec<RpcCallContext>,
}

impl RpcEndpoint for Parker {
    type Message = Msg;

    async fn receive(&mut self, _: &EndpointContext<Msg>, _: Msg) -> HandlerResult {
        Ok(())
    }

    async fn receive_and_reply(
        &mut self,
        _: &EndpointContext<Msg>,
        msg: Msg,
        reply: RpcCallContext,
    ) -> HandlerResult {
        match msg {
            Msg::Echo(s) => reply.reply(s),
            _ => self.parked.push(reply),
        }
        Ok(())
    }
}
