//! Envelopes: what a frame carries once the handshake is done.
//!
//! Spark counterpart: `RequestMessage` / `RpcRequest` / `OneWayMessage` / `RpcResponse` /
//! `RpcFailure`. The header is hand-written (a kind byte, a LEB128 request id, a length-prefixed
//! endpoint name) so that routing never needs the message's type; the payload is the message
//! encoded with postcard.
//!
//! ```text
//! one-way   1 | name_len:u8 | name | payload
//! request   2 | id:varint | name_len:u8 | name | payload
//! response  3 | id:varint | payload
//! failure   4 | id:varint | postcard(CallFailure)
//! ```

use bytes::Bytes;
use serde::Serialize;

use crate::error::{CallFailure, RpcError};
use crate::transport::frame::{FrameError, begin_frame, finish_frame};

const KIND_ONE_WAY: u8 = 1;
const KIND_REQUEST: u8 = 2;
const KIND_RESPONSE: u8 = 3;
const KIND_FAILURE: u8 = 4;

/// Longest endpoint name that fits the one-byte length.
pub(crate) const MAX_NAME_LEN: usize = u8::MAX as usize;

/// Whether `name` can name an endpoint on the wire: 1 to [`MAX_NAME_LEN`] bytes.
pub(crate) fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
}

/// Refuses a name that cannot be sent, with [`RpcError::InvalidName`].
pub(crate) fn check_name(name: &str) -> Result<(), RpcError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(RpcError::InvalidName {
            endpoint: name.to_owned(),
        })
    }
}

/// An endpoint name read from a frame: a slice of it, checked to be UTF-8 (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointName(Bytes);

impl EndpointName {
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for EndpointName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for EndpointName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A decoded envelope. Name and payload are slices of the frame (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Envelope {
    OneWay {
        endpoint: EndpointName,
        payload: Bytes,
    },
    Request {
        id: u64,
        endpoint: EndpointName,
        payload: Bytes,
    },
    Response {
        id: u64,
        payload: Bytes,
    },
    Failure {
        id: u64,
        failure: CallFailure,
    },
}

/// Why a frame is not a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvelopeError {
    #[error("unknown envelope kind {0}")]
    UnknownKind(u8),
    #[error("truncated envelope header")]
    Truncated,
    #[error("request id is not a valid varint")]
    BadVarint,
    #[error("endpoint name is not UTF-8")]
    BadName,
    #[error("failure reply does not decode: {0}")]
    BadFailure(String),
}

impl Envelope {
    /// Parses a frame body.
    pub(crate) fn decode(mut frame: Bytes) -> Result<Self, EnvelopeError> {
        let kind = *frame.first().ok_or(EnvelopeError::Truncated)?;
        let _ = split(&mut frame, 1)?;
        match kind {
            KIND_ONE_WAY => {
                let endpoint = read_name(&mut frame)?;
                Ok(Envelope::OneWay {
                    endpoint,
                    payload: frame,
                })
            }
            KIND_REQUEST => {
                let id = read_varint(&mut frame)?;
                let endpoint = read_name(&mut frame)?;
                Ok(Envelope::Request {
                    id,
                    endpoint,
                    payload: frame,
                })
            }
            KIND_RESPONSE => {
                let id = read_varint(&mut frame)?;
                Ok(Envelope::Response { id, payload: frame })
            }
            KIND_FAILURE => {
                let id = read_varint(&mut frame)?;
                let failure = postcard::from_bytes(&frame)
                    .map_err(|e| EnvelopeError::BadFailure(e.to_string()))?;
                Ok(Envelope::Failure { id, failure })
            }
            other => Err(EnvelopeError::UnknownKind(other)),
        }
    }
}

fn split(buf: &mut Bytes, n: usize) -> Result<Bytes, EnvelopeError> {
    if buf.len() < n {
        return Err(EnvelopeError::Truncated);
    }
    Ok(buf.split_to(n))
}

fn read_varint(buf: &mut Bytes) -> Result<u64, EnvelopeError> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let byte = *buf.get(i).ok_or(EnvelopeError::Truncated)?;
        let bits = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return Err(EnvelopeError::BadVarint);
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            let _ = split(buf, i + 1)?;
            return Ok(value);
        }
    }
    Err(EnvelopeError::BadVarint)
}

