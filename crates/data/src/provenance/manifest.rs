//! The data manifest (`data.lock.json`): one entry per source file with its size, SHA-256 and
//! row count, written by [`lock`] and read back by [`read_manifest`].
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{io_err, write_atomic, ProvenanceError, Result};
use crate::load::FileKind;

/// The only manifest format version this build reads and writes.
pub const MANIFEST_VERSION: u32 = 1;

/// A data manifest. Its file's exact bytes are what [`super::sign`] signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version, [`MANIFEST_VERSION`].
    pub version: u32,
    /// When the manifest was written, RFC 3339 UTC (informational).
    pub created: String,
    /// One entry per source file, in the order given to [`lock`].
    pub sources: Vec<SourceEntry>,
}

/// One locked source file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    /// Path relative to the manifest's folder, `/`-separated.
    pub path: String,
    /// File size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file's bytes, lower-case hex.
    pub sha256: String,
    /// Rows: non-blank lines for JSONL (and unknown extensions), records after the header for CSV.
    pub rows: u64,
    /// The file's modification time when locked, RFC 3339 UTC (informational, never checked:
    /// copying a file changes it).
    pub modified: String,
}

/// Size, SHA-256 (hex) and row count of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub bytes: u64,
    pub sha256: String,
    pub rows: u64,
}

/// Writes a manifest of `sources` to `manifest_path` (atomically, replacing an existing one)
/// and returns it. Each path is stored relative to the manifest's folder, which must hold every
/// source (after resolving symlinks); a source given twice is listed once. A signature file left from an earlier manifest is removed, since it can no
/// longer verify.
pub fn lock(sources: &[PathBuf], manifest_path: &Path) -> Result<Manifest> {
    if sources.is_empty() {
        return Err(ProvenanceError::NoSources { manifest: manifest_path.to_path_buf() });
    }
    for src in sources {
        let same =
            std::fs::canonicalize(src).ok().is_some_and(|a| std::fs::canonicalize(manifest_path).ok() == Some(a));
        if same {
            return Err(ProvenanceError::Malformed {
                path: manifest_path.to_path_buf(),
                reason: "the manifest path is one of the data files; writing it would replace that file".into(),
            });
        }
    }
    let dir = manifest_dir(manifest_path)?;
    let mut entries: Vec<SourceEntry> = Vec::with_capacity(sources.len());
    for src in sources {
        let rel = relative_to(&dir, src)?;
        if !is_inside(&rel) {
            return Err(ProvenanceError::SourceOutsideFolder {
                path: src.clone(),
                manifest: manifest_path.to_path_buf(),
            });
        }
        if entries.iter().any(|e| e.path == rel) {
            continue;
        }
        let d = digest_file(src, true)?;
        let meta = std::fs::metadata(src).map_err(|e| io_err(src, e))?;
        let modified = meta.modified().map(rfc3339).unwrap_or_default();
        entries.push(SourceEntry { path: rel, bytes: d.bytes, sha256: d.sha256, rows: d.rows, modified });
    }
    let manifest = Manifest { version: MANIFEST_VERSION, created: rfc3339(SystemTime::now()), sources: entries };
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| ProvenanceError::MalformedManifest { path: manifest_path.to_path_buf(), reason: e.to_string() })?
        + "\n";
    write_atomic(manifest_path, text.as_bytes(), 0o644, false)?;
    let sig = super::signature::sig_path(manifest_path);
    match std::fs::remove_file(&sig) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&sig, e)),
        _ => {}
    }
    Ok(manifest)
}

/// Reads and parses a manifest; returns it with the file's exact bytes (for signature checks).
pub fn read_manifest(path: &Path) -> Result<(Manifest, Vec<u8>)> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| ProvenanceError::MalformedManifest { path: path.to_path_buf(), reason: e.to_string() })?;
    if m.version != MANIFEST_VERSION {
        let reason = format!("version {} is not supported (expected {MANIFEST_VERSION})", m.version);
        return Err(ProvenanceError::MalformedManifest { path: path.to_path_buf(), reason });
    }
    Ok((m, bytes))
}

/// Streams `path` once for its size and SHA-256; with `count_rows`, also counts its rows
/// (a second pass for CSV, whose quoted fields may hold newlines).
pub fn digest_file(path: &Path, count_rows: bool) -> Result<FileDigest> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let kind = FileKind::from_path(path);
    let count_lines = count_rows && kind != Some(FileKind::Csv);
    let mut hasher = Sha256::new();
    let (mut bytes, mut rows) = (0u64, 0u64);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| io_err(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&line);
        bytes += n as u64;
        if count_lines && !line.iter().all(u8::is_ascii_whitespace) {
            rows += 1;
        }
    }
    if count_rows && kind == Some(FileKind::Csv) {
        rows = count_csv_records(path)?;
    }
    Ok(FileDigest { bytes, sha256: hex::encode(hasher.finalize()), rows })
}

