//! What peers say to each other, and the bounds on every message.
//!
//! - Gossipsub topics (names carry the genesis hash, so nodes of different
//!   chains never share a topic): [`Topics::transactions`] (a batch of
//!   transactions, SCALE `Vec<SignedTx>` of at most [`MAX_TXS_PER_GOSSIP`]:
//!   one gossip message, and one gossip signature, per batch rather than per
//!   transaction), [`Topics::consensus`] (a
//!   SCALE [`Gossip`](crate::consensus::Gossip)) and [`Topics::blocks`] (a
//!   [`BlockAnnouncement`]: a finalized block with its justification).
//! - One request-response protocol, `/lockstep/<genesis>/sync/1`, carries
//!   [`SyncRequest::Status`] (genesis, finalized head) and
//!   [`SyncRequest::Blocks`] (a range of finalized blocks with their
//!   justifications). Frames are a 4-byte big-endian length and a SCALE
//!   body; a length above the protocol's bound is refused before anything
//!   is read.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use lockstep_runtime::block::MAX_BLOCK_SIZE;
use lockstep_runtime::codec::{decode_exact, DecodeError};
use lockstep_runtime::{Block, BlockNumber, Hash, Justification, SignedTx, MAX_TX_SIZE};
use parity_scale_codec::{Decode, Encode};

/// Most transactions in one gossip message.
pub const MAX_TXS_PER_GOSSIP: usize = 512;
/// Largest transactions message on gossip. A batch is sent before it would
/// grow past this, so any single transaction fits.
pub const MAX_TX_MESSAGE: usize = 128 * 1024;
const _: () = assert!(MAX_TX_MESSAGE > 2 * MAX_TX_SIZE);
/// Largest consensus message (a proposal carries a whole block).
pub const MAX_CONSENSUS_MESSAGE: usize = MAX_BLOCK_SIZE + 64 * 1024;
/// Largest block announcement (a block and its justification).
pub const MAX_BLOCK_MESSAGE: usize = MAX_BLOCK_SIZE + 64 * 1024;
/// Largest sync request.
pub const MAX_SYNC_REQUEST: usize = 1024;
/// Largest sync response: at least one whole block always fits.
pub const MAX_SYNC_RESPONSE: usize = MAX_BLOCK_SIZE + 1024 * 1024;
/// Most blocks one sync response may carry.
pub const MAX_BLOCKS_PER_RESPONSE: u32 = 128;
/// A server stops adding blocks to a response once it holds this many
/// bytes (it always sends at least one block).
pub const SOFT_SYNC_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Transactions accepted by the local pool, waiting to be gossiped as one
/// message.
#[derive(Debug, Default)]
pub struct TxBatch {
    count: usize,
    body: Vec<u8>,
}

impl TxBatch {
    /// Adds a SCALE-encoded transaction. Returns the batch so far as a
    /// message to send first when this one would not fit beside it.
    pub fn push(&mut self, tx: &[u8]) -> Option<Vec<u8>> {
        // 5 bytes: the longest compact length prefix of the count.
        let full =
            self.count == MAX_TXS_PER_GOSSIP || 5 + self.body.len() + tx.len() > MAX_TX_MESSAGE;
        let previous = if full { self.take() } else { None };
        self.body.extend_from_slice(tx);
        self.count += 1;
        previous
    }

    /// The batch as a message (SCALE `Vec<SignedTx>`), if it holds any.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        let count = u32::try_from(self.count).unwrap_or(u32::MAX);
        let mut message = parity_scale_codec::Compact(count).encode();
        message.append(&mut self.body);
        self.count = 0;
        Some(message)
    }
}

/// Decodes a gossiped batch of transactions: at most [`MAX_TX_MESSAGE`]
/// bytes, at most [`MAX_TXS_PER_GOSSIP`] transactions, none larger than
/// [`MAX_TX_SIZE`].
pub fn decode_tx_batch(data: &[u8]) -> Result<Vec<SignedTx>, DecodeError> {
    let txs: Vec<SignedTx> = decode_exact(data, MAX_TX_MESSAGE)?;
    if txs.len() > MAX_TXS_PER_GOSSIP {
        return Err(DecodeError::Invalid(format!(
            "{} transactions in one message, at most {MAX_TXS_PER_GOSSIP}",
            txs.len()
        )));
    }
    if let Some(tx) = txs.iter().find(|tx| tx.encoded_size() > MAX_TX_SIZE) {
        return Err(DecodeError::TooLarge {
            size: tx.encoded_size(),
            limit: MAX_TX_SIZE,
        });
    }
    Ok(txs)
}

