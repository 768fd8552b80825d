//! Seeded train/validation split, optionally stratified by a per-example label.
//!
//! Validation size: `Count(k)` takes k examples; `Fraction(f)` takes round(f·n) (half away from
//! zero), at least 1. Stratified, the k seats are shared among strata in proportion to their
//! sizes by the largest-remainder (Hamilton) method, with exact integer quotas k·n_s/n: each
//! stratum gets ⌊k·n_s/n⌋, the seats left go one each to the largest remainders (ties: label
//! order, "missing" first). A stratum always keeps at least one training example (so a stratum
//! of 1 stays in train); seats it cannot take go, in the same order, to strata with room. A
//! small stratum whose quota rounds down gets no validation example.
//!
//! Members are drawn by shuffling with ChaCha12 (`rand_chacha::ChaCha12Rng`, the generator
//! `rand` 0.9's `StdRng` is, named so that a `rand` upgrade cannot change it) seeded from `seed`:
//! the split is reproducible for a seed.
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde_json::Value;

use crate::csv_records::{CsvItem, CsvRecords};
use crate::error::DataError;
use crate::load::FileKind;

/// How many examples go to validation (`data.val_size`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValSize {
    Count(usize),
    Fraction(f64),
}

impl std::fmt::Display for ValSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValSize::Count(k) => write!(f, "{k}"),
            ValSize::Fraction(x) => write!(f, "{x}"),
        }
    }
}

/// Why a split cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    #[error("data.val_size: cannot split an empty data set")]
    Empty,
    #[error("data.val_size = {0}: a fraction must be strictly between 0 and 1")]
    BadFraction(f64),
    #[error("data.val_size = 0: a validation count must be at least 1")]
    ZeroCount,
    #[error("data.val_size = {size}: takes {val} of {n} examples, leaving no training data")]
    NoTrainingLeft { size: ValSize, val: usize, n: usize },
    #[error("stratification: {labels} labels given for {n} examples")]
    StrataLength { labels: usize, n: usize },
    #[error(
        "data.val_size = {size}: asks for {val} validation examples, but keeping one training example per stratum allows at most {max}"
    )]
    StrataTooSmall { size: ValSize, val: usize, max: usize },
}

/// Returns `(train_indices, val_indices)` into `0..n`, both sorted ascending (the shuffle only
/// decides membership, so training keeps file order). Deterministic for a seed. With `strata`
/// (one label per example; `None` is its own "missing" stratum) the seats are shared as the
/// module documentation says.
///
/// # Errors
/// See [`SplitError`]: empty data, a fraction outside (0, 1), a count of 0, no training data
/// left, a label list of the wrong length, or strata too small for the validation size.
pub fn split_indices(
    n: usize,
    size: ValSize,
    seed: u64,
    strata: Option<&[Option<String>]>,
) -> Result<(Vec<usize>, Vec<usize>), SplitError> {
    let k = val_count(n, size)?;
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let mut val = match strata {
        None => {
            let mut all: Vec<usize> = (0..n).collect();
            all.shuffle(&mut rng);
            all.truncate(k);
            all
        }
        Some(labels) => stratified(labels, n, k, size, &mut rng)?,
    };
    val.sort_unstable();
    let mut is_val = vec![false; n];
    val.iter().for_each(|&i| is_val[i] = true);
    let train = (0..n).filter(|&i| !is_val[i]).collect();
    Ok((train, val))
}

/// Validation size for `n` examples (see the module documentation).
fn val_count(n: usize, size: ValSize) -> Result<usize, SplitError> {
    if n == 0 {
        return Err(SplitError::Empty);
    }
    let k = match size {
        ValSize::Count(0) => return Err(SplitError::ZeroCount),
        ValSize::Count(k) => k,
        ValSize::Fraction(f) if !(f > 0.0 && f < 1.0) => return Err(SplitError::BadFraction(f)),
        ValSize::Fraction(f) => ((f * n as f64).round() as usize).max(1),
    };
    if k >= n {
        return Err(SplitError::NoTrainingLeft { size, val: k, n });
    }
    Ok(k)
}

fn stratified(
    labels: &[Option<String>],
    n: usize,
    k: usize,
    size: ValSize,
    rng: &mut ChaCha12Rng,
) -> Result<Vec<usize>, SplitError> {
    if labels.len() != n {
        return Err(SplitError::StrataLength { labels: labels.len(), n });
    }
    let mut groups: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        groups.entry(l.as_deref()).or_default().push(i);
    }
    let sizes: Vec<usize> = groups.values().map(Vec::len).collect();
    let seats = allocate(&sizes, k).ok_or_else(|| {
        let max = sizes.iter().map(|s| s - 1).sum();
        SplitError::StrataTooSmall { size, val: k, max }
    })?;
    let mut val = Vec::with_capacity(k);
    for (mut members, take) in groups.into_values().zip(seats) {
        members.shuffle(rng);
        val.extend_from_slice(&members[..take]);
    }
    Ok(val)
}

