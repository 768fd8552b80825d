//! Checkpoints: `checkpoints/step-NNNNNN/` holds the trainable tensors and the optimizer's moments
//! (`tensors.safetensors`, f32, bit-exact), the loop state (`state.json`) and, for LoRA, the
//! adapter in PEFT format. Each is written into a temporary folder and renamed into place, so a
//! run killed mid-write leaves only a temporary folder, never a half checkpoint under a real name.
use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};

pub const DIR: &str = "checkpoints";
const TENSORS: &str = "tensors.safetensors";
const STATE: &str = "state.json";
/// sha256 of `tensors.safetensors`, checked when a checkpoint is read (bit rot, edits).
const CHECKSUM: &str = "tensors.sha256";

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Trainable tensors and their AdamW moments, in the optimizer's order.
pub struct Tensors {
    pub params: Vec<Vec<f32>>,
    pub moments: Vec<(Vec<f32>, Vec<f32>)>,
}

fn err(path: &Path, reason: impl ToString) -> TrainError {
    TrainError::Checkpoint { path: path.to_path_buf(), reason: reason.to_string() }
}

/// The folder of the checkpoint taken after optimizer step `step`.
pub fn path(run_dir: &Path, step: u64) -> PathBuf {
    run_dir.join(DIR).join(format!("step-{step:06}"))
}

/// Writes the checkpoint of `step` atomically. `extra` may add files to the temporary folder
/// (the PEFT adapter). An existing checkpoint of the same step (left by a run resumed from an
/// earlier one) is replaced only once the new one is complete.
///
/// # Errors
/// `Checkpoint` naming the folder.
pub fn save(
    run_dir: &Path,
    step: u64,
    params: &[&[f32]],
    moments: &[(Vec<f32>, Vec<f32>)],
    state_json: &str,
    extra: impl FnOnce(&Path) -> tuneguard_model::Result<()>,
) -> Result<PathBuf> {
    let out = path(run_dir, step);
    // The optimizer's moments are empty before its first step; checkpoints come after steps.
    if moments.len() != params.len() {
        return Err(err(&out, format!("{} moments for {} tensors", moments.len(), params.len())));
    }
    let parent = run_dir.join(DIR);
    std::fs::create_dir_all(&parent).map_err(|e| err(&parent, e))?;
    let mut tensors: Vec<(String, [usize; 1], &[f32])> = Vec::with_capacity(3 * params.len());
    for (i, (p, (m, v))) in params.iter().zip(moments).enumerate() {
        tensors.push((format!("param.{i}"), [p.len()], p));
        tensors.push((format!("adam_m.{i}"), [m.len()], m));
        tensors.push((format!("adam_v.{i}"), [v.len()], v));
    }
    // A folder of this step exists only when a resume went back past it (it was unreadable or
    // newer than the checkpoint resumed from): the older checkpoints stay valid meanwhile.
    if out.exists() {
        std::fs::remove_dir_all(&out).map_err(|e| err(&out, e))?;
    }
    tuneguard_model::save::write_dir_atomically(&out, |tmp| {
        let views = tensors.iter().map(|(n, s, d)| (n.as_str(), s.as_slice(), *d));
        tuneguard_model::save::write_f32_safetensors(&tmp.join(TENSORS), views, None)?;
        let io = |e| tuneguard_model::ModelError::io(tmp, e);
        let written = std::fs::read(tmp.join(TENSORS)).map_err(io)?;
        std::fs::write(tmp.join(CHECKSUM), sha256_hex(&written)).map_err(io)?;
        std::fs::write(tmp.join(STATE), state_json).map_err(io)?;
        extra(tmp)
    })
    .map_err(|e| err(&out, e))?;
    Ok(out)
}

/// The saved loop state (`state.json`) of a checkpoint folder.
///
/// # Errors
/// `Checkpoint` when it is missing or unreadable.
pub fn read_state(dir: &Path) -> Result<String> {
    let p = dir.join(STATE);
    std::fs::read_to_string(&p).map_err(|e| err(&p, e))
}

/// Reads the tensors of a checkpoint folder.
///
/// # Errors
/// `Checkpoint` for a missing, truncated or malformed file.
pub fn read_tensors(dir: &Path) -> Result<Tensors> {
    let p = dir.join(TENSORS);
    let bytes = std::fs::read(&p).map_err(|e| err(&p, e))?;
    let sum_path = dir.join(CHECKSUM);
    let want = std::fs::read_to_string(&sum_path).map_err(|e| err(&sum_path, e))?;
    if want.trim() != sha256_hex(&bytes) {
        return Err(err(&p, "sha256 differs from tensors.sha256 (the file was changed or damaged)"));
    }
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(&p, e))?;
    let get = |name: String| -> Result<Vec<f32>> {
        let t = st.tensor(&name).map_err(|e| err(&p, format!("{name}: {e}")))?;
        if t.dtype() != safetensors::Dtype::F32 {
            return Err(err(&p, format!("{name} is not f32")));
        }
        Ok(t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    };
    let n = st.names().iter().filter(|n| n.starts_with("param.")).count();
    let mut out = Tensors { params: Vec::with_capacity(n), moments: Vec::with_capacity(n) };
    for i in 0..n {
        out.params.push(get(format!("param.{i}"))?);
        out.moments.push((get(format!("adam_m.{i}"))?, get(format!("adam_v.{i}"))?));
    }
    Ok(out)
}

