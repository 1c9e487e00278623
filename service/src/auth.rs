//! Credentials and roles: who may call a JSON-RPC server, and what.
//!
//! A caller presents a bearer token (`Authorization: Bearer lst_…`, on
//! every HTTP request and on the WebSocket upgrade). The server keeps only
//! each token's SHA-256, in a credentials file, with the roles it grants
//! ([`Role`], the API's [`ACCESS`](lockstep_api::offchain::ACCESS) table
//! says which role may call which method) and, for a submitter, the payer
//! accounts it may debit.
//!
//! # The credentials file
//!
//! One credential per line; `#` starts a comment line; blank lines are
//! ignored:
//!
//! ```text
//! # name       roles                  token hash                 options
//! bank-a       submitter              sha256:9f86d08…(64 hex)    payers=alice,acme-*
//! monitoring   reader                 sha256:60303ae…
//! bridge       bridge                 sha256:fd61a03…
//! operator     submitter,reader       sha256:a4e624d…
//! ```
//!
//! - `name`: 1 to 64 of `A-Z a-z 0-9 . _ -`, unique in the file; it names
//!   the credential in logs and metrics (the token never appears);
//! - `roles`: one or more of `submitter`, `reader`, `bridge`, comma-separated;
//! - the hash: `sha256:` and the lower-case hex SHA-256 of the token's text
//!   (`printf %s "$token" | sha256sum`), unique in the file;
//! - `payers=…` (optional, submitters): the payers this credential may
//!   order payments from, comma-separated, each an account name or a
//!   prefix ending in `*` (`acme-*`; `*` alone is any payer, as is leaving
//!   the option out).
//!
//! A token is `lst_` and 64 hex digits: 32 bytes from the operating
//! system's random source ([`create_credential`], behind `lockstep-offchain
//! token create`), shown once and never stored. Deleting a line revokes
//! its token at the next [`Credentials::reload`] (SIGHUP) or restart;
//! [`revoke_credential`] does it. The file is written with mode 0600 and,
//! as ssh does with a private key, refused when its group or other users
//! may access it.
//!
//! # How a call is checked
//!
//! 1. [`AuthLayer`], an HTTP middleware, reads the `Authorization` header
//!    of every HTTP request and WebSocket upgrade before any body is read.
//!    The token's SHA-256 is compared in constant time with every
//!    credential's (all of them, no early exit). Without a match the answer
//!    is HTTP 401 whose body is the JSON-RPC error
//!    [`UNAUTHENTICATED`](lockstep_api::offchain::error::UNAUTHENTICATED);
//!    with one, the [`Caller`] joins the request's extensions and the
//!    header is removed, so that no layer further in can log it.
//! 2. [`Authorize`], an RPC middleware, checks every call (single, in a
//!    batch, or on a WebSocket) against the method's roles and answers a
//!    call the caller's roles may not make with
//!    [`FORBIDDEN`](lockstep_api::offchain::error::FORBIDDEN), whose `data`
//!    names the roles that may ([`RequiredRoles`]). It first re-reads the
//!    caller's credential if the file was reloaded since the connection was
//!    authenticated, so that a revoked token's open WebSocket is refused
//!    from its next call on.
//! 3. What depends on the call's parameters or on the state (the payer
//!    scope, the registration rate of a [`RateLimiter`], how many events
//!    the credential may hold in Registered) is checked by the method
//!    itself, with the caller from [`caller`].
//!
//! Every refusal is counted by reason in [`Refusals`].
//!
//! [`Gate::Open`] (`--insecure-no-auth`) lets every caller in as an
//! anonymous caller with every role, any payer, no rate limit and no
//! bound on its Registered events; it is for development on a loopback
//! address.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use jsonrpsee::core::BoxError;
use jsonrpsee::server::middleware::rpc::{
    Batch, BatchEntry, BatchEntryErr, Notification, Request, RpcServiceT,
};
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::{Extensions, MethodResponse};
pub use lockstep_api::client::BearerToken;
use lockstep_api::offchain::error::{FORBIDDEN, UNAUTHENTICATED};
pub use lockstep_api::offchain::{Access, RequiredRoles, Role};
use lockstep_runtime::Hash;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use subtle::ConstantTimeEq;

/// Largest credentials file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Longest credential name.
pub const MAX_NAME: usize = 64;
/// Longest `Authorization` header value looked at; a longer one is refused
/// without being hashed.
const MAX_HEADER_BYTES: usize = 256;
/// Mode bits a credentials or token file must not have: any access by its
/// group or by others.
#[cfg(unix)]
const NOT_PRIVATE: u32 = 0o077;

/// Why credentials could not be read, written or used. No variant carries
/// a token or a line of the file.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Others than its owner may access the file.
    #[error(
        "{path} is accessible by other users (mode {mode:04o}): it holds credentials and must be private to its owner; run `chmod 600 {path}`"
    )]
    NotPrivate {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A line of the credentials file is invalid.
    #[error("{path}, line {line}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// The line number (from 1).
        line: usize,
        /// What is wrong (never the line itself).
        reason: String,
    },
    /// The file is not what it should be (too large, not a regular file,
    /// a token file that holds no token).
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A credential with this name exists already.
    #[error("a credential named {0:?} exists already")]
    NameTaken(String),
    /// No credential with this name.
    #[error("no credential named {0:?}")]
    UnknownName(String),
    /// A name, role list or payer scope given to [`create_credential`] is
    /// not valid.
    #[error("{0}")]
    BadArgument(String),
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> AuthError + '_ {
    move |source| AuthError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A set of roles.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles(u8);

impl Roles {
    fn bit(role: Role) -> u8 {
        match role {
            Role::Submitter => 1,
            Role::Reader => 2,
            Role::Bridge => 4,
        }
    }

    /// These roles.
    pub fn of(roles: &[Role]) -> Roles {
        Roles(roles.iter().fold(0, |bits, role| bits | Roles::bit(*role)))
    }

