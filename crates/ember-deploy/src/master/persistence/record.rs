//! The records a leading master persists, and their byte format.
//!
//! Spark persists its live `WorkerInfo` / `ApplicationInfo` / `DriverInfo` objects with Java
//! serialization; recovery then rebuilds them with empty transient state. Ember persists only what
//! recovery needs, as explicit records:
//!
//! * worker: id, host, port, RPC address, cores, memory, web UI;
//! * application: id, description, start time, driver address;
//! * driver: id, description, submission time.
//!
//! # Format (version 1)
//!
//! ```text
//!   0      4         6      7             11        15
//!   │ EMRC │ version │ kind │ payload len │ CRC-32  │ payload (postcard) …
//!          └── u16 LE ──────┴── u32 LE ───┴─ u32 LE ┘
//! ```
//!
//! The CRC-32 (IEEE) covers version, kind, length and payload, so any damaged byte is caught
//! before the payload is decoded; the decoder never panics and names what is wrong. The payload
//! is postcard, which is compact and stable for a fixed record layout; a layout change must bump
//! the version (old versions are refused with a clear error rather than misread).

use serde::{Deserialize, Serialize};

use ember_rpc::RpcAddress;

use crate::description::{ApplicationDescription, DriverDescription};
use crate::ids::{AppId, DriverId, WorkerId};

/// First bytes of every record.
pub const MAGIC: [u8; 4] = *b"EMRC";
/// The record format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 15;

/// A worker, as recovery needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Its id.
    pub id: WorkerId,
    /// Its host.
    pub host: String,
    /// Its RPC port.
    pub port: u16,
    /// The address of its RpcEnv, where a new master sends `MasterChanged`.
    pub address: RpcAddress,
    /// Cores offered.
    pub cores: u32,
    /// Memory offered, MiB.
    pub memory_mb: u32,
    /// Its web UI.
    pub web_ui_url: String,
}

/// An application, as recovery needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationRecord {
    /// Its id.
    pub id: AppId,
    /// What it asked for.
    pub desc: ApplicationDescription,
    /// Registration time, ms since the Unix epoch.
    pub start_time_ms: u64,
    /// The address of its driver's RpcEnv, where a new master sends `MasterChanged`.
    pub driver_address: RpcAddress,
}

/// A driver, as recovery needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverRecord {
    /// Its id.
    pub id: DriverId,
    /// What to run.
    pub desc: DriverDescription,
    /// Submission time, ms since the Unix epoch.
    pub start_time_ms: u64,
}

/// The kinds of record, each stored under `<prefix><id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// `worker_<id>`.
    Worker,
    /// `app_<id>`.
    Application,
    /// `driver_<id>`.
    Driver,
}

impl RecordKind {
    /// Every kind.
    pub const ALL: [RecordKind; 3] = [
        RecordKind::Worker,
        RecordKind::Application,
        RecordKind::Driver,
    ];

    /// The name prefix (Spark's persistence keys).
    pub fn prefix(self) -> &'static str {
        match self {
            RecordKind::Worker => "worker_",
            RecordKind::Application => "app_",
            RecordKind::Driver => "driver_",
        }
    }

    fn byte(self) -> u8 {
        match self {
            RecordKind::Worker => 1,
            RecordKind::Application => 2,
            RecordKind::Driver => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        RecordKind::ALL.into_iter().find(|k| k.byte() == b)
    }

    /// The stored name of the record with this id.
    pub fn name(self, id: &str) -> String {
        format!("{}{id}", self.prefix())
    }
}

/// One persisted record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A worker.
    Worker(WorkerRecord),
    /// An application.
    Application(ApplicationRecord),
    /// A driver.
    Driver(DriverRecord),
}

