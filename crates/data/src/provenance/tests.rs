//! Lock / sign / verify round trip and one test per tampering case, on a copy of the real
//! Self-Instruct seed tasks (`../shared/data/instruction/selfinstruct_seed_tasks.jsonl`).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use super::*;
use tempfile::TempDir;

struct Fixture {
    dir: TempDir,
    data: PathBuf,
    manifest: PathBuf,
    alice_pub: PathBuf,
    mallory: KeyPair,
}

/// A temp dir with a copy of the seed tasks, locked and signed by `alice`, plus a second key
/// pair `mallory` that is never trusted.
fn fixture() -> Fixture {
    let src = tuneguard_model::testutil::shared_dir().join("data/instruction/selfinstruct_seed_tasks.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("seed.jsonl");
    std::fs::copy(&src, &data).unwrap();
    let manifest = dir.path().join("data.lock.json");
    lock(std::slice::from_ref(&data), &manifest).unwrap();
    let alice = keygen(&dir.path().join("alice"), false).unwrap();
    let mallory = keygen(&dir.path().join("mallory"), false).unwrap();
    sign(&manifest, &alice.secret_path).unwrap();
    Fixture { data, manifest, alice_pub: alice.public_path, mallory, dir }
}

fn verify_signed(f: &Fixture, sources: &[PathBuf]) -> Result<Verified> {
    verify(&f.manifest, sources, std::slice::from_ref(&f.alice_pub), true)
}

/// The seed file has 175 JSONL lines and 108,496 bytes (`wc -lc`).
#[test]
fn lock_sign_verify_round_trip_on_real_data() {
    let f = fixture();
    let (m, _) = read_manifest(&f.manifest).unwrap();
    assert_eq!(m.version, 1);
    assert_eq!(m.sources.len(), 1);
    let e = &m.sources[0];
    assert_eq!((e.path.as_str(), e.bytes, e.rows), ("seed.jsonl", 108_496, 175));
    assert_eq!(e.sha256.len(), 64);
    let v = verify_signed(&f, std::slice::from_ref(&f.data)).unwrap();
    let signer = v.signer.unwrap();
    assert_eq!(signer.trusted_key, f.alice_pub);
    // Unsigned check: no trusted keys, nothing required.
    assert!(verify(&f.manifest, std::slice::from_ref(&f.data), &[], false).unwrap().signer.is_none());
}

#[test]
fn one_flipped_byte_is_a_hash_mismatch_naming_the_file() {
    let f = fixture();
    let mut bytes = std::fs::read(&f.data).unwrap();
    bytes[1000] ^= 0x01;
    std::fs::write(&f.data, &bytes).unwrap();
    let err = verify_signed(&f, std::slice::from_ref(&f.data)).unwrap_err();
    assert!(matches!(&err, ProvenanceError::HashMismatch { path, .. } if path.ends_with("seed.jsonl")), "{err}");
    assert!(err.to_string().contains("seed.jsonl"), "{err}");
}

#[test]
fn appended_byte_is_a_size_mismatch() {
    let f = fixture();
    let mut bytes = std::fs::read(&f.data).unwrap();
    bytes.push(b'\n');
    std::fs::write(&f.data, &bytes).unwrap();
    let err = verify_signed(&f, &[]).unwrap_err();
    assert!(matches!(err, ProvenanceError::SizeMismatch { expected: 108_496, got: 108_497, .. }), "{err}");
}

#[test]
fn unlisted_source_is_named() {
    let f = fixture();
    let extra = f.dir.path().join("extra.jsonl");
    std::fs::write(&extra, "{\"prompt\":\"a\",\"completion\":\"b\"}\n").unwrap();
    let err = verify_signed(&f, &[f.data.clone(), extra.clone()]).unwrap_err();
    assert!(matches!(&err, ProvenanceError::UnlistedSource { path, .. } if *path == extra), "{err}");
}

#[test]
fn missing_listed_file_is_named() {
    let f = fixture();
    std::fs::remove_file(&f.data).unwrap();
    let err = verify_signed(&f, &[]).unwrap_err();
    assert!(matches!(&err, ProvenanceError::MissingSource { path, .. } if path.ends_with("seed.jsonl")), "{err}");
}

#[test]
fn signature_by_untrusted_key_names_the_key() {
    let f = fixture();
    sign(&f.manifest, &f.mallory.secret_path).unwrap();
    let err = verify_signed(&f, &[]).unwrap_err();
    assert!(matches!(&err, ProvenanceError::UntrustedKey { key, .. } if *key == f.mallory.fingerprint), "{err}");
    assert!(err.to_string().contains("alice.pub"), "{err}");
}

#[test]
fn corrupted_signature_or_edited_manifest_is_a_bad_signature() {
    let f = fixture();
    let sig = sig_path(&f.manifest);
    let orig = std::fs::read_to_string(&sig).unwrap();
    let mut parsed: SignatureFile = serde_json::from_str(&orig).unwrap();
    // Flip the low bit of the first signature byte (stays valid hex).
    let first = u8::from_str_radix(&parsed.signature[..2], 16).unwrap() ^ 1;
    parsed.signature.replace_range(..2, &format!("{first:02x}"));
    std::fs::write(&sig, serde_json::to_string(&parsed).unwrap()).unwrap();
    let err = verify_signed(&f, &[]).unwrap_err();
    assert!(matches!(err, ProvenanceError::BadSignature { .. }), "{err}");

    // The original signature over an edited manifest (one space added) fails too.
    std::fs::write(&sig, &orig).unwrap();
    let mut m = std::fs::read(&f.manifest).unwrap();
    m.insert(1, b' ');
    std::fs::write(&f.manifest, &m).unwrap();
    let err = verify_signed(&f, &[]).unwrap_err();
    assert!(matches!(err, ProvenanceError::BadSignature { .. }), "{err}");
}

#[test]
fn missing_or_garbled_signature_and_manifest_are_named() {
    let f = fixture();
    let sig = sig_path(&f.manifest);
    std::fs::write(&sig, "{\"algorithm\":\"ed25519\"").unwrap();
    let err = verify_signed(&f, &[]).unwrap_err();
    assert!(matches!(&err, ProvenanceError::MalformedSignature { path, .. } if *path == sig), "{err}");
    std::fs::remove_file(&sig).unwrap();
    let err = verify_signed(&f, &[]).unwrap_err();
    assert!(matches!(err, ProvenanceError::MissingSignature { .. }), "{err}");
    // Required signature without trusted keys.
    let err = verify(&f.manifest, &[], &[], true).unwrap_err();
    assert!(matches!(err, ProvenanceError::NoTrustedKeys { .. }), "{err}");
    std::fs::write(&f.manifest, "{\"version\":2,\"created\":\"\",\"sources\":[]}").unwrap();
    let err = verify(&f.manifest, &[], &[], false).unwrap_err();
    assert!(matches!(err, ProvenanceError::MalformedManifest { .. }), "{err}");
}

#[test]
fn relock_removes_the_stale_signature_and_lists_each_file_once() {
    let f = fixture();
    lock(&[f.data.clone(), f.dir.path().join("./seed.jsonl")], &f.manifest).unwrap();
    assert!(!sig_path(&f.manifest).exists());
    let (m, _) = read_manifest(&f.manifest).unwrap();
    assert_eq!(m.sources.len(), 1);
    let err = lock(&[], &f.manifest).unwrap_err();
    assert!(matches!(err, ProvenanceError::NoSources { .. }), "{err}");
}

#[test]
fn keygen_creates_the_key_folder() {
    let dir = tempfile::tempdir().unwrap();
    let pair = keygen(&dir.path().join("keys/nested/alice"), false).unwrap();
    assert!(pair.secret_path.is_file() && pair.public_path.is_file());
}

/// A manifest (signed by a trusted key, with the right size and hash) whose entry leaves its
/// folder used to verify, reading a file the manifest has no business naming.
#[test]
fn manifest_entry_outside_its_folder_is_refused() {
    let f = fixture();
    let sub = f.dir.path().join("locks");
    std::fs::create_dir_all(&sub).unwrap();
    let manifest = sub.join("data.lock.json");
    let (mut m, _) = read_manifest(&f.manifest).unwrap();
    let abs = f.data.canonicalize().unwrap().to_string_lossy().into_owned();
    for entry in ["../seed.jsonl".to_string(), abs, "./../seed.jsonl".to_string()] {
        m.sources[0].path = entry.clone();
        std::fs::write(&manifest, serde_json::to_string_pretty(&m).unwrap()).unwrap();
        sign(&manifest, &f.dir.path().join("alice.key")).unwrap();
        for keys in [vec![f.alice_pub.clone()], vec![]] {
            let err = verify(&manifest, &[], &keys, !keys.is_empty()).unwrap_err();
            assert!(matches!(&err, ProvenanceError::EntryOutsideFolder { entry: e, .. } if *e == entry), "{err}");
            assert!(err.to_string().contains(&format!("`{entry}`")), "{err}");
        }
    }
    // `lock` does not write such an entry in the first place.
    let err = lock(std::slice::from_ref(&f.data), &manifest).unwrap_err();
    assert!(matches!(&err, ProvenanceError::SourceOutsideFolder { path, .. } if *path == f.data), "{err}");
}
