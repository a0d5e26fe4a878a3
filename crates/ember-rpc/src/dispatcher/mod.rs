//! The dispatcher: the endpoints of an RpcEnv by name, and the routing of messages to their
//! inboxes.
//!
//! Spark counterpart: `Dispatcher` (its `endpoints` map and `postMessage`). Where Spark shares a
//! thread pool among inboxes, each Ember endpoint runs its own task (see [`inbox`]); the
//! guarantees are the same: one message at a time, in arrival order.

pub(crate) mod inbox;

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::address::RpcAddress;
use crate::call_context::RpcCallContext;
use crate::endpoint::RpcMessage;
use crate::env::RpcEnv;
use crate::error::{CallFailure, RpcError};

pub(crate) use inbox::InboxItem;

/// The sending side of an endpoint's inbox, shared by its registration and its refs in this
/// process.
pub(crate) struct Inbox<M> {
    tx: mpsc::UnboundedSender<InboxItem<M>>,
    /// Set when the endpoint is told to stop: messages posted later are refused.
    stopping: Arc<AtomicBool>,
}

impl<M> Clone for Inbox<M> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            stopping: self.stopping.clone(),
        }
    }
}

impl<M> Inbox<M> {
    fn new(tx: mpsc::UnboundedSender<InboxItem<M>>) -> Self {
        Self {
            tx,
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the endpoint still takes messages.
    pub(crate) fn is_open(&self) -> bool {
        !self.stopping.load(Ordering::Acquire) && !self.tx.is_closed()
    }

    /// Queues `item` behind everything posted before it, or hands it back if the endpoint is
    /// stopping or stopped. (A post racing the stop from another thread may still be queued
    /// behind the stop; the endpoint then refuses it as it finishes.)
    pub(crate) fn post(&self, item: InboxItem<M>) -> Result<(), InboxItem<M>> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(item);
        }
        self.tx.send(item).map_err(|e| e.0)
    }

    fn post_stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let _ = self.tx.send(InboxItem::Stop);
    }
}

/// A connection event, delivered to every endpoint.
#[derive(Debug, Clone)]
pub(crate) enum PeerEvent {
    Connected(RpcAddress),
    Disconnected(RpcAddress),
    NetworkError(RpcAddress, RpcError),
}

/// The type-erased face of one registered endpoint.
pub(crate) trait EndpointEntry: Send + Sync {
    /// Decodes a message that arrived from the network and queues it.
    fn post_remote(
        &self,
        env: &RpcEnv,
        payload: &[u8],
        call: Option<RpcCallContext>,
    ) -> Result<(), (CallFailure, Option<RpcCallContext>)>;
    fn post_event(&self, event: PeerEvent);
    fn post_stop(&self);
    /// The typed inbox, for refs in this process (an [`Inbox<M>`]).
    fn typed_sender(&self) -> &(dyn Any + Send + Sync);
    /// Tells registrations under the same name apart.
    fn id(&self) -> u64;
}

struct TypedEntry<M> {
    id: u64,
    inbox: Inbox<M>,
}

impl<M: RpcMessage> EndpointEntry for TypedEntry<M> {
    fn post_remote(
        &self,
        env: &RpcEnv,
        payload: &[u8],
        call: Option<RpcCallContext>,
    ) -> Result<(), (CallFailure, Option<RpcCallContext>)> {
        let message: M = match env.decode_message(payload) {
            Ok(m) => m,
            Err(reason) => return Err((CallFailure::UndecodableRequest { reason }, call)),
        };
        let item = match call {
            Some(call) => InboxItem::Request(message, call),
            None => InboxItem::OneWay(message),
        };
        self.inbox.post(item).map_err(|item| {
            let call = match item {
                InboxItem::Request(_, call) => Some(call),
                _ => None,
            };
            (CallFailure::EndpointStopped, call)
        })
    }

    fn post_event(&self, event: PeerEvent) {
        let _ = self.inbox.post(InboxItem::Event(Box::new(event)));
    }

    fn post_stop(&self) {
        self.inbox.post_stop();
    }

    fn typed_sender(&self) -> &(dyn Any + Send + Sync) {
        &self.inbox
    }

    fn id(&self) -> u64 {
        self.id
    }
}

/// The endpoints of one RpcEnv.
#[derive(Default)]
pub(crate) struct Dispatcher {
    endpoints: RwLock<HashMap<String, Arc<dyn EndpointEntry>>>,
    /// Every endpoint started and not yet finished, including stopping ones.
    running: std::sync::Mutex<Vec<CancellationToken>>,
    closed: std::sync::atomic::AtomicBool,
    next_id: std::sync::atomic::AtomicU64,
    /// Changes whenever an endpoint is added or removed, so that lookups can be cached.
    generation: std::sync::atomic::AtomicU64,
}

