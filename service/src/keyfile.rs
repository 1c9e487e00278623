//! Key files: an ed25519 secret seed and its public key, as JSON (the
//! node, the `lockstep` CLI and the account bridge share the format).
//!
//! ```json
//! { "type": "ed25519", "publicKey": "0x…", "secretSeed": "0x…" }
//! ```
//!
//! Files are created with mode 0600 and never overwritten. On reading, the
//! public key must match the seed, so a damaged or edited file is caught.

use std::io::Write;
use std::path::Path;

use lockstep_runtime::primitives::{from_hex, to_hex};
use lockstep_runtime::{AccountId, Keypair};
use serde::{Deserialize, Serialize};

/// Largest key file read.
const MAX_KEY_FILE: u64 = 4096;

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The content is not a key file.
    #[error("{path} is not a valid key file: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    public_key: AccountId,
    secret_seed: String,
}

/// Writes a new key file; refuses to overwrite an existing one.
pub fn write(path: &Path, key: &Keypair) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = KeyFile {
        kind: "ed25519".into(),
        public_key: key.public(),
        secret_seed: to_hex(&key.seed()),
    };
    let json = serde_json::to_string_pretty(&file).map_err(|e| io(std::io::Error::other(e)))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut out = options.open(path).map_err(io)?;
    out.write_all(json.as_bytes()).map_err(io)?;
    out.write_all(b"\n").map_err(io)?;
    out.sync_all().map_err(io)
}

/// Reads a key file.
pub fn read(path: &Path) -> Result<Keypair, KeyFileError> {
    let name = path.display().to_string();
    let invalid = |reason: String| KeyFileError::Invalid {
        path: name.clone(),
        reason,
    };
    let metadata = std::fs::metadata(path).map_err(|source| KeyFileError::Io {
        path: name.clone(),
        source,
    })?;
    if metadata.len() > MAX_KEY_FILE {
        return Err(invalid(format!("larger than {MAX_KEY_FILE} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: name.clone(),
        source,
    })?;
    let file: KeyFile = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    if file.kind != "ed25519" {
        return Err(invalid(format!("unsupported key type {:?}", file.kind)));
    }
    let seed: [u8; 32] = from_hex(&file.secret_seed)
        .map_err(|e| invalid(format!("secretSeed: {e}")))?
        .try_into()
        .map_err(|_| invalid("secretSeed must be 32 bytes".into()))?;
    let key = Keypair::from_seed(&seed);
    if key.public() != file.public_key {
        return Err(invalid("publicKey does not belong to secretSeed".into()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        let key = Keypair::generate();
        write(&path, &key).unwrap();
        assert_eq!(read(&path).unwrap().public(), key.public());
        assert!(matches!(write(&path, &key), Err(KeyFileError::Io { .. })));

        let other = dir.path().join("other.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let tampered = text.replace(
            &key.public().to_string(),
            &Keypair::dev("x").public().to_string(),
        );
        std::fs::write(&other, tampered).unwrap();
        assert!(matches!(read(&other), Err(KeyFileError::Invalid { .. })));
        std::fs::write(&other, "not json").unwrap();
        assert!(matches!(read(&other), Err(KeyFileError::Invalid { .. })));
        assert!(matches!(
            read(&dir.path().join("missing")),
            Err(KeyFileError::Io { .. })
        ));
    }
}
