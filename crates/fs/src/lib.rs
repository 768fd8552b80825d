//! tuneguard-fs: files that readers never see half-written. A file is filled in a temporary file
//! in the same folder, flushed to disk, given its mode and renamed over the target; a folder is
//! filled under a temporary name, flushed and renamed into place ([`write_dir_atomically`]).
//! And folders that only one writer at a time fills ([`lock_dir`]).
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

mod dir;
mod lock;
pub use dir::write_dir_atomically;
pub use lock::{lock_dir, DirLock, LockError, LOCK_FILE};

/// What to do when the target exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Replace,
    /// Fail with an `AlreadyExists` I/O error (e.g. keys that must not be overwritten).
    Refuse,
}

/// Writes `path` through `fill`. `mode` is the Unix permission (temporary files are created
/// owner-only; reports are 0o644, secret keys 0o600). `io_err` turns an I/O failure into the
/// caller's error, given the path it concerns.
///
/// # Errors
/// What `fill` returns, or `io_err` of the folder (temporary file), or of `path` (write, sync,
/// mode, rename; `AlreadyExists` with [`Existing::Refuse`]).
pub fn write_atomically<E>(
    path: &Path,
    mode: u32,
    existing: Existing,
    fill: impl FnOnce(&mut dyn Write) -> Result<(), E>,
    io_err: impl Fn(&Path, std::io::Error) -> E,
) -> Result<(), E> {
    stage(path, mode, fill, &io_err)?.commit(existing, io_err)
}

/// A file written in full, flushed to disk and given its mode under a temporary name in its
/// target's folder, but not yet in place: [`Staged::commit`] renames it over the target, and
/// dropping it removes it. Files that belong together are staged first, each of them, and
/// committed only once all are complete.
#[derive(Debug)]
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

/// Stages `path` through `fill` (the first half of [`write_atomically`]).
///
/// # Errors
/// As [`write_atomically`], except the rename.
pub fn stage<E>(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut dyn Write) -> Result<(), E>,
    io_err: impl Fn(&Path, std::io::Error) -> E,
) -> Result<Staged, E> {
    let dir = parent(path);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io_err(dir, e))?;
    {
        let mut w = BufWriter::new(tmp.as_file_mut());
        fill(&mut w)?;
        w.flush().map_err(|e| io_err(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| io_err(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|e| io_err(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    Ok(Staged { tmp, path: path.to_path_buf() })
}

impl Staged {
    /// The target.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the staged file over its target (or, with [`Existing::Refuse`], only where there
    /// is none).
    ///
    /// # Errors
    /// `io_err` of the target.
    pub fn commit<E>(self, existing: Existing, io_err: impl Fn(&Path, std::io::Error) -> E) -> Result<(), E> {
        let persisted = match existing {
            Existing::Replace => self.tmp.persist(&self.path),
            Existing::Refuse => self.tmp.persist_noclobber(&self.path),
        };
        persisted.map(|_| ()).map_err(|e| io_err(&self.path, e.error))
    }
}

/// Flushes `dir`'s entries to disk, so renames into it survive a power cut (Unix; elsewhere a
/// no-op).
///
/// # Errors
/// When `dir` cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The folder of `path` ("." for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// [`write_atomically`] of bytes, replacing the target, mode 0o644.
///
/// # Errors
/// As [`write_atomically`].
pub fn write_bytes<E>(path: &Path, bytes: &[u8], io_err: impl Fn(&Path, std::io::Error) -> E) -> Result<(), E> {
    write_atomically(path, 0o644, Existing::Replace, |w| w.write_all(bytes).map_err(|e| io_err(path, e)), &io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(_: &Path, e: std::io::Error) -> std::io::Error {
        e
    }

    #[test]
    fn writes_replaces_and_refuses() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("f.txt");
        write_bytes(&p, b"one", io)?;
        write_bytes(&p, b"two", io)?;
        assert_eq!(std::fs::read(&p)?, b"two");
        let refused = write_atomically(&p, 0o600, Existing::Refuse, |w| w.write_all(b"three"), io);
        assert_eq!(refused.map_err(|e| e.kind()), Err(std::io::ErrorKind::AlreadyExists));
        assert_eq!(std::fs::read(&p)?, b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p)?.permissions().mode() & 0o777, 0o644);
        }
        Ok(())
    }

    #[test]
    fn a_failed_fill_leaves_the_target_and_no_temporary_file() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("f.txt");
        write_bytes(&p, b"good", io)?;
        let failed = write_atomically(
            &p,
            0o644,
            Existing::Replace,
            |w| {
                w.write_all(b"half")?;
                Err(std::io::Error::other("disk full"))
            },
            io,
        );
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&p)?, b"good");
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
        Ok(())
    }

    #[test]
    fn staged_files_appear_only_when_committed() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("f.txt");
        write_bytes(&p, b"old", io)?;
        let staged = stage(&p, 0o644, |w| w.write_all(b"new"), io)?;
        assert_eq!((std::fs::read(&p)?, std::fs::read_dir(dir.path())?.count()), (b"old".to_vec(), 2));
        drop(staged);
        assert_eq!((std::fs::read(&p)?, std::fs::read_dir(dir.path())?.count()), (b"old".to_vec(), 1));
        stage(&p, 0o644, |w| w.write_all(b"new"), io)?.commit(Existing::Replace, io)?;
        sync_dir(dir.path())?;
        assert_eq!((std::fs::read(&p)?, std::fs::read_dir(dir.path())?.count()), (b"new".to_vec(), 1));
        Ok(())
    }
}