/// The last endpoint a connection routed to, valid while the dispatcher's generation holds.
#[derive(Default)]
pub(crate) struct LookupCache {
    generation: u64,
    name: String,
    entry: Option<Arc<dyn EndpointEntry>>,
}

impl std::fmt::Debug for LookupCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupCache")
            .field("name", &self.name)
            .finish()
    }
}

/// What registering an endpoint hands to its task.
pub(crate) struct Registration<M> {
    pub(crate) id: u64,
    pub(crate) inbox: Inbox<M>,
    pub(crate) rx: mpsc::UnboundedReceiver<InboxItem<M>>,
    /// Cancelled by the task when the endpoint has finished `on_stop`.
    pub(crate) stopped: CancellationToken,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .endpoints
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("Dispatcher")
            .field("endpoints", &names)
            .finish()
    }
}

impl Dispatcher {
    /// Registers a new inbox under `name`.
    pub(crate) fn register<M: RpcMessage>(&self, name: &str) -> Result<Registration<M>, RpcError> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(RpcError::EnvStopped);
        }
        let mut endpoints = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
        if endpoints.contains_key(name) {
            return Err(RpcError::DuplicateEndpoint {
                endpoint: name.to_owned(),
            });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stopped = CancellationToken::new();
        let inbox = Inbox::new(tx);
        endpoints.insert(
            name.to_owned(),
            Arc::new(TypedEntry {
                id,
                inbox: inbox.clone(),
            }),
        );
        self.bump_generation();
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|t| !t.is_cancelled());
        running.push(stopped.clone());
        Ok(Registration {
            id,
            inbox,
            rx,
            stopped,
        })
    }

    fn bump_generation(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Like [`lookup`](Self::lookup), reusing `cache` while no endpoint came or went.
    pub(crate) fn lookup_cached<'c>(
        &self,
        cache: &'c mut LookupCache,
        name: &str,
    ) -> Option<&'c Arc<dyn EndpointEntry>> {
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        if cache.generation != generation || cache.name != name || cache.entry.is_none() {
            cache.entry = self.lookup(name);
            cache.name.clear();
            cache.name.push_str(name);
            cache.generation = generation;
        }
        cache.entry.as_ref()
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<Arc<dyn EndpointEntry>> {
        self.endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// The typed sender of a local endpoint: `None` if there is no such endpoint, `Some(None)`
    /// if it takes another message type.
    pub(crate) fn typed_sender<M: RpcMessage>(&self, name: &str) -> Option<Option<Inbox<M>>> {
        let entry = self.lookup(name)?;
        Some(entry.typed_sender().downcast_ref::<Inbox<M>>().cloned())
    }

    /// Removes `name` so that no new message reaches it, and queues its stop.
    pub(crate) fn stop(&self, name: &str) {
        let entry = self
            .endpoints
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if let Some(entry) = entry {
            self.bump_generation();
            entry.post_stop();
        }
    }

    /// Removes `name` if it is still the registration `id` (it may have been stopped and
    /// registered anew).
    pub(crate) fn remove_finished(&self, name: &str, id: u64) {
        let mut endpoints = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
        if endpoints.get(name).is_some_and(|e| e.id() == id) {
            endpoints.remove(name);
            self.bump_generation();
        }
    }

    pub(crate) fn post_remote(
        &self,
        env: &RpcEnv,
        name: &str,
        payload: &[u8],
        call: Option<RpcCallContext>,
    ) -> Result<(), (CallFailure, Option<RpcCallContext>)> {
        match self.lookup(name) {
            Some(entry) => entry.post_remote(env, payload, call),
            None => Err((CallFailure::EndpointNotFound, call)),
        }
    }

    /// [`post_remote`](Self::post_remote) through a connection's lookup cache.
    pub(crate) fn post_remote_cached(
        &self,
        cache: &mut LookupCache,
        env: &RpcEnv,
        name: &str,
        payload: &[u8],
        call: Option<RpcCallContext>,
    ) -> Result<(), (CallFailure, Option<RpcCallContext>)> {
        match self.lookup_cached(cache, name) {
            Some(entry) => entry.post_remote(env, payload, call),
            None => Err((CallFailure::EndpointNotFound, call)),
        }
    }

    pub(crate) fn broadcast(&self, event: PeerEvent) {
        let entries: Vec<_> = self
            .endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for entry in entries {
            entry.post_event(event.clone());
        }
    }

    /// Whether [`stop_all`](Self::stop_all) has begun.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Refuses new endpoints, stops every endpoint, and waits until all have run `on_stop`.
    pub(crate) async fn stop_all(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        let names: Vec<String> = self
            .endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for name in names {
            self.stop(&name);
        }
        let running: Vec<CancellationToken> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for token in running {
            token.cancelled().await;
        }
    }
}
