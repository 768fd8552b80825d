//! End-to-end tests of `tuneguard data lock|keygen|sign|verify` on a copy of the real
//! Self-Instruct seed tasks (`../shared/data/instruction/selfinstruct_seed_tasks.jsonl`): the
//! untouched data verifies, and each tampering case ends with exit code 2 and one `error:` line
//! naming the file or key.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::{Command, Output};

use tempfile::TempDir;
use tuneguard_model::testutil::shared_dir;

fn tuneguard(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tuneguard"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("cannot run the tuneguard binary")
}

/// Runs a command that must succeed; returns its stdout.
fn run_ok(dir: &Path, args: &[&str]) -> String {
    let out = tuneguard(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tuneguard {args:?} failed ({:?}):\n{stderr}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with exit code 2 and exactly one `error: ` line on stderr
/// containing every needle; returns that line.
fn run_bad(dir: &Path, args: &[&str], needles: &[&str]) -> String {
    let out = tuneguard(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "tuneguard {args:?} panicked:\n{stderr}");
    assert_eq!(out.status.code(), Some(2), "tuneguard {args:?}: wrong exit status; stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "tuneguard {args:?}: expected one stderr line, got:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    for n in needles {
        assert!(lines[0].contains(n), "error line does not mention {n:?}: {}", lines[0]);
    }
    lines[0].to_string()
}

/// A temp dir holding `seed.jsonl` (a copy of the real file), locked into `data.lock.json` and
/// signed with `alice.key`; `mallory.key` exists but is never trusted. Returns mallory's
/// fingerprint, parsed from the keygen output.
fn setup() -> (TempDir, String) {
    let src = shared_dir().join("data/instruction/selfinstruct_seed_tasks.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(&src, d.join("seed.jsonl")).unwrap();
    let out = run_ok(d, &["data", "lock", "seed.jsonl", "--manifest", "data.lock.json"]);
    assert!(out.contains("locked 1 source (108.5 kB) into data.lock.json"), "{out}");
    assert!(out.contains("seed.jsonl  108.5 kB  175 rows"), "{out}");
    run_ok(d, &["data", "keygen", "--out", "alice"]);
    let out = run_ok(d, &["data", "keygen", "--out", "mallory"]);
    let mallory = out.trim().rsplit("public key ").next().unwrap().trim_end_matches(')').to_string();
    assert!(mallory.starts_with("ed25519:") && mallory.len() == 24, "{out}");
    let out = run_ok(d, &["data", "sign", "--manifest", "data.lock.json", "--key", "alice.key"]);
    assert!(out.starts_with("signed data.lock.json with key ed25519:"), "{out}");
    (dir, mallory)
}

const VERIFY: &[&str] = &["data", "verify", "--manifest", "data.lock.json", "--trusted-key", "alice.pub"];

fn verify_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    VERIFY.iter().copied().chain(extra.iter().copied()).collect()
}

#[test]
fn untouched_data_verifies() {
    let (dir, _) = setup();
    let out = run_ok(dir.path(), &verify_args(&["seed.jsonl"]));
    assert!(out.starts_with("verified 1 source (108.5 kB) against data.lock.json; signed by ed25519:"), "{out}");
    assert!(out.contains("(trusted key alice.pub)"), "{out}");
}

#[test]
fn one_flipped_byte_names_the_file() {
    let (dir, _) = setup();
    let p = dir.path().join("seed.jsonl");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[5000] ^= 0x20;
    std::fs::write(&p, bytes).unwrap();
    run_bad(dir.path(), &verify_args(&["seed.jsonl"]), &["seed.jsonl", "sha256", "tuneguard data lock"]);
}

#[test]
fn unlisted_source_is_named() {
    let (dir, _) = setup();
    std::fs::write(dir.path().join("extra.jsonl"), "{\"prompt\":\"a\",\"completion\":\"b\"}\n").unwrap();
    run_bad(dir.path(), &verify_args(&["seed.jsonl", "extra.jsonl"]), &["extra.jsonl", "not listed"]);
}

#[test]
fn signature_by_untrusted_key_names_the_key() {
    let (dir, mallory) = setup();
    run_ok(dir.path(), &["data", "sign", "--manifest", "data.lock.json", "--key", "mallory.key"]);
    run_bad(dir.path(), &verify_args(&["seed.jsonl"]), &["untrusted key", &mallory, "alice.pub"]);
}

#[test]
fn corrupted_signature_is_rejected() {
    let (dir, _) = setup();
    let p = dir.path().join("data.lock.json.sig");
    let text = std::fs::read_to_string(&p).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sig = v["signature"].as_str().unwrap();
    // Change the last hex digit to another hex digit.
    let last = if sig.ends_with('0') { "1" } else { "0" };
    let bad = format!("{}{last}", &sig[..sig.len() - 1]);
    std::fs::write(&p, text.replace(sig, &bad)).unwrap();
    run_bad(dir.path(), &verify_args(&["seed.jsonl"]), &["data.lock.json", "bad signature by key ed25519:"]);
    // Garbage instead of JSON names the signature file.
    std::fs::write(&p, "not json").unwrap();
    run_bad(dir.path(), &verify_args(&[]), &["data.lock.json.sig", "malformed signature"]);
}

#[test]
fn keygen_refuses_to_overwrite() {
    let (dir, _) = setup();
    run_bad(dir.path(), &["data", "keygen", "--out", "alice"], &["alice.key", "--force"]);
    run_ok(dir.path(), &["data", "keygen", "--out", "alice", "--force"]);
    // alice's new key no longer matches the signature made with the old one.
    run_bad(dir.path(), &verify_args(&[]), &["untrusted key"]);
}

/// A secret key given as a trusted key used to be reported as a "malformed key file".
#[test]
fn secret_key_passed_as_trusted_key_says_so() {
    let (dir, _) = setup();
    let args = ["data", "verify", "--manifest", "data.lock.json", "--trusted-key", "alice.key", "seed.jsonl"];
    run_bad(dir.path(), &args, &["alice.key is a secret key; pass the .pub file"]);
}

/// A manifest entry that leaves the manifest's folder (`..`, an absolute path) used to verify,
/// also signed by a trusted key and with the right size and hash: refused by `data verify` and
/// by `train`'s `data.manifest` check (before the model is touched), naming the entry.
#[test]
fn manifest_entry_outside_its_folder_is_refused() {
    let (dir, _) = setup();
    let d = dir.path();
    std::fs::create_dir_all(d.join("locks")).unwrap();
    let text = std::fs::read_to_string(d.join("data.lock.json")).unwrap();
    let abs = d.join("seed.jsonl").canonicalize().unwrap().to_str().unwrap().to_string();
    for entry in ["../seed.jsonl", abs.as_str()] {
        let edited = text.replace("\"path\": \"seed.jsonl\"", &format!("\"path\": {entry:?}"));
        assert_ne!(edited, text);
        std::fs::write(d.join("locks/data.lock.json"), edited).unwrap();
        run_ok(d, &["data", "sign", "--manifest", "locks/data.lock.json", "--key", "alice.key"]);
        let verify = ["data", "verify", "--manifest", "locks/data.lock.json", "--trusted-key", "alice.pub"];
        let quoted = format!("`{entry}`");
        run_bad(d, &verify, &["locks/data.lock.json", &quoted, "outside the manifest's folder"]);
        let recipe = d.join("recipe.toml");
        std::fs::write(
            &recipe,
            "[model]\npath = \"no-model-needed.gguf\"\n[data]\ntrain = \"seed.jsonl\"\n\
             manifest = \"locks/data.lock.json\"\ntrusted_keys = [\"alice.pub\"]\n[output]\ndir = \"run\"\n",
        )
        .unwrap();
        run_bad(d, &["train", "recipe.toml"], &[&quoted, "outside the manifest's folder"]);
    }
    // `data lock` does not write such an entry.
    run_bad(d, &["data", "lock", "seed.jsonl", "--manifest", "locks/data.lock.json"], &["seed.jsonl", "outside"]);
}
