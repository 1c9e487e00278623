//! Key files: an ed25519 secret seed and its public key, as JSON (the
//! node's validator keys, the `lockstep` CLI's keys, the account bridge's
//! key and the event system's instruction key share the format).
//!
//! ```json
//! { "type": "ed25519", "publicKey": "0x…", "secretSeed": "0x…" }
//! ```
//!
//! Files are created with mode 0600 and never overwritten. On reading, as
//! ssh does with a private key, a file that its group or other users may
//! access (any of the mode bits 0077) is refused before its content is
//! read, with the fix in the message (`chmod 600 FILE`); and the public key
//! must match the seed, so a damaged or edited file is caught. No error
//! ever quotes the file's content: the secret seed never reaches a log
//! line or a terminal through here.

use std::io::{Read, Write};
use std::path::Path;

use lockstep_runtime::primitives::{from_hex, to_hex};
use lockstep_runtime::{AccountId, Keypair};
use serde::{Deserialize, Serialize};

/// Largest key file read.
const MAX_KEY_FILE: u64 = 4096;

/// Mode bits a key file must not have: any access by its group or others.
#[cfg(unix)]
const NOT_PRIVATE: u32 = 0o077;

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
    /// Others than its owner may read (or write) the file.
    #[error(
        "{path} is accessible by other users (mode {mode:04o}): a key file must be private to its owner; run `chmod 600 {path}`"
    )]
    NotPrivate {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
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

/// Writes a new key file, mode 0600; refuses to overwrite an existing one.
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
    // `create_new`: the mode applies to a file this call creates, never to
    // one that was there (with other permissions) before.
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

/// Refuses a key file that its group or other users may access. The
/// check is on the open file, so it is the file that is then read.
fn check_private(path: &str, metadata: &std::fs::Metadata) -> Result<(), KeyFileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & NOT_PRIVATE != 0 {
            return Err(KeyFileError::NotPrivate {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, metadata);
    Ok(())
}

/// Why the JSON does not parse, without quoting the file: serde's data
/// errors quote values and unknown keys, and either may be the secret
/// seed. Syntax errors and missing fields (named after this module's own
/// fields) quote nothing from the file.
fn parse_error(e: &serde_json::Error) -> String {
    let message = e.to_string();
    if e.is_data() && !message.starts_with("missing field") {
        format!(
            "a field is unknown or has the wrong type or value (line {}, column {})",
            e.line(),
            e.column()
        )
    } else {
        message
    }
}

/// Reads a key file; refuses one that is not private to its owner.
pub fn read(path: &Path) -> Result<Keypair, KeyFileError> {
    let name = path.display().to_string();
    let io = |source| KeyFileError::Io {
        path: name.clone(),
        source,
    };
    let invalid = |reason: String| KeyFileError::Invalid {
        path: name.clone(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    check_private(&name, &metadata)?;
    if metadata.len() > MAX_KEY_FILE {
        return Err(invalid(format!("larger than {MAX_KEY_FILE} bytes")));
    }
    let mut text = String::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    parse(&name, &text)
}

/// Parses a key file's content (`name` is the file, for messages only).
/// No error quotes the content.
pub fn parse(name: &str, text: &str) -> Result<Keypair, KeyFileError> {
    let invalid = |reason: String| KeyFileError::Invalid {
        path: name.to_owned(),
        reason,
    };
    let file: KeyFile = serde_json::from_str(text).map_err(|e| invalid(parse_error(&e)))?;
    if file.kind != "ed25519" {
        return Err(invalid(
            r#"unsupported key type (only "ed25519" is)"#.into(),
        ));
    }
    // The seed's own errors are not quoted either (a hex error names the
    // offending character).
    let seed: [u8; 32] = from_hex(&file.secret_seed)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| invalid("secretSeed must be 0x-prefixed hex of 32 bytes".into()))?;
    let key = Keypair::from_seed(&seed);
    if key.public() != file.public_key {
        return Err(invalid("publicKey does not belong to secretSeed".into()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `text` as a private file (as an operator's editor would,
    /// after `chmod 600`).
    fn write_private(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
        set_mode(path, 0o600);
    }

    fn set_mode(path: &Path, mode: u32) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = (path, mode);
    }

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
        write_private(&other, &tampered);
        assert!(matches!(read(&other), Err(KeyFileError::Invalid { .. })));
        write_private(&other, "not json");
        assert!(matches!(read(&other), Err(KeyFileError::Invalid { .. })));
        assert!(matches!(
            read(&dir.path().join("missing")),
            Err(KeyFileError::Io { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn written_private_and_refused_when_others_may_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        let key = Keypair::generate();
        write(&path, &key).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        for open in [0o640, 0o604, 0o644, 0o660, 0o606, 0o620, 0o610, 0o601] {
            set_mode(&path, open);
            let error = read(&path).unwrap_err();
            assert!(
                matches!(error, KeyFileError::NotPrivate { mode, .. } if mode == open),
                "{open:o}: {error}"
            );
            let message = error.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains("chmod 600"), "{message}");
            assert!(message.contains(&format!("{open:04o}")), "{message}");
        }
        // Stricter than 0600 is fine.
        for private in [0o600, 0o400] {
            set_mode(&path, private);
            assert_eq!(read(&path).unwrap().public(), key.public());
        }
    }

    #[test]
    fn errors_never_quote_the_secret_seed() {
        let dir = tempfile::tempdir().unwrap();
        let key = Keypair::dev("secret-holder");
        let seed = to_hex(&key.seed());
        let public = key.public().to_string();
        let digits = &seed[2..];
        let path = dir.path().join("key.json");
        for text in [
            // A bad digit in the seed (hex errors name the character).
            format!(
                r#"{{"type":"ed25519","publicKey":"{public}","secretSeed":"{}zz"}}"#,
                &seed[..64]
            ),
            // The seed where a key is expected (serde quotes the value).
            format!(r#"{{"type":"ed25519","publicKey":"{seed}zz","secretSeed":"{seed}"}}"#),
            // The seed as a number, or with the wrong length.
            format!(
                r#"{{"type":"ed25519","publicKey":"{public}","secretSeed":{}}}"#,
                &digits[..18].replace(|c: char| !c.is_ascii_digit(), "1")
            ),
            format!(
                r#"{{"type":"ed25519","publicKey":"{public}","secretSeed":"{}"}}"#,
                &seed[..40]
            ),
            // An unknown type, with the seed beside it, or as the type.
            format!(r#"{{"type":"rsa","publicKey":"{public}","secretSeed":"{seed}"}}"#),
            format!(r#"{{"type":"{seed}","publicKey":"{public}","secretSeed":"{seed}"}}"#),
            // The seed as an unknown key.
            format!(r#"{{"type":"ed25519","publicKey":"{public}","{seed}":"{seed}"}}"#),
            // The seed as a value where another type is expected.
            format!(r#"{{"type":"ed25519","publicKey":{{"{seed}":1}},"secretSeed":"{seed}"}}"#),
        ] {
            let _ = std::fs::remove_file(&path);
            write_private(&path, &text);
            let message = read(&path).unwrap_err().to_string();
            for fragment in digits.as_bytes().chunks(8) {
                let fragment = std::str::from_utf8(fragment).unwrap();
                assert!(!message.contains(fragment), "{message} quotes the seed");
            }
        }
        // Field names are still named.
        let _ = std::fs::remove_file(&path);
        write_private(
            &path,
            &format!(r#"{{"type":"ed25519","publicKey":"{public}"}}"#),
        );
        let message = read(&path).unwrap_err().to_string();
        assert!(message.contains("missing field `secretSeed`"), "{message}");
    }
}
