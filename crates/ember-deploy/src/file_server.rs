//! Serving application binaries by digest over RPC, and fetching them.
//!
//! Spark counterpart: `NettyStreamManager` / `RpcEnvFileServer` (`addFile`, `addJar`), which a
//! driver uses to serve the application's jars to executors. In Ember the driver serves its own
//! executable: a [`FileServer`] endpoint (named [`FILE_SERVER_ENDPOINT`]) answers
//! [`FileServerMessage::FetchChunk`] asks with at most [`MAX_CHUNK`] bytes each (well under
//! `ember.rpc.message.maxSize`), and [`fetch`] pulls a whole file with several asks in flight,
//! verifying its size and SHA-256 digest.
//!
//! For the driver: register the running binary with [`FileServer::register_current_exe`]. It is
//! read through `/proc/self/exe`, the image actually running, so a binary rebuilt on disk while
//! the driver runs is never served under the old digest.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use ember_rpc::{
    EndpointContext, EndpointRef, HandlerResult, RpcAddress, RpcCallContext, RpcEndpoint, RpcEnv,
    RpcError,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info};

use crate::description::{AppBinary, BinaryLocation};
use crate::error::DeployError;
pub use crate::messages::FILE_SERVER_ENDPOINT;

/// The most bytes one [`FileServerMessage::FetchChunk`] returns.
pub const MAX_CHUNK: u32 = 4 * 1024 * 1024;
/// The chunk size [`fetch`] asks for.
pub const FETCH_CHUNK: u32 = 1024 * 1024;
/// How many chunk asks [`fetch`] keeps in flight.
pub const FETCH_WINDOW: usize = 8;

/// What the file server endpoint receives.
#[derive(Debug, Serialize, Deserialize)]
pub enum FileServerMessage {
    /// Ask → [`FetchChunkReply`]: up to `len` bytes (capped at [`MAX_CHUNK`]) of the file with
    /// this digest, from `offset`. Fewer bytes only at the end of the file.
    FetchChunk {
        /// SHA-256 of the file, lower-case hex.
        digest: String,
        /// Where to start.
        offset: u64,
        /// How many bytes.
        len: u32,
    },
    /// Ask → `()`: serve `path` under `digest` (from [`FileServer`], in this process only).
    #[serde(skip)]
    AddFile {
        /// SHA-256 of the file.
        digest: String,
        /// Its size.
        size: u64,
        /// Where to read it.
        path: PathBuf,
    },
}

/// The reply to [`FileServerMessage::FetchChunk`].
pub type FetchChunkReply = Result<Chunk, FileServerRefusal>;

/// Why a file server refused a chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FileServerRefusal {
    /// Nothing is served under that digest.
    #[error("no file with SHA-256 digest {digest} is served here")]
    UnknownDigest {
        /// The digest asked for.
        digest: String,
    },
    /// The offset is past the end of the file.
    #[error("offset {offset} is past the end of the file ({size} bytes)")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: u64,
        /// The file's size.
        size: u64,
    },
    /// The file could not be read.
    #[error("could not read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
}

/// Bytes that travel as one byte string (not a sequence of numbers).
#[derive(Clone, PartialEq, Eq)]
pub struct Chunk(pub Vec<u8>);

impl fmt::Debug for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Chunk({} bytes)", self.0.len())
    }
}

