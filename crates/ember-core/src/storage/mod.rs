//! Blocks kept by an executor and served to the driver (and later to other executors).
//!
//! Spark counterpart: a small part of `BlockManager` and the block transfer service. Phase 1
//! uses it for task results too large for a status update (Spark's `IndirectTaskResult`): the
//! executor puts the result here under [`BlockId::TaskResult`], the driver fetches it in chunks
//! with [`fetch_block`] and then removes it. Shuffle output will be served the same way.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use ember_rpc::{
    EndpointContext, EndpointRef, HandlerResult, RpcCallContext, RpcEndpoint, RpcError,
};
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::ids::TaskId;
use crate::util::ByteBuf;

/// Name of the block manager endpoint in executors.
pub const BLOCK_MANAGER_ENDPOINT: &str = "BlockManager";

/// Names a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BlockId {
    /// The result of a task too large to send directly (Spark's `TaskResultBlockId`).
    TaskResult(TaskId),
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockId::TaskResult(task_id) => write!(f, "taskresult_{task_id}"),
        }
    }
}

/// Blocks in memory, shared between the task threads that put them and the endpoint that
/// serves them.
#[derive(Debug, Default)]
pub struct BlockStore {
    blocks: Mutex<HashMap<BlockId, Arc<Vec<u8>>>>,
}

impl BlockStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a block, replacing any block of that id.
    pub fn put(&self, id: BlockId, bytes: Vec<u8>) {
        self.lock().insert(id, Arc::new(bytes));
    }

    /// A block, if present.
    pub fn get(&self, id: &BlockId) -> Option<Arc<Vec<u8>>> {
        self.lock().get(id).cloned()
    }

    /// Drops a block; returns whether it was there.
    pub fn remove(&self, id: &BlockId) -> bool {
        self.lock().remove(id).is_some()
    }

    /// The number of blocks held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no block is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<BlockId, Arc<Vec<u8>>>> {
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the block manager endpoint receives.
#[derive(Debug, Serialize, Deserialize)]
pub enum BlockManagerMessage {
    /// Ask → `Option<`[`BlockChunk`]`>` (`None` if the block is not here): up to `max_len` bytes
    /// of a block from `offset`.
    GetBlockChunk {
        /// The block.
        block_id: BlockId,
        /// Where to start.
        offset: u64,
        /// The most bytes to return.
        max_len: u32,
    },
    /// Drop a block.
    RemoveBlock {
        /// The block.
        block_id: BlockId,
    },
}

/// A piece of a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockChunk {
    /// The block's whole size.
    pub total_size: u64,
    /// The bytes from the requested offset.
    pub data: ByteBuf,
}

/// Serves a [`BlockStore`].
#[derive(Debug)]
pub struct BlockManagerEndpoint {
    store: Arc<BlockStore>,
}

impl BlockManagerEndpoint {
    /// An endpoint serving `store`.
    pub fn new(store: Arc<BlockStore>) -> Self {
        Self { store }
    }
}

impl RpcEndpoint for BlockManagerEndpoint {
    type Message = BlockManagerMessage;

    async fn receive(
        &mut self,
        _ctx: &EndpointContext<BlockManagerMessage>,
        message: BlockManagerMessage,
    ) -> HandlerResult {
        if let BlockManagerMessage::RemoveBlock { block_id } = message {
            let removed = self.store.remove(&block_id);
            debug!(%block_id, removed, "remove block");
        }
        Ok(())
    }

    async fn receive_and_reply(
        &mut self,
        _ctx: &EndpointContext<BlockManagerMessage>,
        message: BlockManagerMessage,
        reply: RpcCallContext,
    ) -> HandlerResult {
        match message {
            BlockManagerMessage::GetBlockChunk {
                block_id,
                offset,
                max_len,
            } => {
                let chunk = self.store.get(&block_id).map(|block| {
                    let start = usize::try_from(offset)
                        .unwrap_or(usize::MAX)
                        .min(block.len());
                    let end = start.saturating_add(max_len as usize).min(block.len());
                    BlockChunk {
                        total_size: block.len() as u64,
                        data: ByteBuf(block[start..end].to_vec()),
                    }
                });
                reply.reply(chunk);
            }
            BlockManagerMessage::RemoveBlock { block_id } => {
                reply.reply(self.store.remove(&block_id));
            }
        }
        Ok(())
    }
}

