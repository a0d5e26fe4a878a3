//! The file server and the worker's binary cache over real RpcEnvs.

mod worker_support;

use std::sync::Arc;
use std::time::Instant;

use ember_deploy::DeployError;
use ember_deploy::description::{AppBinary, BinaryLocation};
use ember_deploy::file_server::{
    self, FILE_SERVER_ENDPOINT, FetchChunkReply, FileServer, FileServerMessage, FileServerRefusal,
    MAX_CHUNK,
};
use ember_deploy::worker::app_cache::AppCache;
use ember_rpc::{EndpointRef, RpcEnv, RpcEnvConfig};
use worker_support::temp_dir;

async fn env(name: &str) -> RpcEnv {
    RpcEnv::create(RpcEnvConfig::new(name, "127.0.0.1", 0))
        .await
        .unwrap()
}

/// Deterministic bytes that do not repeat with the chunk size.
fn content(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn fetches_a_multi_chunk_file_intact() {
    let dir = temp_dir("fs-chunks");
    let server_env = env("driver").await;
    let client_env = env("worker").await;
    let server = FileServer::start(&server_env).await.unwrap();
    for (name, len) in [
        ("big", 3 * 1024 * 1024 + 512 * 1024 + 123),
        ("empty", 0),
        ("small", 10),
    ] {
        let bytes = content(len);
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        let binary = server.add_file(&path).await.unwrap();
        assert_eq!((binary.name.as_str(), binary.size), (name, len as u64));
        assert_eq!(
            binary.location,
            BinaryLocation::FileServer(server_env.address().clone())
        );
        let dest = dir.join(format!("{name}.fetched"));
        let started = Instant::now();
        file_server::fetch(&client_env, server.address(), &binary, &dest)
            .await
            .unwrap();
        eprintln!("fetched {len} bytes in {:?}", started.elapsed());
        assert_eq!(std::fs::read(&dest).unwrap(), bytes, "{name}");
    }
    client_env.shutdown().await;
    server_env.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn unknown_digests_and_bad_offsets_are_refused_clearly() {
    let dir = temp_dir("fs-refuse");
    let server_env = env("driver").await;
    let client_env = env("worker").await;
    let server = FileServer::start(&server_env).await.unwrap();
    let path = dir.join("f");
    std::fs::write(&path, content(5 * 1024 * 1024)).unwrap();
    let binary = server.add_file(&path).await.unwrap();

    let unknown = AppBinary {
        digest: "0123".repeat(16),
        ..binary.clone()
    };
    let dest = dir.join("dest");
    let err = file_server::fetch(&client_env, server.address(), &unknown, &dest)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::FileServer { refusal: FileServerRefusal::UnknownDigest { digest }, .. } if *digest == unknown.digest),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("no file with SHA-256 digest 0123"),
        "{err}"
    );
    assert!(!dest.exists(), "a failed fetch leaves no file");

    let raw: EndpointRef<FileServerMessage> =
        client_env.endpoint_ref(server.address().clone(), FILE_SERVER_ENDPOINT);
    let ask = |offset: u64, len: u32| {
        raw.ask::<FetchChunkReply>(FileServerMessage::FetchChunk {
            digest: binary.digest.clone(),
            offset,
            len,
        })
    };
    // Chunks are capped.
    let chunk = ask(0, u32::MAX).await.unwrap().unwrap();
    assert_eq!(chunk.0.len(), MAX_CHUNK as usize);
    // The tail is short; past the end is refused.
    let chunk = ask(binary.size - 10, 100).await.unwrap().unwrap();
    assert_eq!(chunk.0.len(), 10);
    assert_eq!(
        ask(binary.size + 1, 1).await.unwrap(),
        Err(FileServerRefusal::OffsetOutOfRange {
            offset: binary.size + 1,
            size: binary.size
        })
    );
    client_env.shutdown().await;
    server_env.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn concurrent_requests_for_one_digest_fetch_it_once() {
    let dir = temp_dir("fs-single-flight");
    let server_env = env("driver").await;
    let worker_env = env("worker").await;
    let server = FileServer::start(&server_env).await.unwrap();
    let bytes = content(2 * 1024 * 1024 + 7);
    std::fs::write(dir.join("app"), &bytes).unwrap();
    let binary = server.add_file(dir.join("app")).await.unwrap();
    let cache = Arc::new(AppCache::new(worker_env.clone(), dir.join("cache")));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (cache, binary) = (cache.clone(), binary.clone());
            tokio::spawn(async move { cache.get(&binary).await })
        })
        .collect();
    let mut paths = Vec::new();
    for task in tasks {
        paths.push(task.await.unwrap().unwrap());
    }
    assert!(paths.iter().all(|p| *p == paths[0]));
    assert_eq!(paths[0], dir.join("cache").join(&binary.digest));
    assert_eq!(cache.fetch_count(), 1);
    assert_eq!(std::fs::read(&paths[0]).unwrap(), bytes);
    // Later requests are cache hits.
    cache.get(&binary).await.unwrap();
    assert_eq!(cache.fetch_count(), 1);
    worker_env.shutdown().await;
    server_env.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_running_executable_is_served_through_proc_self_exe() {
    let dir = temp_dir("fs-exe");
    let server_env = env("driver").await;
    let client_env = env("worker").await;
    let server = FileServer::start(&server_env).await.unwrap();
    let binary = server.register_current_exe().await.unwrap();
    let exe = std::env::current_exe().unwrap();
    let (digest, size) = file_server::digest_file(&exe).unwrap();
    assert_eq!(
        (binary.digest.as_str(), binary.size),
        (digest.as_str(), size)
    );
    assert_eq!(binary.name, exe.file_name().unwrap().to_string_lossy());
    let dest = dir.join("exe");
    let started = Instant::now();
    file_server::fetch(&client_env, server.address(), &binary, &dest)
        .await
        .unwrap();
    eprintln!(
        "fetched the {size}-byte test executable in {:?}",
        started.elapsed()
    );
    client_env.shutdown().await;
    server_env.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
