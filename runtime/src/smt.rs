//! The state commitment: a sparse Merkle tree over 256-bit paths.
//!
//! Every state entry `(key, value)` is a leaf at path `SHA-256(key)`. The tree
//! is binary and compressed: a leaf sits at the shallowest depth at which it
//! is alone in its subtree, so its depth is about log2(entries), not 256.
//!
//! ```text
//! empty        hash = 0x00…00
//! leaf         hash = H(0x00 ‖ path ‖ H(value))
//! inner        hash = H(0x01 ‖ left ‖ right)
//! ```
//!
//! Nodes are stored under their position (depth and path prefix), so the
//! tree keeps only the latest version and an update overwrites in place. A
//! batch of updates visits only the paths it touches: its cost is about
//! `updates × log2(entries / updates) + updates` hashes and reads, whatever the
//! total size of the state. That is what keeps a block's state root cheap.
//!
//! Entries are never deleted (a zero balance stays an entry), so a position
//! only ever turns from empty to leaf to inner, and nothing is stored below a
//! leaf. The shape is therefore a pure function of the set of keys, whatever
//! the order in which they were inserted.

use parity_scale_codec::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::primitives::Hash;
use crate::state::{StateError, StateResult, StateStore, WriteSet};

/// Prefix of the state keys that hold tree nodes.
pub const NODE_KEY_PREFIX: u8 = b'T';

const LEAF: u8 = 0x00;
const INNER: u8 = 0x01;
const MAX_DEPTH: usize = 256;

/// A 256-bit position in the tree.
pub type Path = [u8; 32];

/// The path of a state key.
pub fn path_of(key: &[u8]) -> Path {
    Hash::digest(key).0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Empty,
    Leaf { path: Path, value_hash: Hash },
    Inner { left: Hash, right: Hash },
}

fn leaf_hash(path: &Path, value_hash: &Hash) -> Hash {
    Hash::digest_parts(&[&[LEAF], path, &value_hash.0])
}

fn inner_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::digest_parts(&[&[INNER], &left.0, &right.0])
}

impl Node {
    fn hash(&self) -> Hash {
        match self {
            Node::Empty => Hash::ZERO,
            Node::Leaf { path, value_hash } => leaf_hash(path, value_hash),
            Node::Inner { left, right } => inner_hash(left, right),
        }
    }

    /// The stored form: a tag and two 32-byte fields. `None` for empty,
    /// which is never stored.
    fn encode(&self) -> Option<[u8; 65]> {
        let (tag, a, b) = match self {
            Node::Empty => return None,
            Node::Leaf { path, value_hash } => (LEAF, path, &value_hash.0),
            Node::Inner { left, right } => (INNER, &left.0, &right.0),
        };
        let mut bytes = [0u8; 65];
        bytes[0] = tag;
        bytes[1..33].copy_from_slice(a);
        bytes[33..].copy_from_slice(b);
        Some(bytes)
    }

    fn decode(key: &[u8], bytes: &[u8]) -> StateResult<Node> {
        let corrupt = || StateError::corrupt(key, "tree node is not 65 bytes with a known tag");
        if bytes.len() != 65 {
            return Err(corrupt());
        }
        let a: [u8; 32] = bytes[1..33].try_into().map_err(|_| corrupt())?;
        let b: [u8; 32] = bytes[33..65].try_into().map_err(|_| corrupt())?;
        match bytes[0] {
            LEAF => Ok(Node::Leaf {
                path: a,
                value_hash: Hash(b),
            }),
            INNER => Ok(Node::Inner {
                left: Hash(a),
                right: Hash(b),
            }),
            _ => Err(corrupt()),
        }
    }
}

/// Bit `depth` of `path`, most significant bit first: `false` goes left.
fn bit(path: &Path, depth: usize) -> bool {
    (path[depth / 8] >> (7 - depth % 8)) & 1 == 1
}

/// The storage key of the node at `depth` on the way to `path`: the prefix
/// byte, the depth (u16 BE), and the path's first `depth` bits.
struct NodeKey {
    bytes: [u8; 35],
    len: usize,
}

