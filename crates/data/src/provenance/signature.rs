//! Ed25519 keys and manifest signatures (RFC 8032, via `ed25519-dalek`).
//!
//! File formats (all UTF-8 text, surrounding whitespace ignored):
//! - secret key `NAME.key` (mode 0600): `ed25519-secret:<64 hex digits>` (the 32-byte seed);
//! - public key `NAME.pub` (mode 0644): `ed25519-public:<64 hex digits>`;
//! - signature `<manifest>.sig`: JSON `{"algorithm":"ed25519","public_key":"<hex>",
//!   "signature":"<128 hex digits>"}` over the manifest file's exact bytes. One signer per
//!   manifest: signing again replaces the signature.
//!
//! A key is named in messages by its fingerprint `ed25519:<first 16 hex digits of the SHA-256 of
//! the public key>`.
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::manifest::read_text;
use super::{write_atomic, ProvenanceError, Result};

const SECRET_PREFIX: &str = "ed25519-secret:";
const PUBLIC_PREFIX: &str = "ed25519-public:";
const ALGORITHM: &str = "ed25519";

/// The signature file written next to a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// Always `ed25519`.
    pub algorithm: String,
    /// The signer's public key, hex.
    pub public_key: String,
    /// The 64-byte signature, hex.
    pub signature: String,
}

/// A key pair written by [`keygen`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub secret_path: PathBuf,
    pub public_path: PathBuf,
    /// See [`fingerprint`].
    pub fingerprint: String,
}

/// `<manifest>.sig`.
pub fn sig_path(manifest_path: &Path) -> PathBuf {
    let mut s = manifest_path.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

/// `ed25519:` and the first 16 hex digits of SHA-256(public key bytes).
pub fn fingerprint(key: &VerifyingKey) -> String {
    let h = Sha256::digest(key.as_bytes());
    format!("ed25519:{}", &hex::encode(h)[..16])
}

/// Makes a key pair from the OS random source and writes `PREFIX.key` (0600) and `PREFIX.pub`
/// (0644). Existing files are kept (error [`ProvenanceError::KeyExists`]) unless `force`.
pub fn keygen(prefix: &Path, force: bool) -> Result<KeyPair> {
    let secret_path = with_suffix(prefix, ".key");
    let public_path = with_suffix(prefix, ".pub");
    if !force {
        for p in [&secret_path, &public_path] {
            if p.exists() {
                return Err(ProvenanceError::KeyExists { path: p.clone() });
            }
        }
    }
    if let Some(dir) = secret_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|err| ProvenanceError::Io { path: dir.to_path_buf(), err })?;
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| ProvenanceError::Random { reason: e.to_string() })?;
    let sk = SigningKey::from_bytes(&seed);
    seed.fill(0);
    let vk = sk.verifying_key();
    let secret = format!("{SECRET_PREFIX}{}\n", hex::encode(sk.to_bytes()));
    write_atomic(&secret_path, secret.as_bytes(), 0o600, !force)?;
    let public = format!("{PUBLIC_PREFIX}{}\n", hex::encode(vk.as_bytes()));
    write_atomic(&public_path, public.as_bytes(), 0o644, !force)?;
    Ok(KeyPair { secret_path, public_path, fingerprint: fingerprint(&vk) })
}

/// Signs the manifest file's exact bytes with the secret key at `secret_key_path`; writes
/// `<manifest>.sig` atomically (replacing an earlier signature) and returns its path.
pub fn sign(manifest_path: &Path, secret_key_path: &Path) -> Result<PathBuf> {
    let sk = read_secret_key(secret_key_path)?;
    // Parse before signing so a malformed manifest is never signed.
    let (_, bytes) = super::manifest::read_manifest(manifest_path)?;
    let sig = sk.sign(&bytes);
    let file = SignatureFile {
        algorithm: ALGORITHM.into(),
        public_key: hex::encode(sk.verifying_key().as_bytes()),
        signature: hex::encode(sig.to_bytes()),
    };
    let path = sig_path(manifest_path);
    let text = serde_json::to_string_pretty(&file).unwrap_or_default() + "\n";
    write_atomic(&path, text.as_bytes(), 0o644, false)?;
    Ok(path)
}

/// Reads a secret key file.
pub fn read_secret_key(path: &Path) -> Result<SigningKey> {
    let seed = parse_key_text(path, &read_text(path)?, SECRET_PREFIX)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Reads a public key file; a point that is not a valid Ed25519 key is an error naming it.
pub fn read_public_key(path: &Path) -> Result<VerifyingKey> {
    let bytes = parse_key_text(path, &read_text(path)?, PUBLIC_PREFIX)?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| malformed_key(path, format!("not an Ed25519 public key: {e}")))
}

/// The public key of the signer recorded in `<manifest>.sig`, if it verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedSigner {
    /// See [`fingerprint`].
    pub fingerprint: String,
    /// The trusted public key file that matched.
    pub trusted_key: PathBuf,
}

/// Checks `<manifest>.sig` against the manifest's bytes and then against the trusted keys.
/// A signature that does not verify under its own key is [`ProvenanceError::BadSignature`]; a
/// valid one by a key not in `trusted` is [`ProvenanceError::UntrustedKey`].
pub fn check_signature(manifest_path: &Path, manifest_bytes: &[u8], trusted: &[PathBuf]) -> Result<TrustedSigner> {
    let path = sig_path(manifest_path);
    if !path.exists() {
        return Err(ProvenanceError::MissingSignature { manifest: manifest_path.to_path_buf(), sig: path });
    }
    let (vk, sig) = read_signature_file(&path)?;
    let fp = fingerprint(&vk);
    if vk.verify_strict(manifest_bytes, &sig).is_err() {
        return Err(ProvenanceError::BadSignature { manifest: manifest_path.to_path_buf(), key: fp });
    }
    for t in trusted {
        if read_public_key(t)? == vk {
            return Ok(TrustedSigner { fingerprint: fp, trusted_key: t.clone() });
        }
    }
    let names: Vec<String> = trusted.iter().map(|t| t.display().to_string()).collect();
    Err(ProvenanceError::UntrustedKey { sig: path, key: fp, trusted: names.join(", ") })
}