    /// Every role.
    pub fn all() -> Roles {
        Roles::of(&Role::ALL)
    }

    /// Whether `role` is in the set.
    pub fn contains(self, role: Role) -> bool {
        self.0 & Roles::bit(role) != 0
    }

    /// The roles in the set, in [`Role::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL
            .into_iter()
            .filter(move |role| self.contains(*role))
    }

    /// `submitter,reader` (as the credentials file writes them).
    pub fn parse(text: &str) -> Result<Roles, String> {
        let mut bits = 0;
        for name in text.split(',') {
            let role: Role = name.parse().map_err(|e| format!("roles: {e}"))?;
            if bits & Roles::bit(role) != 0 {
                return Err(format!("roles: {role} is listed twice"));
            }
            bits |= Roles::bit(role);
        }
        Ok(Roles(bits))
    }
}

impl std::fmt::Display for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.iter().map(Role::name).collect();
        f.write_str(&names.join(","))
    }
}

impl std::fmt::Debug for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Roles({self})")
    }
}

/// One entry of a payer scope.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PayerPattern {
    /// This payer.
    Exact(String),
    /// Every payer whose name starts with this (written `prefix*`; an empty
    /// prefix is any payer).
    Prefix(String),
}

/// The payers a credential may order payments from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayerScope(Option<Vec<PayerPattern>>);

impl PayerScope {
    /// Any payer.
    pub fn any() -> PayerScope {
        PayerScope(None)
    }

    /// `alice,acme-*` (names, or prefixes ending in `*`; `*` is any payer).
    pub fn parse(text: &str) -> Result<PayerScope, String> {
        let mut patterns = Vec::new();
        for item in text.split(',') {
            let bad = |why: &str| format!("payers: {item:?} {why}");
            if item.is_empty() {
                return Err(bad("is empty"));
            }
            if item.len() > 128 || !item.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad("must be 1 to 128 printable characters without spaces"));
            }
            match item.strip_suffix('*') {
                Some("") => return Ok(PayerScope::any()),
                Some(prefix) if !prefix.contains('*') => {
                    patterns.push(PayerPattern::Prefix(prefix.to_owned()));
                }
                None if !item.contains('*') => patterns.push(PayerPattern::Exact(item.to_owned())),
                _ => return Err(bad("may hold `*` only at its end")),
            }
        }
        Ok(PayerScope(Some(patterns)))
    }

    /// Whether `payer` is in the scope.
    pub fn allows(&self, payer: &str) -> bool {
        let Some(patterns) = &self.0 else {
            return true;
        };
        patterns.iter().any(|pattern| match pattern {
            PayerPattern::Exact(name) => name == payer,
            PayerPattern::Prefix(prefix) => payer.starts_with(prefix.as_str()),
        })
    }

    /// Whether every payer is in the scope.
    pub fn is_any(&self) -> bool {
        self.0.is_none()
    }
}

impl std::fmt::Display for PayerScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(patterns) = &self.0 else {
            return f.write_str("*");
        };
        let items: Vec<String> = patterns
            .iter()
            .map(|p| match p {
                PayerPattern::Exact(name) => name.clone(),
                PayerPattern::Prefix(prefix) => format!("{prefix}*"),
            })
            .collect();
        f.write_str(&items.join(","))
    }
}

/// The SHA-256 of a token's text: all the server keeps of a token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of `token`.
    pub fn of(token: &BearerToken) -> TokenHash {
        TokenHash::of_bytes(token.expose_secret().as_bytes())
    }

    fn of_bytes(bytes: &[u8]) -> TokenHash {
        TokenHash(Hash::digest(bytes).0)
    }

    /// `sha256:<64 lower-case hex digits>`.
    pub fn parse(text: &str) -> Result<TokenHash, String> {
        let digits = text
            .strip_prefix("sha256:")
            .ok_or("the token hash must start with sha256:")?;
        let well_formed = digits.len() == 64
            && digits
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let bytes = hex::decode(digits)
            .ok()
            .filter(|_| well_formed)
            .ok_or("the token hash must be sha256: and 64 lower-case hex digits")?;
        let mut hash = [0; 32];
        hash.copy_from_slice(&bytes);
        Ok(TokenHash(hash))
    }

    /// Equal, in time that does not depend on where they differ.
    fn matches(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Display for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(…)")
    }
}

/// One line of the credentials file.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// Its name.
    pub name: String,
    /// What it may call.
    pub roles: Roles,
    /// Whom it may debit (submitters).
    pub payers: PayerScope,
    hash: TokenHash,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .field("payers", &self.payers.to_string())
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// Its line in the file.
    fn line(&self) -> String {
        let mut line = format!("{} {} {}", self.name, self.roles, self.hash);
        if !self.payers.is_any() {
            line.push_str(&format!(" payers={}", self.payers));
        }
        line
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a credential name must be 1 to {MAX_NAME} of A-Z a-z 0-9 . _ -"
        ))
    }
}

/// A credentials file as read: its credentials, with the other lines kept
/// so that a rewrite ([`revoke_credential`]) leaves the comments.
#[derive(Debug, Clone, Default)]
pub struct CredentialFile {
    lines: Vec<FileLine>,
}

#[derive(Debug, Clone)]
enum FileLine {
    Credential(Credential),
    Other(String),
}