/// Why a block could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The block manager does not hold the block.
    #[error("block {block_id} is not at {location}")]
    Missing {
        /// The block.
        block_id: BlockId,
        /// The endpoint asked.
        location: String,
    },
    /// The block changed size while being fetched, or a chunk came back empty.
    #[error("block {block_id} changed while being fetched")]
    Inconsistent {
        /// The block.
        block_id: BlockId,
    },
    /// The RPC failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

/// Fetches a whole block from `manager` in chunks of at most `chunk_size` bytes.
pub async fn fetch_block(
    manager: &EndpointRef<BlockManagerMessage>,
    block_id: BlockId,
    chunk_size: u32,
) -> Result<Vec<u8>, FetchError> {
    let mut out: Vec<u8> = Vec::new();
    let mut total: Option<u64> = None;
    loop {
        let chunk: Option<BlockChunk> = manager
            .ask(BlockManagerMessage::GetBlockChunk {
                block_id,
                offset: out.len() as u64,
                max_len: chunk_size,
            })
            .await?;
        let chunk = chunk.ok_or_else(|| FetchError::Missing {
            block_id,
            location: manager.url(),
        })?;
        let size = *total.get_or_insert_with(|| {
            out.reserve_exact(chunk.total_size as usize);
            chunk.total_size
        });
        if size != chunk.total_size {
            return Err(FetchError::Inconsistent { block_id });
        }
        if out.len() as u64 == size {
            return Ok(out);
        }
        if chunk.data.is_empty() {
            return Err(FetchError::Inconsistent { block_id });
        }
        out.extend_from_slice(chunk.data.as_slice());
        if out.len() as u64 == size {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_put_get_remove() {
        let store = BlockStore::new();
        let id = BlockId::TaskResult(TaskId(3));
        store.put(id, vec![1, 2, 3]);
        assert_eq!(store.get(&id).unwrap().as_slice(), &[1, 2, 3]);
        assert_eq!(store.len(), 1);
        assert!(store.remove(&id));
        assert!(!store.remove(&id));
        assert!(store.is_empty());
        assert_eq!(id.to_string(), "taskresult_3");
    }

    #[tokio::test]
    async fn fetches_a_block_in_chunks_and_reports_missing_ones() {
        let env = ember_rpc::RpcEnv::create(ember_rpc::RpcEnvConfig::new("t", "127.0.0.1", 0))
            .await
            .unwrap();
        let store = Arc::new(BlockStore::new());
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let id = BlockId::TaskResult(TaskId(1));
        store.put(id, data.clone());
        env.setup_endpoint(
            BLOCK_MANAGER_ENDPOINT,
            BlockManagerEndpoint::new(store.clone()),
        )
        .await
        .unwrap();
        let client = ember_rpc::RpcEnv::create(ember_rpc::RpcEnvConfig::new("c", "127.0.0.1", 0))
            .await
            .unwrap();
        let manager = client.endpoint_ref(env.address().clone(), BLOCK_MANAGER_ENDPOINT);
        assert_eq!(fetch_block(&manager, id, 999).await.unwrap(), data);
        let empty = BlockId::TaskResult(TaskId(2));
        store.put(empty, Vec::new());
        assert!(fetch_block(&manager, empty, 999).await.unwrap().is_empty());
        let missing = fetch_block(&manager, BlockId::TaskResult(TaskId(7)), 999)
            .await
            .unwrap_err();
        assert!(matches!(missing, FetchError::Missing { .. }), "{missing}");
        client.shutdown().await;
        env.shutdown().await;
    }
}
