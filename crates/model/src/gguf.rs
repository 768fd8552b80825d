//! GGUF container reader (format v2/v3, as written by llama.cpp's `gguf` library).
//!
//! Spec: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>. The file is memory-mapped;
//! tensor data is borrowed from the map and only copied when dequantized.
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{ModelError, Result};
use crate::quant::GgmlType;

pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// Any integer type as u64 (negative values are rejected).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v as i64),
            Value::I16(v) => Some(v as i64),
            Value::I32(v) => Some(v as i64),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where one tensor lives in the file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in GGUF order: `dims[0]` is the contiguous (fastest) one.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Byte offset from the start of the file.
    pub offset: usize,
    pub n_bytes: usize,
}

impl TensorInfo {
    /// Shape in row-major (PyTorch/Hugging Face) order, e.g. `(out, in)` for a linear weight.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
    pub fn n_elements(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }
}

/// A parsed, memory-mapped GGUF file.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    mmap: Mmap,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| {
            format!("truncated: needed {n} bytes at offset {} but the file has {}", self.pos, self.buf.len())
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let len = self.u64()?;
        let len = usize::try_from(len).map_err(|_| format!("string length {len} too large"))?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("string at offset {} is not UTF-8", self.pos - len))
    }
    fn value(&mut self, ty: u32, depth: usize) -> std::result::Result<Value, String> {
        Ok(match ty {
            0 => Value::U8(self.arr::<1>()?[0]),
            1 => Value::I8(self.arr::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.arr()?)),
            3 => Value::I16(i16::from_le_bytes(self.arr()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.arr()?)),
            6 => Value::F32(f32::from_le_bytes(self.arr()?)),
            7 => Value::Bool(self.arr::<1>()?[0] != 0),
            8 => Value::String(self.string()?),
            9 if depth < 4 => {
                let item_ty = self.u32()?;
                let n = self.u64()?;
                // Each item takes at least one byte: refuse counts the file cannot hold.
                if n > (self.buf.len() - self.pos) as u64 {
                    return Err(format!("array of {n} items does not fit in the file"));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(item_ty, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.arr()?)),
            12 => Value::F64(f64::from_le_bytes(self.arr()?)),
            other => return Err(format!("unknown metadata value type {other}")),
        })
    }
}

impl GgufFile {
    /// Opens and parses a GGUF file; checks every tensor lies inside the file.
    ///
    /// # Errors
    /// `Io` when the file cannot be read, `InvalidGguf` for a bad magic, an unsupported version,
    /// truncation or inconsistent tensor records, `UnsupportedQuantization` for unknown types.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the map is read-only; the file is not expected to change while we hold it.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let invalid = |reason: String| ModelError::InvalidGguf { path: path.to_path_buf(), reason };
        let mut c = Cursor { buf: &mmap, pos: 0 };
        let magic = c.arr::<4>().map_err(invalid)?;
        if &magic != GGUF_MAGIC {
            return Err(ModelError::UnknownFormat { path: path.to_path_buf() });
        }
        let version = c.u32().map_err(invalid)?;
        if !(2..=3).contains(&version) {
            return Err(invalid(format!("unsupported GGUF version {version} (supported: 2, 3)")));
        }
        let n_tensors = c.u64().map_err(invalid)?;
        let n_kv = c.u64().map_err(invalid)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string().map_err(invalid)?;
            let ty = c.u32().map_err(invalid)?;
            let value = c.value(ty, 0).map_err(|e| invalid(format!("metadata `{key}`: {e}")))?;
            metadata.insert(key, value);
        }
        let mut raw = Vec::new();
        for _ in 0..n_tensors {
            let name = c.string().map_err(invalid)?;
            let n_dims = c.u32().map_err(invalid)?;
            if n_dims > 4 {
                return Err(invalid(format!("tensor `{name}` has {n_dims} dimensions (max 4)")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64().map_err(invalid)?);
            }
            let ty_id = c.u32().map_err(invalid)?;
            let offset = c.u64().map_err(invalid)?;
            raw.push((name, dims, ty_id, offset));
        }
        let alignment = metadata.get("general.alignment").and_then(Value::as_u64).unwrap_or(DEFAULT_ALIGNMENT);
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(invalid(format!("general.alignment {alignment} is not a power of two")));
        }
        let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(raw.len());
        for (name, dims, ty_id, offset) in raw {
            let ty = GgmlType::from_id(ty_id).ok_or_else(|| ModelError::UnsupportedQuantization {
                path: path.to_path_buf(),
                tensor: name.clone(),
                ty: format!("ggml type id {ty_id}"),
            })?;
            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| invalid(format!("tensor `{name}` dims {dims:?} overflow")))?;
            let row = dims.first().copied().unwrap_or(1);
            if row % ty.block_size() as u64 != 0 {
                return Err(invalid(format!(
                    "tensor `{name}`: row length {row} is not a multiple of the {ty:?} block size {}",
                    ty.block_size()
                )));
            }
            let n_bytes = n_elements / ty.block_size() as u64 * ty.type_size() as u64;
            let start = data_start + offset;
            if start.checked_add(n_bytes).is_none_or(|end| end > mmap.len() as u64) {
                return Err(invalid(format!(
                    "truncated: tensor `{name}` needs bytes {start}..{} but the file has {} bytes",
                    start.saturating_add(n_bytes),
                    mmap.len()
                )));
            }
            tensors.push(TensorInfo { name, dims, ty, offset: start as usize, n_bytes: n_bytes as usize });
        }
        Ok(GgufFile { path: path.to_path_buf(), version, metadata, tensors, mmap })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Raw bytes of a tensor (still quantized).
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        &self.mmap[info.offset..info.offset + info.n_bytes]
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// Required metadata value, or an `InvalidGguf` error naming the key.
    pub fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| ModelError::InvalidGguf {
            path: self.path.clone(),
            reason: format!("missing metadata key `{key}`"),
        })
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }

    /// A metadata array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Option<Vec<&str>> {
        self.get(key)?.as_array()?.iter().map(Value::as_str).collect()
    }
}
