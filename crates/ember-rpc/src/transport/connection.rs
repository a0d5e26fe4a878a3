//! One established TCP connection: a writer task that batches queued frames into few writes, a
//! reader task that splits frames and routes them, and the asks waiting for replies on it.
//! However either task ends (an error, a panic, its runtime going away), the connection closes
//! and its pending asks fail at once.
//!
//! Spark counterparts: `TransportClient` (pending RPCs) and `TransportChannelHandler`. Both
//! directions use the same kind of connection: once the handshake is done it does not matter who
//! dialled whom.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::address::RpcAddress;
use crate::call_context::RpcCallContext;
use crate::dispatcher::LookupCache;
use crate::env::RpcEnv;
use crate::error::{CallFailure, RpcError};
use crate::transport::busy_poll::BusyPoll;
use crate::transport::envelope::{self, Envelope};
use crate::transport::frame::FrameDecoder;

/// How a reply (or its absence) reaches the asker.
pub(crate) type WireReply = Result<Bytes, ReplyError>;

/// Why no reply bytes arrived.
#[derive(Debug)]
pub(crate) enum ReplyError {
    /// The remote endpoint failed the request.
    Failure(CallFailure),
    /// The connection could not be made or was lost.
    Transport(RpcError),
}

/// An outgoing frame, and for a request the slot its reply goes to.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) frame: Bytes,
    pub(crate) ask: Option<(u64, oneshot::Sender<WireReply>)>,
}

impl Outgoing {
    /// Tells the asker (if any) that the frame will never be answered.
    pub(crate) fn fail(self, error: RpcError) {
        if let Some((_, tx)) = self.ask {
            let _ = tx.send(Err(ReplyError::Transport(error)));
        }
    }
}

#[derive(Debug, Default)]
struct Pending {
    closed: bool,
    /// Each waiting ask's reply slot, and when it was queued.
    asks: HashMap<u64, (oneshot::Sender<WireReply>, Instant)>,
    inserts: u32,
}

/// Write at most this much per batch before yielding to the socket.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Frames at least this large are written directly instead of being copied into the batch.
const DIRECT_WRITE_BYTES: usize = 64 * 1024;
/// Initial read buffer; it grows for large frames.
const READ_CHUNK: usize = 8 * 1024;

/// A live connection to a peer RpcEnv.
#[derive(Debug)]
pub(crate) struct Connection {
    id: u64,
    peer: RpcAddress,
    max_frame: usize,
    tx: mpsc::UnboundedSender<Bytes>,
    pending: Mutex<Pending>,
    cancel: CancellationToken,
    /// Why an error closed the connection; the first reason wins.
    close_reason: Mutex<Option<String>>,
    /// `ember.rpc.ask.busyPoll`, in µs (kept small: every connection holds it).
    poll_budget_us: u32,
    /// Made for the first request the connection carries, so that connections that only
    /// answer or send do not pay for it.
    asking: OnceLock<Box<BusyPoll>>,
}

impl Connection {
    /// Starts the reader and writer tasks on an already handshaken stream. `buffered` holds
    /// bytes read past the handshake.
    pub(crate) fn start(
        env: &RpcEnv,
        stream: TcpStream,
        peer: RpcAddress,
        buffered: BytesMut,
    ) -> Arc<Connection> {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Arc::new(Connection {
            id: env.inner().next_connection_id(),
            peer,
            max_frame: env.config().max_message_size,
            tx,
            pending: Mutex::new(Pending::default()),
            cancel: env.shutdown_token().child_token(),
            close_reason: Mutex::new(None),
            poll_budget_us: u32::try_from(env.config().ask_busy_poll.as_micros())
                .unwrap_or(u32::MAX),
            asking: OnceLock::new(),
        });
        let (rd, wr) = stream.into_split();
        env.connection_opened(&conn);
        env.spawn(write_loop(conn.clone(), wr, rx));
        env.spawn(read_task(env.clone(), conn.clone(), rd, buffered));
        conn
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The peer's advertised address.
    pub(crate) fn peer(&self) -> &RpcAddress {
        &self.peer
    }

    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame
    }

    pub(crate) fn is_open(&self) -> bool {
        !self.cancel.is_cancelled()
    }

    /// Closes the connection; its pending asks fail at once.
    pub(crate) fn close(&self) {
        self.cancel.cancel();
    }

    /// Closes the connection because of an error, which the reader reports as it ends.
    fn close_with_error(&self, reason: String) {
        self.close_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(reason);
        self.cancel.cancel();
    }

