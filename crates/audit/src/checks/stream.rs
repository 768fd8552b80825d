//! Streams a data file through the loader ([`load_reader`]) in chunks of whole lines, so memory
//! stays bounded by the chunk size, and parses each chunk's pieces in parallel.
//!
//! JSONL only: a chunk is cut at line ends and every piece is loaded as its own small JSONL
//! file, its line numbers shifted back to the file's. Pieces after the first get a leading
//! blank line so the loader's "byte-order mark on line 1" rule applies to the file's line 1
//! only. The format is detected by the loader on the first pieces, then fixed for the rest.
//! CSV records may span lines, so CSV files are loaded whole.
use std::io::{BufRead, BufReader, Cursor};
use std::path::Path;

use rayon::prelude::*;
use tuneguard_data::{
    load_file, load_reader, DataFormat, FileKind, LoadOptions, LoadStats, LoadedData, RejectKind, ShapeReport,
    ShapeSource,
};

use crate::error::{AuditError, Result};

/// Bytes read per chunk before it is processed.
const CHUNK_BYTES: usize = 4 << 20;
/// Target bytes per piece parsed by one task.
const PIECE_BYTES: usize = 512 << 10;

/// Calls `f` with the loaded rows of each chunk of `path` in file order (lines are the file's),
/// and returns the file's load counts and record shape.
pub(crate) fn for_each_chunk(
    path: &Path,
    opts: &LoadOptions,
    mut f: impl FnMut(LoadedData) -> Result<()>,
) -> Result<(LoadStats, ShapeReport)> {
    let kind = opts.file_kind.or_else(|| FileKind::from_path(path));
    if kind != Some(FileKind::Jsonl) {
        // load_file reports an unknown extension; CSV is loaded whole.
        let data = load_file(path, &LoadOptions { keep_empty: true, max_reject_fraction: None, ..opts.clone() })?;
        let (stats, shape) = (data.stats.clone(), data.shape());
        f(data)?;
        return Ok((stats, shape));
    }
    let file = std::fs::File::open(path).map_err(|err| AuditError::Io { path: path.into(), err })?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut format = opts.format.clone();
    let mut source = if format.is_some() { ShapeSource::Given } else { ShapeSource::Unknown };
    let mut next_line = 1usize;
    let mut total = LoadStats::default();
    loop {
        let (buf, line_ends) = read_chunk(&mut reader, path)?;
        if buf.is_empty() {
            let shape = ShapeReport {
                file: path.to_path_buf(),
                format: format.filter(|_| source != ShapeSource::Unknown),
                source,
                rows: total.rows,
                rows_not_fitting: total.shape_misfits,
            };
            return Ok((total, shape));
        }
        let pieces = split_pieces(&buf, &line_ends, next_line);
        next_line += line_ends.len();
        let chunk = load_pieces(path, &pieces, &mut format, &mut source)?;
        total.merge(&chunk.stats);
        f(chunk)?;
    }
}

/// Reads whole lines up to about [`CHUNK_BYTES`]; returns the bytes and the end offset of each line.
fn read_chunk<R: BufRead>(reader: &mut R, path: &Path) -> Result<(Vec<u8>, Vec<usize>)> {
    let mut buf = Vec::with_capacity(CHUNK_BYTES + (64 << 10));
    let mut ends = Vec::new();
    while buf.len() < CHUNK_BYTES {
        let n = reader.read_until(b'\n', &mut buf).map_err(|err| AuditError::Io { path: path.into(), err })?;
        if n == 0 {
            break;
        }
        ends.push(buf.len());
    }
    Ok((buf, ends))
}

/// A run of whole lines and the file line of its first line.
struct Piece<'a> {
    bytes: &'a [u8],
    first_line: usize,
}

fn split_pieces<'a>(buf: &'a [u8], line_ends: &[usize], first_line: usize) -> Vec<Piece<'a>> {
    let mut pieces = Vec::new();
    let (mut start, mut start_line) = (0, first_line);
    for (i, &end) in line_ends.iter().enumerate() {
        if end - start >= PIECE_BYTES || i + 1 == line_ends.len() {
            pieces.push(Piece { bytes: &buf[start..end], first_line: start_line });
            start = end;
            start_line = first_line + i + 1;
        }
    }
    pieces
}

