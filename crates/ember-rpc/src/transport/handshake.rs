//! The connection handshake, as two small pure state machines.
//!
//! Spark counterparts: the SASL/auth-engine bootstrap of `TransportClientFactory` and
//! `AuthRpcHandler`. Every handshake frame starts with the magic `EMBR` and the sender's
//! protocol version, then a kind byte. A refusal's body is plain UTF-8 so that peers of any
//! version can read why they were refused.
//!
//! ```text
//!  client                                   server
//!    │── Hello { address, client nonce } ───▶│  wrong magic: close; other version: Refused
//!    │◀── Challenge { address, server nonce, │
//!    │               auth required } ────────│
//!    │── Proof { mac? } ────────────────────▶│  auth on and mac missing or wrong: Refused
//!    │◀── Welcome { mac? } ──────────────────│
//!    │  auth on and server mac wrong: close  │
//! ```
//!
//! With `ember.authenticate` on, the client proves it knows the secret by
//! `HMAC-SHA256(secret, "ember-rpc client" ‖ client nonce ‖ server nonce)` and the server answers
//! with the same over `"ember-rpc server"`, so each side authenticates the other and neither MAC
//! can be replayed on another connection. The secret never crosses the wire.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::address::RpcAddress;

/// First bytes of every handshake frame.
pub(crate) const MAGIC: [u8; 4] = *b"EMBR";
/// The version of the wire protocol this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Largest handshake frame accepted.
pub(crate) const MAX_HANDSHAKE_FRAME: usize = 4096;

const KIND_REFUSED: u8 = 0;
const NONCE_LEN: usize = 16;
type Nonce = [u8; NONCE_LEN];
type MacBytes = [u8; 32];

/// The shared secret of `ember.authenticate.secret`. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self(secret.into())
    }

    fn mac(&self, label: &[u8], first: &Nonce, second: &Nonce) -> MacBytes {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(label);
        mac.update(first);
        mac.update(second);
        mac.finalize().into_bytes().into()
    }

    fn verify(&self, label: &[u8], first: &Nonce, second: &Nonce, claimed: &MacBytes) -> bool {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(label);
        mac.update(first);
        mac.update(second);
        mac.verify_slice(claimed).is_ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(*****)")
    }
}

const CLIENT_LABEL: &[u8] = b"ember-rpc client";
const SERVER_LABEL: &[u8] = b"ember-rpc server";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Message {
    Hello {
        address: RpcAddress,
        nonce: Nonce,
    },
    Challenge {
        address: RpcAddress,
        nonce: Nonce,
        auth_required: bool,
    },
    Proof {
        mac: Option<MacBytes>,
    },
    Welcome {
        mac: Option<MacBytes>,
    },
}

/// Why a refusal was sent; decides which error the refused side reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefusalKind {
    Protocol,
    Authentication,
}

/// A failed handshake, from either side's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HandshakeError {
    /// The peer does not speak this protocol at all (nothing is sent back).
    NotEmber(String),
    /// Versions or framing differ.
    Protocol(String),
    /// A missing or wrong secret.
    Authentication(String),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::NotEmber(s)
            | HandshakeError::Protocol(s)
            | HandshakeError::Authentication(s) => f.write_str(s),
        }
    }
}

/// What a state machine step produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send this frame body and wait for the peer's next frame.
    Send(Vec<u8>),
    /// Send this frame body; the handshake is complete and the peer is at this address.
    SendAndDone(Vec<u8>, RpcAddress),
    /// The handshake is complete; the peer is at this address.
    Done(RpcAddress),
    /// Send this refusal (if any) and close.
    Fail(Option<Vec<u8>>, HandshakeError),
}

fn encode(message: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    out.push(1);
    postcard::to_extend(message, out).expect("handshake messages always encode")
}

/// The body of a refusal frame.
pub(crate) fn refusal(kind: RefusalKind, reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + reason.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    out.push(KIND_REFUSED);
    out.push(match kind {
        RefusalKind::Protocol => 0,
        RefusalKind::Authentication => 1,
    });
    out.extend_from_slice(&reason.as_bytes()[..reason.len().min(1024)]);
    out
}

enum Parsed {
    Refused(HandshakeError),
    Message(Message),
}

/// Which side of the handshake is reading: a refusal's text is read by both, so it names the
/// server's and the client's version rather than "this side" and "the peer".
#[derive(Debug, Clone, Copy)]
enum Side {
    Client,
    Server,
}

