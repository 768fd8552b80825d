//! Folders that readers never see half-written: filled under a temporary sibling name, flushed
//! to disk and renamed into place.
use std::path::{Path, PathBuf};

use crate::{parent, sync_dir};

/// Creates the folder `out` (which must not exist) by letting `fill` fill a temporary sibling
/// `.NAME.tmp-PID`, flushing every file and folder in it to disk, and renaming it into place
/// (the rename is flushed too); on error the temporary folder is removed, so `out` never
/// appears half-written. Temporary folders of `out` left by processes that are gone are
/// removed first. `io_err` turns an I/O failure into the caller's error, given the path it
/// concerns.
///
/// # Errors
/// What `fill` returns, or `io_err` of `out` (`AlreadyExists`; the rename), of the temporary
/// folder (creating it) or of the path that could not be flushed.
pub fn write_dir_atomically<E>(
    out: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
    io_err: impl Fn(&Path, std::io::Error) -> E,
) -> Result<(), E> {
    if out.exists() {
        return Err(io_err(out, std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists")));
    }
    let parent = parent(out);
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    remove_stale_temp_dirs(parent, &name);
    let tmp: PathBuf = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    let result = fill(&tmp)
        .and_then(|_| sync_tree(&tmp).map_err(|(p, e)| io_err(&p, e)))
        .and_then(|_| std::fs::rename(&tmp, out).map_err(|e| io_err(out, e)))
        .and_then(|_| sync_dir(parent).map_err(|e| io_err(parent, e)));
    if result.is_err() && tmp.exists() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Flushes every file and folder under `dir`, and `dir` itself, to disk; the error names the
/// path that failed.
fn sync_tree(dir: &Path) -> Result<(), (PathBuf, std::io::Error)> {
    let entries = std::fs::read_dir(dir).map_err(|e| (dir.to_path_buf(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| (dir.to_path_buf(), e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| (path.clone(), e))?;
        if kind.is_dir() {
            sync_tree(&path)?;
        } else if kind.is_file() {
            std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(|e| (path.clone(), e))?;
        }
    }
    sync_dir(dir).map_err(|e| (dir.to_path_buf(), e))
}

/// Removes `.NAME.tmp-PID` folders left by an interrupted earlier run whose process is gone.
fn remove_stale_temp_dirs(parent: &Path, name: &str) {
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = Path::new("/proc").join(pid.to_string()).exists();
        if !alive {
            tracing::info!(path = %entry.path().display(), "removing a temporary folder left by an interrupted run");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(_: &Path, e: std::io::Error) -> std::io::Error {
        e
    }

    #[test]
    fn stale_temp_dirs_of_dead_processes_are_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dead = tmp.path().join(".out.tmp-4000000000");
        let live = tmp.path().join(format!(".out.tmp-{}", std::process::id()));
        let other = tmp.path().join(".other.tmp-4000000000");
        for d in [&dead, &live, &other] {
            std::fs::create_dir(d).expect("mkdir");
        }
        remove_stale_temp_dirs(tmp.path(), "out");
        assert!(!dead.exists(), "a dead process's folder is removed");
        assert!(live.exists(), "a running process's folder is kept");
        assert!(other.exists(), "other outputs' folders are not touched");
    }

    #[test]
    fn the_folder_appears_whole_or_not_at_all() -> std::io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let out = tmp.path().join("out");
        write_dir_atomically(
            &out,
            |d| {
                std::fs::create_dir(d.join("sub"))?;
                std::fs::write(d.join("sub/a.txt"), "a")?;
                std::fs::write(d.join("b.txt"), "b")
            },
            io,
        )?;
        assert_eq!(std::fs::read_to_string(out.join("sub/a.txt"))?, "a");
        assert_eq!(std::fs::read_to_string(out.join("b.txt"))?, "b");
        let again = write_dir_atomically(&out, |_| Ok(()), io);
        assert_eq!(again.map_err(|e| e.kind()), Err(std::io::ErrorKind::AlreadyExists));
        let failed = tmp.path().join("failed");
        let r = write_dir_atomically(
            &failed,
            |d| {
                std::fs::write(d.join("half.txt"), "half")?;
                Err(std::io::Error::other("disk full"))
            },
            io,
        );
        assert!(r.is_err());
        let names: Vec<_> = std::fs::read_dir(tmp.path())?.flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["out"], "neither the failed folder nor its temporary one is left");
        Ok(())
    }
}