/// Loads the pieces (sequentially until the format is known, then in parallel) and merges them;
/// `source` is set when a piece detects the format.
fn load_pieces(
    path: &Path,
    pieces: &[Piece<'_>],
    format: &mut Option<DataFormat>,
    source: &mut ShapeSource,
) -> Result<LoadedData> {
    let mut loaded = Vec::with_capacity(pieces.len());
    let mut rest = pieces;
    while let (None, Some((first, tail))) = (&format, rest.split_first()) {
        let piece = load_piece(path, first, None)?;
        if has_object_rows(&piece) {
            *format = Some(piece.format.clone());
            *source = piece.shape_source;
        }
        loaded.push(piece);
        rest = tail;
    }
    let parallel: Vec<Result<LoadedData>> = rest.par_iter().map(|p| load_piece(path, p, format.clone())).collect();
    for piece in parallel {
        loaded.push(piece?);
    }
    let mut out = LoadedData {
        path: path.to_path_buf(),
        format: format.clone().unwrap_or_else(DataFormat::text),
        shape_source: *source,
        examples: Vec::new(),
        lines: Vec::new(),
        instruction_lens: Vec::new(),
        rejected: Vec::new(),
        stats: LoadStats::default(),
    };
    for d in loaded {
        out.examples.extend(d.examples);
        out.lines.extend(d.lines);
        out.instruction_lens.extend(d.instruction_lens);
        out.rejected.extend(d.rejected);
        out.stats.merge(&d.stats);
    }
    Ok(out)
}

/// Whether the loader saw a JSON object (then it has detected the format, or it would have
/// failed with `UnknownFormat`).
fn has_object_rows(d: &LoadedData) -> bool {
    d.stats.accepted > 0
        || d.rejected
            .iter()
            .any(|r| !matches!(r.kind, RejectKind::InvalidUtf8 | RejectKind::InvalidJson | RejectKind::NotAnObject))
}

fn load_piece(path: &Path, piece: &Piece<'_>, format: Option<DataFormat>) -> Result<LoadedData> {
    let opts = LoadOptions { format, file_kind: Some(FileKind::Jsonl), max_reject_fraction: None, keep_empty: true };
    // After line 1 a leading blank line keeps the loader from stripping a byte-order mark.
    let lead = usize::from(piece.first_line > 1);
    let mut bytes = Vec::with_capacity(piece.bytes.len() + lead);
    bytes.resize(lead, b'\n');
    bytes.extend_from_slice(piece.bytes);
    let mut data = load_reader(path, Cursor::new(bytes), FileKind::Jsonl, &opts)?;
    let shift = |l: usize| l + piece.first_line - 1 - lead;
    data.lines.iter_mut().for_each(|l| *l = shift(*l));
    data.rejected.iter_mut().for_each(|r| r.line = shift(r.line));
    if let ShapeSource::Detected(l) = data.shape_source {
        data.shape_source = ShapeSource::Detected(shift(l));
    }
    data.stats.blank_lines -= lead;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_are_found_in_jsonl_pieces_and_in_csv() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|err| AuditError::Io { path: "tmp".into(), err })?;
        let jsonl = dir.path().join("d.jsonl");
        let text = "\u{FEFF}{\"instruction\": \"Add.\", \"context\": \"2 3\", \"response\": \"5\"}\r\n\n\
                    not json\n{\"instruction\": \"Greet.\", \"response\": \"Hi\"}\n";
        std::fs::write(&jsonl, text).map_err(|err| AuditError::Io { path: jsonl.clone(), err })?;
        let mut got = Vec::new();
        for_each_chunk(&jsonl, &LoadOptions::default(), |c| {
            got.extend(c.lines.iter().copied().zip(c.instruction_lens));
            Ok(())
        })?;
        assert_eq!(got, [(1, Some(4)), (4, Some(6))]);
        let csv = dir.path().join("d.csv");
        let text = "instruction,context,response\n\"Add,\nplease.\",2 3,5\nGreet.,,Hi\n";
        std::fs::write(&csv, text).map_err(|err| AuditError::Io { path: csv.clone(), err })?;
        let mut got = Vec::new();
        for_each_chunk(&csv, &LoadOptions::default(), |c| {
            got.extend(c.lines.iter().copied().zip(c.instruction_lens));
            Ok(())
        })?;
        assert_eq!(got, [(2, Some(12)), (4, Some(6))]);
        let prompts = dir.path().join("p.jsonl");
        std::fs::write(&prompts, "{\"prompt\": \"a\", \"completion\": \"b\"}\n")
            .map_err(|err| AuditError::Io { path: prompts.clone(), err })?;
        for_each_chunk(&prompts, &LoadOptions::default(), |c| {
            assert_eq!(c.instruction_lens, [None]);
            Ok(())
        })?;
        Ok(())
    }
}