/// The gossipsub topics of one chain.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Transactions accepted by a pool.
    pub transactions: libp2p::gossipsub::IdentTopic,
    /// Signed proposals and votes.
    pub consensus: libp2p::gossipsub::IdentTopic,
    /// Finalized blocks with justifications.
    pub blocks: libp2p::gossipsub::IdentTopic,
}

impl Topics {
    /// The topics of the chain with this genesis.
    pub fn new(genesis: &Hash) -> Topics {
        let prefix = short_genesis(genesis);
        let topic =
            |name: &str| libp2p::gossipsub::IdentTopic::new(format!("/lockstep/{prefix}/{name}/1"));
        Topics {
            transactions: topic("tx-batches"),
            consensus: topic("consensus"),
            blocks: topic("blocks"),
        }
    }
}

fn short_genesis(genesis: &Hash) -> String {
    hex::encode(&genesis.0[..8])
}

/// The sync protocol's name for the chain with this genesis.
pub fn sync_protocol(genesis: &Hash) -> StreamProtocol {
    let name = format!("/lockstep/{}/sync/1", short_genesis(genesis));
    // The name is ASCII and starts with '/', so this cannot fail; fall back
    // to a fixed name rather than panic.
    StreamProtocol::try_from_owned(name).unwrap_or_else(|_| StreamProtocol::new("/lockstep/sync/1"))
}

/// A finalized block as announced on the blocks topic.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct BlockAnnouncement {
    /// The block.
    pub block: Block,
    /// Its justification.
    pub justification: Justification,
}

/// A request on the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum SyncRequest {
    /// The peer's chain and finalized head.
    Status,
    /// Finalized blocks `from ..= from + count - 1` (fewer if the peer has
    /// fewer, or the response would be too large).
    Blocks {
        /// The first block number.
        from: BlockNumber,
        /// How many, at most [`MAX_BLOCKS_PER_RESPONSE`].
        count: u32,
    },
}

/// A response on the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum SyncResponse {
    /// Answer to [`SyncRequest::Status`].
    Status {
        /// The peer's genesis hash.
        genesis: Hash,
        /// Its finalized height.
        finalized_number: BlockNumber,
        /// Its finalized head's hash.
        finalized_hash: Hash,
    },
    /// Answer to [`SyncRequest::Blocks`]: consecutive blocks from `from`.
    Blocks(Vec<BlockAnnouncement>),
}

/// A request that could not be read: oversize or undecodable. The codec
/// hands it on instead of failing, because libp2p's request-response only
/// logs a failed inbound read, and the sender must be penalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedRequest(pub String);

/// A request as read off the wire.
pub type SyncRequestFrame = Result<SyncRequest, MalformedRequest>;

/// Length-prefixed SCALE frames with size bounds.
#[derive(Debug, Clone, Default)]
pub struct SyncCodec;

async fn read_length<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<usize> {
    let mut length = [0u8; 4];
    io.read_exact(&mut length).await?;
    Ok(u32::from_be_bytes(length) as usize)
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, limit: usize) -> io::Result<Vec<u8>> {
    let length = read_length(io).await?;
    if length > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {length} bytes exceeds the limit of {limit}"),
        ));
    }
    let mut bytes = vec![0u8; length];
    io.read_exact(&mut bytes).await?;
    Ok(bytes)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    let length = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&length.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