impl CredentialFile {
    /// Parses a file's text. Errors give the line number and what is
    /// wrong, never the line.
    pub fn parse(text: &str) -> Result<CredentialFile, (usize, String)> {
        let mut file = CredentialFile::default();
        let mut names = HashSet::new();
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                file.lines.push(FileLine::Other(raw.to_owned()));
                continue;
            }
            let credential = parse_line(trimmed).map_err(|reason| (number, reason))?;
            if !names.insert(credential.name.clone()) {
                return Err((
                    number,
                    format!("the name {:?} is used twice", credential.name),
                ));
            }
            let duplicate = file
                .credentials()
                .any(|other| other.hash.matches(&credential.hash));
            if duplicate {
                return Err((number, "the same token hash is on two lines".to_owned()));
            }
            file.lines.push(FileLine::Credential(credential));
        }
        Ok(file)
    }

    /// The credentials, in file order.
    pub fn credentials(&self) -> impl Iterator<Item = &Credential> {
        self.lines.iter().filter_map(|line| match line {
            FileLine::Credential(c) => Some(c),
            FileLine::Other(_) => None,
        })
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for line in &self.lines {
            match line {
                FileLine::Credential(c) => text.push_str(&c.line()),
                FileLine::Other(other) => text.push_str(other),
            }
            text.push('\n');
        }
        text
    }
}

fn parse_line(line: &str) -> Result<Credential, String> {
    let mut fields = line.split_whitespace();
    let (Some(name), Some(roles), Some(hash)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err("expected: <name> <roles> sha256:<hex> [payers=...]".into());
    };
    check_name(name)?;
    let roles = Roles::parse(roles)?;
    let hash = TokenHash::parse(hash)?;
    let mut payers = PayerScope::any();
    let mut seen_payers = false;
    for option in fields {
        match option.split_once('=') {
            Some(("payers", list)) if !seen_payers => {
                payers = PayerScope::parse(list)?;
                seen_payers = true;
            }
            Some(("payers", _)) => return Err("payers= is given twice".into()),
            _ => return Err("unknown option (the only option is payers=NAME,PREFIX*,...)".into()),
        }
    }
    Ok(Credential {
        name: name.to_owned(),
        roles,
        payers,
        hash,
    })
}

/// Refuses a file that its group or other users may access. Checked on the
/// open file, so it is the file that is then read.
fn check_private(path: &Path, metadata: &std::fs::Metadata) -> Result<(), AuthError> {
    if !metadata.is_file() {
        return Err(AuthError::BadFile {
            path: path.display().to_string(),
            reason: "not a regular file".into(),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & NOT_PRIVATE != 0 {
            return Err(AuthError::NotPrivate {
                path: path.display().to_string(),
                mode,
            });
        }
    }
    Ok(())
}

/// Reads a private file of at most `limit` bytes.
fn read_private(path: &Path, limit: u64) -> Result<String, AuthError> {
    let mut file = std::fs::File::open(path).map_err(io_error(path))?;
    let metadata = file.metadata().map_err(io_error(path))?;
    check_private(path, &metadata)?;
    if metadata.len() > limit {
        return Err(AuthError::BadFile {
            path: path.display().to_string(),
            reason: format!("larger than {limit} bytes"),
        });
    }
    let mut text = String::new();
    Read::take(&mut file, limit + 1)
        .read_to_string(&mut text)
        .map_err(io_error(path))?;
    Ok(text)
}

/// Reads and checks a credentials file (private, well formed).
pub fn read_file(path: &Path) -> Result<CredentialFile, AuthError> {
    let text = read_private(path, MAX_FILE_BYTES)?;
    CredentialFile::parse(&text).map_err(|(line, reason)| AuthError::Invalid {
        path: path.display().to_string(),
        line,
        reason,
    })
}

/// What heads a credentials file [`create_credential`] creates.
const FILE_HEADER: &str = "\
# Lockstep event system credentials (lockstep-offchain token create/revoke).
# One per line: <name> <roles> sha256:<SHA-256 of the token> [payers=NAME,PREFIX*,...]
# Delete a line to revoke its token, then send SIGHUP to the event system.
";

/// A new random token (32 bytes from the operating system).
pub fn generate_token() -> BearerToken {
    use rand_core::RngCore;
    let mut secret = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut secret);
    BearerToken::from_secret(&secret)
}

/// Adds a credential named `name` with `roles` (and, for a submitter, a
/// payer scope) to the file at `path`, creating it (mode 0600) if needed;
/// returns its new token, which is stored nowhere: show it once.
pub fn create_credential(
    path: &Path,
    name: &str,
    roles: Roles,
    payers: PayerScope,
) -> Result<BearerToken, AuthError> {
    check_name(name).map_err(AuthError::BadArgument)?;
    if roles == Roles::default() {
        return Err(AuthError::BadArgument("give at least one role".into()));
    }
    if !payers.is_any() && !roles.contains(Role::Submitter) {
        return Err(AuthError::BadArgument(
            "a payer scope only applies to a submitter".into(),
        ));
    }
    let exists = match std::fs::symlink_metadata(path) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_error(path)(e)),
    };
    if exists {
        let file = read_file(path)?;
        if file.credentials().any(|c| c.name == name) {
            return Err(AuthError::NameTaken(name.to_owned()));
        }
    }
    let token = generate_token();
    let credential = Credential {
        name: name.to_owned(),
        roles,
        payers,
        hash: TokenHash::of(&token),
    };
    let mut options = std::fs::OpenOptions::new();
    options.append(true);
    if exists {
        options.create(false);
    } else {
        // The mode applies to a file this call creates.
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut out = options.open(path).map_err(io_error(path))?;
    let mut text = if exists {
        String::new()
    } else {
        FILE_HEADER.to_owned()
    };
    text.push_str(&credential.line());
    text.push('\n');
    out.write_all(text.as_bytes()).map_err(io_error(path))?;
    out.sync_all().map_err(io_error(path))?;
    Ok(token)
}

/// Removes the credential named `name` from the file (rewritten whole,
/// mode 0600, then renamed over the old one): its token is revoked at the
/// event system's next reload.
pub fn revoke_credential(path: &Path, name: &str) -> Result<(), AuthError> {
    let mut file = read_file(path)?;
    let before = file.lines.len();
    file.lines
        .retain(|line| !matches!(line, FileLine::Credential(c) if c.name == name));
    if file.lines.len() == before {
        return Err(AuthError::UnknownName(name.to_owned()));
    }
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    if let Err(e) = replace_private(&temporary, path, &file.render()) {
        let _ = std::fs::remove_file(&temporary);
        return Err(io_error(path)(e));
    }
    Ok(())
}