/// Largest-remainder allocation of `k` seats over strata of `sizes` (n = Σ sizes), each capped
/// at size − 1. `None` when the caps hold fewer than `k` seats.
pub(crate) fn allocate(sizes: &[usize], k: usize) -> Option<Vec<usize>> {
    let n: usize = sizes.iter().sum();
    let caps: Vec<usize> = sizes.iter().map(|s| s.saturating_sub(1)).collect();
    if caps.iter().sum::<usize>() < k || n == 0 {
        return None;
    }
    // Integer quotas: k·n_s = q·n + rem, exact (u128 against overflow).
    let quota = |s: usize| ((k as u128 * s as u128) / n as u128, (k as u128 * s as u128) % n as u128);
    let mut seats: Vec<usize> = sizes.iter().zip(&caps).map(|(&s, &c)| (quota(s).0 as usize).min(c)).collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(quota(sizes[i]).1)); // stable: ties keep label order
    let mut left = k - seats.iter().sum::<usize>();
    while left > 0 {
        for &i in &order {
            if left > 0 && seats[i] < caps[i] {
                seats[i] += 1;
                left -= 1;
            }
        }
    }
    Some(seats)
}

/// Reads the string value of `field` for each data line of a JSONL or CSV file, keyed by the
/// 1-based line number as in [`crate::LoadedData::lines`], so loaded examples can be stratified.
/// Strings are taken as they are, numbers and booleans stringified, arrays and objects as
/// compact JSON; an absent or null field, an empty or whitespace-only string, and lines that do
/// not parse have no entry.
///
/// # Errors
/// `InvalidOption` for an unknown extension, `Io` when the file cannot be read,
/// `InvalidRecord` for a CSV header without the column `field`.
pub fn read_field_values(path: &Path, field: &str) -> Result<HashMap<usize, String>, DataError> {
    let kind = FileKind::from_path(path).ok_or_else(|| DataError::InvalidOption {
        field: "file_kind".into(),
        reason: format!("{}: unknown extension; expected .jsonl, .ndjson, .json or .csv", path.display()),
    })?;
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader = BufReader::new(file);
    match kind {
        FileKind::Jsonl => jsonl_values(path, reader, field),
        FileKind::Csv => csv_values(path, reader, field),
    }
}

fn keep(value: &Value) -> Option<String> {
    let s = match value {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    (!s.trim().is_empty()).then_some(s)
}

/// Line numbering as `load::read_jsonl`: every physical line counts, a UTF-8 BOM is skipped.
fn jsonl_values(path: &Path, mut reader: impl BufRead, field: &str) -> Result<HashMap<usize, String>, DataError> {
    let mut out = HashMap::new();
    let mut buf = Vec::new();
    let mut line = 0usize;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(|e| DataError::io(path, e))? == 0 {
            return Ok(out);
        }
        line += 1;
        let bytes = if line == 1 { buf.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&buf) } else { &buf };
        if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(bytes) {
            if let Some(v) = obj.get(field).and_then(keep) {
                out.insert(line, v);
            }
        }
    }
}

/// Line numbering as `load::read_csv` (the same reader): the line where the record starts.
fn csv_values(path: &Path, reader: impl BufRead, field: &str) -> Result<HashMap<usize, String>, DataError> {
    let mut csv = CsvRecords::new(reader);
    let header_err = |reason: String| DataError::InvalidRecord {
        path: path.to_path_buf(),
        line: 1,
        field: field.to_string(),
        reason,
    };
    let io = |e: std::io::Error| DataError::io(path, e);
    let mut names: Vec<String> = Vec::new();
    loop {
        match csv.next_item().map_err(io)? {
            None => break,
            Some(CsvItem::Blank { .. }) => continue,
            Some(CsvItem::Malformed { reason, .. }) => return Err(header_err(reason)),
            Some(CsvItem::Record { fields, .. }) => {
                names = fields.iter().map(|h| String::from_utf8_lossy(h).trim().to_string()).collect();
                break;
            }
        }
    }
    let Some(col) = names.iter().position(|n| n == field) else {
        return Err(header_err(format!("column missing from the CSV header {names:?}")));
    };
    let mut out = HashMap::new();
    while let Some(item) = csv.next_item().map_err(io)? {
        if let CsvItem::Record { line, fields, .. } = item {
            let cell = fields.get(col).and_then(|c| std::str::from_utf8(c).ok());
            if let Some(v) = cell.map(|c| Value::String(c.to_string())).as_ref().and_then(keep) {
                out.insert(line, v);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "split_tests.rs"]
mod tests;
