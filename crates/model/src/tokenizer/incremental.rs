//! Streaming detokenization of generated ids.
use super::TextTokenizer;
use crate::error::Result;

/// Streaming detokenizer: push generated ids one at a time and get back only newly completed
/// text. Byte-level tokens can split a multi-byte character, so text ending in an incomplete
/// UTF-8 sequence is held back until a later token completes it.
///
/// Concatenating every returned piece plus [`IncrementalDecoder::finish`] gives the same text as
/// decoding all ids at once (for valid UTF-8 output).
#[derive(Debug)]
pub struct IncrementalDecoder<'a> {
    tokenizer: &'a TextTokenizer,
    skip_special: bool,
    ids: Vec<u32>,
    /// Start of the context window that is decoded again to get stable spacing.
    prefix_offset: usize,
    /// End of the ids already returned as text.
    read_offset: usize,
}

impl<'a> IncrementalDecoder<'a> {
    /// A decoder with no ids yet.
    pub fn new(tokenizer: &'a TextTokenizer, skip_special: bool) -> Self {
        IncrementalDecoder { tokenizer, skip_special, ids: Vec::new(), prefix_offset: 0, read_offset: 0 }
    }

    fn delta(&self) -> Result<(String, usize)> {
        let prefix = self.tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset], self.skip_special)?;
        let full = self.tokenizer.decode(&self.ids[self.prefix_offset..], self.skip_special)?;
        Ok((full, prefix.len()))
    }

    fn cut(full: &str, prefix_len: usize) -> String {
        // Normally `full` starts with the prefix text; stay on a char boundary regardless.
        let mut at = prefix_len.min(full.len());
        while !full.is_char_boundary(at) {
            at += 1;
        }
        full[at..].to_string()
    }

    fn advance(&mut self) {
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        // Drop ids that can no longer influence output, so memory stays bounded.
        if self.prefix_offset > 64 {
            self.ids.drain(..self.prefix_offset);
            self.read_offset -= self.prefix_offset;
            self.prefix_offset = 0;
        }
    }

    /// Adds one id; returns the text it completes, if any.
    ///
    /// # Errors
    /// `Tokenizer` if decoding fails.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let (full, prefix_len) = self.delta()?;
        if full.len() > prefix_len && !full.ends_with('\u{FFFD}') {
            let piece = Self::cut(&full, prefix_len);
            self.advance();
            return Ok(Some(piece));
        }
        Ok(None)
    }

    /// Returns whatever text is still held back (an incomplete character becomes U+FFFD).
    ///
    /// # Errors
    /// `Tokenizer` if decoding fails.
    pub fn finish(&mut self) -> Result<Option<String>> {
        if self.read_offset >= self.ids.len() {
            return Ok(None);
        }
        let (full, prefix_len) = self.delta()?;
        self.advance();
        Ok((full.len() > prefix_len).then(|| Self::cut(&full, prefix_len)))
    }
}
