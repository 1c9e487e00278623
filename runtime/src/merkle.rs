//! Binary Merkle trees over a list of hashes, with inclusion proofs.
//!
//! Used for a block's `extrinsics_root` (leaves: tx hashes) and
//! `receipts_root` (leaves: receipt hashes), so that a light client holding
//! only a header can check "tx X is at position i of block B and its receipt
//! says it succeeded".
//!
//! Construction: a leaf is hashed as `H(0x00 ‖ leaf)`, an inner node as
//! `H(0x01 ‖ left ‖ right)` (the prefixes keep a leaf from posing as a node);
//! at a level with an odd count the last node is carried up unchanged (no
//! duplication). The root is `H(0x02 ‖ leaf count (u32 LE) ‖ top node)`: with
//! the count committed, the shape of the tree is fixed, and so a proof binds
//! the leaf's position, not only its presence (without it a proof for the
//! last leaf of 13 passes as a proof for leaf 3 of 4). The root of an empty
//! list is [`Hash::ZERO`].

use parity_scale_codec::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::primitives::Hash;

const LEAF: u8 = 0x00;
const NODE: u8 = 0x01;
const ROOT: u8 = 0x02;
/// More siblings than this cannot occur for any list that fits in memory.
const MAX_DEPTH: usize = 64;

fn hash_leaf(leaf: &Hash) -> Hash {
    Hash::digest_parts(&[&[LEAF], &leaf.0])
}

fn hash_node(left: &Hash, right: &Hash) -> Hash {
    Hash::digest_parts(&[&[NODE], &left.0, &right.0])
}

fn hash_root(leaf_count: u32, top: &Hash) -> Hash {
    Hash::digest_parts(&[&[ROOT], &leaf_count.to_le_bytes(), &top.0])
}

/// The root of the tree over `leaves`.
pub fn root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Hash::ZERO;
    }
    // Lists beyond u32::MAX leaves do not fit a block; saturate rather than wrap.
    let count = u32::try_from(leaves.len()).unwrap_or(u32::MAX);
    let mut level: Vec<Hash> = leaves.iter().map(hash_leaf).collect();
    while level.len() > 1 {
        level = next_level(&level);
    }
    hash_root(count, &level[0])
}

fn next_level(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [left, right] => hash_node(left, right),
            [single] => *single,
            _ => unreachable!("chunks(2) yields one or two items"),
        })
        .collect()
}

/// Proof that a leaf sits at `index` of a list of `leaf_count` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MerkleProof {
    /// Position of the leaf.
    pub index: u32,
    /// Number of leaves in the tree.
    pub leaf_count: u32,
    /// Sibling hashes from the leaf's level up to just below the root.
    pub siblings: Vec<Hash>,
}

/// The proof for `leaves[index]`, or `None` if `index` is out of range.
pub fn prove(leaves: &[Hash], index: usize) -> Option<MerkleProof> {
    if index >= leaves.len() {
        return None;
    }
    let index_u32 = u32::try_from(index).ok()?;
    let leaf_count = u32::try_from(leaves.len()).ok()?;
    let mut siblings = Vec::new();
    let mut level: Vec<Hash> = leaves.iter().map(hash_leaf).collect();
    let mut position = index;
    while level.len() > 1 {
        let sibling = position ^ 1;
        if sibling < level.len() {
            siblings.push(level[sibling]);
        }
        level = next_level(&level);
        position /= 2;
    }
    Some(MerkleProof {
        index: index_u32,
        leaf_count,
        siblings,
    })
}

/// A whole tree, kept level by level: its root and the proof of any leaf
/// without rebuilding it, so proving k leaves of an n-leaf list costs
/// O(n + k log n) rather than the O(k n) of k [`prove`] calls.
#[derive(Debug, Clone)]
pub struct Tree {
    /// `levels[0]` are the hashed leaves, the last level is the top node.
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// The tree over `leaves`.
    pub fn new(leaves: &[Hash]) -> Tree {
        let mut levels = vec![leaves.iter().map(hash_leaf).collect::<Vec<_>>()];
        loop {
            let next = match levels.last() {
                Some(top) if top.len() > 1 => next_level(top),
                _ => break,
            };
            levels.push(next);
        }
        Tree { levels }
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its root, as [`root`] computes it.
    pub fn root(&self) -> Hash {
        match self.levels.last().and_then(|top| top.first()) {
            None => Hash::ZERO,
            Some(top) => hash_root(u32::try_from(self.len()).unwrap_or(u32::MAX), top),
        }
    }

    /// The proof for leaf `index`, as [`prove`] gives it; `None` if out of
    /// range.
    pub fn prove(&self, index: usize) -> Option<MerkleProof> {
        if index >= self.len() {
            return None;
        }
        let mut siblings = Vec::new();
        let mut position = index;
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(sibling) = level.get(position ^ 1) {
                siblings.push(*sibling);
            }
            position /= 2;
        }
        Some(MerkleProof {
            index: u32::try_from(index).ok()?,
            leaf_count: u32::try_from(self.len()).ok()?,
            siblings,
        })
    }
}

