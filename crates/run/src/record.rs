//! The run's record (`[run]` of `config.toml`, `run` of `summary.json`): tool version, start
//! time, command line, and the model's absolute path and sha256. The model is hashed once per
//! run, streamed (about 0.1 s for the default 98 MB model; see the README), so a resume can
//! refuse a different model file under the same name.
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::recipe::RunRecord;
use crate::types::{Result, RunError};

/// The record of a run started now by `command_line` with the model at `model_path`.
///
/// # Errors
/// `Io` naming the model file that cannot be read.
pub fn new(model_path: &Path, command_line: &[String]) -> Result<RunRecord> {
    let abs = std::path::absolute(model_path).unwrap_or_else(|_| model_path.to_path_buf());
    let t0 = std::time::Instant::now();
    let model_sha256 = model_sha256(model_path)?;
    tracing::info!("sha256 of {}: {model_sha256} ({:.2} s)", model_path.display(), t0.elapsed().as_secs_f64());
    Ok(RunRecord {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        started: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        command_line: command_line.to_vec(),
        model_path: crate::recipe::lexical_normalize(&abs).to_string_lossy().into_owned(),
        model_sha256,
    })
}

/// sha256 of a model file; of a folder (a Hugging Face directory), sha256 of the
/// `sha256sum`-style listing of its files (`<sha256>  <name>\n`, sorted by name; subfolders are
/// not part of a model).
///
/// # Errors
/// `Io` naming the file.
pub fn model_sha256(path: &Path) -> Result<String> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |err| RunError::Io { path: p.clone(), err }
    };
    if !path.is_dir() {
        return sha256_file(path);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io(path))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut listing = String::new();
    for f in &files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        listing.push_str(&format!("{}  {name}\n", sha256_file(f)?));
    }
    Ok(hex::encode(Sha256::digest(listing.as_bytes())))
}

fn sha256_file(path: &Path) -> Result<String> {
    let io = |err| RunError::Io { path: path.to_path_buf(), err };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;

    /// FIPS 180-2 appendix B.1 ("abc"); a folder hashes as `sha256sum` would list it.
    #[test]
    fn model_hashes_match_sha256sum() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.gguf");
        std::fs::write(&f, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(model_sha256(&f).unwrap(), abc);
        let hf = dir.path().join("hf");
        std::fs::create_dir_all(hf.join("sub")).unwrap();
        std::fs::write(hf.join("b.json"), b"").unwrap();
        std::fs::write(hf.join("a.bin"), b"abc").unwrap();
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let listing = format!("{abc}  a.bin\n{empty}  b.json\n");
        assert_eq!(model_sha256(&hf).unwrap(), hex::encode(Sha256::digest(listing.as_bytes())));
        let err = model_sha256(&dir.path().join("missing.gguf")).unwrap_err().to_string();
        assert!(err.contains("missing.gguf"), "{err}");
    }
}
