//! Streams a data file through the loader ([`load_reader`]) in chunks of whole lines, so memory
//! stays bounded by the chunk size, and parses each chunk's pieces in parallel.
//!
//! JSONL only: a chunk is cut at line ends and every piece is loaded as its own small JSONL
//! file, its line numbers shifted back to the file's. Pieces after the first get a leading
//! blank line so the loader's "byte-order mark on line 1" rule applies to the file's line 1
//! only. The format is detected by the loader on the first pieces, then fixed for the rest.
//! CSV records may span lines, so CSV files are loaded whole.
//!
//! The loader turns an instruction-format record into a user turn "instruction\n\ncontext", so
//! the near-duplicate check could not tell the instruction from the context. For those rows the
//! instruction field is read again from the raw record (JSONL: one more pass over the line that
//! skips every other value without building it; CSV: [`read_field_values`]) and its length kept
//! when the user turn starts with it, followed by "\n\n" or nothing.
use std::borrow::Cow;
use std::io::{BufRead, BufReader, Cursor};
use std::path::Path;

use rayon::prelude::*;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use tuneguard_data::{
    load_file, load_reader, read_field_values, DataFormat, Example, FileKind, LoadOptions, LoadStats, LoadedData,
    RejectKind, ShapeReport, ShapeSource,
};

use crate::error::{AuditError, Result};

/// The loaded rows of a chunk and, per example, the byte length of the instruction at the start
/// of its user turn (instruction-format rows; `None` for other formats, or when the record
/// could not be matched).
pub(crate) struct Chunk {
    pub data: LoadedData,
    pub instruction_lens: Vec<Option<usize>>,
}

/// Bytes read per chunk before it is processed.
const CHUNK_BYTES: usize = 4 << 20;
/// Target bytes per piece parsed by one task.
const PIECE_BYTES: usize = 512 << 10;

/// Calls `f` with the loaded rows of each chunk of `path` in file order (lines are the file's),
/// and returns the file's load counts and record shape.
pub(crate) fn for_each_chunk(
    path: &Path,
    opts: &LoadOptions,
    mut f: impl FnMut(Chunk) -> Result<()>,
) -> Result<(LoadStats, ShapeReport)> {
    let kind = opts.file_kind.or_else(|| FileKind::from_path(path));
    if kind != Some(FileKind::Jsonl) {
        // load_file reports an unknown extension; CSV is loaded whole.
        let data = load_file(path, &LoadOptions { keep_empty: true, max_reject_fraction: None, ..opts.clone() })?;
        let (stats, shape) = (data.stats.clone(), data.shape());
        let instruction_lens = whole_file_instruction_lens(path, &data);
        f(Chunk { data, instruction_lens })?;
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
        total.merge(&chunk.data.stats);
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
) -> Result<Chunk> {
    let mut loaded = Vec::with_capacity(pieces.len());
    let mut rest = pieces;
    while let (None, Some((first, tail))) = (&format, rest.split_first()) {
        let piece = load_piece(path, first, None)?;
        if has_object_rows(&piece.data) {
            *format = Some(piece.data.format.clone());
            *source = piece.data.shape_source;
        }
        loaded.push(piece);
        rest = tail;
    }
    let parallel: Vec<Result<Chunk>> = rest.par_iter().map(|p| load_piece(path, p, format.clone())).collect();
    for piece in parallel {
        loaded.push(piece?);
    }
    let mut instruction_lens = Vec::new();
    let mut out = LoadedData {
        path: path.to_path_buf(),
        format: format.clone().unwrap_or_else(DataFormat::text),
        shape_source: *source,
        examples: Vec::new(),
        lines: Vec::new(),
        rejected: Vec::new(),
        stats: LoadStats::default(),
    };
    for Chunk { data: d, instruction_lens: lens } in loaded {
        out.examples.extend(d.examples);
        out.lines.extend(d.lines);
        out.rejected.extend(d.rejected);
        out.stats.merge(&d.stats);
        instruction_lens.extend(lens);
    }
    Ok(Chunk { data: out, instruction_lens })
}

/// Whether the loader saw a JSON object (then it has detected the format, or it would have
/// failed with `UnknownFormat`).
fn has_object_rows(d: &LoadedData) -> bool {
    d.stats.accepted > 0
        || d.rejected
            .iter()
            .any(|r| !matches!(r.kind, RejectKind::InvalidUtf8 | RejectKind::InvalidJson | RejectKind::NotAnObject))
}

fn load_piece(path: &Path, piece: &Piece<'_>, format: Option<DataFormat>) -> Result<Chunk> {
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
    let instruction_lens = piece_instruction_lens(piece, &data);
    Ok(Chunk { data, instruction_lens })
}

/// The byte length of `instruction` when the user turn of `e` starts with it, followed by
/// "\n\n" and the context or by nothing (as the loader builds an instruction-format example).
fn instruction_len(e: &Example, instruction: &str) -> Option<usize> {
    let Example::Chat(m) = e else { return None };
    let user = m.first().filter(|m| m.role == "user")?;
    let rest = user.content.strip_prefix(instruction)?;
    (rest.is_empty() || rest.starts_with("\n\n")).then_some(instruction.len())
}

/// [`Chunk::instruction_lens`] of a piece's examples, from the piece's raw lines.
fn piece_instruction_lens(piece: &Piece<'_>, data: &LoadedData) -> Vec<Option<usize>> {
    let DataFormat::Instruction { instruction: field, .. } = &data.format else {
        return vec![None; data.examples.len()];
    };
    let mut raw = piece.bytes.split(|&b| b == b'\n');
    // File line of the next line `raw` yields.
    let mut next = piece.first_line;
    let mut bytes: &[u8] = &[];
    data.examples
        .iter()
        .zip(&data.lines)
        .map(|(e, &line)| {
            while next <= line {
                bytes = raw.next().unwrap_or_default();
                next += 1;
            }
            let mut b = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            if line == 1 {
                b = b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b);
            }
            instruction_len(e, &string_field(b, field)?)
        })
        .collect()
}