/// Writes `text` to a new file at `temporary` (mode 0600), then renames it
/// over `path`: a reader sees the old file or the new one, never half.
fn replace_private(temporary: &Path, path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut out = options.open(temporary)?;
    out.write_all(text.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(temporary, path)
}

/// Reads a token from a file of its own (mode 0600; the token on one line).
pub fn read_token_file(path: &Path) -> Result<BearerToken, AuthError> {
    let text = read_private(path, 4096)?;
    BearerToken::parse(&text).map_err(|e| AuthError::BadFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The credentials a server checks tokens against: loaded from a file,
/// reloaded on demand. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Credentials {
    path: PathBuf,
    loaded: RwLock<Arc<Loaded>>,
    generation: AtomicU64,
}

#[derive(Debug)]
struct Loaded {
    generation: u64,
    credentials: Vec<Arc<Credential>>,
}

impl Loaded {
    /// The credential whose hash is `hash`: every credential is compared,
    /// in constant time, whether or not one matched before.
    fn find(&self, hash: &TokenHash) -> Option<&Arc<Credential>> {
        let mut found = None;
        for credential in &self.credentials {
            if credential.hash.matches(hash) {
                found = Some(credential);
            }
        }
        found
    }
}

impl Credentials {
    /// Reads the file at `path`; refuses one that is not private or not
    /// valid.
    pub fn load(path: &Path) -> Result<Credentials, AuthError> {
        let file = read_file(path)?;
        Ok(Credentials {
            path: path.to_path_buf(),
            loaded: RwLock::new(Arc::new(Loaded {
                generation: 1,
                credentials: file.credentials().cloned().map(Arc::new).collect(),
            })),
            generation: AtomicU64::new(1),
        })
    }

    /// Reads the file again; returns how many credentials it holds. A line
    /// that is gone is a revoked token. On an error the credentials stay as
    /// they were.
    pub fn reload(&self) -> Result<usize, AuthError> {
        let file = read_file(&self.path)?;
        let credentials: Vec<Arc<Credential>> = file.credentials().cloned().map(Arc::new).collect();
        let count = credentials.len();
        let mut loaded = self.loaded.write().unwrap_or_else(PoisonError::into_inner);
        let generation = loaded.generation + 1;
        *loaded = Arc::new(Loaded {
            generation,
            credentials,
        });
        self.generation.store(generation, Ordering::Release);
        Ok(count)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many credentials are loaded.
    pub fn len(&self) -> usize {
        self.current().credentials.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The caller whose token is `token`, if it is on record.
    pub fn authenticate(&self, token: &[u8]) -> Option<Caller> {
        let hash = TokenHash::of_bytes(token);
        let loaded = self.current();
        loaded.find(&hash).map(|credential| Caller {
            credential: credential.clone(),
            generation: loaded.generation,
            limited: true,
        })
    }

    /// `caller` as the file now says: itself if nothing was reloaded since
    /// it was authenticated, its credential as reloaded, or `None` if the
    /// reload revoked it.
    fn refresh(&self, caller: &Caller) -> Option<Option<Caller>> {
        if self.generation.load(Ordering::Acquire) == caller.generation {
            return Some(None);
        }
        let loaded = self.current();
        let credential = loaded.find(&caller.credential.hash)?;
        Some(Some(Caller {
            credential: credential.clone(),
            generation: loaded.generation,
            limited: true,
        }))
    }
}

/// Who is calling: put in each request's extensions by [`AuthLayer`] and
/// kept current by [`Authorize`]; a method reads it with [`caller`].
#[derive(Debug, Clone)]
pub struct Caller {
    credential: Arc<Credential>,
    generation: u64,
    limited: bool,
}

impl Caller {
    /// The caller of a server without credentials ([`Gate::Open`]): every
    /// role, any payer, no rate limit.
    pub fn anonymous() -> Caller {
        Caller {
            credential: Arc::new(Credential {
                name: "anonymous".into(),
                roles: Roles::all(),
                payers: PayerScope::any(),
                hash: TokenHash([0; 32]),
            }),
            generation: 0,
            limited: false,
        }
    }

    /// The credential's name.
    pub fn name(&self) -> &str {
        &self.credential.name
    }

    /// Its roles.
    pub fn roles(&self) -> Roles {
        self.credential.roles
    }

    /// Whether it may order a payment from `payer`.
    pub fn may_debit(&self, payer: &str) -> bool {
        self.credential.payers.allows(payer)
    }

    /// Whether rate limits apply (not to the anonymous caller of an open
    /// server, which has no credential to count against).
    pub fn is_limited(&self) -> bool {
        self.limited
    }
}

/// The caller of a call, from its extensions (set by the server's
/// middleware; none means the call did not pass through it).
pub fn caller(extensions: &Extensions) -> Option<&Caller> {
    extensions.get::<Caller>()
}

/// Why a call was refused, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// No credential, or one not on record.
    Unauthenticated,
    /// The credential's roles may not call the method.
    Forbidden,
    /// The payer is outside the credential's scope.
    PayerNotAllowed,
    /// The credential registers faster than allowed.
    RateLimited,
    /// The credential holds as many Registered events as it may.
    TooManyPending,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::Forbidden => "forbidden",
            Refusal::PayerNotAllowed => "payer_not_allowed",
            Refusal::RateLimited => "rate_limited",
            Refusal::TooManyPending => "too_many_pending",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// Refused calls by reason (a counter family with a bounded label).
#[derive(Debug, Clone, Default)]
pub struct Refusals {
    counts: Family<ReasonLabel, Counter>,
}

impl Refusals {
    /// Counts one refusal.
    pub fn count(&self, refusal: Refusal) {
        self.count_many(refusal, 1);
    }

    /// Counts `n` refusals (the items of a batch).
    pub fn count_many(&self, refusal: Refusal, n: u64) {
        self.counts
            .get_or_create(&ReasonLabel {
                reason: refusal.label().to_owned(),
            })
            .inc_by(n);
    }

    /// How many of this kind so far.
    pub fn get(&self, refusal: Refusal) -> u64 {
        self.counts
            .get_or_create(&ReasonLabel {
                reason: refusal.label().to_owned(),
            })
            .get()
    }

    /// Registers the family as `name` (`<name>_total{reason=...}`).
    pub fn register(&self, registry: &mut Registry, name: &str) {
        registry.register(
            name,
            "Calls refused for want of a credential, a role, a payer scope, rate or room for more Registered events",
            self.counts.clone(),
        );
    }
}

/// Whether a server checks credentials.
#[derive(Debug, Clone)]
pub enum Gate {
    /// Every caller is [`Caller::anonymous`] (`--insecure-no-auth`).
    Open,
    /// A caller must present a token on record.
    Credentials(Arc<Credentials>),
}

/// What a server's two middlewares share: the gate, the access table, the
/// refusal counts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Guard {
    inner: Arc<GuardInner>,
}

#[derive(Debug)]
struct GuardInner {
    gate: Gate,
    access: fn(&str) -> Option<Access>,
    served: OnceLock<HashSet<String>>,
    refusals: Refusals,
}

/// Why a request got HTTP 401 (the message of its JSON-RPC error).
const NO_CREDENTIAL: &str = "no credential: send `Authorization: Bearer <token>`";
const NOT_ON_RECORD: &str = "the credential is not on record (unknown or revoked)";

impl Guard {
    /// A guard letting callers through `gate`, each method to the roles
    /// `access` names, counting refusals in `refusals`.
    pub fn new(gate: Gate, access: fn(&str) -> Option<Access>, refusals: Refusals) -> Guard {
        Guard {
            inner: Arc::new(GuardInner {
                gate,
                access,
                served: OnceLock::new(),
                refusals,
            }),
        }
    }

    /// Names the methods the server serves (once; later calls are
    /// ignored): a call to any other method passes, for the server to
    /// answer "method not found".
    pub fn serve(&self, methods: impl IntoIterator<Item = String>) {
        let _ = self.inner.served.set(methods.into_iter().collect());
    }

    /// The refusal counts.
    pub fn refusals(&self) -> &Refusals {
        &self.inner.refusals
    }

    /// The HTTP middleware ([`AuthLayer`]).
    pub fn http_layer(&self) -> AuthLayer {
        AuthLayer {
            guard: Some(self.clone()),
        }
    }

    /// The RPC middleware around `service` ([`Authorize`]).
    pub fn wrap<S>(&self, service: S) -> Authorize<S> {
        Authorize {
            service,
            guard: Some(self.clone()),
        }
    }

    /// The caller of an HTTP request, or the message of its 401.
    fn authenticate(&self, headers: &http::HeaderMap) -> Result<Caller, &'static str> {
        let Gate::Credentials(credentials) = &self.inner.gate else {
            return Ok(Caller::anonymous());
        };
        let refused = |message| {
            self.inner.refusals.count(Refusal::Unauthenticated);
            Err(message)
        };
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return refused(NO_CREDENTIAL);
        };
        let value = value.as_bytes();
        if value.len() > MAX_HEADER_BYTES || value.len() < 7 {
            return refused(NOT_ON_RECORD);
        }
        // The scheme is case-insensitive (RFC 9110, section 11.1).
        let (scheme, token) = value.split_at(7);
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return refused(NO_CREDENTIAL);
        }
        match credentials.authenticate(token.trim_ascii()) {
            Some(caller) => Ok(caller),
            None => refused(NOT_ON_RECORD),
        }
    }

    /// Checks one call; on success the extensions hold the current caller.
    fn authorize(&self, method: &str, extensions: &mut Extensions) -> Result<(), ErrorObjectOwned> {
        let inner = &self.inner;
        let refuse = |refusal: Refusal, error: ErrorObjectOwned| {
            inner.refusals.count(refusal);
            Err(error)
        };
        let Some(caller) = extensions.get::<Caller>() else {
            // Only a call that bypassed the HTTP layer, which cannot happen
            // with this server; refused all the same.
            return refuse(
                Refusal::Unauthenticated,
                ErrorObjectOwned::owned(UNAUTHENTICATED, NO_CREDENTIAL, None::<()>),
            );
        };
        let caller = match &inner.gate {
            Gate::Open => caller.clone(),
            Gate::Credentials(credentials) => match credentials.refresh(caller) {
                Some(None) => caller.clone(),
                Some(Some(refreshed)) => {
                    extensions.insert(refreshed.clone());
                    refreshed
                }
                None => {
                    return refuse(
                        Refusal::Unauthenticated,
                        ErrorObjectOwned::owned(
                            UNAUTHENTICATED,
                            "the credential was revoked",
                            None::<()>,
                        ),
                    )
                }
            },
        };
        let served = inner.served.get().is_some_and(|m| m.contains(method));
        if !served {
            return Ok(());
        }
        let required: &[Role] = match (inner.access)(method) {
            Some(Access::AnyCredential) => return Ok(()),
            Some(Access::Roles(roles)) => roles,
            None => &[],
        };
        if required.iter().any(|role| caller.roles().contains(*role)) {
            return Ok(());
        }
        let message = if required.is_empty() {
            format!("{method} is not open to any role")
        } else {
            format!(
                "{method} needs the role {} (credential {:?} has {})",
                Roles::of(required).to_string().replace(',', " or "),
                caller.name(),
                caller.roles()
            )
        };
        refuse(
            Refusal::Forbidden,
            ErrorObjectOwned::owned(
                FORBIDDEN,
                message,
                Some(RequiredRoles {
                    required: required.to_vec(),
                }),
            ),
        )
    }
}

