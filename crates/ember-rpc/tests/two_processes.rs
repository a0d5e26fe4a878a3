//! Two RpcEnvs in two processes: the child is this test binary re-run with `CHILD_ENV` set,
//! serving a `Recorder` until the parent kills it.

mod rpc_support;

use std::time::{Duration, Instant};

use ember_rpc::{EndpointRef, RpcAddress, RpcError};
use rpc_support::*;

const CHILD_ENV: &str = "EMBER_RPC_TEST_CHILD";

/// Runs in a child process (see `kills_of_the_peer_fail_pending_asks_at_once`); a no-op otherwise.
#[tokio::test]
async fn child_process_server() {
    if std::env::var(CHILD_ENV).is_err() {
        return;
    }
    let (env, _) = recorder_env(config("child")).await;
    println!("PORT={}", env.address().port);
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    // Serve until the parent kills us or closes stdin.
    let _ = tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        let _ = std::io::stdin().read_line(&mut s);
    })
    .await;
}

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child() -> (KillOnDrop, u16) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_server",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("re-run the test binary");
    let stdout = child.stdout.take().unwrap();
    let guard = KillOnDrop(child);
    let mut lines = std::io::BufReader::new(stdout).lines();
    let port = loop {
        let line = lines.next().expect("child printed its port").unwrap();
        // libtest prints "test name ... " before the test's own output on the same line.
        if let Some((_, p)) = line.split_once("PORT=") {
            break p.trim().parse().unwrap();
        }
    };
    (guard, port)
}

#[tokio::test]
async fn two_processes_talk_and_a_killed_peer_fails_pending_asks_at_once() {
    let (mut child, port) = spawn_child();
    let client = env().await;
    let r: EndpointRef<Msg> = client
        .setup_endpoint_ref(&RpcAddress::new("127.0.0.1", port), "rec")
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
    child.0.kill().unwrap();
    let err = parked.await.unwrap().unwrap_err();
    assert!(matches!(err, RpcError::ConnectionLost { .. }), "{err:?}");
    assert!(
        killed_at.elapsed() < Duration::from_secs(30),
        "failed at once"
    );
    client.shutdown().await;
}
