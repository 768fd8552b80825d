//! A strict CSV record reader (RFC 4180: `,` between fields, `"` around a field that holds
//! commas, quotes or line ends, `""` for a quote inside one), written by hand.
//!
//! Why not the `csv` crate: it is lenient by design and has no strict mode. A field whose
//! closing quote is missing (`"Say hi,,hello`) stays open across the line end, so the next row
//! becomes part of that field until some later quote closes it; whatever follows that quote is
//! appended to the field. Eleven rows in, ten records out, nothing reported, and the merged text
//! is trained on. A quote closed before other text (`"abc"def`) loses its quotes the same way.
//! Neither can be seen in the records it returns, only in the raw bytes, so this reader checks
//! the bytes itself: after a closing quote must come a comma or the end of the line, and a quote
//! must be closed before the end of the file. A record that breaks either rule is malformed; its
//! first physical line is reported ([`CsvItem::Malformed`]) and reading starts again on the next
//! line, so one bad quote costs one row, not the rows after it. Quoted fields that hold line
//! ends, commas and doubled quotes are read as the `csv` crate reads them.
//!
//! Lines end with `\n` or `\r\n`; a UTF-8 byte-order mark before the first line is skipped;
//! empty lines are skipped (as the `csv` crate skips them) and reported as [`CsvItem::Blank`].
//! A quote inside an unquoted field is kept as a character, as the `csv` crate does.
use std::collections::VecDeque;
use std::io::BufRead;

/// One item read from a CSV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CsvItem {
    /// A record: the 1-based line it starts on, its raw text (without the final line end), and
    /// its fields, unquoted.
    Record { line: usize, raw: Vec<u8>, fields: Vec<Vec<u8>> },
    /// The first line of a malformed record (without its line end) and why; reading goes on
    /// with the next line.
    Malformed { line: usize, raw: Vec<u8>, reason: String },
    /// An empty line.
    Blank { line: usize },
}

/// Reads [`CsvItem`]s from a byte stream.
pub(crate) struct CsvRecords<R> {
    reader: R,
    /// Physical lines read ahead (each with its line end), the first being line `first_line`.
    lines: VecDeque<Vec<u8>>,
    first_line: usize,
    started: bool,
}

/// The length of `line` without its `\n` or `\r\n` (or a final `\r` at the end of the file).
fn content_len(line: &[u8]) -> usize {
    let mut n = line.len();
    if n > 0 && line[n - 1] == b'\n' {
        n -= 1;
    }
    if n > 0 && line[n - 1] == b'\r' {
        n -= 1;
    }
    n
}

/// How a byte reads in a reason: `"x"`, or its escape.
fn shown(b: u8) -> String {
    format!("{:?}", char::from(b))
}

enum Parsed {
    /// The record used lines `0..lines`.
    Record {
        lines: usize,
        fields: Vec<Vec<u8>>,
    },
    Malformed(String),
}

impl<R: BufRead> CsvRecords<R> {
    pub fn new(reader: R) -> Self {
        CsvRecords { reader, lines: VecDeque::new(), first_line: 1, started: false }
    }

    /// Makes sure line `k` (0-based, counted from `first_line`) has been read; false at the end.
    fn fill(&mut self, k: usize) -> std::io::Result<bool> {
        while self.lines.len() <= k {
            let mut buf = Vec::new();
            if self.reader.read_until(b'\n', &mut buf)? == 0 {
                return Ok(false);
            }
            if !self.started {
                self.started = true;
                if let Some(rest) = buf.strip_prefix(b"\xEF\xBB\xBF") {
                    buf = rest.to_vec();
                }
            }
            self.lines.push_back(buf);
        }
        Ok(true)
    }

