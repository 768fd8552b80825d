//! Source authentication: a manifest of every data file (size, SHA-256, rows) and an Ed25519
//! signature over it, checked before training.
//!
//! - [`lock`] writes the manifest (`data.lock.json` by convention), see [`manifest`];
//! - [`keygen`] makes a key pair, [`sign`] writes `<manifest>.sig`, see [`signature`];
//! - [`verify`] checks the signature, then every listed file, then that each source is listed.
//!
//! Recipe fields (read by the trainer, paths relative to the recipe):
//! ```toml
//! [data]
//! manifest = "data.lock.json"        # verify the data files against this manifest
//! trusted_keys = ["keys/alice.pub"]  # public keys whose signature is accepted
//! require_signature = true           # default: true when trusted_keys is non-empty
//! ```
//! The trainer calls `verify(manifest, &[train_file, val_file...], &trusted_keys,
//! require_signature)` and stops on any error.
pub mod manifest;
pub mod signature;

use std::path::{Path, PathBuf};

pub use manifest::{digest_file, lock, read_manifest, FileDigest, Manifest, SourceEntry, MANIFEST_VERSION};
pub use signature::{fingerprint, keygen, sig_path, sign, KeyPair, SignatureFile, TrustedSigner};

/// Errors of source authentication. Each names the file or key and says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    /// The I/O error is part of the message so a one-line report does not print it twice.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{manifest}: no data files given to lock")]
    NoSources { manifest: PathBuf },
    #[error("{path}: malformed data manifest: {reason}; re-run `tuneguard data lock`")]
    MalformedManifest { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: malformed signature file: {reason}; re-run `tuneguard data sign`")]
    MalformedSignature { path: PathBuf, reason: String },
    #[error("{path}: malformed key file: {reason}")]
    MalformedKey { path: PathBuf, reason: String },
    /// A key file of the other kind: a secret key given as a trusted (public) key, or the reverse.
    #[error("{path} is a {found} key; pass the {wanted} file (`tuneguard data keygen` writes both)")]
    WrongKeyKind { path: PathBuf, found: &'static str, wanted: &'static str },
    /// A manifest entry that leaves the manifest's folder (`..`, an absolute path): checking it
    /// would read a file the manifest has no business naming.
    #[error(
        "{manifest}: entry `{entry}` points outside the manifest's folder; every listed file must be \
         inside it (put the manifest in a folder above the data and re-run `tuneguard data lock`)"
    )]
    EntryOutsideFolder { manifest: PathBuf, entry: String },
    /// `lock` of a data file that is not inside the manifest's folder.
    #[error(
        "{path}: data file is outside the folder of the manifest {manifest}; put the manifest in a \
         folder above the data"
    )]
    SourceOutsideFolder { path: PathBuf, manifest: PathBuf },
    #[error("{path}: key file exists; pass --force to overwrite it")]
    KeyExists { path: PathBuf },
    #[error("cannot read the OS random source: {reason}")]
    Random { reason: String },
    #[error("{path}: data file is not listed in the manifest {manifest}; add it with `tuneguard data lock`")]
    UnlistedSource { path: PathBuf, manifest: PathBuf },
    #[error("{path}: data file listed in the manifest {manifest} is missing")]
    MissingSource { path: PathBuf, manifest: PathBuf },
    #[error(
        "{path}: size {got} bytes differs from the manifest's {expected}; the file changed since \
         `tuneguard data lock` (re-lock and re-sign it if the change is intended)"
    )]
    SizeMismatch { path: PathBuf, expected: u64, got: u64 },
    #[error(
        "{path}: sha256 {got} differs from the manifest's {expected}; the file changed since \
         `tuneguard data lock` (re-lock and re-sign it if the change is intended)"
    )]
    HashMismatch { path: PathBuf, expected: String, got: String },
    #[error("{manifest}: signature file {sig} is missing; sign it with `tuneguard data sign`")]
    MissingSignature { manifest: PathBuf, sig: PathBuf },
    #[error("{manifest}: a signature is required but no trusted public keys are given")]
    NoTrustedKeys { manifest: PathBuf },
    #[error(
        "{manifest}: bad signature by key {key}: the manifest or its .sig was altered; \
         re-run `tuneguard data lock` and `tuneguard data sign`"
    )]
    BadSignature { manifest: PathBuf, key: String },
    #[error("{sig}: signed by untrusted key {key} (trusted: {trusted}); sign with a trusted key")]
    UntrustedKey { sig: PathBuf, key: String, trusted: String },
}