    fn take_close_reason(&self) -> Option<String> {
        self.close_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Queues a frame for writing.
    pub(crate) fn send_frame(&self, frame: Bytes) {
        let _ = self.tx.send(frame);
    }

    /// Queues a failure reply.
    pub(crate) fn send_failure(&self, request_id: u64, failure: &CallFailure) {
        self.send_frame(envelope::encode_failure(request_id, failure));
    }

    /// Queues an outgoing frame, registering its ask first so that the reply cannot outrun it.
    pub(crate) fn enqueue(&self, out: Outgoing) {
        if let Some((id, tx)) = out.ask {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.closed {
                let _ = tx.send(Err(ReplyError::Transport(RpcError::ConnectionLost {
                    address: self.peer.clone(),
                })));
                return;
            }
            pending.asks.insert(id, (tx, Instant::now()));
            if self.poll_budget_us > 0 {
                let budget = Duration::from_micros(self.poll_budget_us.into());
                self.asking
                    .get_or_init(|| Box::new(BusyPoll::new(budget)))
                    .request_queued();
            }
            pending.inserts += 1;
            // Asks that timed out leave their slot behind; sweep them now and then.
            if pending.inserts >= 1024 {
                pending.inserts = 0;
                pending.asks.retain(|_, (tx, _)| !tx.is_closed());
            }
        }
        self.send_frame(out.frame);
    }

    fn complete(&self, id: u64, reply: WireReply) {
        let tx = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .asks
            .remove(&id);
        match tx {
            Some((tx, queued)) => {
                if let Some(asking) = self.asking.get() {
                    asking.reply_arrived(queued.elapsed());
                }
                let _ = tx.send(reply);
            }
            None => debug!(peer = %self.peer, id, "reply for an ask that is no longer waiting"),
        }
    }

    /// Fails every pending ask; later asks on this connection fail at once.
    pub(crate) fn fail_pending(&self) {
        let asks = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.closed = true;
            std::mem::take(&mut pending.asks)
        };
        for (_, (tx, _)) in asks {
            let _ = tx.send(Err(ReplyError::Transport(RpcError::ConnectionLost {
                address: self.peer.clone(),
            })));
        }
    }
}

/// Closes the connection however the writer ends: a panic in it (tokio drops a panicking
/// task's future while unwinding) must not leave the connection half alive. A guard rather
/// than a wrapping future, which would hold a second copy of the loop's state in every
/// connection.
struct WriterExit {
    conn: Arc<Connection>,
}

impl Drop for WriterExit {
    fn drop(&mut self) {
        if std::thread::panicking() {
            error!(peer = %self.conn.peer, "connection writer panicked; closing the connection");
            self.conn
                .close_with_error("the connection's writer panicked".to_owned());
        } else {
            self.conn.close();
        }
    }
}

async fn write_loop(
    conn: Arc<Connection>,
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
) {
    let _exit = WriterExit { conn: conn.clone() };
    let mut batch = BytesMut::new();
    let cancelled = conn.cancel.clone().cancelled_owned();
    tokio::pin!(cancelled);
    loop {
        let first = tokio::select! {
            biased;
            frame = rx.recv() => frame,
            _ = &mut cancelled => None,
        };
        let Some(first) = first else { break };
        if let Err(e) = write_batch(&mut wr, &mut batch, first, &mut rx).await {
            debug!(peer = %conn.peer, error = %e, "write failed; closing the connection");
            conn.close_with_error(format!("write failed: {e}"));
            return;
        }
        // A request went out: perhaps wait here, without parking, for its reply to arrive;
        // the reader then finds it as soon as this task yields.
        if let Some(asking) = conn.asking.get()
            && asking.should_poll_after_write()
            && let Err(e) = asking.poll(wr.as_ref(), || !conn.is_open() || !rx.is_empty())
        {
            debug!(peer = %conn.peer, error = %e, "polling for a reply failed");
        }
    }
    // Closing: flush what is already queued (e.g. a goodbye sent from on_stop), briefly.
    let flush = async {
        while let Ok(frame) = rx.try_recv() {
            write_batch(&mut wr, &mut batch, frame, &mut rx).await?;
        }
        wr.shutdown().await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), flush).await;
    conn.close();
}

async fn write_batch(
    wr: &mut OwnedWriteHalf,
    batch: &mut BytesMut,
    first: Bytes,
    rx: &mut mpsc::UnboundedReceiver<Bytes>,
) -> std::io::Result<()> {
    let mut next = Some(first);
    while let Some(frame) = next.take() {
        if frame.len() >= DIRECT_WRITE_BYTES {
            if !batch.is_empty() {
                wr.write_all(batch).await?;
                batch.clear();
            }
            wr.write_all(&frame).await?;
        } else {
            batch.extend_from_slice(&frame);
        }
        if batch.len() < MAX_BATCH_BYTES {
            next = rx.try_recv().ok();
        }
    }
    if !batch.is_empty() {
        wr.write_all(batch).await?;
        batch.clear();
    }
    if batch.capacity() > 4 * MAX_BATCH_BYTES {
        *batch = BytesMut::new();
    }
    Ok(())
}