impl NodeKey {
    fn new(depth: usize, path: &Path) -> NodeKey {
        let depth = depth.min(MAX_DEPTH);
        let full_bytes = depth / 8;
        let extra_bits = depth % 8;
        let mut bytes = [0u8; 35];
        bytes[0] = NODE_KEY_PREFIX;
        // depth ≤ 256 always fits in two bytes.
        bytes[1..3].copy_from_slice(&u16::try_from(depth).unwrap_or(u16::MAX).to_be_bytes());
        bytes[3..3 + full_bytes].copy_from_slice(&path[..full_bytes]);
        let mut len = 3 + full_bytes;
        if extra_bits > 0 {
            bytes[len] = path[full_bytes] & (0xffu8 << (8 - extra_bits));
            len += 1;
        }
        NodeKey { bytes, len }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
fn node_key(depth: usize, path: &Path) -> Vec<u8> {
    NodeKey::new(depth, path).as_bytes().to_vec()
}

fn read_node(store: &dyn StateStore, depth: usize, path: &Path) -> StateResult<Node> {
    read_node_into(store, depth, path, &mut Vec::with_capacity(65))
}

fn read_node_into(
    store: &dyn StateStore,
    depth: usize,
    path: &Path,
    buffer: &mut Vec<u8>,
) -> StateResult<Node> {
    let key = NodeKey::new(depth, path);
    if store.get_into(key.as_bytes(), buffer)? {
        Node::decode(key.as_bytes(), buffer)
    } else {
        Ok(Node::Empty)
    }
}

/// The current root of the tree in `store`.
pub fn root(store: &dyn StateStore) -> StateResult<Hash> {
    Ok(read_node(store, 0, &[0; 32])?.hash())
}

/// Applies `updates` (leaf paths with the hashes of their new values, sorted
/// by path, no path twice) to the tree in `store`, appending every changed
/// node to `writes` (each position at most once), and returns the new root.
pub fn update(
    store: &dyn StateStore,
    updates: &[(Path, Hash)],
    writes: &mut WriteSet,
) -> StateResult<Hash> {
    if updates.is_empty() {
        return root(store);
    }
    debug_assert!(
        updates.windows(2).all(|w| w[0].0 < w[1].0),
        "updates sorted and unique"
    );
    let current = read_node(store, 0, &[0; 32])?;
    let mut updater = Updater {
        store,
        writes,
        buffer: Vec::with_capacity(65),
    };
    Ok(updater.update_at(0, current, updates)?.hash())
}

struct Updater<'a> {
    store: &'a dyn StateStore,
    writes: &'a mut WriteSet,
    /// Reused for every node read.
    buffer: Vec<u8>,
}

impl Updater<'_> {
    /// Rewrites the subtree at `depth` (the position on the way to the paths in
    /// `updates`, which is non-empty), whose node is now `current`.
    fn update_at(
        &mut self,
        depth: usize,
        current: Node,
        updates: &[(Path, Hash)],
    ) -> StateResult<Node> {
        let here = updates[0].0;
        let new = match current {
            Node::Empty if updates.len() == 1 => Node::Leaf {
                path: here,
                value_hash: updates[0].1,
            },
            Node::Leaf { path, .. } if updates.len() == 1 && updates[0].0 == path => Node::Leaf {
                path,
                value_hash: updates[0].1,
            },
            Node::Empty => self.split(depth, Hash::ZERO, Hash::ZERO, updates, false)?,
            Node::Leaf { path, value_hash } => {
                // The leaf is no longer alone here: push it down with the rest.
                let mut merged = updates.to_vec();
                if let Err(at) = merged.binary_search_by(|(p, _)| p.cmp(&path)) {
                    merged.insert(at, (path, value_hash));
                }
                self.split(depth, Hash::ZERO, Hash::ZERO, &merged, false)?
            }
            Node::Inner { left, right } => self.split(depth, left, right, updates, true)?,
        };
        if let Some(encoded) = new.encode() {
            self.writes
                .push(NodeKey::new(depth, &here).as_bytes(), &encoded);
        }
        Ok(new)
    }

