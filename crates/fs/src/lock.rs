//! One writer per folder. Two processes writing into the same folder interleave their files (a
//! run folder then holds one run's config and another's weights), so a writer first takes an
//! exclusive OS advisory lock on a lock file inside it (`flock` on Unix, `LockFileEx` on
//! Windows, through std's `File::try_lock`). The OS releases the lock when the holder's file is
//! closed, also when the process is killed, so a crashed holder never blocks the next one. The
//! lock file itself stays: deleting it would let a later process lock a new file while an
//! earlier one still holds the old. A child process forked while the lock is held shares it
//! (flock belongs to the open file, which fork duplicates) until it execs, when std's
//! close-on-exec flag closes its copy.
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside a locked folder.
pub const LOCK_FILE: &str = ".lock";

/// An exclusive hold on a folder, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    dir: PathBuf,
    _file: File,
}

impl DirLock {
    /// The folder held.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another open lock file (another process, or another handle of this one) holds the folder.
    #[error("{dir}: another process holds this folder ({lock})")]
    Held {
        dir: PathBuf,
        lock: PathBuf,
        /// The holder's process id, as it wrote it into the lock file (if it could be read).
        holder: Option<u32>,
    },
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
}

/// Creates `dir` if needed and takes the exclusive lock on `dir/.lock` without waiting; the
/// lock file then holds this process's id (for the error another process gets).
///
/// # Errors
/// [`LockError::Held`] when another holder has it (nothing in the folder is changed), or
/// [`LockError::Io`] naming the folder or lock file.
pub fn lock_dir(dir: &Path) -> Result<DirLock, LockError> {
    std::fs::create_dir_all(dir).map_err(|err| LockError::Io { path: dir.to_path_buf(), err })?;
    let path = dir.join(LOCK_FILE);
    let io = |err| LockError::Io { path: path.clone(), err };
    // No truncation on open: a process that finds the lock taken must not erase the holder's id.
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let holder = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
            return Err(LockError::Held { dir: dir.to_path_buf(), lock: path, holder });
        }
        Err(TryLockError::Error(err)) => return Err(io(err)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).and_then(|_| file.flush()).map_err(io)?;
    Ok(DirLock { dir: dir.to_path_buf(), _file: file })
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;

    /// Set by `a_lock_left_by_a_killed_process_does_not_block` for the child that holds the lock.
    const HOLD_ENV: &str = "TUNEGUARD_FS_TEST_HOLD_LOCK";

    /// The tests take turns: a child spawned by one test holds, between its fork and its exec,
    /// a copy of every file the other test has open, its lock included, so "dropped, so free
    /// again" could fail for a moment (it did once on CI).
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn take_turn() -> std::sync::MutexGuard<'static, ()> {
        ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[test]
    fn a_held_folder_is_refused_until_its_lock_is_dropped() -> Result<(), LockError> {
        let _turn = take_turn();
        let tmp = tempfile::tempdir().map_err(|err| LockError::Io { path: PathBuf::new(), err })?;
        let dir = tmp.path().join("run");
        let first = lock_dir(&dir)?;
        assert_eq!(first.dir(), dir);
        match lock_dir(&dir) {
            Err(LockError::Held { dir: d, holder, .. }) => {
                assert_eq!(d, dir);
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("the second lock must be refused, got {other:?}"),
        }
        drop(first);
        lock_dir(&dir)?;
        assert!(dir.join(LOCK_FILE).is_file(), "the lock file stays");
        Ok(())
    }

    /// Not a test of its own: the child process of the test below (it does nothing without
    /// the environment variable).
    #[test]
    #[ignore = "run as a child process by a_lock_left_by_a_killed_process_does_not_block"]
    fn hold_lock_until_killed() {
        let Some(dir) = std::env::var_os(HOLD_ENV) else { return };
        let _held = lock_dir(Path::new(&dir)).expect("child: lock");
        std::thread::sleep(Duration::from_secs(120));
    }

    #[test]
    fn a_lock_left_by_a_killed_process_does_not_block() -> Result<(), Box<dyn std::error::Error>> {
        let _turn = take_turn();
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("run");
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--exact", "lock::tests::hold_lock_until_killed", "--ignored", "--test-threads=1"])
            .env(HOLD_ENV, &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        // Wait (without locking, which could make the child's lock fail) until the child has
        // taken the lock and written its id.
        let written = || std::fs::read_to_string(dir.join(LOCK_FILE)).ok().and_then(|t| t.trim().parse().ok());
        let t0 = Instant::now();
        while written() != Some(child.id()) {
            assert!(child.try_wait()?.is_none(), "the child ended without holding the lock");
            assert!(t0.elapsed() < Duration::from_secs(60), "the child never held the lock");
            std::thread::sleep(Duration::from_millis(20));
        }
        let holder = match lock_dir(&dir) {
            Err(LockError::Held { holder, .. }) => holder,
            other => panic!("the child holds the lock, got {other:?}"),
        };
        assert_eq!(holder, Some(child.id()));
        child.kill()?; // SIGKILL on Unix: no destructor runs
        child.wait()?;
        let again = lock_dir(&dir)?;
        assert_eq!(again.dir(), dir);
        Ok(())
    }
}
