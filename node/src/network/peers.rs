//! What the node knows about each connected peer, and its score.
//!
//! A peer starts at zero; each offence subtracts its weight. At or below
//! [`BAN_THRESHOLD`] the peer is disconnected and refused for the rest of
//! the process's life. Undecodable data, bad signatures, wrong genesis and
//! false justifications are banned at once (a correct peer validates before
//! it forwards, so it never relays them); lesser faults (a response that
//! does not fit the request) cost less.

use std::collections::HashMap;

use libp2p::{Multiaddr, PeerId};
use lockstep_runtime::{BlockNumber, Hash};

/// The score at which a peer is dropped.
pub const BAN_THRESHOLD: i32 = -100;

/// Something a peer did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// Bytes that do not decode, or exceed the size bound.
    Undecodable,
    /// A consensus message or justification whose signatures do not verify.
    BadSignature,
    /// A peer of another chain.
    WrongGenesis,
    /// A sync response that does not answer the request.
    UnrequestedData,
}

impl Offence {
    /// How much the offence costs.
    pub fn weight(self) -> i32 {
        match self {
            Offence::Undecodable | Offence::BadSignature | Offence::WrongGenesis => 100,
            Offence::UnrequestedData => 25,
        }
    }
}

/// One connected peer.
#[derive(Debug, Clone)]
pub struct PeerState {
    /// Its finalized height, from its last status.
    pub finalized_number: BlockNumber,
    /// Its finalized head, from its last status.
    pub finalized_hash: Hash,
    /// Whether its status has been received (same genesis).
    pub status_known: bool,
    /// Its score.
    pub score: i32,
    /// The address of the connection.
    pub address: Option<Multiaddr>,
}

/// The connected peers.
#[derive(Debug, Default)]
pub struct PeerTable {
    peers: HashMap<PeerId, PeerState>,
}

impl PeerTable {
    /// Records a new connection.
    pub fn connected(&mut self, peer: PeerId, address: Multiaddr) {
        self.peers.entry(peer).or_insert(PeerState {
            finalized_number: 0,
            finalized_hash: Hash([0; 32]),
            status_known: false,
            score: 0,
            address: Some(address),
        });
    }

    /// Forgets a peer whose last connection closed.
    pub fn disconnected(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// Records a peer's status.
    pub fn status(&mut self, peer: &PeerId, number: BlockNumber, hash: Hash) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.finalized_number = number;
            state.finalized_hash = hash;
            state.status_known = true;
        }
    }

    /// Charges an offence; returns whether the peer must now be dropped.
    pub fn penalise(&mut self, peer: &PeerId, offence: Offence) -> bool {
        match self.peers.get_mut(peer) {
            Some(state) => {
                state.score = state.score.saturating_sub(offence.weight());
                state.score <= BAN_THRESHOLD
            }
            None => offence.weight() >= -BAN_THRESHOLD,
        }
    }

    /// The peer with the highest finalized height above `above`, if any.
    pub fn best_above(&self, above: BlockNumber) -> Option<(PeerId, BlockNumber)> {
        self.peers
            .iter()
            .filter(|(_, s)| s.status_known && s.finalized_number > above)
            .max_by_key(|(_, s)| s.finalized_number)
            .map(|(peer, s)| (*peer, s.finalized_number))
    }

    /// The highest finalized height any peer reported.
    pub fn best_height(&self) -> BlockNumber {
        self.peers
            .values()
            .map(|s| s.finalized_number)
            .max()
            .unwrap_or(0)
    }

    /// All peers.
    pub fn iter(&self) -> impl Iterator<Item = (&PeerId, &PeerState)> {
        self.peers.iter()
    }

    /// How many peers are connected.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is connected.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Whether the peer is connected.
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_bans_at_once_lesser_faults_accumulate() {
        let mut table = PeerTable::default();
        let peer = PeerId::random();
        table.connected(peer, Multiaddr::empty());
        assert!(!table.penalise(&peer, Offence::UnrequestedData));
        assert!(!table.penalise(&peer, Offence::UnrequestedData));
        assert!(!table.penalise(&peer, Offence::UnrequestedData));
        assert!(table.penalise(&peer, Offence::UnrequestedData));
        let other = PeerId::random();
        table.connected(other, Multiaddr::empty());
        assert!(table.penalise(&other, Offence::Undecodable));
    }

    #[test]
    fn best_peer_is_the_highest_with_a_status() {
        let mut table = PeerTable::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        table.connected(a, Multiaddr::empty());
        table.connected(b, Multiaddr::empty());
        assert_eq!(table.best_above(0), None);
        table.status(&a, 5, Hash([1; 32]));
        table.status(&b, 9, Hash([2; 32]));
        assert_eq!(table.best_above(3), Some((b, 9)));
        assert_eq!(table.best_above(9), None);
    }
}