    /// The next item; `None` at the end of the input.
    ///
    /// # Errors
    /// Read errors of the underlying reader.
    pub fn next_item(&mut self) -> std::io::Result<Option<CsvItem>> {
        if !self.fill(0)? {
            return Ok(None);
        }
        let line = self.first_line;
        if content_len(&self.lines[0]) == 0 {
            self.consume(1);
            return Ok(Some(CsvItem::Blank { line }));
        }
        match self.parse()? {
            Parsed::Record { lines, fields } => {
                let mut raw: Vec<u8> = Vec::new();
                for l in self.lines.range(..lines) {
                    raw.extend_from_slice(l);
                }
                raw.truncate(raw.len() - (self.lines[lines - 1].len() - content_len(&self.lines[lines - 1])));
                self.consume(lines);
                Ok(Some(CsvItem::Record { line, raw, fields }))
            }
            Parsed::Malformed(reason) => {
                let mut raw = self.lines[0].clone();
                raw.truncate(content_len(&raw));
                self.consume(1);
                Ok(Some(CsvItem::Malformed { line, raw, reason }))
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.lines.drain(..n);
        self.first_line += n;
    }

    /// Parses the record that starts at the first buffered line (which is not empty).
    fn parse(&mut self) -> std::io::Result<Parsed> {
        let mut fields: Vec<Vec<u8>> = Vec::new();
        let (mut k, mut i) = (0usize, 0usize);
        loop {
            let line = &self.lines[k];
            let end = content_len(line);
            if i < end && line[i] == b'"' {
                // A quoted field: up to a quote that is not doubled.
                let opened = self.first_line + k;
                let mut field = Vec::new();
                i += 1;
                loop {
                    let line = &self.lines[k];
                    match line[i..].iter().position(|&b| b == b'"') {
                        Some(j) => {
                            field.extend_from_slice(&line[i..i + j]);
                            i += j + 1;
                            if line.get(i) == Some(&b'"') {
                                field.push(b'"');
                                i += 1;
                                continue;
                            }
                            let end = content_len(line);
                            let n = fields.len() + 1;
                            if i >= end {
                                fields.push(field);
                                return Ok(Parsed::Record { lines: k + 1, fields });
                            }
                            if line[i] == b',' {
                                fields.push(field);
                                i += 1;
                                break;
                            }
                            let closed = self.first_line + k;
                            let next = shown(line[i]);
                            return Ok(Parsed::Malformed(if closed == opened {
                                format!(
                                    "invalid CSV: the closing quote of field {n} is followed by {next}, not by a comma \
                                     or the end of the line"
                                )
                            } else {
                                format!(
                                    "invalid CSV: field {n} opens a quote that the quote on line {closed} does not \
                                     properly close (it is followed by {next}, not by a comma or the end of the line); \
                                     a closing quote is probably missing on this line, which is rejected alone"
                                )
                            }));
                        }
                        None => {
                            field.extend_from_slice(&line[i..]);
                            k += 1;
                            i = 0;
                            if !self.fill(k)? {
                                let n = fields.len() + 1;
                                return Ok(Parsed::Malformed(format!(
                                    "invalid CSV: field {n} opens a quote that is never closed; the line is rejected \
                                     alone"
                                )));
                            }
                        }
                    }
                }
                continue;
            }
            // An unquoted field: up to the next comma or the end of the line.
            match line[i..end].iter().position(|&b| b == b',') {
                Some(j) => {
                    fields.push(line[i..i + j].to_vec());
                    i += j + 1;
                }
                None => {
                    fields.push(line[i..end].to_vec());
                    return Ok(Parsed::Record { lines: k + 1, fields });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(bytes: &[u8]) -> Vec<CsvItem> {
        let mut r = CsvRecords::new(std::io::Cursor::new(bytes.to_vec()));
        let mut out = Vec::new();
        while let Some(item) = r.next_item().expect("read from memory") {
            out.push(item);
        }
        out
    }

    fn record(line: usize, raw: &str, fields: &[&str]) -> CsvItem {
        CsvItem::Record {
            line,
            raw: raw.as_bytes().to_vec(),
            fields: fields.iter().map(|f| f.as_bytes().to_vec()).collect(),
        }
    }

    #[test]
    fn well_formed_records_read_as_the_csv_crate_reads_them() {
        let text = "\u{feff}a,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",\n\n\"two\nlines\",,\"\"\nq\"uote,z";
        let want = vec![
            record(1, "a,b,c", &["a", "b", "c"]),
            record(2, "\"x, y\",\"say \"\"hi\"\"\",", &["x, y", "say \"hi\"", ""]),
            CsvItem::Blank { line: 3 },
            record(4, "\"two\nlines\",,\"\"", &["two\nlines", "", ""]),
            record(6, "q\"uote,z", &["q\"uote", "z"]),
        ];
        assert_eq!(items(text.as_bytes()), want);
        // The same fields as the lenient `csv` crate.
        let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
        let theirs: Vec<Vec<Vec<u8>>> =
            rdr.byte_records().map(|r| r.expect("valid").iter().map(<[u8]>::to_vec).collect()).collect();
        let ours: Vec<Vec<Vec<u8>>> = want
            .into_iter()
            .filter_map(|i| match i {
                CsvItem::Record { fields, .. } => Some(fields),
                _ => None,
            })
            .collect();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn an_unclosed_quote_costs_its_line_only() {
        // Line 2 never closes its quote; the quote that opens line 3's second field "closes" it.
        let text = "a,b\n\"open,x\nnext,\"y\"\nlast,z\n";
        let got = items(text.as_bytes());
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], record(1, "a,b", &["a", "b"]));
        match &got[1] {
            CsvItem::Malformed { line: 2, raw, reason } => {
                assert_eq!(raw, b"\"open,x");
                assert!(reason.contains("field 1 opens a quote that the quote on line 3 does not properly close"));
                assert!(reason.contains("followed by 'y'"), "{reason}");
            }
            other => panic!("expected line 2 to be malformed, got {other:?}"),
        }
        assert_eq!(got[2], record(3, "next,\"y\"", &["next", "y"]));
        assert_eq!(got[3], record(4, "last,z", &["last", "z"]));
        // Never closed before the end of the file.
        let got = items(b"a,b\n\"open,x\nnext,y\n");
        assert!(matches!(&got[1], CsvItem::Malformed { line: 2, reason, .. } if reason.contains("never closed")));
        assert_eq!(got[2], record(3, "next,y", &["next", "y"]));
        // Closed, then more text on the same line.
        let got = items(b"\"abc\"def,x\n");
        assert!(matches!(&got[0], CsvItem::Malformed { line: 1, reason, .. }
            if reason.contains("closing quote of field 1 is followed by 'd'")));
    }
}
