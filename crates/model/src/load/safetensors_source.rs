//! Tensors from a Hugging Face directory: `model.safetensors` or a sharded
//! `model.safetensors.index.json`. F32, F16 and BF16 are widened to f32.
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::error::{ModelError, Result};
use crate::load::{HostTensor, TensorSource};

struct Shard {
    path: PathBuf,
    mmap: Mmap,
}

pub struct SafetensorsSource {
    dir: PathBuf,
    shards: Vec<Shard>,
    /// Tensor name -> shard index.
    index: HashMap<String, usize>,
    /// Storage dtype -> (tensors, parameters).
    dtypes: std::collections::BTreeMap<String, (usize, usize)>,
    bytes: u64,
}

fn invalid(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::InvalidSafetensors { path: path.to_path_buf(), reason: reason.into() }
}

/// Why a safetensors file is shorter than its own header says, if it is: the safetensors crate
/// reports that only as "header too small" or "incomplete metadata".
fn truncation(buf: &[u8]) -> Option<String> {
    let len = buf.len();
    let Some(n) = buf.get(..8) else {
        return Some(format!("truncated: the file has {len} bytes, less than the 8-byte header length"));
    };
    let n = u64::from_le_bytes(n.try_into().ok()?);
    // Larger headers than the format allows (100 MB) mean garbage, not truncation.
    if n > 100_000_000 {
        return None;
    }
    let header_end = 8 + n;
    if header_end > len as u64 {
        return Some(format!("truncated: the header needs bytes 8..{header_end} but the file has {len} bytes"));
    }
    let header: serde_json::Value = serde_json::from_slice(&buf[8..header_end as usize]).ok()?;
    let data_end = header
        .as_object()?
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    let need = header_end.checked_add(data_end)?;
    (need > len as u64).then(|| format!("truncated: the tensor data needs {need} bytes but the file has {len} bytes"))
}

impl SafetensorsSource {
    /// Opens the weights of a Hugging Face model directory and checks every shard's header.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.is_file() {
            vec![single]
        } else if index_path.is_file() {
            let text = std::fs::read_to_string(&index_path).map_err(|e| ModelError::io(&index_path, e))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| invalid(&index_path, e.to_string()))?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| invalid(&index_path, "no `weight_map` object"))?;
            let mut names: Vec<&str> = map.values().filter_map(|f| f.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            names.into_iter().map(|n| dir.join(n)).collect()
        } else {
            return Err(invalid(dir, "no model.safetensors or model.safetensors.index.json in the directory"));
        };
        Self::open_files(dir, &files)
    }

    pub fn open_files(dir: &Path, files: &[PathBuf]) -> Result<Self> {
        let mut shards = Vec::new();
        let mut index = HashMap::new();
        let mut dtypes = std::collections::BTreeMap::new();
        let mut bytes = 0;
        for path in files {
            let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
            // SAFETY: read-only map of a file we do not modify.
            let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
            let st = SafeTensors::deserialize(&mmap)
                .map_err(|e| invalid(path, truncation(&mmap).unwrap_or_else(|| e.to_string())))?;
            for (name, view) in st.tensors() {
                let e = dtypes.entry(format!("{:?}", view.dtype())).or_insert((0, 0));
                e.0 += 1;
                e.1 += view.shape().iter().product::<usize>();
                index.insert(name, shards.len());
            }
            drop(st);
            bytes += mmap.len() as u64;
            shards.push(Shard { path: path.clone(), mmap });
        }
        Ok(SafetensorsSource { dir: dir.to_path_buf(), shards, index, dtypes, bytes })
    }

    /// Storage dtype (`F32`, `BF16`...) -> number of tensors.
    pub fn dtype_counts(&self) -> std::collections::BTreeMap<String, usize> {
        self.dtypes.iter().map(|(k, v)| (k.clone(), v.0)).collect()
    }

    /// Storage dtype -> (tensors, parameters), and the total bytes of the shards.
    pub fn summary(&self) -> (std::collections::BTreeMap<String, (usize, usize)>, u64) {
        (self.dtypes.clone(), self.bytes)
    }

    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }
}

/// Converts raw little-endian bytes of a float dtype to f32.
pub fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        _ => return None,
    })
}

impl TensorSource for SafetensorsSource {
    fn load(&self, name: &str) -> Result<Option<HostTensor>> {
        let Some(&i) = self.index.get(name) else {
            return Ok(None);
        };
        let shard = &self.shards[i];
        let st = SafeTensors::deserialize(&shard.mmap).map_err(|e| invalid(&shard.path, e.to_string()))?;
        let view = st.tensor(name).map_err(|e| invalid(&shard.path, e.to_string()))?;
        let data = to_f32(view.dtype(), view.data()).ok_or_else(|| ModelError::UnsupportedQuantization {
            path: shard.path.clone(),
            tensor: name.to_string(),
            ty: format!("{:?}", view.dtype()),
        })?;
        Ok(Some(HostTensor { shape: view.shape().to_vec(), data, packed: None }))
    }

    fn origin(&self) -> &Path {
        &self.dir
    }
}