fn read_name(buf: &mut Bytes) -> Result<EndpointName, EnvelopeError> {
    let len = *buf.first().ok_or(EnvelopeError::Truncated)? as usize;
    let _ = split(buf, 1)?;
    let name = split(buf, len)?;
    std::str::from_utf8(&name).map_err(|_| EnvelopeError::BadName)?;
    Ok(EndpointName(name))
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn write_name(out: &mut Vec<u8>, name: &str) -> Result<(), RpcError> {
    check_name(name)?;
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

fn finish<T: Serialize + ?Sized>(
    mut out: Vec<u8>,
    value: &T,
    what: &'static str,
    max: usize,
) -> Result<Bytes, RpcError> {
    out = postcard::to_extend(value, out).map_err(|e| RpcError::Encode {
        what,
        reason: e.to_string(),
    })?;
    finish_frame(&mut out, 0, max).map_err(|e| match e {
        FrameError::TooLarge { len, max } => RpcError::MessageTooLarge { size: len, max },
        FrameError::Empty => unreachable!("an envelope always has a kind byte"),
    })?;
    Ok(Bytes::from(out))
}

fn start(kind: u8, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    begin_frame(&mut out);
    out.push(kind);
    out
}

/// A whole frame carrying a one-way message.
pub(crate) fn encode_one_way<T: Serialize + ?Sized>(
    endpoint: &str,
    message: &T,
    max: usize,
) -> Result<Bytes, RpcError> {
    let mut out = start(KIND_ONE_WAY, 128 + endpoint.len());
    write_name(&mut out, endpoint)?;
    finish(out, message, "message", max)
}

/// A whole frame carrying a request.
pub(crate) fn encode_request<T: Serialize + ?Sized>(
    id: u64,
    endpoint: &str,
    message: &T,
    max: usize,
) -> Result<Bytes, RpcError> {
    let mut out = start(KIND_REQUEST, 128 + endpoint.len());
    write_varint(&mut out, id);
    write_name(&mut out, endpoint)?;
    finish(out, message, "request", max)
}

/// A whole frame carrying a reply.
pub(crate) fn encode_response<T: Serialize + ?Sized>(
    id: u64,
    value: &T,
    max: usize,
) -> Result<Bytes, RpcError> {
    let mut out = start(KIND_RESPONSE, 128);
    write_varint(&mut out, id);
    finish(out, value, "reply", max)
}

/// A whole frame carrying a failure reply. Long texts are cut so that it always fits.
pub(crate) fn encode_failure(id: u64, failure: &CallFailure) -> Bytes {
    const MAX_TEXT: usize = 16 * 1024;
    let cut = |s: &str| -> String {
        if s.len() <= MAX_TEXT {
            return s.to_owned();
        }
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes cut)", &s[..end], s.len() - end)
    };
    let failure = match failure {
        CallFailure::HandlerFailed { message } => CallFailure::HandlerFailed {
            message: cut(message),
        },
        CallFailure::HandlerPanicked { message } => CallFailure::HandlerPanicked {
            message: cut(message),
        },
        CallFailure::UndecodableRequest { reason } => CallFailure::UndecodableRequest {
            reason: cut(reason),
        },
        other => other.clone(),
    };
    let mut out = start(KIND_FAILURE, 64);
    write_varint(&mut out, id);
    finish(out, &failure, "failure", usize::MAX >> 1).expect("a cut failure always encodes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::frame::{FrameDecoder, PREFIX_LEN};
    use proptest::prelude::*;

    fn body(frame: Bytes) -> Bytes {
        frame.slice(PREFIX_LEN..)
    }

    #[test]
    fn round_trips_every_kind() {
        let one = encode_one_way("Master", &(1u32, "x"), 1 << 20).unwrap();
        let Envelope::OneWay { endpoint, payload } = Envelope::decode(body(one)).unwrap() else {
            panic!("wrong kind")
        };
        assert_eq!(endpoint, "Master");
        assert_eq!(
            postcard::from_bytes::<(u32, String)>(&payload).unwrap(),
            (1, "x".into())
        );

        let req = encode_request(u64::MAX, "Worker", &7u8, 1 << 20).unwrap();
        assert!(matches!(
            Envelope::decode(body(req)).unwrap(),
            Envelope::Request { id: u64::MAX, ref endpoint, .. } if *endpoint == "Worker"
        ));
        let resp = encode_response(300, &true, 1 << 20).unwrap();
        assert!(matches!(
            Envelope::decode(body(resp)).unwrap(),
            Envelope::Response { id: 300, .. }
        ));
        let fail = encode_failure(5, &CallFailure::NoReply);
        assert_eq!(
            Envelope::decode(body(fail)).unwrap(),
            Envelope::Failure {
                id: 5,
                failure: CallFailure::NoReply
            }
        );
    }

    #[test]
    fn enforces_the_size_limit_when_encoding() {
        let big = vec![0u8; 1000];
        let err = encode_one_way("e", &big, 100).unwrap_err();
        assert!(matches!(err, RpcError::MessageTooLarge { max: 100, .. }));
    }

    #[test]
    fn names_that_do_not_fit_are_refused_not_cut() {
        let longest = "n".repeat(MAX_NAME_LEN);
        let frame = encode_request(1, &longest, &0u8, 1 << 20).unwrap();
        assert!(matches!(
            Envelope::decode(body(frame)).unwrap(),
            Envelope::Request { ref endpoint, .. } if endpoint.as_str() == longest
        ));
        for name in [String::new(), "n".repeat(MAX_NAME_LEN + 1)] {
            let invalid = RpcError::InvalidName {
                endpoint: name.clone(),
            };
            assert_eq!(encode_one_way(&name, &0u8, 1 << 20), Err(invalid.clone()));
            assert_eq!(encode_request(1, &name, &0u8, 1 << 20), Err(invalid));
        }
    }

    #[test]
    fn long_failure_texts_are_cut() {
        let message = "é".repeat(100_000);
        let frame = encode_failure(1, &CallFailure::HandlerFailed { message });
        assert!(frame.len() < 20_000);
        assert!(Envelope::decode(body(frame)).is_ok());
    }

    #[test]
    fn rejects_garbage_headers() {
        assert_eq!(
            Envelope::decode(Bytes::from_static(&[9])),
            Err(EnvelopeError::UnknownKind(9))
        );
        assert_eq!(
            Envelope::decode(Bytes::from_static(&[2, 0x80])),
            Err(EnvelopeError::Truncated)
        );
        assert_eq!(
            Envelope::decode(Bytes::from_static(&[1, 5, b'a'])),
            Err(EnvelopeError::Truncated)
        );
        assert_eq!(
            Envelope::decode(Bytes::from_static(&[1, 1, 0xff])),
            Err(EnvelopeError::BadName)
        );
        assert_eq!(
            Envelope::decode(Bytes::from_static(&[
                3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
            ])),
            Err(EnvelopeError::BadVarint)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_frames_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Envelope::decode(Bytes::from(data));
        }

        #[test]
        fn truncated_frames_are_errors_or_shorter_payloads(id in any::<u64>(), name in "[A-Za-z]{1,20}",
            payload in proptest::collection::vec(any::<u8>(), 0..64), cut in 0usize..100) {
            let frame = encode_request(id, &name, &payload, 1 << 20).unwrap();
            let mut buf = bytes::BytesMut::from(&frame[..]);
            let whole = FrameDecoder::new(1 << 20).decode(&mut buf).unwrap().unwrap();
            let cut = cut.min(whole.len());
            match Envelope::decode(whole.slice(..cut)) {
                Ok(Envelope::Request { id: got, endpoint, .. }) => {
                    prop_assert_eq!(got, id);
                    prop_assert_eq!(endpoint.as_str(), name.as_str());
                }
                Ok(other) => prop_assert!(false, "decoded as {:?}", other),
                Err(_) => {}
            }
        }

        #[test]
        fn varints_round_trip(v in any::<u64>()) {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            let mut b = Bytes::from(out);
            prop_assert_eq!(read_varint(&mut b).unwrap(), v);
            prop_assert!(b.is_empty());
        }
    }
}