    /// Builds the inner node at `depth` from its old child hashes and the
    /// updates below it. `children_stored` is false when the children are
    /// known to be empty (a fresh inner node), so nothing is read for them.
    fn split(
        &mut self,
        depth: usize,
        left: Hash,
        right: Hash,
        updates: &[(Path, Hash)],
        children_stored: bool,
    ) -> StateResult<Node> {
        if depth >= MAX_DEPTH {
            return Err(StateError::corrupt(
                NodeKey::new(MAX_DEPTH, &updates[0].0).as_bytes(),
                "tree deeper than 256",
            ));
        }
        let cut = updates.partition_point(|(path, _)| !bit(path, depth));
        let (to_left, to_right) = updates.split_at(cut);
        let mut child = |old: Hash, part: &[(Path, Hash)]| -> StateResult<Hash> {
            if part.is_empty() {
                return Ok(old);
            }
            let current = if children_stored {
                read_node_into(self.store, depth + 1, &part[0].0, &mut self.buffer)?
            } else {
                Node::Empty
            };
            Ok(self.update_at(depth + 1, current, part)?.hash())
        };
        let left = child(left, to_left)?;
        let right = child(right, to_right)?;
        Ok(Node::Inner { left, right })
    }
}

/// Proof of what the tree holds at one path: the sibling hashes from the root
/// down to where the walk ended, and the leaf found there, if any.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateProof {
    /// Sibling hashes, root level first.
    pub siblings: Vec<Hash>,
    /// The leaf where the walk ended: its path and value hash. `None` if it
    /// ended at an empty subtree.
    pub leaf: Option<(Hash, Hash)>,
}

/// Proves the value (or absence) of `key` in the tree in `store`.
pub fn prove(store: &dyn StateStore, key: &[u8]) -> StateResult<StateProof> {
    let path = path_of(key);
    let mut siblings = Vec::new();
    let mut node = read_node(store, 0, &path)?;
    let mut depth = 0;
    loop {
        match node {
            Node::Empty => {
                return Ok(StateProof {
                    siblings,
                    leaf: None,
                })
            }
            Node::Leaf { path, value_hash } => {
                return Ok(StateProof {
                    siblings,
                    leaf: Some((Hash(path), value_hash)),
                })
            }
            Node::Inner { left, right } => {
                if depth >= MAX_DEPTH {
                    return Err(StateError::corrupt(
                        NodeKey::new(depth, &path).as_bytes(),
                        "tree deeper than 256",
                    ));
                }
                siblings.push(if bit(&path, depth) { left } else { right });
                depth += 1;
                node = read_node(store, depth, &path)?;
            }
        }
    }
}