pub type Result<T, E = ProvenanceError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>, err: std::io::Error) -> ProvenanceError {
    ProvenanceError::Io { path: path.into(), err }
}

/// What [`verify`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Every entry of the manifest; all were found with the listed size and hash.
    pub sources: Vec<SourceEntry>,
    /// The trusted signer, or `None` when no trusted keys were given and none was required.
    pub signer: Option<TrustedSigner>,
}

/// Checks the data against the manifest at `manifest_path`, in this order:
/// 0. every entry is a relative path inside the manifest's folder (no `..`, not absolute);
/// 1. the signature, when `trusted_keys` is non-empty or `require_signature`: `<manifest>.sig`
///    must exist, verify (strict RFC 8032 checks) and be by one of `trusted_keys`;
/// 2. every listed file exists with the listed size and SHA-256;
/// 3. every path in `sources` is listed (compared after resolving symlinks).
///
/// Without trusted keys and with `require_signature` false, the signature file is ignored.
pub fn verify(
    manifest_path: &Path,
    sources: &[PathBuf],
    trusted_keys: &[PathBuf],
    require_signature: bool,
) -> Result<Verified, ProvenanceError> {
    let (m, bytes) = read_manifest(manifest_path)?;
    for e in &m.sources {
        if !manifest::is_inside(&e.path) {
            return Err(ProvenanceError::EntryOutsideFolder {
                manifest: manifest_path.to_path_buf(),
                entry: e.path.clone(),
            });
        }
    }
    let signer = if trusted_keys.is_empty() {
        if require_signature {
            return Err(ProvenanceError::NoTrustedKeys { manifest: manifest_path.to_path_buf() });
        }
        None
    } else {
        Some(signature::check_signature(manifest_path, &bytes, trusted_keys)?)
    };
    // Listed files are opened (and named in errors) relative to the manifest path as given.
    let base = manifest_path.parent().unwrap_or(Path::new(""));
    for e in &m.sources {
        check_entry(base, manifest_path, e)?;
    }
    let dir = manifest::manifest_dir(manifest_path)?;
    for src in sources {
        let rel = manifest::relative_to(&dir, src)?;
        if !m.sources.iter().any(|e| e.path == rel) {
            return Err(ProvenanceError::UnlistedSource { path: src.clone(), manifest: manifest_path.to_path_buf() });
        }
    }
    Ok(Verified { sources: m.sources, signer })
}

fn check_entry(base: &Path, manifest_path: &Path, e: &SourceEntry) -> Result<()> {
    let path = base.join(&e.path);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(ProvenanceError::MissingSource { path, manifest: manifest_path.to_path_buf() })
        }
        Err(err) => return Err(io_err(path, err)),
    };
    if meta.len() != e.bytes {
        return Err(ProvenanceError::SizeMismatch { path, expected: e.bytes, got: meta.len() });
    }
    let d = digest_file(&path, false)?;
    if d.sha256 != e.sha256.to_ascii_lowercase() {
        return Err(ProvenanceError::HashMismatch { path, expected: e.sha256.clone(), got: d.sha256 });
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (a temporary file in the same folder renamed over it),
/// with Unix permissions `mode`; with `no_clobber`, an existing `path` is an error.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32, no_clobber: bool) -> Result<()> {
    let existing = if no_clobber { tuneguard_fs::Existing::Refuse } else { tuneguard_fs::Existing::Replace };
    tuneguard_fs::write_atomically(
        path,
        mode,
        existing,
        |w| w.write_all(bytes).map_err(|e| io_err(path, e)),
        |p, e| match e.kind() {
            std::io::ErrorKind::AlreadyExists if no_clobber => ProvenanceError::KeyExists { path: p.to_path_buf() },
            _ => io_err(p, e),
        },
    )
}

#[cfg(test)]
mod tests;