impl Serialize for Chunk {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Chunk {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> serde::de::Visitor<'de> for BytesVisitor {
            type Value = Chunk;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Chunk, E> {
                Ok(Chunk(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Chunk, E> {
                Ok(Chunk(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Chunk, A::Error> {
                let mut out =
                    Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_CHUNK as usize));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(Chunk(out))
            }
        }
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

#[derive(Debug, Clone)]
struct ServedFile {
    path: PathBuf,
    size: u64,
}

/// The endpoint: files by digest. Reads happen off the endpoint's task, so several chunks are
/// served at once.
#[derive(Debug, Default)]
struct FileServerEndpoint {
    files: HashMap<String, ServedFile>,
}

impl RpcEndpoint for FileServerEndpoint {
    type Message = FileServerMessage;

    async fn receive(
        &mut self,
        _ctx: &EndpointContext<FileServerMessage>,
        message: FileServerMessage,
    ) -> HandlerResult {
        debug!(
            ?message,
            "file server: ignoring a one-way message (it answers asks only)"
        );
        Ok(())
    }

    async fn receive_and_reply(
        &mut self,
        ctx: &EndpointContext<FileServerMessage>,
        message: FileServerMessage,
        reply: RpcCallContext,
    ) -> HandlerResult {
        match message {
            FileServerMessage::AddFile { digest, size, path } => {
                self.files.insert(digest, ServedFile { path, size });
                reply.reply(());
            }
            FileServerMessage::FetchChunk {
                digest,
                offset,
                len,
            } => {
                let Some(file) = self.files.get(&digest).cloned() else {
                    let refusal: FetchChunkReply = Err(FileServerRefusal::UnknownDigest { digest });
                    reply.reply(refusal);
                    return Ok(());
                };
                if offset > file.size {
                    let refusal: FetchChunkReply = Err(FileServerRefusal::OffsetOutOfRange {
                        offset,
                        size: file.size,
                    });
                    reply.reply(refusal);
                    return Ok(());
                }
                let len = u64::from(len.min(MAX_CHUNK)).min(file.size - offset) as usize;
                ctx.spawn(async move {
                    let path = file.path.clone();
                    let read =
                        tokio::task::spawn_blocking(move || read_at(&path, offset, len)).await;
                    let answer: FetchChunkReply = match read {
                        Ok(Ok(bytes)) => Ok(Chunk(bytes)),
                        Ok(Err(e)) => Err(FileServerRefusal::Read {
                            path: file.path.display().to_string(),
                            reason: e.to_string(),
                        }),
                        Err(e) => Err(FileServerRefusal::Read {
                            path: file.path.display().to_string(),
                            reason: e.to_string(),
                        }),
                    };
                    reply.reply(answer);
                });
            }
        }
        Ok(())
    }
}

fn read_at(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// A running file server: register files with it, hand out the [`AppBinary`]s it returns.
#[derive(Debug, Clone)]
pub struct FileServer {
    endpoint: EndpointRef<FileServerMessage>,
}

impl FileServer {
    /// Starts the endpoint [`FILE_SERVER_ENDPOINT`] in `env`.
    pub async fn start(env: &RpcEnv) -> Result<Self, DeployError> {
        let endpoint = env
            .setup_endpoint(FILE_SERVER_ENDPOINT, FileServerEndpoint::default())
            .await?;
        Ok(FileServer { endpoint })
    }

    /// The address of the RpcEnv serving the files.
    pub fn address(&self) -> &RpcAddress {
        self.endpoint.address()
    }

    /// Serves the file at `path`, named after its file name.
    pub async fn add_file(&self, path: impl AsRef<Path>) -> Result<AppBinary, DeployError> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "binary".to_owned());
        self.add_file_as(path, name).await
    }

    /// Serves the file at `path` under the name `name`. Its digest and size are computed now; a
    /// file changed afterwards fails the fetchers' digest check instead of being run.
    pub async fn add_file_as(
        &self,
        path: impl AsRef<Path>,
        name: impl Into<String>,
    ) -> Result<AppBinary, DeployError> {
        let path = path.as_ref().to_path_buf();
        let (digest, size) = digest_file_async(path.clone()).await?;
        self.serve(path, name.into(), digest, size).await
    }

    /// Serves the running executable (through `/proc/self/exe`), named after
    /// `std::env::current_exe()`.
    pub async fn register_current_exe(&self) -> Result<AppBinary, DeployError> {
        self.add_file_as("/proc/self/exe", current_exe_name()).await
    }

    /// [`register_current_exe`](Self::register_current_exe) under a SHA-256 digest the caller
    /// already computed of the same image (a driver hashes its binary once at start for its
    /// closures; hashing a large binary twice would double that cost). Fetchers verify the
    /// bytes against `digest`, so a wrong one fails their fetch and never runs other code.
    pub async fn register_current_exe_with_digest(
        &self,
        digest: String,
    ) -> Result<AppBinary, DeployError> {
        let path = PathBuf::from("/proc/self/exe");
        let size = tokio::fs::metadata(&path)
            .await
            .map_err(|source| DeployError::Io {
                action: "stat",
                path: path.clone(),
                source,
            })?
            .len();
        self.serve(path, current_exe_name(), digest, size).await
    }

    async fn serve(
        &self,
        path: PathBuf,
        name: String,
        digest: String,
        size: u64,
    ) -> Result<AppBinary, DeployError> {
        self.endpoint
            .ask::<()>(FileServerMessage::AddFile {
                digest: digest.clone(),
                size,
                path: path.clone(),
            })
            .await?;
        let binary = AppBinary {
            name,
            digest,
            size,
            location: BinaryLocation::FileServer(self.address().clone()),
        };
        info!(path = %path.display(), digest = %binary.digest, size, "serving file");
        Ok(binary)
    }
}

/// The running executable's file name (`app` if it cannot be told).
fn current_exe_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .map(|n| n.trim_end_matches(" (deleted)").to_owned())
        .unwrap_or_else(|| "app".to_owned())
}

/// SHA-256 (lower-case hex) and size of a file, reading it in 1 MiB blocks. Blocking.
pub fn digest_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex(&hasher.finalize()), size))
}