/// Whether `proof` shows that `key` holds `value` (`None`: holds nothing)
/// under `root`. Never panics, whatever the proof holds.
pub fn verify(root: &Hash, key: &[u8], value: Option<&[u8]>, proof: &StateProof) -> bool {
    let path = path_of(key);
    if proof.siblings.len() > MAX_DEPTH {
        return false;
    }
    let depth = proof.siblings.len();
    let terminal = match (&proof.leaf, value) {
        (Some((leaf_path, value_hash)), Some(value)) => {
            if leaf_path.0 != path || *value_hash != Hash::digest(value) {
                return false;
            }
            leaf_hash(&path, value_hash)
        }
        (Some((leaf_path, value_hash)), None) => {
            // Absent: another leaf occupies the subtree; it must really lie on
            // our path down to `depth`, and be a different leaf.
            if leaf_path.0 == path || (0..depth).any(|d| bit(&leaf_path.0, d) != bit(&path, d)) {
                return false;
            }
            leaf_hash(&leaf_path.0, value_hash)
        }
        (None, None) => Hash::ZERO,
        (None, Some(_)) => return false,
    };
    let mut node = terminal;
    for (d, sibling) in proof.siblings.iter().enumerate().rev() {
        node = if bit(&path, d) {
            inner_hash(sibling, &node)
        } else {
            inner_hash(&node, sibling)
        };
    }
    node == *root
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    fn apply(store: &mut MemoryStore, entries: &[(Vec<u8>, Vec<u8>)]) -> Hash {
        let mut updates: Vec<(Path, Hash)> = entries
            .iter()
            .map(|(k, v)| (path_of(k), Hash::digest(v)))
            .collect();
        updates.sort_by_key(|u| u.0);
        updates.dedup_by(|a, b| a.0 == b.0);
        let mut writes = WriteSet::default();
        let root = update(store, &updates, &mut writes).unwrap();
        store.apply(&writes);
        root
    }

    fn entry(i: u32, v: u32) -> (Vec<u8>, Vec<u8>) {
        (i.to_be_bytes().to_vec(), v.to_be_bytes().to_vec())
    }

    #[test]
    fn root_is_independent_of_insertion_order_and_batching() {
        let entries: Vec<_> = (0..300).map(|i| entry(i, i * 7)).collect();
        let mut one_batch = MemoryStore::default();
        let root_a = apply(&mut one_batch, &entries);

        let mut one_by_one = MemoryStore::default();
        let mut root_b = Hash::ZERO;
        for e in entries.iter().rev() {
            root_b = apply(&mut one_by_one, std::slice::from_ref(e));
        }
        assert_eq!(root_a, root_b);
        assert_eq!(root(&one_batch).unwrap(), root_a);
    }

    #[test]
    fn every_value_change_changes_the_root() {
        let mut store = MemoryStore::default();
        let entries: Vec<_> = (0..50).map(|i| entry(i, 0)).collect();
        let mut previous = apply(&mut store, &entries);
        for i in 0..50 {
            let next = apply(&mut store, &[entry(i, 1)]);
            assert_ne!(next, previous);
            previous = next;
        }
        // Writing the same values again leaves the root as it is.
        assert_eq!(apply(&mut store, &[entry(3, 1)]), previous);
    }

    #[test]
    fn proofs_of_presence_and_absence() {
        let mut store = MemoryStore::default();
        let entries: Vec<_> = (0..100).map(|i| entry(i, i + 1)).collect();
        let root = apply(&mut store, &entries);
        for (key, value) in &entries {
            let proof = prove(&store, key).unwrap();
            assert!(verify(&root, key, Some(value), &proof));
            assert!(!verify(&root, key, Some(b"other"), &proof));
            assert!(!verify(&root, key, None, &proof));
            let mut tampered = proof.clone();
            if let Some(first) = tampered.siblings.first_mut() {
                first.0[0] ^= 1;
                assert!(!verify(&root, key, Some(value), &tampered));
            }
        }
        for i in 1000..1100u32 {
            let key = i.to_be_bytes();
            let proof = prove(&store, &key).unwrap();
            assert!(verify(&root, &key, None, &proof));
            assert!(!verify(&root, &key, Some(b"x"), &proof));
        }
        // An empty tree proves absence of anything.
        let empty = MemoryStore::default();
        let proof = prove(&empty, b"k").unwrap();
        assert!(verify(&Hash::ZERO, b"k", None, &proof));
    }

    #[test]
    fn update_touches_a_logarithmic_number_of_nodes() {
        let mut store = MemoryStore::default();
        let entries: Vec<_> = (0..4096).map(|i| entry(i, 0)).collect();
        apply(&mut store, &entries);
        let mut writes = WriteSet::default();
        let key = 17u32.to_be_bytes();
        update(
            &store,
            &[(path_of(&key), Hash::digest(b"new"))],
            &mut writes,
        )
        .unwrap();
        // log2(4096) = 12; a compressed tree stays within a small factor.
        assert!(writes.len() <= 30, "{} nodes written", writes.len());
    }

    #[test]
    fn corrupt_nodes_are_errors_not_panics() {
        let mut store = MemoryStore::default();
        let mut garbage = WriteSet::default();
        garbage.push(&node_key(0, &[0; 32]), &[7; 10]);
        store.apply(&garbage);
        assert!(root(&store).is_err());
        assert!(prove(&store, b"k").is_err());
    }
}
