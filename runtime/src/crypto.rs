//! Keys and signatures: ed25519, signing with `ed25519-dalek`, verifying by
//! the ZIP-215 rules with `ed25519-zebra`.
//!
//! A [`Keypair`] signs; an [`AccountId`] is its public key and verifies.
//! [`verify_batch`] checks many signatures at once (about twice as fast per
//! signature as one by one), which is how a block's transactions are checked.
//!
//! Why ZIP-215: whether a signature is valid must be a property of that
//! signature alone, because nodes check the same block's signatures in
//! different groupings (a node skips those its pool already checked, and
//! checks the rest in one batch). The usual ed25519 batch check is not
//! exact for crafted signatures with a small-order component: it can accept
//! one the single check refuses, depending on the rest of the batch. Under
//! ZIP-215 the batch check (cofactored, with random weights) agrees with the
//! single check on every signature, so any grouping gives the same answer.
//! Every honestly made ed25519 signature is valid under it.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use parity_scale_codec::{Decode, Encode};

use crate::primitives::{hex_bytes_type, AccountId, Hash};

/// An ed25519 signature (R ‖ s).
#[derive(Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct Signature(pub [u8; 64]);
hex_bytes_type!(Signature, 64);

/// A signing key and its public key.
#[derive(Clone)]
pub struct Keypair {
    secret: SigningKey,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Keypair")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

impl Keypair {
    /// A new random keypair from the operating system's random source.
    pub fn generate() -> Keypair {
        Keypair {
            secret: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    /// The keypair whose 32-byte secret seed is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Keypair {
        Keypair {
            secret: SigningKey::from_bytes(seed),
        }
    }

    /// A well-known development keypair derived from a name (`alice`, `bob`,
    /// `charlie`, `dave`, ...): seed = SHA-256("lockstep-dev-key:" ‖ name).
    ///
    /// Dev keys are public knowledge: anyone can sign with them. They exist for
    /// dev chains, tests and demos only and must never hold anything of value.
    pub fn dev(name: &str) -> Keypair {
        let seed = Hash::digest_parts(&[b"lockstep-dev-key:", name.as_bytes()]);
        Keypair::from_seed(&seed.0)
    }

    /// The 32-byte secret seed (for writing key files).
    pub fn seed(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// The public key, which is also the account id.
    pub fn public(&self) -> AccountId {
        AccountId(self.secret.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.secret.sign(message).to_bytes())
    }
}

/// The names [`Keypair::dev`] is documented for, in validator order for dev chains.
pub const DEV_NAMES: [&str; 8] = [
    "alice", "bob", "charlie", "dave", "eve", "ferdie", "grace", "heidi",
];

/// The key an account signs with, if it can sign at all: its key must be a
/// curve point and not of small order. ZIP-215 accepts a small-order key,
/// for which anyone can make a valid signature without a secret key; here
/// such an account (a "burn" address such as all zeros) can never sign, as
/// with the strict check. A property of the key alone, so batch and single
/// checks agree.
///
/// Decompressing a key costs about a third of a batched signature check,
/// and senders recur, so usable keys are remembered per thread, decompressed
/// (a memo of a pure function: it changes no answer), up to
/// [`USABLE_KEYS_MEMO`] of them.
fn usable_key(signer: &AccountId) -> Option<ed25519_zebra::VerificationKey> {
    thread_local! {
        static USABLE: std::cell::RefCell<
            std::collections::HashMap<AccountId, ed25519_zebra::VerificationKey>,
        > = std::cell::RefCell::new(std::collections::HashMap::new());
    }
    if let Some(key) = USABLE.with_borrow(|usable| usable.get(signer).copied()) {
        return Some(key);
    }
    if !VerifyingKey::from_bytes(&signer.0).is_ok_and(|key| !key.is_weak()) {
        return None;
    }
    let key = ed25519_zebra::VerificationKey::try_from(signer.0).ok()?;
    USABLE.with_borrow_mut(|memo| {
        if memo.len() >= USABLE_KEYS_MEMO {
            memo.clear();
        }
        memo.insert(*signer, key);
    });
    Some(key)
}

/// Most keys [`usable_key`] remembers per thread (about 230 bytes each
/// with the map's overhead: at most about 4 MB per thread).
const USABLE_KEYS_MEMO: usize = 1 << 14;

/// Checks one signature (ZIP-215, small-order keys refused). Invalid keys
/// and invalid signatures both yield `false`.
pub fn verify(signer: &AccountId, message: &[u8], signature: &Signature) -> bool {
    let Some(key) = usable_key(signer) else {
        return false;
    };
    let signature = ed25519_zebra::Signature::from_bytes(&signature.0);
    key.verify(&signature, message).is_ok()
}

/// Checks many signatures at once (ZIP-215: the answer is `true` exactly
/// when [`verify`] accepts every one, whatever else is in the batch). `false`
/// says that at least one is not valid (find it with [`verify`]). The three
/// slices must have the same length; if they do not, the answer is `false`.
pub fn verify_batch(signers: &[AccountId], messages: &[&[u8]], signatures: &[Signature]) -> bool {
    if signers.len() != messages.len() || signers.len() != signatures.len() {
        return false;
    }
    if signers.is_empty() {
        return true;
    }
    if !signers.iter().all(|signer| usable_key(signer).is_some()) {
        return false;
    }
    let mut batch = ed25519_zebra::batch::Verifier::new();
    for ((signer, message), signature) in signers.iter().zip(messages).zip(signatures) {
        let key = ed25519_zebra::VerificationKeyBytes::from(signer.0);
        let signature = ed25519_zebra::Signature::from_bytes(&signature.0);
        batch.queue((key, signature, message));
    }
    // The batch's random weights must be unpredictable to whoever made the
    // signatures: a ChaCha20 stream per thread, seeded from the operating
    // system (one system call per thread, not two per signature).
    thread_local! {
        static WEIGHTS: std::cell::RefCell<rand_chacha::ChaCha20Rng> =
            std::cell::RefCell::new(rand_core::SeedableRng::from_entropy());
    }
    WEIGHTS.with_borrow_mut(|rng| batch.verify(rng).is_ok())
}

/// Which of these signatures are valid, each as [`verify`] would say: one
/// batch check when all are (about twice as fast per signature as one by
/// one), and one by one only to find the bad ones when the batch fails.
/// Slices of different lengths: every answer is `false`.
pub fn verify_each(
    signers: &[AccountId],
    messages: &[&[u8]],
    signatures: &[Signature],
) -> Vec<bool> {
    if signers.len() != messages.len() || signers.len() != signatures.len() {
        return vec![false; signers.len()];
    }
    if verify_batch(signers, messages, signatures) {
        return vec![true; signers.len()];
    }
    signers
        .iter()
        .zip(messages)
        .zip(signatures)
        .map(|((signer, message), signature)| verify(signer, message, signature))
        .collect()
}

/// [`verify_batch`] on already parsed keys and signatures: the raw rate of the
/// underlying library, used by the benchmark as the yardstick.
pub fn verify_batch_parsed(
    keys: &[VerifyingKey],
    messages: &[&[u8]],
    signatures: &[ed25519_dalek::Signature],
) -> bool {
    if keys.is_empty() {
        return messages.is_empty() && signatures.is_empty();
    }
    ed25519_dalek::verify_batch(messages, signatures, keys).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let key = Keypair::dev("alice");
        let signature = key.sign(b"hello");
        assert!(verify(&key.public(), b"hello", &signature));
        assert!(!verify(&key.public(), b"hellO", &signature));
        assert!(!verify(&Keypair::dev("bob").public(), b"hello", &signature));
        let mut broken = signature;
        broken.0[3] ^= 1;
        assert!(!verify(&key.public(), b"hello", &broken));
    }

    #[test]
    fn dev_keys_are_deterministic_and_distinct() {
        assert_eq!(
            Keypair::dev("alice").public(),
            Keypair::dev("alice").public()
        );
        assert_ne!(Keypair::dev("alice").public(), Keypair::dev("bob").public());
        let seed = Keypair::dev("carol").seed();
        assert_eq!(
            Keypair::from_seed(&seed).public(),
            Keypair::dev("carol").public()
        );
        assert_ne!(Keypair::generate().public(), Keypair::generate().public());
    }

    #[test]
    fn batch_verify_detects_one_bad_signature() {
        let keys: Vec<Keypair> = (0..16).map(|i| Keypair::dev(&format!("k{i}"))).collect();
        let messages: Vec<Vec<u8>> = (0..16u8).map(|i| vec![i; 40]).collect();
        let mut signatures: Vec<Signature> =
            keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
        let signers: Vec<AccountId> = keys.iter().map(Keypair::public).collect();
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        assert!(verify_batch(&signers, &refs, &signatures));
        signatures[9] = keys[9].sign(b"something else");
        assert!(!verify_batch(&signers, &refs, &signatures));
        assert!(!verify_batch(&signers[..3], &refs, &signatures));
        assert!(verify_batch(&[], &[], &[]));
        // Each answer, the bad one named.
        let each = verify_each(&signers, &refs, &signatures);
        assert_eq!(each.iter().filter(|ok| !**ok).count(), 1);
        assert!(!each[9]);
        signatures[9] = keys[9].sign(&messages[9]);
        assert!(verify_each(&signers, &refs, &signatures)
            .iter()
            .all(|ok| *ok));
        assert!(verify_each(&[], &[], &[]).is_empty());
    }

    #[test]
    fn small_order_keys_never_verify_alone_or_in_a_batch() {
        // The all-zero key is a point of order 4, and with R of small order
        // and s = 0 the cofactored equation holds for any message: ZIP-215
        // alone would accept it. Such a key must never sign.
        let zero = AccountId([0; 32]);
        let universal = Signature([0; 64]);
        assert!(!verify(&zero, b"anything", &universal));
        let honest = Keypair::dev("alice");
        let signature = honest.sign(b"m");
        assert!(!verify_batch(
            &[honest.public(), zero],
            &[b"m", b"anything"],
            &[signature, universal]
        ));
        assert!(verify_batch(&[honest.public()], &[b"m"], &[signature]));
    }

    #[test]
    fn garbage_public_key_never_verifies() {
        // Not every 32-byte string is a point; those must fail, not panic.
        for byte in 0..=255u8 {
            let account = AccountId([byte; 32]);
            assert!(!verify(&account, b"m", &Signature([0; 64])));
        }
    }
}