fn parse(frame: &[u8], reader: Side) -> Result<Parsed, HandshakeError> {
    if frame.len() < 7 || frame[..4] != MAGIC {
        return Err(HandshakeError::NotEmber(
            "the peer is not an Ember RPC endpoint (bad magic)".into(),
        ));
    }
    let version = u16::from_be_bytes([frame[4], frame[5]]);
    if frame[6] == KIND_REFUSED {
        let kind = frame.get(7).copied().unwrap_or(0);
        let reason = String::from_utf8_lossy(frame.get(8..).unwrap_or_default()).into_owned();
        return Ok(Parsed::Refused(if kind == 1 {
            HandshakeError::Authentication(reason)
        } else {
            HandshakeError::Protocol(reason)
        }));
    }
    if version != PROTOCOL_VERSION {
        let (server, client) = match reader {
            Side::Server => (PROTOCOL_VERSION, version),
            Side::Client => (version, PROTOCOL_VERSION),
        };
        return Err(HandshakeError::Protocol(format!(
            "protocol version mismatch: the server speaks version {server}, the client speaks version {client}"
        )));
    }
    postcard::from_bytes(&frame[7..])
        .map(Parsed::Message)
        .map_err(|e| HandshakeError::Protocol(format!("malformed handshake message: {e}")))
}

/// Fresh random bytes for a nonce.
pub(crate) fn nonce() -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n).expect("the OS random source is available");
    n
}

/// The connecting side.
#[derive(Debug)]
pub(crate) struct ClientHandshake {
    own_address: RpcAddress,
    secret: Option<Secret>,
    nonce: Nonce,
    state: ClientState,
}

#[derive(Debug)]
enum ClientState {
    Start,
    AwaitChallenge,
    AwaitWelcome {
        server_address: RpcAddress,
        server_nonce: Nonce,
    },
    Finished,
}

impl ClientHandshake {
    pub(crate) fn new(own_address: RpcAddress, secret: Option<Secret>, nonce: Nonce) -> Self {
        Self {
            own_address,
            secret,
            nonce,
            state: ClientState::Start,
        }
    }

    /// The first frame to send.
    pub(crate) fn start(&mut self) -> Vec<u8> {
        self.state = ClientState::AwaitChallenge;
        encode(&Message::Hello {
            address: self.own_address.clone(),
            nonce: self.nonce,
        })
    }

    /// Feeds the server's next frame.
    pub(crate) fn on_frame(&mut self, frame: &[u8]) -> Step {
        let parsed = match parse(frame, Side::Client) {
            Ok(p) => p,
            Err(e) => return self.fail(None, e),
        };
        let message = match parsed {
            Parsed::Refused(e) => return self.fail(None, e),
            Parsed::Message(m) => m,
        };
        match (
            std::mem::replace(&mut self.state, ClientState::Finished),
            message,
        ) {
            (
                ClientState::AwaitChallenge,
                Message::Challenge {
                    address,
                    nonce,
                    auth_required,
                },
            ) => match (&self.secret, auth_required) {
                (Some(_), false) => {
                    let reason = "this side requires authentication (ember.authenticate) but the peer does not";
                    self.fail(
                        Some(refusal(RefusalKind::Authentication, reason)),
                        HandshakeError::Authentication(reason.into()),
                    )
                }
                (secret, _) => {
                    let mac = secret
                        .as_ref()
                        .map(|s| s.mac(CLIENT_LABEL, &self.nonce, &nonce));
                    self.state = ClientState::AwaitWelcome {
                        server_address: address,
                        server_nonce: nonce,
                    };
                    Step::Send(encode(&Message::Proof { mac }))
                }
            },
            (
                ClientState::AwaitWelcome {
                    server_address,
                    server_nonce,
                },
                Message::Welcome { mac },
            ) => match (&self.secret, mac) {
                (None, _) => Step::Done(server_address),
                (Some(secret), Some(mac))
                    if secret.verify(SERVER_LABEL, &server_nonce, &self.nonce, &mac) =>
                {
                    Step::Done(server_address)
                }
                (Some(_), _) => self.fail(
                    None,
                    HandshakeError::Authentication(
                        "the peer did not prove it knows the shared secret".into(),
                    ),
                ),
            },
            (_, other) => self.fail(
                None,
                HandshakeError::Protocol(format!("unexpected handshake message {}", kind(&other))),
            ),
        }
    }