impl Record {
    /// Its kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Worker(_) => RecordKind::Worker,
            Record::Application(_) => RecordKind::Application,
            Record::Driver(_) => RecordKind::Driver,
        }
    }

    /// Its id as text.
    pub fn id(&self) -> &str {
        match self {
            Record::Worker(r) => r.id.as_str(),
            Record::Application(r) => r.id.as_str(),
            Record::Driver(r) => r.id.as_str(),
        }
    }

    /// The name it is stored under (`worker_<id>`, `app_<id>`, `driver_<id>`).
    pub fn name(&self) -> String {
        self.kind().name(self.id())
    }

    /// The record in the byte format described in the module documentation.
    pub fn encode(&self) -> Vec<u8> {
        let payload = match self {
            Record::Worker(r) => postcard::to_allocvec(r),
            Record::Application(r) => postcard::to_allocvec(r),
            Record::Driver(r) => postcard::to_allocvec(r),
        }
        .expect("records are plain data and always encode");
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.push(self.kind().byte());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        let crc = crc32(&[&out[4..11], &payload]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Reads a record, checking everything the format promises.
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        if bytes.len() < HEADER_LEN {
            return Err(RecordError::TooShort { len: bytes.len() });
        }
        if bytes[..4] != MAGIC {
            return Err(RecordError::BadMagic);
        }
        let declared_len = u32::from_le_bytes([bytes[7], bytes[8], bytes[9], bytes[10]]) as usize;
        let payload = &bytes[HEADER_LEN..];
        let stored_crc = u32::from_le_bytes([bytes[11], bytes[12], bytes[13], bytes[14]]);
        let crc = crc32(&[&bytes[4..11], payload]);
        if crc != stored_crc {
            // Checked before the fields it covers, so a damaged version or kind byte reads as
            // damage rather than as a different format.
            return Err(RecordError::Checksum {
                stored: stored_crc,
                computed: crc,
            });
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != FORMAT_VERSION {
            return Err(RecordError::UnsupportedVersion { found: version });
        }
        let kind = RecordKind::from_byte(bytes[6]).ok_or(RecordError::UnknownKind(bytes[6]))?;
        if declared_len != payload.len() {
            return Err(RecordError::LengthMismatch {
                declared: declared_len,
                actual: payload.len(),
            });
        }
        fn exact<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, RecordError> {
            let (value, rest) = postcard::take_from_bytes::<T>(payload)
                .map_err(|e| RecordError::Payload(e.to_string()))?;
            if !rest.is_empty() {
                return Err(RecordError::Payload(format!(
                    "{} bytes left over after the record",
                    rest.len()
                )));
            }
            Ok(value)
        }
        Ok(match kind {
            RecordKind::Worker => Record::Worker(exact(payload)?),
            RecordKind::Application => Record::Application(exact(payload)?),
            RecordKind::Driver => Record::Driver(exact(payload)?),
        })
    }
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Fewer bytes than a header.
    #[error("{len} bytes is too short for a record (the header alone is {HEADER_LEN})")]
    TooShort {
        /// How many bytes there were.
        len: usize,
    },
    /// Not an Ember recovery record.
    #[error("not an Ember recovery record (bad magic)")]
    BadMagic,
    /// Written by an Ember with another record format.
    #[error(
        "record format version {found} is not supported (this build reads version {FORMAT_VERSION})"
    )]
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// A kind byte this build does not know.
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    /// The header's length disagrees with the bytes present (a truncated or padded record).
    #[error("the header announces {declared} payload bytes but {actual} are present")]
    LengthMismatch {
        /// Announced.
        declared: usize,
        /// Present.
        actual: usize,
    },
    /// The checksum does not match: the record is damaged.
    #[error(
        "checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the record is damaged"
    )]
    Checksum {
        /// Stored in the header.
        stored: u32,
        /// Computed over the bytes.
        computed: u32,
    },
    /// The payload does not decode as a record of its kind.
    #[error("the payload does not decode: {0}")]
    Payload(String),
    /// The record's id disagrees with the name it is stored under.
    #[error("stored as {name:?} but holds the record {actual:?}")]
    WrongName {
        /// The stored name.
        name: String,
        /// The name its content implies.
        actual: String,
    },
}

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it) over the concatenated parts.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for part in parts {
        for &byte in *part {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                let mask = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
            }
        }
    }
    !crc
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::description::{AppBinary, BinaryLocation, Command};

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
    }

    pub(crate) fn arb_text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 ._/:-]{0,24}"
    }

    fn arb_address() -> impl Strategy<Value = RpcAddress> {
        (arb_text(), any::<u16>()).prop_map(|(h, p)| RpcAddress::new(h, p))
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        (
            arb_text(),
            arb_text(),
            any::<u64>(),
            prop_oneof![
                arb_address().prop_map(BinaryLocation::FileServer),
                arb_text().prop_map(BinaryLocation::LocalPath),
            ],
            proptest::collection::vec(arb_text(), 0..4),
            proptest::collection::vec((arb_text(), arb_text()), 0..3),
        )
            .prop_map(
                |(name, digest, size, location, arguments, environment)| Command {
                    binary: AppBinary {
                        name,
                        digest,
                        size,
                        location,
                    },
                    arguments,
                    environment,
                },
            )
    }

    pub(crate) fn arb_record() -> impl Strategy<Value = Record> {
        prop_oneof![
            (
                arb_text(),
                arb_text(),
                any::<u16>(),
                arb_address(),
                any::<u32>(),
                any::<u32>(),
                arb_text()
            )
                .prop_map(|(id, host, port, address, cores, memory_mb, web_ui_url)| {
                    Record::Worker(WorkerRecord {
                        id: id.into(),
                        host,
                        port,
                        address,
                        cores,
                        memory_mb,
                        web_ui_url,
                    })
                }),
            (
                arb_text(),
                arb_text(),
                any::<Option<u32>>(),
                any::<u32>(),
                any::<Option<u32>>(),
                any::<Option<u32>>(),
                arb_command(),
                any::<u64>(),
                arb_address(),
            )
                .prop_map(
                    |(id, name, max_cores, mem, cpe, limit, command, start, driver)| {
                        Record::Application(ApplicationRecord {
                            id: id.into(),
                            desc: ApplicationDescription {
                                name,
                                max_cores,
                                memory_per_executor_mb: mem,
                                cores_per_executor: cpe,
                                initial_executor_limit: limit,
                                command,
                                app_ui_url: None,
                                user: "u".into(),
                            },
                            start_time_ms: start,
                            driver_address: driver,
                        })
                    }
                ),
            (
                arb_text(),
                any::<u32>(),
                any::<u32>(),
                any::<bool>(),
                arb_command(),
                any::<u64>()
            )
                .prop_map(|(id, mem_mb, cores, supervise, command, start)| {
                    Record::Driver(DriverRecord {
                        id: id.into(),
                        desc: DriverDescription {
                            mem_mb,
                            cores,
                            supervise,
                            command,
                        },
                        start_time_ms: start,
                    })
                }),
        ]
    }

    proptest! {
        #[test]
        fn records_round_trip(record in arb_record()) {
            let bytes = record.encode();
            prop_assert_eq!(Record::decode(&bytes), Ok(record));
        }

        #[test]
        fn the_decoder_never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let _ = Record::decode(&bytes);
        }

        #[test]
        fn the_decoder_never_panics_on_a_valid_header_with_a_random_payload(
            kind in 1u8..=3,
            payload in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            bytes.push(kind);
            bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            let crc = crc32(&[&bytes[4..11], &payload]);
            bytes.extend_from_slice(&crc.to_le_bytes());
            bytes.extend_from_slice(&payload);
            let _ = Record::decode(&bytes);
        }

        #[test]
        fn any_damaged_byte_is_detected(
            record in arb_record(),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut bytes = record.encode();
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            prop_assert!(Record::decode(&bytes).is_err());
        }

        #[test]
        fn truncation_and_padding_are_detected(record in arb_record(), cut in any::<prop::sample::Index>()) {
            let bytes = record.encode();
            let n = cut.index(bytes.len());
            prop_assert!(Record::decode(&bytes[..n]).is_err());
            let mut padded = bytes.clone();
            padded.push(0);
            prop_assert!(Record::decode(&padded).is_err());
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(
            Record::decode(b"EMRC"),
            Err(RecordError::TooShort { len: 4 })
        );
        assert_eq!(
            Record::decode(&[0u8; HEADER_LEN]),
            Err(RecordError::BadMagic)
        );
        let record = Record::Driver(DriverRecord {
            id: "driver-1".into(),
            desc: DriverDescription {
                mem_mb: 1,
                cores: 1,
                supervise: false,
                command: Command {
                    binary: AppBinary {
                        name: "pi".into(),
                        digest: "00".into(),
                        size: 1,
                        location: BinaryLocation::LocalPath("/bin/pi".into()),
                    },
                    arguments: vec![],
                    environment: vec![],
                },
            },
            start_time_ms: 5,
        });
        let mut bytes = record.encode();
        bytes[4] = 9;
        let crc = crc32(&[&bytes[4..11], &bytes[HEADER_LEN..]]);
        bytes[11..15].copy_from_slice(&crc.to_le_bytes());
        let err = Record::decode(&bytes).unwrap_err();
        assert_eq!(err, RecordError::UnsupportedVersion { found: 9 });
        assert!(err.to_string().contains("version 9"), "{err}");
        assert_eq!(record.name(), "driver_driver-1");
    }
}
