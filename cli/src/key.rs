//! Keys: parsing the key and account arguments, `lockstep key ...`.

use std::path::Path;

use anyhow::{bail, Context};
use lockstep_runtime::{AccountId, Keypair};
use lockstep_service::keyfile;
use serde_json::json;

use crate::args::KeyCommand;
use crate::output::print;

/// A key file, or a dev name (`alice`, ...; public test keys).
pub fn keypair(spec: &str) -> anyhow::Result<Keypair> {
    let path = Path::new(spec);
    if path.exists() || spec.contains('/') || spec.ends_with(".json") {
        return Ok(keyfile::read(path)?);
    }
    if !spec.is_empty()
        && spec.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !spec.starts_with("0x")
    {
        return Ok(Keypair::dev(spec));
    }
    bail!("{spec:?} is neither a key file nor a dev name")
}

/// A `0x` account id, a key file or a dev name.
pub fn account(spec: &str) -> anyhow::Result<AccountId> {
    if spec.starts_with("0x") {
        return spec.parse().with_context(|| format!("account id {spec}"));
    }
    Ok(keypair(spec)?.public())
}

/// `lockstep key ...`.
pub fn run(json: bool, command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Generate { out } => {
            let key = Keypair::generate();
            keyfile::write(&out, &key)?;
            print(
                json,
                &json!({ "file": out, "account": key.public() }),
                format!("wrote {}\naccount: {}", out.display(), key.public()),
            );
        }
        KeyCommand::Inspect { key } => {
            let public = keypair(&key)?.public();
            print(
                json,
                &json!({ "account": public }),
                format!("account: {public}"),
            );
        }
    }
    Ok(())
}
