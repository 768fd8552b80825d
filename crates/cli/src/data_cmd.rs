//! `tuneguard data`: lock data files into a manifest, make keys, sign and verify the manifest.
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand};
use tuneguard_data::provenance::{self, signature};

#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Write a manifest of data files: path, size, sha256, rows, modification time.
    Lock {
        /// Data files to lock (JSONL or CSV).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Manifest to write; paths in it are relative to its folder.
        #[arg(long, default_value = "data.lock.json")]
        manifest: PathBuf,
    },
    /// Make an Ed25519 key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub (public).
    Keygen {
        /// Path prefix of the two key files.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite existing key files.
        #[arg(long)]
        force: bool,
    },
    /// Sign a manifest with a secret key, writing MANIFEST.sig.
    Sign {
        /// Manifest to sign.
        #[arg(long, default_value = "data.lock.json")]
        manifest: PathBuf,
        /// Secret key file (from `tuneguard data keygen`).
        #[arg(long)]
        key: PathBuf,
    },
    /// Check the manifest's signature, every listed file's size and sha256, and that each FILE is listed.
    Verify {
        /// Manifest to check against.
        #[arg(long, default_value = "data.lock.json")]
        manifest: PathBuf,
        /// Public key whose signature is accepted (repeatable); with one, a signature is required.
        #[arg(long = "trusted-key")]
        trusted_keys: Vec<PathBuf>,
        /// Data files that must be listed in the manifest.
        files: Vec<PathBuf>,
    },
}

pub fn run(args: DataArgs) -> Result<()> {
    match args.command {
        DataCommand::Lock { files, manifest } => lock(&files, &manifest),
        DataCommand::Keygen { out, force } => {
            let kp = provenance::keygen(&out, force)?;
            out!(
                "wrote {} (secret key, keep it private) and {} (public key {})",
                kp.secret_path.display(),
                kp.public_path.display(),
                kp.fingerprint
            );
            Ok(())
        }
        DataCommand::Sign { manifest, key } => {
            let fp = provenance::fingerprint(&signature::read_secret_key(&key)?.verifying_key());
            let sig = provenance::sign(&manifest, &key)?;
            out!("signed {} with key {fp} into {}", manifest.display(), sig.display());
            Ok(())
        }
        DataCommand::Verify { manifest, trusted_keys, files } => verify(&manifest, &trusted_keys, &files),
    }
}

fn lock(files: &[PathBuf], manifest: &Path) -> Result<()> {
    let sig = provenance::sig_path(manifest);
    let had_sig = sig.exists();
    let m = provenance::lock(files, manifest)?;
    for s in &m.sources {
        out!(
            "{}  {}  {} rows  sha256 {}",
            s.path,
            human_bytes(s.bytes),
            s.rows,
            s.sha256.get(..16).unwrap_or(&s.sha256)
        );
    }
    let bytes: u64 = m.sources.iter().map(|s| s.bytes).sum();
    out!("locked {} ({}) into {}", plural(m.sources.len(), "source"), human_bytes(bytes), manifest.display());
    if had_sig {
        out!("removed the stale signature {}; sign again with `tuneguard data sign`", sig.display());
    }
    Ok(())
}

fn verify(manifest: &Path, trusted_keys: &[PathBuf], files: &[PathBuf]) -> Result<()> {
    let v = provenance::verify(manifest, files, trusted_keys, !trusted_keys.is_empty())?;
    let bytes: u64 = v.sources.iter().map(|s| s.bytes).sum();
    let signed = match &v.signer {
        Some(s) => format!("signed by {} (trusted key {})", s.fingerprint, s.trusted_key.display()),
        None => "signature not checked (no --trusted-key given)".to_string(),
    };
    out!(
        "verified {} ({}) against {}; {signed}",
        plural(v.sources.len(), "source"),
        human_bytes(bytes),
        manifest.display()
    );
    Ok(())
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Decimal units, as `inspect` prints model sizes.
fn human_bytes(n: u64) -> String {
    let x = n as f64;
    match n {
        0..=999 => format!("{n} B"),
        1_000..=999_999 => format!("{:.1} kB", x / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} MB", x / 1e6),
        _ => format!("{:.1} GB", x / 1e9),
    }
}
