//! A peer that sends garbage is dropped, and the others carry on.
//!
//! The rogue is a real libp2p node (TCP, Noise, Yamux, gossipsub and the
//! chain's sync protocol) that speaks the transport correctly and sends
//! bytes that are not messages: first undecodable consensus gossip, then
//! (with a fresh identity) an undecodable sync request. After each, the
//! validator it talked to must no longer list it as a peer, and the chain
//! must keep finalizing.

use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identity, Multiaddr, StreamProtocol, Swarm};
use lockstep_api::node::SystemApiClient;

use crate::harness::{exclusive, Testnet, DEADLINE};

/// Writes whatever bytes it is given, reads nothing back.
#[derive(Debug, Clone, Default)]
struct RawCodec;

#[async_trait::async_trait]
impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        Ok(Vec::new())
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        Ok(Vec::new())
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> std::io::Result<()> {
        io.write_all(&request).await?;
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> std::io::Result<()> {
        io.write_all(&response).await?;
        io.close().await
    }
}

#[derive(NetworkBehaviour)]
struct Rogue {
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<RawCodec>,
}

fn rogue(sync_protocol: StreamProtocol) -> Swarm<Rogue> {
    let key = identity::Keypair::generate_ed25519();
    let gossip = gossipsub::Behaviour::new(
        MessageAuthenticity::Signed(key.clone()),
        gossipsub::ConfigBuilder::default()
            .heartbeat_interval(Duration::from_millis(200))
            .build()
            .expect("gossipsub config"),
    )
    .expect("gossipsub");
    let sync = request_response::Behaviour::with_codec(
        RawCodec,
        [(sync_protocol, ProtocolSupport::Full)],
        request_response::Config::default(),
    );
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .expect("transport")
        .with_behaviour(|_| Rogue {
            gossipsub: gossip,
            sync,
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

async fn listed_by(net: &Testnet, node: usize, peer: &str) -> bool {
    let peers = net.rpc(node).peers().await.unwrap_or_default();
    peers.iter().any(|p| p.peer_id == peer)
}

/// Drives the rogue's swarm until `done` returns true for an event, or the
/// deadline passes.
async fn drive_until<F>(swarm: &mut Swarm<Rogue>, what: &str, mut done: F)
where
    F: FnMut(&SwarmEvent<RogueEvent>) -> bool,
{
    let started = Instant::now();
    loop {
        let remaining = DEADLINE.saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, swarm.select_next_some()).await {
            Ok(event) => {
                if done(&event) {
                    return;
                }
            }
            Err(_) => panic!("rogue peer: timed out waiting for {what}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_sending_garbage_are_dropped_and_the_chain_goes_on() {
    let _one_at_a_time = exclusive().await;
    let net = Testnet::start(4, 0).await;
    let genesis_prefix = hex_prefix(&net.context.genesis_hash.0);
    let target: Multiaddr = net.p2p_addr(0).parse().expect("multiaddr");
    let sync_protocol =
        StreamProtocol::try_from_owned(format!("/lockstep/{genesis_prefix}/sync/1"))
            .expect("protocol");

    // 1. Undecodable consensus gossip.
    let mut swarm = rogue(sync_protocol.clone());
    let topic = IdentTopic::new(format!("/lockstep/{genesis_prefix}/consensus/1"));
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .expect("subscribe");
    let rogue_id = swarm.local_peer_id().to_string();
    swarm.dial(target.clone()).expect("dial");
    let consensus = topic.hash();
    drive_until(&mut swarm, "the validator's subscription", |event| {
        matches!(
            event,
            SwarmEvent::Behaviour(RogueEvent::Gossipsub(gossipsub::Event::Subscribed { topic, .. }))
                if *topic == consensus
        )
    })
    .await;
    net.await_condition("the validator lists the rogue", || {
        listed_by(&net, 0, &rogue_id)
    })
    .await;
    swarm
        .behaviour_mut()
        .gossipsub
        .publish(topic, vec![0xff; 200])
        .expect("publish garbage");
    drive_until(&mut swarm, "the validator to disconnect", |event| {
        matches!(
            event,
            SwarmEvent::ConnectionClosed {
                num_established: 0,
                ..
            }
        )
    })
    .await;
    assert!(!listed_by(&net, 0, &rogue_id).await);

    // 2. An undecodable sync request, from a fresh identity.
    let mut swarm = rogue(sync_protocol);
    let rogue_id = swarm.local_peer_id().to_string();
    swarm.dial(target).expect("dial");
    let mut peer = None;
    drive_until(&mut swarm, "a connection", |event| match event {
        SwarmEvent::ConnectionEstablished { peer_id, .. } => {
            peer = Some(*peer_id);
            true
        }
        _ => false,
    })
    .await;
    let peer = peer.expect("connected peer");
    let mut garbage = 16u32.to_be_bytes().to_vec();
    garbage.extend([0xee; 16]);
    swarm.behaviour_mut().sync.send_request(&peer, garbage);
    drive_until(&mut swarm, "the validator to disconnect", |event| {
        matches!(
            event,
            SwarmEvent::ConnectionClosed {
                num_established: 0,
                ..
            }
        )
    })
    .await;
    assert!(!listed_by(&net, 0, &rogue_id).await);

    // The validators carry on together.
    let height = net.best(&[0, 1, 2, 3]).await;
    net.await_height(&[0, 1, 2, 3], height + 3).await;
    net.assert_agreement(&[0, 1, 2, 3]).await;
}

fn hex_prefix(genesis: &[u8; 32]) -> String {
    genesis[..8].iter().map(|b| format!("{b:02x}")).collect()
}
