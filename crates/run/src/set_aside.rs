//! Files of a run folder moved aside while a new attempt gets ready, so that an attempt that
//! fails before it trains leaves the folder as it was.
//!
//! `--overwrite` sets the earlier run's outputs aside (into `OUT/.set-aside/`) instead of
//! deleting them, and a `--resume` sets aside the files its data preparation rewrites
//! (`rejected.jsonl`, `audit.json`, `quarantine.jsonl`). Once training starts the set-aside
//! files are deleted ([`SetAside::commit`]); if the attempt fails first (a bad model path, a
//! validation size the data cannot give, a resume refused because the data changed), dropping
//! the [`SetAside`] removes what the attempt wrote under those names and moves the old files
//! back. A process killed in between leaves `.set-aside/`, which the next attempt restores
//! first ([`recover`]).
use std::path::{Path, PathBuf};

use crate::{Result, RunError};

/// The folder, inside the run folder, that holds the set-aside files.
pub const DIR: &str = ".set-aside";

/// The files `names` of `out`, set aside until [`SetAside::commit`].
#[derive(Debug)]
pub struct SetAside {
    out: PathBuf,
    names: Vec<&'static str>,
    committed: bool,
}

fn remove(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

impl SetAside {
    /// Moves the files `names` of `out` that exist into `out/.set-aside/`.
    ///
    /// # Errors
    /// `Io` when a file cannot be moved (the ones moved so far are moved back).
    pub fn new(out: &Path, names: &[&'static str]) -> Result<SetAside> {
        let aside = out.join(DIR);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |err| RunError::Io { path, err }
        };
        std::fs::create_dir_all(&aside).map_err(io(&aside))?;
        let set = SetAside { out: out.to_path_buf(), names: names.to_vec(), committed: false };
        for name in names {
            let from = out.join(name);
            if std::fs::symlink_metadata(&from).is_ok() {
                // On failure `set` is dropped and moves back what was moved.
                std::fs::rename(&from, aside.join(name)).map_err(io(&from))?;
            }
        }
        Ok(set)
    }

    /// The attempt has started training: the set-aside files are deleted.
    pub fn commit(mut self) {
        self.committed = true;
        if let Err(err) = remove(&self.out.join(DIR)) {
            tracing::warn!("could not delete {}: {err}", self.out.join(DIR).display());
        }
    }
}

impl Drop for SetAside {
    fn drop(&mut self) {
        if !self.committed {
            if let Err(err) = restore(&self.out, &self.names) {
                tracing::warn!("could not restore the set-aside files of {}: {err}", self.out.display());
            }
        }
    }
}

/// Moves the set-aside files back over what an attempt wrote under `names`.
fn restore(out: &Path, names: &[&str]) -> std::io::Result<()> {
    let aside = out.join(DIR);
    for name in names {
        let (kept, target) = (aside.join(name), out.join(name));
        if std::fs::symlink_metadata(&kept).is_ok() {
            remove(&target)?;
            std::fs::rename(&kept, &target)?;
        } else {
            remove(&target)?;
        }
    }
    remove(&aside)
}

/// Restores the files a killed attempt left set aside in `out` (every name it holds).
///
/// # Errors
/// `Io` when they cannot be moved back.
pub fn recover(out: &Path) -> Result<()> {
    let aside = out.join(DIR);
    let Ok(entries) = std::fs::read_dir(&aside) else { return Ok(()) };
    let io = |err| RunError::Io { path: aside.clone(), err };
    for entry in entries {
        let entry = entry.map_err(io)?;
        let target = out.join(entry.file_name());
        remove(&target).map_err(io)?;
        std::fs::rename(entry.path(), &target).map_err(io)?;
    }
    remove(&aside).map_err(io)?;
    tracing::info!("restored the files an interrupted attempt had set aside in {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_attempt_gets_the_old_files_back_and_a_started_one_drops_them(
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        let d = tempfile::tempdir()?;
        let out = d.path();
        std::fs::write(out.join("summary.json"), "old")?;
        std::fs::create_dir(out.join("adapter"))?;
        std::fs::write(out.join("adapter/w"), "old w")?;
        let names = ["summary.json", "adapter", "audit.json"];
        {
            let _aside = SetAside::new(out, &names)?;
            assert!(!out.join("summary.json").exists() && !out.join("adapter").exists());
            // The attempt writes new files, then fails.
            std::fs::write(out.join("summary.json"), "new")?;
            std::fs::write(out.join("audit.json"), "new")?;
        }
        assert_eq!(std::fs::read_to_string(out.join("summary.json"))?, "old");
        assert_eq!(std::fs::read_to_string(out.join("adapter/w"))?, "old w");
        assert!(!out.join("audit.json").exists() && !out.join(DIR).exists());

        let aside = SetAside::new(out, &names)?;
        std::fs::write(out.join("summary.json"), "new")?;
        aside.commit();
        assert_eq!(std::fs::read_to_string(out.join("summary.json"))?, "new");
        assert!(!out.join("adapter").exists() && !out.join(DIR).exists());
        Ok(())
    }

    #[test]
    fn files_left_aside_by_a_killed_attempt_are_restored() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let d = tempfile::tempdir()?;
        let out = d.path();
        std::fs::write(out.join("metrics.jsonl"), "old")?;
        let aside = SetAside::new(out, &["metrics.jsonl"])?;
        std::fs::write(out.join("metrics.jsonl"), "half")?;
        std::mem::forget(aside); // as if killed
        recover(out)?;
        assert_eq!(std::fs::read_to_string(out.join("metrics.jsonl"))?, "old");
        assert!(!out.join(DIR).exists());
        recover(out)?; // nothing set aside: nothing to do
        Ok(())
    }
}