    fn fail(&mut self, send: Option<Vec<u8>>, error: HandshakeError) -> Step {
        self.state = ClientState::Finished;
        Step::Fail(send, error)
    }
}

/// The accepting side.
#[derive(Debug)]
pub(crate) struct ServerHandshake {
    own_address: RpcAddress,
    secret: Option<Secret>,
    nonce: Nonce,
    state: ServerState,
}

#[derive(Debug)]
enum ServerState {
    AwaitHello,
    AwaitProof {
        client_address: RpcAddress,
        client_nonce: Nonce,
    },
    Finished,
}

impl ServerHandshake {
    pub(crate) fn new(own_address: RpcAddress, secret: Option<Secret>, nonce: Nonce) -> Self {
        Self {
            own_address,
            secret,
            nonce,
            state: ServerState::AwaitHello,
        }
    }

    /// Feeds the client's next frame.
    pub(crate) fn on_frame(&mut self, frame: &[u8]) -> Step {
        let parsed = match parse(frame, Side::Server) {
            Ok(p) => p,
            Err(e @ HandshakeError::NotEmber(_)) => return self.fail(None, e),
            Err(e) => {
                let body = refusal(RefusalKind::Protocol, &e.to_string());
                return self.fail(Some(body), e);
            }
        };
        let message = match parsed {
            Parsed::Refused(e) => return self.fail(None, e),
            Parsed::Message(m) => m,
        };
        match (
            std::mem::replace(&mut self.state, ServerState::Finished),
            message,
        ) {
            (ServerState::AwaitHello, Message::Hello { address, nonce }) => {
                self.state = ServerState::AwaitProof {
                    client_address: address,
                    client_nonce: nonce,
                };
                Step::Send(encode(&Message::Challenge {
                    address: self.own_address.clone(),
                    nonce: self.nonce,
                    auth_required: self.secret.is_some(),
                }))
            }
            (
                ServerState::AwaitProof {
                    client_address,
                    client_nonce,
                },
                Message::Proof { mac },
            ) => match (&self.secret, mac) {
                (None, _) => {
                    Step::SendAndDone(encode(&Message::Welcome { mac: None }), client_address)
                }
                (Some(secret), Some(mac))
                    if secret.verify(CLIENT_LABEL, &client_nonce, &self.nonce, &mac) =>
                {
                    let mac = secret.mac(SERVER_LABEL, &self.nonce, &client_nonce);
                    Step::SendAndDone(encode(&Message::Welcome { mac: Some(mac) }), client_address)
                }
                (Some(_), mac) => {
                    let reason = if mac.is_none() {
                        "authentication required (ember.authenticate) but the client presented no secret"
                    } else {
                        "authentication failed: the client's secret does not match"
                    };
                    self.fail(
                        Some(refusal(RefusalKind::Authentication, reason)),
                        HandshakeError::Authentication(reason.into()),
                    )
                }
            },
            (_, other) => {
                let reason = format!("unexpected handshake message {}", kind(&other));
                self.fail(
                    Some(refusal(RefusalKind::Protocol, &reason)),
                    HandshakeError::Protocol(reason),
                )
            }
        }
    }

    fn fail(&mut self, send: Option<Vec<u8>>, error: HandshakeError) -> Step {
        self.state = ServerState::Finished;
        Step::Fail(send, error)
    }
}