/// Complete checkpoints, oldest first: folders named `step-NNNNNN` whose state and tensors read
/// back. Temporary folders of interrupted writes are ignored.
pub fn list(run_dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(run_dir.join(DIR)) else { return Vec::new() };
    let mut out: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            Some((step, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// A checkpoint read back completely.
pub struct Loaded {
    pub step: u64,
    pub dir: PathBuf,
    /// `state.json`.
    pub state: String,
    pub tensors: Tensors,
}

/// The newest checkpoint whose state and tensors read back (checksum included); a damaged
/// newer one is skipped with a warning.
pub fn load_latest(run_dir: &Path) -> Option<Loaded> {
    list(run_dir).into_iter().rev().find_map(|(step, dir)| match (read_state(&dir), read_tensors(&dir)) {
        (Ok(state), Ok(tensors)) => Some(Loaded { step, dir, state, tensors }),
        _ => {
            tracing::warn!(path = %dir.display(), "skipping an unreadable checkpoint");
            None
        }
    })
}

/// (step, folder) of [`load_latest`].
pub fn latest_valid(run_dir: &Path) -> Option<(u64, PathBuf)> {
    load_latest(run_dir).map(|l| (l.step, l.dir))
}

/// Deletes checkpoints other than the newest `keep_last` and those in `keep` (the best), and
/// temporary folders of interrupted writes.
pub fn prune(run_dir: &Path, keep_last: usize, keep: &[u64]) {
    let all = list(run_dir);
    let cut = all.len().saturating_sub(keep_last);
    for (step, dir) in &all[..cut] {
        if !keep.contains(step) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    if let Ok(entries) = std::fs::read_dir(run_dir.join(DIR)) {
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(|n| n.starts_with('.')) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save_simple(run: &Path, step: u64, value: f32) -> PathBuf {
        let p = vec![value; 3];
        let m = vec![(vec![value * 2.0; 3], vec![value * 3.0; 3])];
        save(run, step, &[&p], &m, &format!("{{\"step\":{step}}}"), |_| Ok(())).expect("save")
    }

    #[test]
    fn round_trip_is_bit_exact() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = [vec![0.1f32, -3.5e-8, f32::MIN_POSITIVE], vec![1.0; 5]];
        let m = vec![(vec![1e-9; 3], vec![2e-9; 3]), (vec![0.5; 5], vec![0.25; 5])];
        let refs: Vec<&[f32]> = p.iter().map(|v| v.as_slice()).collect();
        let dir = save(tmp.path(), 7, &refs, &m, "{}", |_| Ok(())).expect("save");
        let back = read_tensors(&dir).expect("read");
        assert_eq!(back.params, p);
        assert_eq!(back.moments, m);
        assert_eq!(latest_valid(tmp.path()).map(|x| x.0), Some(7));
    }

    #[test]
    fn an_interrupted_write_never_replaces_the_last_good_checkpoint() {
        let tmp = tempfile::tempdir().expect("tempdir");
        save_simple(tmp.path(), 2, 1.0);
        // A write that fails half-way (as a crash would) leaves no `step-000004`.
        let failed = save(tmp.path(), 4, &[&[9.0; 3]], &[(vec![0.0; 3], vec![0.0; 3])], "{}", |dir| {
            std::fs::write(dir.join("partial"), "x").expect("write");
            Err(tuneguard_model::ModelError::io(dir, std::io::Error::other("disk full")))
        });
        assert!(failed.is_err());
        assert!(!path(tmp.path(), 4).exists());
        // What a SIGKILL mid-write leaves: a staged folder with a truncated tensors file, and
        // (even) a final-named folder without its state.
        let staged = tmp.path().join(DIR).join(".step-000006.new");
        std::fs::create_dir_all(&staged).expect("mkdir");
        std::fs::write(staged.join(TENSORS), [1u8, 2, 3]).expect("write");
        let broken = path(tmp.path(), 8);
        std::fs::create_dir_all(&broken).expect("mkdir");
        std::fs::write(broken.join(TENSORS), [0u8; 16]).expect("write");
        // A complete checkpoint whose tensors changed afterwards (one flipped bit).
        let flipped = save_simple(tmp.path(), 10, 5.0);
        let mut bytes = std::fs::read(flipped.join(TENSORS)).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(flipped.join(TENSORS), bytes).expect("write");
        let (step, dir) = latest_valid(tmp.path()).expect("a valid checkpoint");
        assert_eq!(step, 2);
        assert_eq!(read_tensors(&dir).expect("read").params, vec![vec![1.0; 3]]);
    }

    #[test]
    fn prune_keeps_the_last_k_and_the_best() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for s in [2, 4, 6, 8, 10] {
            save_simple(tmp.path(), s, s as f32);
        }
        prune(tmp.path(), 2, &[4]);
        let left: Vec<u64> = list(tmp.path()).into_iter().map(|x| x.0).collect();
        assert_eq!(left, vec![4, 8, 10]);
    }
}