/// CSV records after the header, read as bytes with ragged rows allowed: the count is
/// informational, and rejecting bad rows is the loader's job.
fn count_csv_records(path: &Path) -> Result<u64> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(file);
    let mut rec = csv::ByteRecord::new();
    let mut rows = 0u64;
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => rows += 1,
            Ok(false) => return Ok(rows),
            Err(e) => return Err(ProvenanceError::Malformed { path: path.to_path_buf(), reason: e.to_string() }),
        }
    }
}

/// The manifest's folder, canonical (the manifest itself need not exist yet).
pub(crate) fn manifest_dir(manifest_path: &Path) -> Result<PathBuf> {
    let parent = match manifest_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    parent.canonicalize().map_err(|e| io_err(parent, e))
}

/// `src` relative to the canonical folder `dir`, `/`-separated, after resolving symlinks.
pub(crate) fn relative_to(dir: &Path, src: &Path) -> Result<String> {
    let canon = src.canonicalize().map_err(|e| io_err(src, e))?;
    if !canon.is_file() {
        let reason = "not a regular file".to_string();
        return Err(ProvenanceError::Malformed { path: src.to_path_buf(), reason });
    }
    let rel = pathdiff::diff_paths(&canon, dir).unwrap_or(canon);
    let parts: Vec<String> = rel
        .components()
        .map(|c| match c {
            Component::ParentDir => "..".to_string(),
            other => other.as_os_str().to_string_lossy().into_owned(),
        })
        .collect();
    Ok(parts.join("/"))
}

/// Whether a manifest entry stays inside the manifest's folder: a non-empty relative path of
/// plain names (no `..`, no root, no Windows prefix; `.` parts are harmless).
pub(crate) fn is_inside(entry: &str) -> bool {
    let p = Path::new(entry);
    let mut names = 0;
    for c in p.components() {
        match c {
            Component::Normal(_) => names += 1,
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    // `\` separates folders on Windows only; a `..\..` entry must not pass on Windows.
    names > 0 && !entry.split(['/', '\\']).any(|part| part == "..")
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Reads a whole small text file (keys, signatures), naming it on failure.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let mut s = String::new();
    File::open(path).and_then(|mut f| f.read_to_string(&mut s)).map_err(|e| io_err(path, e))?;
    Ok(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// SHA-256 test vectors from FIPS 180-2 appendix B ("abc") and of the empty message; row
    /// counts by hand.
    #[test]
    fn digest_matches_known_vectors_and_counts_rows() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&str, &[u8], u64, &str)] = &[
            ("empty.jsonl", b"", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc.txt", b"abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("two.jsonl", b"{\"a\":1}\n\n  \n{\"a\":2}", 2, ""),
            ("q.csv", b"a,b\n1,\"x\ny\"\n2,z\n", 2, ""),
            ("hdr.csv", b"a,b\n", 0, ""),
        ];
        for (name, body, rows, sha) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            let d = digest_file(&p, true).unwrap();
            assert_eq!(d.bytes, body.len() as u64, "{name}");
            assert_eq!(d.rows, *rows, "{name}");
            if !sha.is_empty() {
                assert_eq!(d.sha256, *sha, "{name}");
            }
        }
    }

    #[test]
    fn entries_outside_the_manifest_folder_are_not_inside() {
        for inside in ["seed.jsonl", "data/sub/a.jsonl", "./a.jsonl", "a..b.jsonl"] {
            assert!(is_inside(inside), "{inside}");
        }
        for outside in ["", ".", "../a.jsonl", "data/../../a.jsonl", "/etc/passwd", "..\\..\\a.jsonl", "../../.."] {
            assert!(!is_inside(outside), "{outside}");
        }
    }

    #[test]
    fn relative_paths_use_parent_dirs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("locks")).unwrap();
        std::fs::create_dir_all(dir.path().join("data/sub")).unwrap();
        let f = dir.path().join("data/sub/a.jsonl");
        std::fs::write(&f, "{}\n").unwrap();
        let locks = dir.path().join("locks").canonicalize().unwrap();
        assert_eq!(relative_to(&locks, &f).unwrap(), "../data/sub/a.jsonl");
        let root = dir.path().canonicalize().unwrap();
        assert_eq!(relative_to(&root, &f).unwrap(), "data/sub/a.jsonl");
    }
}
