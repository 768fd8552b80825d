//! Chat templates: renders a model's own Jinja chat template the way Hugging Face transformers
//! does (`apply_chat_template`), with minijinja.
//!
//! Matches transformers' `_compile_jinja_template`: `trim_blocks` and `lstrip_blocks` on,
//! loop controls, `raise_exception`, `strftime_now`, and a `tojson` that does not HTML-escape.
//! Python string/dict methods (`.strip()`, `.startswith()`, `.items()`, ...) come from
//! minijinja-contrib's pycompat layer.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Serde};
use minijinja::{context, Environment, Error, ErrorKind, Value};
use serde::Serialize;

use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;

const TEMPLATE_NAME: &str = "chat_template";

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, ...
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// Exposes a message to templates as a map whose keys keep Python's dict order
/// (`role`, `content`), so `tojson` output matches transformers.
#[derive(Debug)]
struct MessageObject(ChatMessage);

impl Object for MessageObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "role" => Some(Value::from(self.0.role.clone())),
            "content" => Some(Value::from(self.0.content.clone())),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["role", "content"])
    }
}

/// Marks an error raised by the template itself through `raise_exception(msg)`.
#[derive(Debug)]
struct RaisedException(String);

impl std::fmt::Display for RaisedException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedException {}

fn raise_exception(msg: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg.clone()).with_source(RaisedException(msg)))
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
    origin: PathBuf,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("source_len", &self.source.len())
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`. `origin` names where it came from (GGUF file, chat_template.jinja,
    /// tokenizer_config.json) for error messages.
    ///
    /// # Errors
    /// `ChatTemplate` naming `origin` when the template does not parse.
    pub fn new(
        source: String,
        bos_token: Option<String>,
        eos_token: Option<String>,
        origin: impl Into<PathBuf>,
    ) -> Result<Self> {
        let origin = origin.into();
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| template_error(&origin, &e))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        let compiled = strip_generation_tags(&source);
        env.add_template_owned(TEMPLATE_NAME, compiled).map_err(|e| template_error(&origin, &e))?;
        Ok(ChatTemplate { env, source, bos_token, eos_token, origin })
    }

    /// The template for a GGUF file (`tokenizer.chat_template`), if it has one.
    ///
    /// # Errors
    /// `ChatTemplate` when the template does not parse.
    pub fn from_gguf(gguf: &GgufFile, bos_token: Option<String>, eos_token: Option<String>) -> Result<Option<Self>> {
        match chat_template_from_gguf(gguf) {
            Some(src) => Ok(Some(Self::new(src.to_string(), bos_token, eos_token, &gguf.path)?)),
            None => Ok(None),
        }
    }

    /// The template of a Hugging Face model directory (see [`find_chat_template_in_dir`]).
    ///
    /// # Errors
    /// `Io`/`ChatTemplate` when a template file cannot be read or does not parse.
    pub fn from_hf_dir(dir: &Path, bos_token: Option<String>, eos_token: Option<String>) -> Result<Option<Self>> {
        match find_chat_template_in_dir(dir)? {
            Some((src, origin)) => Ok(Some(Self::new(src, bos_token, eos_token, origin)?)),
            None => Ok(None),
        }
    }

    /// The template text as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Where the template came from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends with the assistant header.
    ///
    /// # Errors
    /// `ChatTemplate` naming the origin for render errors; for `raise_exception(msg)` the reason
    /// carries `msg`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_with(messages, add_generation_prompt, &BTreeMap::new())
    }

    /// Like [`ChatTemplate::render`], with extra template variables (e.g. `tools`,
    /// `enable_thinking`); the built-in variables take precedence over them.
    ///
    /// # Errors
    /// As [`ChatTemplate::render`].
    pub fn render_with(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        extra: &BTreeMap<String, serde_json::Value>,
    ) -> Result<String> {
        let tmpl = self.env.get_template(TEMPLATE_NAME).map_err(|e| template_error(&self.origin, &e))?;
        let msgs: Vec<Value> = messages.iter().map(|m| Value::from_object(MessageObject(m.clone()))).collect();
        let ctx = context! {
            messages => msgs,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone(),
            eos_token => self.eos_token.clone(),
            ..Value::from(Serde(extra))
        };
        tmpl.render(ctx).map_err(|e| template_error(&self.origin, &e))
    }
}

/// `tokenizer.chat_template` of a GGUF file.
pub fn chat_template_from_gguf(gguf: &GgufFile) -> Option<&str> {
    gguf.get_str("tokenizer.chat_template")
}

/// The template of a list of `{name, template}` entries: the one named `default`.
pub(crate) fn pick_named_template(v: &serde_json::Value) -> Option<String> {
    v.as_array()?
        .iter()
        .find(|e| e.get("name").and_then(|n| n.as_str()) == Some("default"))
        .and_then(|e| e.get("template"))
        .and_then(|t| t.as_str())
        .map(str::to_string)
}

/// Finds the chat template of a Hugging Face model directory: `chat_template.jinja`, else
/// `tokenizer_config.json`'s `chat_template` (a string, or a list of `{name, template}` from
/// which `default` is used). Returns the text and the file it came from.
///
/// # Errors
/// `Io` when a file cannot be read, `ChatTemplate` for invalid JSON or a template list with no
/// `default` entry.
pub fn find_chat_template_in_dir(dir: &Path) -> Result<Option<(String, PathBuf)>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let text = std::fs::read_to_string(&jinja).map_err(|e| ModelError::io(&jinja, e))?;
        return Ok(Some((text, jinja)));
    }
    let config = dir.join("tokenizer_config.json");
    if !config.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&config).map_err(|e| ModelError::io(&config, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::ChatTemplate { path: config.clone(), reason: format!("invalid JSON: {e}") })?;
    match json.get("chat_template") {
        Some(serde_json::Value::String(s)) => Ok(Some((s.clone(), config))),
        Some(v @ serde_json::Value::Array(_)) => match pick_named_template(v) {
            Some(s) => Ok(Some((s, config))),
            None => Err(ModelError::ChatTemplate {
                path: config,
                reason: "several chat templates and none named `default`".to_string(),
            }),
        },
        _ => Ok(None),
    }
}

/// One-line `ChatTemplate` error; a template's own `raise_exception` message is kept verbatim.
fn template_error(origin: &Path, err: &Error) -> ModelError {
    let mut raised = None;
    let mut chain: Vec<String> = vec![err.to_string()];
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<RaisedException>() {
            raised = Some(r.0.clone());
            break;
        }
        let s = e.to_string();
        if !chain.iter().any(|c| c.contains(&s)) {
            chain.push(s);
        }
        cur = e.source();
    }
    let reason = match raised {
        Some(msg) => format!("template raised an exception: {msg}"),
        None => chain.join(": "),
    };
    let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    ModelError::ChatTemplate { path: origin.to_path_buf(), reason }
}

/// Turns transformers' `{% generation %}`/`{% endgeneration %}` tags (used to mark assistant
/// text for training masks) into a no-op block minijinja understands, keeping whitespace control.
fn strip_generation_tags(source: &str) -> String {
    if !source.contains("generation") {
        return source.to_string();
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag.find("%}") else {
            out.push_str(tag);
            return out;
        };
        let inner = &tag[2..end];
        let body = inner.trim_start_matches(['-', '+']).trim_end_matches(['-', '+']).trim();
        let replacement = match body {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => {
                let lead = &inner[..inner.len() - inner.trim_start_matches(['-', '+']).len()];
                let trail = &inner[inner.trim_end_matches(['-', '+']).len()..];
                out.push_str("{%");
                out.push_str(lead);
                out.push(' ');
                out.push_str(r);
                out.push(' ');
                out.push_str(trail);
                out.push_str("%}");
            }
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`, without Jinja's HTML escaping.
fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> std::result::Result<Value, Error> {
    let indent = match indent {
        Some(v) => Some(v),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let indent: Option<usize> = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => Some(usize::try_from(v)?),
    };
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let (item_sep, key_sep) = match separators {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        Some(_) => return Err(Error::new(ErrorKind::InvalidOperation, "tojson: separators must be a pair")),
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let fmt = PyJsonFormatter {
        indent: indent.map(|n| " ".repeat(n)),
        item_sep,
        key_sep,
        level: 0,
        has_value: false,
        ensure_ascii,
    };
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    let res = if sort_keys {
        let v =
            serde_json::to_value(value).map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
        SortedJson(&v).serialize(&mut ser)
    } else {
        value.serialize(&mut ser)
    };
    res.map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let text = String::from_utf8(buf).map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    Ok(Value::from_safe_string(text))
}

/// Serializes JSON with object keys sorted (Python's `sort_keys=True`).
struct SortedJson<'a>(&'a serde_json::Value);

