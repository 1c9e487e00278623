//! What peers say to each other, and the bounds on every message.
//!
//! The messages themselves, their bounds and decoders are
//! [`lockstep_api::p2p`]'s; this module names the topics and frames the
//! sync protocol.
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
use lockstep_api::p2p::{decode_sync_request, decode_sync_response};
pub use lockstep_api::p2p::{
    decode_tx_batch, BlockAnnouncement, SyncRequest, SyncResponse, TxBatch,
    MAX_BLOCKS_PER_RESPONSE, MAX_BLOCK_MESSAGE, MAX_CONSENSUS_MESSAGE, MAX_SYNC_REQUEST,
    MAX_SYNC_RESPONSE, MAX_TXS_PER_GOSSIP, MAX_TX_MESSAGE, SOFT_SYNC_RESPONSE_BYTES,
};
use lockstep_runtime::Hash;
use parity_scale_codec::Encode;

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
        Ok(decode_sync_request(&bytes).map_err(|e| MalformedRequest(e.to_string())))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_frame(io, MAX_SYNC_RESPONSE).await?;
        decode_sync_response(&bytes).map_err(invalid)
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
