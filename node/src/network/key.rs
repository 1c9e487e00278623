//! The node's network identity: an ed25519 key kept in
//! `<base>/network/secret_ed25519` (32 raw secret bytes, mode 0600), made on
//! first start. Its public key is the node's peer id, which must stay the
//! same across restarts so that peers and bootnode lists keep working.

use std::path::{Path, PathBuf};

use libp2p::identity;

use super::NetworkError;

/// Where the key lives under a base path.
pub fn key_path(base_path: &Path) -> PathBuf {
    base_path.join("network").join("secret_ed25519")
}

/// Reads the key at `path`, or creates one there if there is none.
pub fn load_or_generate(path: &Path) -> Result<identity::Keypair, NetworkError> {
    let key_error = |reason: String| NetworkError::Key {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::read(path) {
        Ok(mut bytes) => {
            if bytes.len() != 32 {
                return Err(key_error(format!(
                    "expected 32 bytes, found {}",
                    bytes.len()
                )));
            }
            identity::Keypair::ed25519_from_bytes(&mut bytes).map_err(|e| key_error(e.to_string()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let seed = lockstep_runtime::Keypair::generate().seed();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| key_error(e.to_string()))?;
            }
            write_secret(path, &seed).map_err(|e| key_error(e.to_string()))?;
            let mut bytes = seed;
            identity::Keypair::ed25519_from_bytes(&mut bytes).map_err(|e| key_error(e.to_string()))
        }
        Err(error) => Err(key_error(error.to_string())),
    }
}

fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(dir.path());
        let first = load_or_generate(&path).unwrap();
        let second = load_or_generate(&path).unwrap();
        assert_eq!(first.public().to_peer_id(), second.public().to_peer_id());
        std::fs::write(&path, [1u8; 5]).unwrap();
        assert!(load_or_generate(&path).is_err());
    }
}