fn invalid(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

#[async_trait::async_trait]
impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequestFrame;
    type Response = SyncResponse;

    async fn read_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncRequestFrame>
    where
        T: AsyncRead + Unpin + Send,
    {
        let length = read_length(io).await?;
        if length > MAX_SYNC_REQUEST {
            return Ok(Err(MalformedRequest(format!(
                "request of {length} bytes exceeds the limit of {MAX_SYNC_REQUEST}"
            ))));
        }
        let mut bytes = vec![0u8; length];
        io.read_exact(&mut bytes).await?;
        Ok(decode_exact(&bytes, MAX_SYNC_REQUEST).map_err(|e| MalformedRequest(e.to_string())))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_frame(io, MAX_SYNC_RESPONSE).await?;
        decode_exact(&bytes, MAX_SYNC_RESPONSE).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: SyncRequestFrame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let request = request.map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.0))?;
        write_frame(io, &request.encode()).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: SyncResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response.encode()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_runtime::{Call, Keypair, SigningContext};

    fn tx(nonce: u64) -> SignedTx {
        let call = Call::Transfer {
            asset: 1,
            to: Keypair::dev("bob").public(),
            amount: 1,
            reference: None,
        };
        let context = SigningContext::new(Hash([1; 32]));
        SignedTx::sign(&Keypair::dev("alice"), &context, nonce, 100, call)
    }

    #[test]
    fn a_tx_batch_fills_up_then_starts_again_and_round_trips() {
        let mut batch = TxBatch::default();
        assert_eq!(batch.take(), None);
        let txs: Vec<SignedTx> = (0..MAX_TXS_PER_GOSSIP as u64 + 3).map(tx).collect();
        let mut sent = Vec::new();
        for tx in &txs {
            sent.extend(batch.push(&tx.encode()));
        }
        sent.extend(batch.take());
        assert_eq!(sent.len(), 2, "one full batch, then the rest");
        let decoded: Vec<SignedTx> = sent
            .iter()
            .flat_map(|message| decode_tx_batch(message).unwrap())
            .collect();
        assert_eq!(decoded, txs);
        assert!(sent.iter().all(|m| m.len() <= MAX_TX_MESSAGE));
    }

    #[test]
    fn bad_tx_batches_are_refused() {
        assert!(decode_tx_batch(&[0xff; 40]).is_err());
        assert!(decode_tx_batch(&vec![0u8; MAX_TX_MESSAGE + 1]).is_err());
        let too_many: Vec<SignedTx> = (0..MAX_TXS_PER_GOSSIP as u64 + 1).map(tx).collect();
        assert!(decode_tx_batch(&too_many.encode()).is_err());
        let mut trailing = vec![tx(0)].encode();
        trailing.push(0);
        assert!(decode_tx_batch(&trailing).is_err());
    }

    #[test]
    fn oversize_and_garbage_frames_are_refused() {
        futures::executor::block_on(async {
            let mut codec = SyncCodec;
            let protocol = sync_protocol(&Hash([7; 32]));
            let mut huge = ((MAX_SYNC_REQUEST + 1) as u32).to_be_bytes().to_vec();
            huge.extend(vec![0u8; 16]);
            let read = libp2p::request_response::Codec::read_request(
                &mut codec,
                &protocol,
                &mut futures::io::Cursor::new(huge),
            )
            .await
            .unwrap();
            assert!(read.is_err());
            let mut garbage = 3u32.to_be_bytes().to_vec();
            garbage.extend([0xff, 0xff, 0xff]);
            let read = libp2p::request_response::Codec::read_request(
                &mut codec,
                &protocol,
                &mut futures::io::Cursor::new(garbage),
            )
            .await
            .unwrap();
            assert!(read.is_err());
            let mut huge_response = ((MAX_SYNC_RESPONSE + 1) as u32).to_be_bytes().to_vec();
            huge_response.extend([0u8; 8]);
            let error = libp2p::request_response::Codec::read_response(
                &mut codec,
                &protocol,
                &mut futures::io::Cursor::new(huge_response),
            )
            .await
            .err();
            assert_eq!(error.map(|e| e.kind()), Some(io::ErrorKind::InvalidData));
        });
    }

    #[test]
    fn requests_round_trip() {
        futures::executor::block_on(async {
            let mut codec = SyncCodec;
            let protocol = sync_protocol(&Hash([7; 32]));
            let request = SyncRequest::Blocks { from: 5, count: 9 };
            let mut buffer = futures::io::Cursor::new(Vec::new());
            libp2p::request_response::Codec::write_request(
                &mut codec,
                &protocol,
                &mut buffer,
                Ok(request.clone()),
            )
            .await
            .unwrap();
            let mut reader = futures::io::Cursor::new(buffer.into_inner());
            let read =
                libp2p::request_response::Codec::read_request(&mut codec, &protocol, &mut reader)
                    .await
                    .unwrap();
            assert_eq!(read, Ok(request));
        });
    }
}