impl Serialize for SortedJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            serde_json::Value::Object(m) => {
                let mut entries: Vec<_> = m.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, &SortedJson(v))?;
                }
                map.end()
            }
            serde_json::Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(&SortedJson(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

/// JSON layout of Python's `json.dumps` (separators, indent, `ensure_ascii`).
struct PyJsonFormatter {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    level: usize,
    has_value: bool,
    ensure_ascii: bool,
}

impl PyJsonFormatter {
    fn newline<W: ?Sized + std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        if let Some(ind) = &self.indent {
            w.write_all(b"\n")?;
            for _ in 0..self.level {
                w.write_all(ind.as_bytes())?;
            }
        }
        Ok(())
    }
}

impl serde_json::ser::Formatter for PyJsonFormatter {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(b"[")
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.level -= 1;
        if self.has_value {
            self.newline(w)?;
        }
        w.write_all(b"]")
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if !first {
            w.write_all(self.item_sep.as_bytes())?;
        }
        self.newline(w)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(b"{")
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.level -= 1;
        if self.has_value {
            self.newline(w)?;
        }
        w.write_all(b"}")
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if !first {
            w.write_all(self.item_sep.as_bytes())?;
        }
        self.newline(w)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(self.key_sep.as_bytes())
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn write_string_fragment<W: ?Sized + std::io::Write>(&mut self, w: &mut W, fragment: &str) -> std::io::Result<()> {
        if !self.ensure_ascii || fragment.is_ascii() && !fragment.contains('\x7f') {
            return w.write_all(fragment.as_bytes());
        }
        let mut units = [0u16; 2];
        for c in fragment.chars() {
            if (' '..='~').contains(&c) {
                w.write_all(&[c as u8])?;
            } else {
                for u in c.encode_utf16(&mut units) {
                    write!(w, "\\u{u:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// transformers' `strftime_now(format)`: the current time formatted with C `strftime` codes.
/// Uses UTC (transformers uses local time; servers usually run in UTC).
fn strftime_now(format: String) -> std::result::Result<String, Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("strftime_now: clock error: {e}")))?
        .as_secs() as i64;
    Ok(strftime_utc(&format, secs))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// (year, month 1-12, day 1-31) of days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Formats a Unix time (UTC) with the common `strftime` codes; unknown codes are kept as is.
fn strftime_utc(format: &str, unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let sod = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (sod / 3600, sod % 3600 / 60, sod % 60);
    let wday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = cum[(m - 1) as usize] + d + u32::from(leap && m > 2);
    let month = MONTHS[(m - 1) as usize];
    let weekday = WEEKDAYS[wday];
    let hour12 = if hh % 12 == 0 { 12 } else { hh % 12 };
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('e') => out.push_str(&format!("{d:2}")),
            Some('H') => out.push_str(&format!("{hh:02}")),
            Some('I') => out.push_str(&format!("{hour12:02}")),
            Some('M') => out.push_str(&format!("{mm:02}")),
            Some('S') => out.push_str(&format!("{ss:02}")),
            Some('p') => out.push_str(if hh < 12 { "AM" } else { "PM" }),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('B') => out.push_str(month),
            Some('b' | 'h') => out.push_str(&month[..3]),
            Some('A') => out.push_str(weekday),
            Some('a') => out.push_str(&weekday[..3]),
            Some('F') => out.push_str(&format!("{y}-{m:02}-{d:02}")),
            Some('T') => out.push_str(&format!("{hh:02}:{mm:02}:{ss:02}")),
            Some('Z') => out.push_str("UTC"),
            Some('z') => out.push_str("+0000"),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::require_default_model;

    fn tmpl(src: &str) -> ChatTemplate {
        ChatTemplate::new(src.to_string(), Some("<s>".into()), Some("</s>".into()), "test.jinja").expect("compile")
    }

    #[test]
    fn chat_gguf_template_matches_golden() {
        let Some(path) = require_default_model() else {
            return;
        };
        let gguf = GgufFile::open(&path).expect("open GGUF");
        let tok = crate::tokenizer::TextTokenizer::from_gguf(&gguf).expect("tokenizer");
        let t =
            ChatTemplate::from_gguf(&gguf, tok.bos_token(), tok.eos_token()).expect("compile").expect("has template");
        let msgs = [ChatMessage::new("user", "Write a haiku about autumn leaves.")];
        let text = t.render(&msgs, true).expect("render");
        // Golden `text` of the chat_user_message input (/work/shared/golden/smollm2_135m_q4_1.json).
        let golden = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWrite a haiku about autumn leaves.<|im_end|>\n<|im_start|>assistant\n";
        assert_eq!(text, golden);
        let no_prompt = t.render(&msgs, false).expect("render");
        assert_eq!(no_prompt, golden.trim_end_matches("<|im_start|>assistant\n"));
        // A system message replaces the default one.
        let with_system = t.render(&[ChatMessage::new("system", "Be brief."), msgs[0].clone()], true).expect("render");
        assert!(with_system.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"));
    }

    #[test]
    fn chat_syntax_error_is_chat_template_error() {
        let err = ChatTemplate::new("{% for m in messages %}{{ m.content }".into(), None, None, "/x/broken.jinja")
            .expect_err("broken template");
        match err {
            ModelError::ChatTemplate { path, reason } => {
                assert_eq!(path, PathBuf::from("/x/broken.jinja"));
                assert!(!reason.contains('\n') && !reason.is_empty(), "{reason}");
            }
            other => panic!("unexpected error {other}"),
        }
        // Runtime error: calling an undefined function.
        let t = tmpl("{{ no_such_function() }}");
        assert!(matches!(t.render(&[], false), Err(ModelError::ChatTemplate { .. })));
    }

    #[test]
    fn chat_raise_exception_message() {
        let t = tmpl(
            "{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}\
             {{ raise_exception('Conversation roles must be user/assistant') }}{% endif %}{% endfor %}",
        );
        assert!(t.render(&[ChatMessage::new("user", "hi")], true).is_ok());
        let err = t.render(&[ChatMessage::new("tool", "x")], true).expect_err("raises");
        match err {
            ModelError::ChatTemplate { path, reason } => {
                assert_eq!(path, PathBuf::from("test.jinja"));
                assert!(reason.contains("Conversation roles must be user/assistant"), "{reason}");
            }
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn chat_hf_features() {
        // trim_blocks/lstrip_blocks, python methods, loop controls, bos/eos, tojson.
        let src = "{{ bos_token }}\n{% for m in messages %}\n    {% if m.content.strip().startswith('skip') %}{% continue %}{% endif %}\n[{{ m.role.upper() }}] {{ m.content.strip() }}{{ eos_token }}\n{% endfor %}\n{{ messages[0] | tojson }}";
        let t = tmpl(src);
        let out = t
            .render(&[ChatMessage::new("user", "  héllo <b>  "), ChatMessage::new("user", "skip me")], false)
            .expect("render");
        assert_eq!(out, "<s>\n[USER] héllo <b></s>\n{\"role\": \"user\", \"content\": \"  héllo <b>  \"}");
        let t = tmpl(
            "{{ {'b': 1, 'a': [1, 2]} | tojson(indent=2, sort_keys=true) }}|{{ 'é' | tojson(ensure_ascii=true) }}",
        );
        assert_eq!(
            t.render(&[], false).expect("render"),
            "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": 1\n}|\"\\u00e9\""
        );
        let t = tmpl("{% generation %}{{ messages[0].content }}{% endgeneration %}|{{ strftime_now('%Y') | length }}|{{ messages[0].items() | list | length }}");
        assert_eq!(t.render(&[ChatMessage::new("assistant", "ok")], false).expect("render"), "ok|4|2");
        let mut extra = BTreeMap::new();
        extra.insert("enable_thinking".to_string(), serde_json::json!(false));
        let t = tmpl("{% if enable_thinking is defined and not enable_thinking %}no-think{% endif %}{% if tools %}tools{% endif %}");
        assert_eq!(t.render_with(&[], false, &extra).expect("render"), "no-think");
    }

    #[test]
    fn chat_strftime() {
        // 2024-07-23 12:34:56 UTC, a Tuesday, day 205 of a leap year.
        let t = 1_721_738_096;
        assert_eq!(strftime_utc("%d %b %Y", t), "23 Jul 2024");
        assert_eq!(
            strftime_utc("%A %B %j %H:%M:%S %I%p %y %F %%", t),
            "Tuesday July 205 12:34:56 12PM 24 2024-07-23 %"
        );
        assert_eq!(strftime_utc("%F %a", 0), "1970-01-01 Thu");
        assert_eq!(strftime_utc("%F", 951_782_400), "2000-02-29");
    }

    #[test]
    fn chat_find_template_in_dir() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(find_chat_template_in_dir(dir.path()).expect("empty dir").is_none());
        let cfg = dir.path().join("tokenizer_config.json");
        std::fs::write(
            &cfg,
            r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#,
        )
        .expect("write");
        assert_eq!(find_chat_template_in_dir(dir.path()).expect("list"), Some(("D".to_string(), cfg.clone())));
        std::fs::write(&cfg, r#"{"chat_template": [{"name": "tool_use", "template": "T"}]}"#).expect("write");
        assert!(matches!(find_chat_template_in_dir(dir.path()), Err(ModelError::ChatTemplate { .. })));
        std::fs::write(&cfg, r#"{"chat_template": "S"}"#).expect("write");
        assert_eq!(find_chat_template_in_dir(dir.path()).expect("string"), Some(("S".to_string(), cfg)));
        let jinja = dir.path().join("chat_template.jinja");
        std::fs::write(&jinja, "J").expect("write");
        let t = ChatTemplate::from_hf_dir(dir.path(), None, None).expect("compile").expect("found");
        assert_eq!((t.source(), t.origin()), ("J", jinja.as_path()));
    }
}
