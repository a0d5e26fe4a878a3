//! The SHA-256 digest of the application binary.
//!
//! Code pointers in shipped closures are only meaningful inside the binary that produced them, so
//! the digest of the running executable travels with executor registration (a mismatch is
//! refused there), keys the seal of every shipped entry, and lets a Worker verify an app binary
//! it fetched into its cache. Spark has no counterpart: the JVM ships class files instead.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use super::error::ClosureError;

/// The SHA-256 digest of an application binary. `Display` and `FromStr` use 64 lowercase hex
/// digits; serde uses the hex string in human-readable formats and 32 raw bytes otherwise.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BinaryDigest([u8; 32]);

impl BinaryDigest {
    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 12 hex digits, enough to tell binaries apart in logs and directory names.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(12);
        s
    }
}

impl fmt::Display for BinaryDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for BinaryDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BinaryDigest({self})")
    }
}

impl FromStr for BinaryDigest {
    type Err = ClosureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| ClosureError::Decode {
            what: "binary digest",
            reason: format!("{reason} in {s:?}"),
        };
        if s.len() != 64 {
            return Err(bad("expected 64 hex digits"));
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or_else(|| bad("not a hex digit"))?;
            let lo = hex_value(pair[1]).ok_or_else(|| bad("not a hex digit"))?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Self(out))
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl Serialize for BinaryDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for BinaryDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(HexVisitor)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Self)
        }
    }
}

struct HexVisitor;

impl Visitor<'_> for HexVisitor {
    type Value = BinaryDigest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SHA-256 digest as 64 hex digits")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        v.parse().map_err(E::custom)
    }
}

/// Computes the SHA-256 digest of a file, reading it in chunks so that a large binary is never
/// held in memory at once. The Worker uses this to verify an app binary it fetched.
pub fn digest_file(path: impl AsRef<Path>) -> io::Result<BinaryDigest> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(BinaryDigest(hasher.finalize().into()))
}

/// The digest of the binary this process is running, computed once per process.
///
/// On Linux the image is read through `/proc/self/exe`, which names the file the process was
/// started from even if that path has since been replaced (say by a rebuild); elsewhere
/// `std::env::current_exe()` is read. The driver's file server should serve the same file, so
/// that Workers receive exactly the bytes this digest describes.
pub fn binary_digest() -> Result<&'static BinaryDigest, ClosureError> {
    static DIGEST: OnceLock<Result<BinaryDigest, ClosureError>> = OnceLock::new();
    DIGEST
        .get_or_init(|| {
            let path = running_executable()?;
            let digest = digest_file(&path).map_err(|e| ClosureError::Digest {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            tracing::debug!(path = %path.display(), %digest, "computed the application binary digest");
            Ok(digest)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The path through which this process's executable image can be read.
fn running_executable() -> Result<PathBuf, ClosureError> {
    #[cfg(target_os = "linux")]
    {
        let proc_exe = Path::new("/proc/self/exe");
        if proc_exe.exists() {
            return Ok(proc_exe.to_path_buf());
        }
    }
    std::env::current_exe().map_err(|e| ClosureError::Digest {
        path: PathBuf::from("<current executable>"),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "ember-closure-digest-{}-{name}",
            std::process::id()
        ));
        let mut file = File::create(&path).unwrap();
        file.write_all(contents).unwrap();
        path
    }

    #[test]
    fn digest_of_abc_matches_the_published_sha256() {
        let path = temp_file("abc", b"abc");
        let digest = digest_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(digest.to_string(), ABC_SHA256);
    }

    #[test]
    fn digest_streams_files_larger_than_one_buffer() {
        let contents: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        let path = temp_file("large", &contents);
        let digest = digest_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let expected: [u8; 32] = Sha256::digest(&contents).into();
        assert_eq!(digest, BinaryDigest::from_bytes(expected));
    }

    #[test]
    fn missing_file_is_an_io_error() {
        assert!(digest_file("/nonexistent/ember/binary").is_err());
    }

    #[test]
    fn hex_round_trips_and_rejects_bad_text() {
        let digest: BinaryDigest = ABC_SHA256.parse().unwrap();
        assert_eq!(digest.to_string(), ABC_SHA256);
        assert_eq!(digest.short(), &ABC_SHA256[..12]);
        assert_eq!(
            ABC_SHA256.to_uppercase().parse::<BinaryDigest>().unwrap(),
            digest
        );
        assert!("abc".parse::<BinaryDigest>().is_err());
        let not_hex = format!("zz{}", &ABC_SHA256[2..]);
        assert!(matches!(
            not_hex.parse::<BinaryDigest>(),
            Err(ClosureError::Decode { .. })
        ));
    }

    #[test]
    fn serde_uses_raw_bytes_in_postcard() {
        let digest: BinaryDigest = ABC_SHA256.parse().unwrap();
        let bytes = postcard::to_allocvec(&digest).unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(
            postcard::from_bytes::<BinaryDigest>(&bytes).unwrap(),
            digest
        );
    }

    #[test]
    fn binary_digest_is_computed_once_and_matches_the_file() {
        let first = binary_digest().unwrap();
        let second = binary_digest().unwrap();
        assert!(std::ptr::eq(first, second));
        assert_eq!(*first, digest_file(running_executable().unwrap()).unwrap());
    }
}
