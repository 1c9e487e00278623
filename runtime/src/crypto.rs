//! Keys and signatures: ed25519 through `ed25519-dalek`.
//!
//! A [`Keypair`] signs; an [`AccountId`] is its public key and verifies.
//! [`verify_batch`] checks many signatures at once (about twice as fast per
//! signature as one by one), which is how a block's transactions are checked.

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

/// Parses a public key, rejecting byte strings that are not a curve point.
fn verifying_key(account: &AccountId) -> Option<VerifyingKey> {
    VerifyingKey::from_bytes(&account.0).ok()
}

/// Checks one signature. Invalid keys and invalid signatures both yield `false`.
pub fn verify(signer: &AccountId, message: &[u8], signature: &Signature) -> bool {
    let Some(key) = verifying_key(signer) else {
        return false;
    };
    let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(message, &signature).is_ok()
}

/// Checks many signatures at once. `true` only if every one is valid; `false`
/// says that at least one is not (find it with [`verify`]). The three slices
/// must have the same length; if they do not, the answer is `false`.
pub fn verify_batch(signers: &[AccountId], messages: &[&[u8]], signatures: &[Signature]) -> bool {
    if signers.len() != messages.len() || signers.len() != signatures.len() {
        return false;
    }
    let mut keys = Vec::with_capacity(signers.len());
    for signer in signers {
        match verifying_key(signer) {
            Some(key) => keys.push(key),
            None => return false,
        }
    }
    let signatures: Vec<ed25519_dalek::Signature> = signatures
        .iter()
        .map(|s| ed25519_dalek::Signature::from_bytes(&s.0))
        .collect();
    verify_batch_parsed(&keys, messages, &signatures)
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