fn read_signature_file(path: &Path) -> Result<(VerifyingKey, Signature)> {
    let bad = |reason: String| ProvenanceError::MalformedSignature { path: path.to_path_buf(), reason };
    let f: SignatureFile = serde_json::from_str(&read_text(path)?).map_err(|e| bad(e.to_string()))?;
    if f.algorithm != ALGORITHM {
        return Err(bad(format!("algorithm `{}` is not supported (expected `{ALGORITHM}`)", f.algorithm)));
    }
    let key: [u8; 32] = decode_hex(&f.public_key).map_err(|r| bad(format!("public_key: {r}")))?;
    let vk = VerifyingKey::from_bytes(&key).map_err(|e| bad(format!("public_key: not an Ed25519 key: {e}")))?;
    let sig: [u8; 64] = decode_hex(&f.signature).map_err(|r| bad(format!("signature: {r}")))?;
    Ok((vk, Signature::from_bytes(&sig)))
}

fn parse_key_text(path: &Path, text: &str, prefix: &str) -> Result<[u8; 32]> {
    let text = text.trim();
    // A key of the other kind is a mix-up of the two files, not a damaged file.
    let (found, wanted) = if prefix == PUBLIC_PREFIX { ("secret", ".pub") } else { ("public", ".key") };
    let other = if prefix == PUBLIC_PREFIX { SECRET_PREFIX } else { PUBLIC_PREFIX };
    if text.starts_with(other) {
        return Err(ProvenanceError::WrongKeyKind { path: path.to_path_buf(), found, wanted });
    }
    let body = text
        .strip_prefix(prefix)
        .ok_or_else(|| malformed_key(path, format!("expected one line `{prefix}<64 hex digits>`")))?;
    decode_hex(body).map_err(|r| malformed_key(path, r))
}

fn decode_hex<const N: usize>(s: &str) -> std::result::Result<[u8; N], String> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s.trim(), &mut out).map_err(|e| format!("expected {} hex digits: {e}", 2 * N))?;
    Ok(out)
}

fn malformed_key(path: &Path, reason: String) -> ProvenanceError {
    ProvenanceError::MalformedKey { path: path.to_path_buf(), reason }
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// RFC 8032 section 7.1, TEST 1: secret seed -> public key, and the signature of the empty
    /// message, through our key-file format.
    #[test]
    fn rfc8032_test1_through_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let sk_hex = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
        let pk_hex = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let sig_hex = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
                       5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
        std::fs::write(dir.path().join("t.key"), format!("{SECRET_PREFIX}{sk_hex}\n")).unwrap();
        std::fs::write(dir.path().join("t.pub"), format!("  {PUBLIC_PREFIX}{pk_hex}  \n")).unwrap();
        let sk = read_secret_key(&dir.path().join("t.key")).unwrap();
        let vk = read_public_key(&dir.path().join("t.pub")).unwrap();
        assert_eq!(sk.verifying_key(), vk);
        assert_eq!(hex::encode(sk.sign(b"").to_bytes()), sig_hex);
    }

    #[test]
    fn malformed_key_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("a.pub", "ed25519-public"),      // no colon, no digits
            ("b.pub", "ed25519-public:zz"),   // not hex
            ("c.pub", "ed25519-public:0011"), // too short
            // y = 2 has no x on the curve (x^2 = (y^2-1)/(d y^2+1) is not a square mod 2^255-19)
            ("d.pub", &format!("ed25519-public:02{}", "00".repeat(31))),
        ];
        for (name, text) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            let err = read_public_key(&p).unwrap_err();
            assert!(matches!(err, ProvenanceError::MalformedKey { .. }), "{name}: {err}");
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn secret_key_given_as_public_key_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let kp = keygen(&dir.path().join("alice"), false).unwrap();
        let err = read_public_key(&kp.secret_path).unwrap_err();
        assert!(matches!(err, ProvenanceError::WrongKeyKind { found: "secret", .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("alice.key is a secret key; pass the .pub file"), "{msg}");
        // And the reverse, for `data sign`.
        let err = read_secret_key(&kp.public_path).unwrap_err().to_string();
        assert!(err.contains("alice.pub is a public key; pass the .key file"), "{err}");
        // A damaged secret-looking key is still the other kind (not "malformed").
        let p = dir.path().join("short.pub");
        std::fs::write(&p, "ed25519-secret:00").unwrap();
        assert!(matches!(read_public_key(&p).unwrap_err(), ProvenanceError::WrongKeyKind { .. }));
    }

    #[test]
    fn keygen_refuses_to_overwrite_and_sets_modes() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("alice");
        let kp = keygen(&prefix, false).unwrap();
        let err = keygen(&prefix, false).unwrap_err();
        assert!(matches!(err, ProvenanceError::KeyExists { .. }), "{err}");
        let kp2 = keygen(&prefix, true).unwrap();
        assert_ne!(kp.fingerprint, kp2.fingerprint);
        let sk = read_secret_key(&kp2.secret_path).unwrap();
        assert_eq!(fingerprint(&sk.verifying_key()), kp2.fingerprint);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&kp2.secret_path), 0o600);
            assert_eq!(mode(&kp2.public_path), 0o644);
        }
    }
}