async fn digest_file_async(path: PathBuf) -> Result<(String, u64), DeployError> {
    let p = path.clone();
    tokio::task::spawn_blocking(move || digest_file(&p))
        .await
        .map_err(|e| DeployError::Io {
            action: "hash",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(|source| DeployError::Io {
            action: "hash",
            path,
            source,
        })
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Aborts the chunk tasks still in flight when a fetch fails or is dropped.
struct InFlight(VecDeque<tokio::task::JoinHandle<Result<FetchChunkReply, RpcError>>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Fetches `binary` from the file server at `from` into `dest` (created or truncated), with up
/// to [`FETCH_WINDOW`] chunk asks in flight, and checks its size and SHA-256 digest. On any
/// failure `dest` is removed.
pub async fn fetch(
    env: &RpcEnv,
    from: &RpcAddress,
    binary: &AppBinary,
    dest: &Path,
) -> Result<(), DeployError> {
    let result = fetch_into(env, from, binary, dest).await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(dest).await;
    }
    result
}

async fn fetch_into(
    env: &RpcEnv,
    from: &RpcAddress,
    binary: &AppBinary,
    dest: &Path,
) -> Result<(), DeployError> {
    let io_err = |action, source| DeployError::Io {
        action,
        path: dest.to_path_buf(),
        source,
    };
    let endpoint: EndpointRef<FileServerMessage> =
        env.endpoint_ref(from.clone(), FILE_SERVER_ENDPOINT);
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(|e| io_err("create", e))?;
    let mut hasher = Sha256::new();
    let mut in_flight = InFlight(VecDeque::new());
    let mut next_offset = 0u64;
    let mut received = 0u64;
    loop {
        while in_flight.0.len() < FETCH_WINDOW && next_offset < binary.size {
            let len = u64::from(FETCH_CHUNK).min(binary.size - next_offset) as u32;
            let (endpoint, digest, offset) = (endpoint.clone(), binary.digest.clone(), next_offset);
            in_flight.0.push_back(tokio::spawn(async move {
                endpoint
                    .ask::<FetchChunkReply>(FileServerMessage::FetchChunk {
                        digest,
                        offset,
                        len,
                    })
                    .await
            }));
            next_offset += u64::from(len);
        }
        let Some(task) = in_flight.0.pop_front() else {
            break;
        };
        let expected = u64::from(FETCH_CHUNK).min(binary.size - received);
        let chunk = task
            .await
            .map_err(|e| {
                DeployError::Rpc(RpcError::ConnectFailed {
                    address: from.clone(),
                    reason: format!("the fetch task failed: {e}"),
                })
            })??
            .map_err(|refusal| DeployError::FileServer {
                address: from.clone(),
                refusal,
            })?;
        if chunk.0.len() as u64 != expected {
            return Err(DeployError::SizeMismatch {
                name: binary.name.clone(),
                expected: binary.size,
                actual: received + chunk.0.len() as u64,
            });
        }
        hasher.update(&chunk.0);
        file.write_all(&chunk.0)
            .await
            .map_err(|e| io_err("write", e))?;
        received += expected;
    }
    // No fsync: the bytes are checked against the digest below, and a worker re-verifies a
    // cached binary once per process before using it, so a file damaged by a crash is fetched
    // again rather than run. Syncing tens of MiB would only slow every executor launch.
    file.flush().await.map_err(|e| io_err("write", e))?;
    drop(file);
    check_digest(binary, &hex(&hasher.finalize()))
}

/// Fails with [`DeployError::DigestMismatch`] unless `actual` is the binary's digest.
pub fn check_digest(binary: &AppBinary, actual: &str) -> Result<(), DeployError> {
    if actual.eq_ignore_ascii_case(&binary.digest) {
        Ok(())
    } else {
        Err(DeployError::DigestMismatch {
            name: binary.name.clone(),
            expected: binary.digest.clone(),
            actual: actual.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_encode_as_one_byte_string() {
        let chunk = Chunk(vec![1, 2, 255]);
        let bytes = postcard::to_allocvec(&chunk).unwrap();
        assert_eq!(bytes, vec![3, 1, 2, 255]);
        let back: Chunk = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, chunk);
        let reply: FetchChunkReply = Err(FileServerRefusal::UnknownDigest {
            digest: "ab".into(),
        });
        let back: FetchChunkReply =
            postcard::from_bytes(&postcard::to_allocvec(&reply).unwrap()).unwrap();
        assert_eq!(back, reply);
    }

    #[test]
    fn digests_are_sha256_hex() {
        let path = std::env::temp_dir().join(format!("ember-digest-{}", std::process::id()));
        std::fs::write(&path, b"abc").unwrap();
        let (digest, size) = digest_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(size, 3);
    }
}