/// Closes the connection and fails its pending asks however the reader ends: returning,
/// panicking (tokio drops a panicking task's future while unwinding), or dropped unfinished
/// with its runtime. A guard rather than a wrapping future, which would hold a second copy of
/// the loop's state in every connection.
struct ReaderExit {
    env: RpcEnv,
    conn: Arc<Connection>,
    done: bool,
}

impl ReaderExit {
    fn finish(mut self, error: Option<String>) {
        self.done = true;
        self.conn.close();
        let error = error.or_else(|| self.conn.take_close_reason());
        self.env.connection_closed(&self.conn, error);
    }
}

impl Drop for ReaderExit {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.conn.close();
        let error = if std::thread::panicking() {
            error!(peer = %self.conn.peer, "connection reader panicked; closing the connection");
            Some("the connection's reader panicked".to_owned())
        } else {
            None
        };
        self.env.connection_closed(&self.conn, error);
    }
}

/// Runs the reader; whatever ends it, the connection closes and its pending asks fail.
async fn read_task(env: RpcEnv, conn: Arc<Connection>, rd: OwnedReadHalf, buf: BytesMut) {
    let exit = ReaderExit {
        env: env.clone(),
        conn: conn.clone(),
        done: false,
    };
    let error = read_loop(&env, &conn, rd, buf).await;
    exit.finish(error);
}

/// Reads and routes frames until the connection closes; returns the error that closed it.
async fn read_loop(
    env: &RpcEnv,
    conn: &Arc<Connection>,
    mut rd: OwnedReadHalf,
    mut buf: BytesMut,
) -> Option<String> {
    let decoder = FrameDecoder::new(conn.max_frame);
    let mut cache = LookupCache::default();
    let cancelled = conn.cancel.clone().cancelled_owned();
    tokio::pin!(cancelled);
    'read: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if let Err(reason) = route(env, conn, &mut cache, frame) {
                        warn!(peer = %conn.peer, %reason, "closing connection: bad frame");
                        break 'read Some(reason);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(peer = %conn.peer, reason = %e, "closing connection: bad frame");
                    break 'read Some(e.to_string());
                }
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            biased;
            _ = &mut cancelled => break None,
            read = rd.read_buf(&mut buf) => match read {
                Ok(0) => break None,
                Ok(_) => {}
                Err(e) => {
                    debug!(peer = %conn.peer, error = %e, "read failed; closing the connection");
                    break Some(format!("read failed: {e}"));
                }
            }
        }
        // After a large frame, do not keep its buffer around for an idle connection.
        if buf.is_empty() && buf.capacity() > 4 * READ_CHUNK {
            buf = BytesMut::with_capacity(READ_CHUNK);
        }
    }
}

/// Routes one frame; an `Err` closes the connection.
fn route(
    env: &RpcEnv,
    conn: &Arc<Connection>,
    cache: &mut LookupCache,
    frame: Bytes,
) -> Result<(), String> {
    match Envelope::decode(frame).map_err(|e| e.to_string())? {
        Envelope::OneWay { endpoint, payload } => {
            if let Err((failure, _)) =
                env.dispatcher()
                    .post_remote_cached(cache, env, endpoint.as_str(), &payload, None)
            {
                if env.dispatcher().is_closed() {
                    // Spark parity: `Dispatcher.postOneWayMessage` logs a message that arrives
                    // after the RpcEnv began stopping at debug level; it is expected then.
                    debug!(peer = %conn.peer, %endpoint, %failure,
                        "dropped a one-way message: this RpcEnv is shutting down");
                } else {
                    warn!(peer = %conn.peer, %endpoint, %failure, "dropped a one-way message");
                }
            }
        }
        Envelope::Request {
            id,
            endpoint,
            payload,
        } => {
            let call = RpcCallContext::remote(endpoint.as_str(), conn.clone(), id);
            if let Err((failure, call)) = env.dispatcher().post_remote_cached(
                cache,
                env,
                endpoint.as_str(),
                &payload,
                Some(call),
            ) {
                debug!(peer = %conn.peer, %endpoint, %failure, "failing a request");
                match call {
                    Some(call) => call.send_failure(failure),
                    None => conn.send_failure(id, &failure),
                }
            }
        }
        Envelope::Response { id, payload } => conn.complete(id, Ok(payload)),
        Envelope::Failure { id, failure } => conn.complete(id, Err(ReplyError::Failure(failure))),
    }
    Ok(())
}