/// The HTTP 401 answer: a JSON-RPC error object with a null id.
fn unauthorized(message: &str) -> HttpResponse {
    // In the specification's order (serde_json would sort the keys).
    let body = format!(
        r#"{{"jsonrpc":"2.0","error":{{"code":{UNAUTHENTICATED},"message":{}}},"id":null}}"#,
        serde_json::Value::from(message)
    );
    let mut response = HttpResponse::new(HttpBody::from(body));
    *response.status_mut() = http::StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer realm=\"lockstep\""),
    );
    response
}

/// The HTTP middleware of [`Guard::http_layer`] (a pass-through without a
/// guard, so that servers with and without credentials are one type).
#[derive(Debug, Clone, Default)]
pub struct AuthLayer {
    guard: Option<Guard>,
}

impl AuthLayer {
    /// Checks requests with `guard`, or lets everything through.
    pub fn new(guard: Option<Guard>) -> AuthLayer {
        AuthLayer { guard }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Authenticate<S> {
        Authenticate {
            inner,
            guard: self.guard.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the server.
#[derive(Debug, Clone)]
pub struct Authenticate<S> {
    inner: S,
    guard: Option<Guard>,
}

impl<S> tower::Service<HttpRequest> for Authenticate<S>
where
    S: tower::Service<HttpRequest, Response = HttpResponse, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: HttpRequest) -> Self::Future {
        let Some(guard) = &self.guard else {
            return Box::pin(self.inner.call(request));
        };
        match guard.authenticate(request.headers()) {
            Ok(caller) => {
                request.headers_mut().remove(http::header::AUTHORIZATION);
                request.extensions_mut().insert(caller);
                Box::pin(self.inner.call(request))
            }
            Err(message) => Box::pin(std::future::ready(Ok(unauthorized(message)))),
        }
    }
}

/// The RPC middleware of [`Guard::wrap`] (a pass-through without a guard).
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    service: S,
    guard: Option<Guard>,
}

impl<S> Authorize<S> {
    /// Checks calls with `guard`, or lets everything through.
    pub fn new(guard: Option<Guard>, service: S) -> Authorize<S> {
        Authorize { service, guard }
    }
}

impl<S> RpcServiceT for Authorize<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(
        &self,
        mut request: Request<'a>,
    ) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        let verdict = match &self.guard {
            Some(guard) => guard.authorize(&request.method, &mut request.extensions),
            None => Ok(()),
        };
        let service = self.service.clone();
        async move {
            match verdict {
                Ok(()) => service.call(request).await,
                Err(error) => MethodResponse::error(request.id, error),
            }
        }
    }

    fn batch<'a>(
        &self,
        mut batch: Batch<'a>,
    ) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        if let Some(guard) = &self.guard {
            // Each call of a batch on its own: the refused ones are answered
            // with their error, the others are served.
            for entry in batch.iter_mut() {
                let refusal = match entry {
                    Ok(BatchEntry::Call(request)) => guard
                        .authorize(&request.method, &mut request.extensions)
                        .err()
                        .map(|error| (request.id.clone(), error)),
                    _ => None,
                };
                if let Some((id, error)) = refusal {
                    *entry = Err(BatchEntryErr::new(id, error));
                }
            }
        }
        self.service.batch(batch)
    }

    fn notification<'a>(
        &self,
        notification: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        // jsonrpsee runs no method for a notification.
        self.service.notification(notification)
    }
}