/// Whether `proof` shows `leaf` at `proof.index` under `root`. Never panics,
/// whatever the proof holds.
pub fn verify(root: &Hash, leaf: &Hash, proof: &MerkleProof) -> bool {
    if proof.index >= proof.leaf_count || proof.siblings.len() > MAX_DEPTH {
        return false;
    }
    let mut position = u64::from(proof.index);
    let mut width = u64::from(proof.leaf_count);
    let mut node = hash_leaf(leaf);
    let mut siblings = proof.siblings.iter();
    while width > 1 {
        let is_right = position % 2 == 1;
        if is_right {
            let Some(left) = siblings.next() else {
                return false;
            };
            node = hash_node(left, &node);
        } else if position + 1 < width {
            let Some(right) = siblings.next() else {
                return false;
            };
            node = hash_node(&node, right);
        }
        // else: the last node of an odd level is carried up unchanged.
        position /= 2;
        width = width.div_ceil(2);
    }
    siblings.next().is_none() && hash_root(proof.leaf_count, &node) == *root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| Hash::digest(&(i as u64).to_le_bytes()))
            .collect()
    }

    #[test]
    fn every_leaf_proves_for_many_sizes() {
        for n in 1..=33 {
            let leaves = leaves(n);
            let root = root(&leaves);
            for (i, leaf) in leaves.iter().enumerate() {
                let proof = prove(&leaves, i).unwrap();
                assert!(verify(&root, leaf, &proof), "n={n} i={i}");
            }
            assert!(prove(&leaves, n).is_none());
        }
    }

    #[test]
    fn a_tree_proves_as_prove_does() {
        for n in [0, 1, 2, 3, 4, 5, 7, 8, 13, 64, 100] {
            let leaves = leaves(n);
            let tree = Tree::new(&leaves);
            assert_eq!(tree.len(), n);
            assert_eq!(tree.root(), root(&leaves), "n={n}");
            for i in 0..n {
                assert_eq!(tree.prove(i), prove(&leaves, i), "n={n} i={i}");
            }
            assert_eq!(tree.prove(n), None);
        }
    }

    #[test]
    fn tampered_proofs_fail() {
        let leaves = leaves(13);
        let root = root(&leaves);
        for i in 0..leaves.len() {
            let proof = prove(&leaves, i).unwrap();
            // Wrong leaf.
            assert!(!verify(&root, &Hash([1; 32]), &proof));
            // Wrong position or count.
            let mut moved = proof.clone();
            moved.index = (moved.index + 1) % 13;
            assert!(!verify(&root, &leaves[i], &moved));
            let mut recounted = proof.clone();
            recounted.leaf_count = 14;
            assert!(!verify(&root, &leaves[i], &recounted));
            // Each sibling flipped, dropped, or one added.
            for s in 0..proof.siblings.len() {
                let mut flipped = proof.clone();
                flipped.siblings[s].0[0] ^= 1;
                assert!(!verify(&root, &leaves[i], &flipped));
            }
            let mut short = proof.clone();
            short.siblings.pop();
            assert!(!verify(&root, &leaves[i], &short));
            let mut long = proof.clone();
            long.siblings.push(Hash::ZERO);
            assert!(!verify(&root, &leaves[i], &long));
        }
    }

    #[test]
    fn roots_distinguish_lists() {
        let five = leaves(5);
        let mut padded = five.clone();
        padded.push(five[4]);
        assert_ne!(root(&five), root(&padded));
        assert_ne!(root(&five[..1]), five[0]);
        // The count is committed: a proof cannot move a leaf to another position.
        let thirteen = leaves(13);
        let mut proof = prove(&thirteen, 12).unwrap();
        proof.index = 3;
        proof.leaf_count = 4;
        assert!(!verify(&root(&thirteen), &thirteen[12], &proof));
        assert_eq!(root(&[]), Hash::ZERO);
    }

    #[test]
    fn absurd_proofs_are_rejected_without_panic() {
        let proof = MerkleProof {
            index: u32::MAX,
            leaf_count: u32::MAX,
            siblings: vec![],
        };
        assert!(!verify(&Hash::ZERO, &Hash::ZERO, &proof));
        let proof = MerkleProof {
            index: 0,
            leaf_count: 0,
            siblings: vec![],
        };
        assert!(!verify(&Hash::ZERO, &Hash::ZERO, &proof));
        let deep = MerkleProof {
            index: 0,
            leaf_count: 2,
            siblings: vec![Hash::ZERO; 65],
        };
        assert!(!verify(&Hash::ZERO, &Hash::ZERO, &deep));
    }
}