/// [`Chunk::instruction_lens`] of a file loaded whole (CSV).
fn whole_file_instruction_lens(path: &Path, data: &LoadedData) -> Vec<Option<usize>> {
    let none = || vec![None; data.examples.len()];
    let DataFormat::Instruction { instruction: field, .. } = &data.format else { return none() };
    match read_field_values(path, field) {
        Ok(values) => data.examples.iter().zip(&data.lines).map(|(e, l)| instruction_len(e, values.get(l)?)).collect(),
        Err(err) => {
            tracing::debug!("{}: instructions not re-read ({err}); rows are compared whole", path.display());
            none()
        }
    }
}

/// The string value of key `field` of a JSON object (the last one, as serde_json's map keeps),
/// parsed without building the object: other values are skipped, strings without escapes
/// borrowed. `None` when the line is not such an object.
fn string_field<'a>(line: &'a [u8], field: &str) -> Option<Cow<'a, str>> {
    struct Str<'de>(Cow<'de, str>);
    impl<'de> serde::Deserialize<'de> for Str<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Str<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Str<'de>, E> {
                    Ok(Str(Cow::Borrowed(v)))
                }
                fn visit_str<E>(self, v: &str) -> std::result::Result<Str<'de>, E> {
                    Ok(Str(Cow::Owned(v.to_owned())))
                }
            }
            d.deserialize_str(V)
        }
    }
    struct Field<'f>(&'f str);
    impl<'de> DeserializeSeed<'de> for Field<'_> {
        type Value = Option<Cow<'de, str>>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Field<'_> {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<Str<'de>>()? {
                if key.0 == self.0 {
                    found = map.next_value::<Option<Str<'de>>>()?.map(|s| s.0);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(line);
    Field(field).deserialize(&mut de).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tuneguard_model::chat::ChatMessage;

    #[test]
    fn string_field_takes_the_last_value_and_skips_the_rest() {
        let line =
            br#"{"a": [1, {"instruction": "no"}], "instruction": "first", "instruction": "Sum \"these\".", "b": null}"#;
        assert_eq!(string_field(line, "instruction").as_deref(), Some("Sum \"these\"."));
        assert_eq!(string_field(br#"{"instruction": "x\ny"}"#, "instruction").as_deref(), Some("x\ny"));
        assert_eq!(string_field(br#"{"instruction": null}"#, "instruction"), None);
        assert_eq!(string_field(br#"{"instruction": 3}"#, "instruction"), None);
        assert_eq!(string_field(b"[1]", "instruction"), None);
        assert_eq!(string_field(br#"{"other": "x"}"#, "instruction"), None);
    }

    #[test]
    fn instruction_len_matches_the_loader_layout_only() {
        let chat = |user: &str| Example::Chat(vec![ChatMessage::new("user", user), ChatMessage::new("assistant", "a")]);
        assert_eq!(instruction_len(&chat("Sum.\n\n2 3"), "Sum."), Some(4));
        assert_eq!(instruction_len(&chat("Sum."), "Sum."), Some(4));
        assert_eq!(instruction_len(&chat("Sum. 2 3"), "Sum."), None);
        assert_eq!(instruction_len(&chat("Other"), "Sum."), None);
        assert_eq!(instruction_len(&Example::Text("Sum.".into()), "Sum."), None);
    }

    #[test]
    fn instructions_are_found_in_jsonl_pieces_and_in_csv() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|err| AuditError::Io { path: "tmp".into(), err })?;
        let jsonl = dir.path().join("d.jsonl");
        let text = "\u{FEFF}{\"instruction\": \"Add.\", \"context\": \"2 3\", \"response\": \"5\"}\r\n\n\
                    not json\n{\"instruction\": \"Greet.\", \"response\": \"Hi\"}\n";
        std::fs::write(&jsonl, text).map_err(|err| AuditError::Io { path: jsonl.clone(), err })?;
        let mut got = Vec::new();
        for_each_chunk(&jsonl, &LoadOptions::default(), |c| {
            got.extend(c.data.lines.iter().copied().zip(c.instruction_lens));
            Ok(())
        })?;
        assert_eq!(got, [(1, Some(4)), (4, Some(6))]);
        let csv = dir.path().join("d.csv");
        let text = "instruction,context,response\n\"Add,\nplease.\",2 3,5\nGreet.,,Hi\n";
        std::fs::write(&csv, text).map_err(|err| AuditError::Io { path: csv.clone(), err })?;
        let mut got = Vec::new();
        for_each_chunk(&csv, &LoadOptions::default(), |c| {
            got.extend(c.data.lines.iter().copied().zip(c.instruction_lens));
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