/// How fast one credential may do something (register events): a bucket
/// of `burst`, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained rate.
    pub per_second: u32,
    /// Most at once.
    pub burst: u32,
}

/// A token bucket per credential name, so that one credential's flood
/// leaves the others' rate untouched. Names come from the credentials file,
/// so the map stays as small as the file.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// Every credential's bucket starts full.
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The limit.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes up to `wanted` from `caller`'s bucket; returns how many it
    /// got (all of them for a caller without limits).
    pub fn take(&self, caller: &Caller, wanted: usize) -> usize {
        if !caller.is_limited() {
            return wanted;
        }
        self.take_at(caller.name(), wanted, Instant::now())
    }

    fn take_at(&self, key: &str, wanted: usize, now: Instant) -> usize {
        let burst = f64::from(self.limit.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * f64::from(self.limit.per_second)).min(burst);
        bucket.at = now;
        // Whole tokens only; the fraction carries over.
        let granted = (bucket.tokens.floor() as usize).min(wanted);
        bucket.tokens -= granted as f64;
        granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(byte: u8) -> BearerToken {
        BearerToken::from_secret(&[byte; 32])
    }

    fn line(name: &str, roles: &str, token: &BearerToken, options: &str) -> String {
        format!("{name} {roles} {} {options}\n", TokenHash::of(token))
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn the_file_format_reads_back_and_bad_lines_are_refused_by_number() {
        let (a, b) = (token(1), token(2));
        let text = format!(
            "# comment\n\n{}{}",
            line("bank-a", "submitter", &a, "payers=alice,acme-*"),
            line("ops", "reader,bridge", &b, ""),
        );
        let file = CredentialFile::parse(&text).unwrap();
        let all: Vec<&Credential> = file.credentials().collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].name, "bank-a");
        assert_eq!(all[0].roles, Roles::of(&[Role::Submitter]));
        assert!(all[0].payers.allows("alice") && all[0].payers.allows("acme-7"));
        assert!(!all[0].payers.allows("bob") && !all[0].payers.allows("acme"));
        assert_eq!(all[1].roles, Roles::of(&[Role::Reader, Role::Bridge]));
        assert!(all[1].payers.is_any());
        // Rendering keeps comments and reads back the same.
        let again = CredentialFile::parse(&file.render()).unwrap();
        assert_eq!(
            again.credentials().cloned().collect::<Vec<_>>(),
            file.credentials().cloned().collect::<Vec<_>>()
        );
        assert!(file.render().starts_with("# comment\n\n"));

        let hash = TokenHash::of(&a).to_string();
        for (bad, why) in [
            ("bank-a submitter".to_owned(), "expected"),
            (format!("bad/name submitter {hash}"), "name"),
            (format!("x admin {hash}"), "not a role"),
            (format!("x reader,reader {hash}"), "twice"),
            ("x reader sha256:00".to_owned(), "64"),
            (format!("x reader {}", hash.to_uppercase()), "sha256:"),
            (format!("x reader {hash} payers="), "empty"),
            (format!("x reader {hash} payers=a*b"), "only at its end"),
            (format!("x reader {hash} payers=a payers=b"), "twice"),
            (format!("x reader {hash} admin=yes"), "unknown option"),
        ] {
            let text = format!("# first\n{bad}\n");
            let (number, reason) = CredentialFile::parse(&text).unwrap_err();
            assert_eq!(number, 2, "{bad}");
            assert!(reason.contains(why), "{bad}: {reason}");
            assert!(!reason.contains(&hash), "{reason}");
        }
        let twice = format!(
            "{}{}",
            line("x", "reader", &a, ""),
            line("x", "reader", &b, "")
        );
        assert!(CredentialFile::parse(&twice)
            .unwrap_err()
            .1
            .contains("twice"));
        let same = format!(
            "{}{}",
            line("x", "reader", &a, ""),
            line("y", "reader", &a, "")
        );
        assert!(CredentialFile::parse(&same).unwrap_err().1.contains("hash"));
    }

    #[test]
    fn payer_scopes_match_names_and_prefixes() {
        let scope = PayerScope::parse("alice,acme-*").unwrap();
        assert!(scope.allows("alice"));
        assert!(!scope.allows("alice2") && !scope.allows("Alice"));
        assert!(scope.allows("acme-") && scope.allows("acme-eu-1"));
        assert!(!scope.allows("acm") && !scope.allows("xacme-1"));
        assert_eq!(scope.to_string(), "alice,acme-*");
        assert!(PayerScope::parse("alice,*").unwrap().is_any());
        assert!(PayerScope::any().allows("anyone"));
        for bad in ["", "a,,b", "a b", "*a", "a**"] {
            assert!(PayerScope::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_match_by_hash_and_only_their_own_credential() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let submitter = create_credential(
            &path,
            "bank-a",
            Roles::of(&[Role::Submitter]),
            PayerScope::parse("alice").unwrap(),
        )
        .unwrap();
        let reader =
            create_credential(&path, "ops", Roles::of(&[Role::Reader]), PayerScope::any()).unwrap();
        assert_ne!(submitter.expose_secret(), reader.expose_secret());
        // Only hashes are stored.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(submitter.expose_secret()));
        assert!(text.contains(&TokenHash::of(&submitter).to_string()));

        let credentials = Credentials::load(&path).unwrap();
        assert_eq!(credentials.len(), 2);
        let caller = credentials
            .authenticate(submitter.expose_secret().as_bytes())
            .unwrap();
        assert_eq!(caller.name(), "bank-a");
        assert!(caller.roles().contains(Role::Submitter));
        assert!(!caller.roles().contains(Role::Reader));
        assert!(caller.may_debit("alice") && !caller.may_debit("bob"));
        assert!(caller.is_limited());
        let reader_caller = credentials
            .authenticate(reader.expose_secret().as_bytes())
            .unwrap();
        assert_eq!(reader_caller.name(), "ops");
        assert!(credentials
            .authenticate(token(9).expose_secret().as_bytes())
            .is_none());
        assert!(credentials.authenticate(b"").is_none());
        // The hash of the whole text, so a token cut short does not match.
        let cut = &submitter.expose_secret()[..60];
        assert!(credentials.authenticate(cut.as_bytes()).is_none());

        assert!(matches!(
            create_credential(&path, "ops", Roles::all(), PayerScope::any()),
            Err(AuthError::NameTaken(_))
        ));
        assert!(matches!(
            create_credential(&path, "x", Roles::default(), PayerScope::any()),
            Err(AuthError::BadArgument(_))
        ));
        assert!(matches!(
            create_credential(
                &path,
                "y",
                Roles::of(&[Role::Reader]),
                PayerScope::parse("a").unwrap()
            ),
            Err(AuthError::BadArgument(_))
        ));
    }

    #[test]
    fn a_reload_revokes_removed_lines_and_keeps_the_old_set_on_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let kept = create_credential(&path, "kept", Roles::all(), PayerScope::any()).unwrap();
        let gone = create_credential(&path, "gone", Roles::all(), PayerScope::any()).unwrap();
        let credentials = Credentials::load(&path).unwrap();
        let old = credentials
            .authenticate(gone.expose_secret().as_bytes())
            .unwrap();
        let kept_caller = credentials
            .authenticate(kept.expose_secret().as_bytes())
            .unwrap();
        assert!(matches!(credentials.refresh(&old), Some(None)));

        revoke_credential(&path, "gone").unwrap();
        assert!(matches!(
            revoke_credential(&path, "gone"),
            Err(AuthError::UnknownName(_))
        ));
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("# Lockstep"));
        // Revoked only once reloaded.
        assert!(credentials
            .authenticate(gone.expose_secret().as_bytes())
            .is_some());
        assert_eq!(credentials.reload().unwrap(), 1);
        assert!(credentials
            .authenticate(gone.expose_secret().as_bytes())
            .is_none());
        assert!(credentials.refresh(&old).is_none());
        assert!(matches!(credentials.refresh(&kept_caller), Some(Some(c)) if c.name() == "kept"));

        std::fs::write(&path, "garbage\n").unwrap();
        assert!(matches!(
            credentials.reload(),
            Err(AuthError::Invalid { line: 1, .. })
        ));
        assert!(credentials
            .authenticate(kept.expose_secret().as_bytes())
            .is_some());
    }

    #[cfg(unix)]
    #[test]
    fn files_are_written_private_and_refused_when_others_may_read_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        create_credential(&path, "a", Roles::all(), PayerScope::any()).unwrap();
        assert_eq!(mode(&path), 0o600);
        revoke_credential(&path, "a").unwrap();
        assert_eq!(mode(&path), 0o600);
        create_credential(&path, "b", Roles::all(), PayerScope::any()).unwrap();
        for open in [0o640, 0o604, 0o660, 0o606] {
            set_mode(&path, open);
            let error = Credentials::load(&path).unwrap_err();
            assert!(matches!(error, AuthError::NotPrivate { .. }), "{open:o}");
            assert!(error.to_string().contains("chmod 600"), "{error}");
            assert!(matches!(
                create_credential(&path, "c", Roles::all(), PayerScope::any()),
                Err(AuthError::NotPrivate { .. })
            ));
        }
        set_mode(&path, 0o400);
        assert!(Credentials::load(&path).is_ok());

        let token_path = dir.path().join("token");
        let token = generate_token();
        std::fs::write(&token_path, format!("{}\n", token.expose_secret())).unwrap();
        set_mode(&token_path, 0o644);
        let error = read_token_file(&token_path).unwrap_err();
        assert!(matches!(error, AuthError::NotPrivate { .. }));
        assert!(!error.to_string().contains(token.expose_secret()));
        set_mode(&token_path, 0o600);
        assert_eq!(
            read_token_file(&token_path).unwrap().expose_secret(),
            token.expose_secret()
        );
        std::fs::write(&token_path, "lst_not-a-token-but-a-secret\n").unwrap();
        let error = read_token_file(&token_path).unwrap_err().to_string();
        assert!(!error.contains("not-a-token-but-a-secret"), "{error}");
    }

    #[test]
    fn roles_are_checked_per_method_and_refusals_name_the_required_role() {
        fn table(method: &str) -> Option<Access> {
            match method {
                "register" => Some(Access::Roles(&[Role::Submitter])),
                "pull" => Some(Access::Roles(&[Role::Bridge])),
                "methods" => Some(Access::AnyCredential),
                _ => None,
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let submitter =
            create_credential(&path, "s", Roles::of(&[Role::Submitter]), PayerScope::any())
                .unwrap();
        let credentials = Arc::new(Credentials::load(&path).unwrap());
        let refusals = Refusals::default();
        let guard = Guard::new(
            Gate::Credentials(credentials.clone()),
            table,
            refusals.clone(),
        );
        guard.serve(["register", "pull", "methods", "unlisted"].map(String::from));

        let mut headers = http::HeaderMap::new();
        assert_eq!(guard.authenticate(&headers).err(), Some(NO_CREDENTIAL));
        headers.insert(
            http::header::AUTHORIZATION,
            format!("bearer {}", submitter.expose_secret())
                .parse()
                .unwrap(),
        );
        let caller = guard.authenticate(&headers).unwrap();
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {}", token(7).expose_secret())
                .parse()
                .unwrap(),
        );
        assert_eq!(guard.authenticate(&headers).err(), Some(NOT_ON_RECORD));
        headers.insert(
            http::header::AUTHORIZATION,
            "Basic dXNlcjpwYXNz".parse().unwrap(),
        );
        assert_eq!(guard.authenticate(&headers).err(), Some(NO_CREDENTIAL));
        assert_eq!(refusals.get(Refusal::Unauthenticated), 3);

        let mut extensions = Extensions::new();
        extensions.insert(caller);
        assert!(guard.authorize("register", &mut extensions).is_ok());
        assert!(guard.authorize("methods", &mut extensions).is_ok());
        // Not served: the server says "method not found".
        assert!(guard.authorize("made_up", &mut extensions).is_ok());
        let refused = guard.authorize("pull", &mut extensions).unwrap_err();
        assert_eq!(refused.code(), FORBIDDEN);
        assert!(
            refused.message().contains("bridge"),
            "{}",
            refused.message()
        );
        assert!(!refused.message().contains(submitter.expose_secret()));
        let data: RequiredRoles = serde_json::from_str(refused.data().unwrap().get()).unwrap();
        assert_eq!(data.required, vec![Role::Bridge]);
        // Served but not in the table: closed to everyone.
        let closed = guard.authorize("unlisted", &mut extensions).unwrap_err();
        assert_eq!(closed.code(), FORBIDDEN);
        assert_eq!(refusals.get(Refusal::Forbidden), 2);

        // Revoked: refused from the next call on, without a new connection.
        revoke_credential(&path, "s").unwrap();
        credentials.reload().unwrap();
        let revoked = guard.authorize("register", &mut extensions).unwrap_err();
        assert_eq!(revoked.code(), UNAUTHENTICATED);
        assert!(guard.authorize("register", &mut Extensions::new()).is_err());

        let open = Guard::new(Gate::Open, table, Refusals::default());
        open.serve(["pull"].map(String::from));
        let anonymous = open.authenticate(&http::HeaderMap::new()).unwrap();
        assert!(!anonymous.is_limited());
        let mut extensions = Extensions::new();
        extensions.insert(anonymous);
        assert!(open.authorize("pull", &mut extensions).is_ok());
    }

    #[test]
    fn each_credential_has_its_own_bucket() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 10,
            burst: 5,
        });
        let start = Instant::now();
        assert_eq!(limiter.take_at("flood", 100, start), 5);
        assert_eq!(limiter.take_at("flood", 1, start), 0);
        // Another credential is untouched by the first one's flood.
        assert_eq!(limiter.take_at("calm", 3, start), 3);
        // 10 a second: 0.25 s later two more (and a half, carried over).
        let later = start + std::time::Duration::from_millis(250);
        assert_eq!(limiter.take_at("flood", 100, later), 2);
        let later = later + std::time::Duration::from_millis(50);
        assert_eq!(limiter.take_at("flood", 100, later), 1);
        // Never more than the burst, however long the pause.
        let much_later = start + std::time::Duration::from_secs(3600);
        assert_eq!(limiter.take_at("flood", 100, much_later), 5);
        assert_eq!(limiter.take(&Caller::anonymous(), 1000), 1000);
    }
}