fn kind(message: &Message) -> &'static str {
    match message {
        Message::Hello { .. } => "Hello",
        Message::Challenge { .. } => "Challenge",
        Message::Proof { .. } => "Proof",
        Message::Welcome { .. } => "Welcome",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(p: u16) -> RpcAddress {
        RpcAddress::new("127.0.0.1", p)
    }

    /// Runs both machines against each other; returns (client outcome, server outcome).
    fn run(client_secret: Option<&str>, server_secret: Option<&str>) -> (Step, Step) {
        let mut c = ClientHandshake::new(addr(1), client_secret.map(Secret::new), nonce());
        let mut s = ServerHandshake::new(addr(2), server_secret.map(Secret::new), nonce());
        let hello = c.start();
        let Step::Send(challenge) = s.on_frame(&hello) else {
            panic!("server must challenge")
        };
        let proof = match c.on_frame(&challenge) {
            Step::Send(p) => p,
            fail => return (fail, Step::Fail(None, HandshakeError::Protocol("-".into()))),
        };
        let server_step = s.on_frame(&proof);
        let client_step = match &server_step {
            Step::SendAndDone(welcome, _) | Step::Fail(Some(welcome), _) => c.on_frame(welcome),
            other => panic!("unexpected {other:?}"),
        };
        (client_step, server_step)
    }

    #[test]
    fn completes_without_auth() {
        let (c, s) = run(None, None);
        assert_eq!(c, Step::Done(addr(2)));
        assert!(matches!(s, Step::SendAndDone(_, a) if a == addr(1)));
    }

    #[test]
    fn completes_with_the_same_secret() {
        let (c, s) = run(Some("s3cret"), Some("s3cret"));
        assert_eq!(c, Step::Done(addr(2)));
        assert!(matches!(s, Step::SendAndDone(..)));
    }

    #[test]
    fn refuses_a_wrong_or_missing_secret() {
        for client in [Some("wrong"), None] {
            let (c, s) = run(client, Some("s3cret"));
            assert!(
                matches!(c, Step::Fail(_, HandshakeError::Authentication(_))),
                "{c:?}"
            );
            assert!(matches!(
                s,
                Step::Fail(Some(_), HandshakeError::Authentication(_))
            ));
        }
    }

    #[test]
    fn client_with_secret_refuses_unauthenticated_server() {
        let (c, _) = run(Some("s3cret"), None);
        assert!(matches!(
            c,
            Step::Fail(Some(_), HandshakeError::Authentication(_))
        ));
    }

    #[test]
    fn version_mismatch_names_both_versions() {
        let mut s = ServerHandshake::new(addr(2), None, nonce());
        let mut hello = ClientHandshake::new(addr(1), None, nonce()).start();
        hello[4..6].copy_from_slice(&7u16.to_be_bytes());
        let Step::Fail(Some(refused), HandshakeError::Protocol(reason)) = s.on_frame(&hello) else {
            panic!("must refuse")
        };
        // The same text reads right on both sides: the refusal travels to the client as is.
        assert!(
            reason.contains("the server speaks version 1, the client speaks version 7"),
            "{reason}"
        );
        let mut c = ClientHandshake::new(addr(1), None, nonce());
        let _ = c.start();
        assert!(
            matches!(c.on_frame(&refused), Step::Fail(None, HandshakeError::Protocol(r)) if r == reason)
        );

        // A client that finds the server's version wrong says the same way round.
        let mut s = ServerHandshake::new(addr(2), None, nonce());
        let mut c = ClientHandshake::new(addr(1), None, nonce());
        let Step::Send(mut challenge) = s.on_frame(&c.start()) else {
            panic!("server must challenge")
        };
        challenge[4..6].copy_from_slice(&7u16.to_be_bytes());
        let Step::Fail(_, HandshakeError::Protocol(reason)) = c.on_frame(&challenge) else {
            panic!("must refuse")
        };
        assert!(
            reason.contains("the server speaks version 7, the client speaks version 1"),
            "{reason}"
        );
    }

    #[test]
    fn a_replayed_proof_is_refused() {
        let mut c = ClientHandshake::new(addr(1), Some(Secret::new("k")), nonce());
        let mut s1 = ServerHandshake::new(addr(2), Some(Secret::new("k")), nonce());
        let Step::Send(ch) = s1.on_frame(&c.start()) else {
            panic!()
        };
        let Step::Send(proof) = c.on_frame(&ch) else {
            panic!()
        };
        // The same proof against a server that chose a different nonce.
        let mut s2 = ServerHandshake::new(addr(2), Some(Secret::new("k")), nonce());
        let _ = s2.on_frame(&ClientHandshake::new(addr(1), None, [0; 16]).start());
        assert!(matches!(
            s2.on_frame(&proof),
            Step::Fail(_, HandshakeError::Authentication(_))
        ));
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(*****)");
    }

    proptest! {
        #[test]
        fn garbage_never_panics_and_never_completes(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            let mut s = ServerHandshake::new(addr(2), Some(Secret::new("k")), nonce());
            let step = s.on_frame(&data);
            prop_assert!(!matches!(step, Step::Done(_) | Step::SendAndDone(..)));
            let mut c = ClientHandshake::new(addr(1), None, nonce());
            let _ = c.start();
            let _ = c.on_frame(&data);
        }
    }
}
