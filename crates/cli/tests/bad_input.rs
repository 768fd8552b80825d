//! End-to-end tests of `tuneguard` on bad input: every case must end with exit code 2 and one
//! stderr line `error: ...` that names the offending file (or option) and the problem — never a
//! panic, a backtrace or a multi-line dump.
//!
//! Cases that need real weights derive them from the default model
//! (`models/SmolLM2-135M-Instruct.Q4_1.gguf`); they skip only with
//! `TUNEGUARD_ALLOW_MISSING_MODEL=1`. The Hugging Face variants come from one `tuneguard convert`
//! output (538 MB), cached under Cargo's target tmp dir and shared through symlinks.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::json;
use tempfile::TempDir;
use tuneguard_model::testutil::require_default_model;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn tuneguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tuneguard"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("TUNEGUARD_MODEL")
        .output()
        .expect("cannot run the tuneguard binary")
}

/// Runs `tuneguard args`, asserts exit code 2 and exactly one non-empty `error: ` line on
/// stderr with no panic; returns that line.
fn run_bad(args: &[&str]) -> String {
    let out = tuneguard(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "tuneguard {args:?} panicked:\n{stderr}");
    assert_eq!(out.status.code(), Some(2), "tuneguard {args:?}: wrong exit status {:?}; stderr:\n{stderr}", out.status);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "tuneguard {args:?}: expected one stderr line, got:\n{stderr}");
    let line = lines[0];
    assert!(
        line.starts_with("error: ") && line.len() > "error: ".len(),
        "tuneguard {args:?}: stderr line does not start with `error: `: {line}"
    );
    line.to_string()
}

/// Asserts `line` contains every needle (case-insensitive).
fn assert_mentions(line: &str, needles: &[&str]) {
    let lower = line.to_lowercase();
    for n in needles {
        assert!(lower.contains(&n.to_lowercase()), "error line does not mention {n:?}: {line}");
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("non-UTF-8 temp path")
}

fn default_model() -> Option<PathBuf> {
    require_default_model()
}

/// A Hugging Face directory converted from the default model, shared by all tests.
///
/// The conversion writes 538 MB, so it is cached in Cargo's target tmp dir (not /tmp: a static
/// `TempDir` is never dropped) under a name keyed by the binary and model file, and older
/// copies are removed.
fn hf_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| default_model().map(|m| convert_cached(&m))).as_deref()
}

fn stamp(p: &Path) -> String {
    let meta = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).unwrap_or_default();
    format!("{}-{}", meta.len(), mtime.as_nanos())
}

fn convert_cached(model: &Path) -> PathBuf {
    const PREFIX: &str = "bad_input-hf-";
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let name = format!("{PREFIX}{}-{}", stamp(Path::new(env!("CARGO_BIN_EXE_tuneguard"))), stamp(model));
    let dir = tmp.join(&name);
    // `convert` writes under a temporary name and renames, so an existing dir is complete.
    if dir.join("model.safetensors").is_file() {
        return dir;
    }
    std::fs::create_dir_all(&tmp).unwrap();
    for e in std::fs::read_dir(&tmp).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(PREFIX) && n != name {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let out = tuneguard(&["convert", "--model", s(model), "--out", s(&dir)]);
    assert!(
        dir.join("model.safetensors").is_file(),
        "tuneguard convert failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// A new HF dir beside the shared one: model.safetensors and tokenizer.json are symlinks to it,
/// config.json is the shared one passed through `edit_config`, `files` are added (name, text).
fn hf_variant(edit_config: impl FnOnce(&mut serde_json::Value), files: &[(&str, &str)]) -> Option<TempDir> {
    let base = hf_dir()?;
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::os::unix::fs::symlink(base.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::copy(base.join("tokenizer_config.json"), dir.path().join("tokenizer_config.json")).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("config.json")).unwrap()).unwrap();
    edit_config(&mut cfg);
    std::fs::write(dir.path().join("config.json"), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    Some(dir)
}

/// Where each tensor's ggml type id sits in a GGUF file (mirrors the reader in
/// `tuneguard_model::gguf`).
struct GgufTensorRecord {
    name: String,
    dims: Vec<u64>,
    type_id_offset: usize,
}

fn gguf_tensor_records(buf: &[u8]) -> Vec<GgufTensorRecord> {
    struct C<'a>(&'a [u8], usize);
    impl C<'_> {
        fn take(&mut self, n: usize) -> &[u8] {
            let s = &self.0[self.1..self.1 + n];
            self.1 += n;
            s
        }
        fn u32(&mut self) -> u32 {
            u32::from_le_bytes(self.take(4).try_into().unwrap())
        }
        fn u64(&mut self) -> u64 {
            u64::from_le_bytes(self.take(8).try_into().unwrap())
        }
        fn string(&mut self) -> String {
            let n = self.u64() as usize;
            String::from_utf8(self.take(n).to_vec()).unwrap()
        }
        fn skip_value(&mut self, ty: u32) {
            match ty {
                0 | 1 | 7 => self.1 += 1,
                2 | 3 => self.1 += 2,
                4..=6 => self.1 += 4,
                10..=12 => self.1 += 8,
                8 => {
                    self.string();
                }
                9 => {
                    let item = self.u32();
                    for _ in 0..self.u64() {
                        self.skip_value(item);
                    }
                }
                other => panic!("unknown GGUF value type {other}"),
            }
        }
    }
    let mut c = C(buf, 0);
    assert_eq!(c.take(4), b"GGUF");
    let _version = c.u32();
    let n_tensors = c.u64();
    let n_kv = c.u64();
    for _ in 0..n_kv {
        c.string();
        let ty = c.u32();
        c.skip_value(ty);
    }
    (0..n_tensors)
        .map(|_| {
            let name = c.string();
            let n_dims = c.u32();
            let dims = (0..n_dims).map(|_| c.u64()).collect();
            let type_id_offset = c.1;
            c.u32();
            c.u64();
            GgufTensorRecord { name, dims, type_id_offset }
        })
        .collect()
}

/// A copy of the default model in `dir` with the ggml type id of the first 2-D weight whose
/// rows are a multiple of `row_multiple` set to `type_id`; returns (path, tensor name).
fn gguf_with_type(dir: &Path, type_id: u32, row_multiple: u64) -> Option<(PathBuf, String)> {
    let model = default_model()?;
    let mut bytes = std::fs::read(&model).unwrap();
    let rec = gguf_tensor_records(&bytes)
        .into_iter()
        .find(|t| t.name.starts_with("blk.") && t.dims.len() == 2 && t.dims[0] % row_multiple == 0)
        .expect("no suitable tensor in the default model");
    bytes[rec.type_id_offset..rec.type_id_offset + 4].copy_from_slice(&type_id.to_le_bytes());
    let path = dir.join(format!("type-{type_id}.gguf"));
    std::fs::write(&path, bytes).unwrap();
    Some((path, rec.name))
}

/// About 100 words: far more tokens than a 16-token context window.
fn long_prompt() -> String {
    "the quick brown fox jumps over the lazy dog and keeps running ".repeat(9)
}

// ---------------------------------------------------------------------------------------------
// 1-2: paths that are not models
// ---------------------------------------------------------------------------------------------

#[test]
fn missing_model_path() {
    let line = run_bad(&["generate", "--model", "/nonexistent/x.gguf", "--prompt", "Hi"]);
    assert_mentions(&line, &["/nonexistent/x.gguf", "no such file"]);
    let line = run_bad(&["inspect", "--model", "/nonexistent/x.gguf"]);
    assert_mentions(&line, &["/nonexistent/x.gguf", "no such file"]);
}

/// `TUNEGUARD_MODEL` naming a missing file used to be skipped silently (the default model was
/// used instead); it must be an error naming the variable and the path.
#[test]
fn tuneguard_model_pointing_to_missing_file_is_an_error() {
    let missing = "/nonexistent/typo.gguf";
    for args in [&["inspect"][..], &["generate", "--prompt", "Hi"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_tuneguard"))
            .args(args)
            .env_remove("RUST_LOG")
            .env("TUNEGUARD_MODEL", missing)
            .output()
            .expect("cannot run the tuneguard binary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert_mentions(&stderr, &["error: TUNEGUARD_MODEL", missing, "does not exist"]);
    }
}

#[test]
fn text_file_is_not_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "just some text, not a model\n").unwrap();
    let line = run_bad(&["generate", "--model", s(&path), "--prompt", "Hi"]);
    assert_mentions(&line, &[s(&path), "not a GGUF file"]);
    let line = run_bad(&["inspect", "--model", s(&path)]);
    assert_mentions(&line, &[s(&path), "not a GGUF file"]);
}

// ---------------------------------------------------------------------------------------------
// 3-4: truncated files
// ---------------------------------------------------------------------------------------------

fn truncated_copy(src: &Path, dst: &Path, len: usize) {
    use std::io::Read;
    let mut buf = vec![0u8; len];
    std::fs::File::open(src).unwrap().read_exact(&mut buf).unwrap();
    std::fs::write(dst, buf).unwrap();
}

#[test]
fn truncated_gguf_in_tensor_data() {
    let Some(model) = default_model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.gguf");
    truncated_copy(&model, &path, 5 << 20);
    let line = run_bad(&["generate", "--model", s(&path), "--prompt", "Hi"]);
    assert_mentions(&line, &[s(&path), "truncated"]);
    let line = run_bad(&["inspect", "--model", s(&path)]);
    assert_mentions(&line, &[s(&path), "truncated"]);
}

#[test]
fn truncated_gguf_in_header() {
    let Some(model) = default_model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.gguf");
    truncated_copy(&model, &path, 10);
    let line = run_bad(&["generate", "--model", s(&path), "--prompt", "Hi"]);
    assert_mentions(&line, &[s(&path), "truncated"]);
    let line = run_bad(&["inspect", "--model", s(&path)]);
    assert_mentions(&line, &[s(&path), "truncated"]);
}

/// An HF dir whose model.safetensors is the first `len` bytes of the real one.
fn hf_truncated(len: usize) -> Option<TempDir> {
    let base = hf_dir()?;
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::os::unix::fs::symlink(base.join(f), dir.path().join(f)).unwrap();
    }
    truncated_copy(&base.join("model.safetensors"), &dir.path().join("model.safetensors"), len);
    Some(dir)
}

#[test]
fn truncated_safetensors_in_tensor_data() {
    let Some(dir) = hf_truncated(1 << 20) else {
        return;
    };
    let st = dir.path().join("model.safetensors");
    for model in [dir.path(), st.as_path()] {
        let line = run_bad(&["generate", "--model", s(model), "--prompt", "Hi"]);
        assert_mentions(&line, &[s(&st), "truncated"]);
    }
    let line = run_bad(&["inspect", "--model", s(dir.path())]);
    assert_mentions(&line, &[s(&st), "truncated"]);
}

#[test]
fn truncated_safetensors_in_header() {
    for len in [4, 100] {
        let Some(dir) = hf_truncated(len) else { return };
        let st = dir.path().join("model.safetensors");
        let line = run_bad(&["generate", "--model", s(dir.path()), "--prompt", "Hi"]);
        assert_mentions(&line, &[s(&st), "truncated"]);
    }
}

// ---------------------------------------------------------------------------------------------
// 5-6: architectures and tensor types tuneguard does not run
// ---------------------------------------------------------------------------------------------

#[test]
fn unsupported_architecture_gpt2() {
    let gpt2 = json!({
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "n_embd": 768,
        "n_head": 12,
        "n_layer": 12,
        "n_positions": 1024,
        "vocab_size": 50257,
        "activation_function": "gelu_new"
    });
    let Some(dir) = hf_variant(|c| *c = gpt2, &[]) else {
        return;
    };
    let config = dir.path().join("config.json");
    let line = run_bad(&["generate", "--model", s(dir.path()), "--prompt", "Hi"]);
    assert_mentions(&line, &[s(&config), "unsupported architecture", "gpt2"]);
    let line = run_bad(&["inspect", "--model", s(dir.path())]);
    assert_mentions(&line, &[s(&config), "unsupported architecture", "gpt2"]);
}

#[test]
fn unknown_ggml_type_id() {
    let dir = tempfile::tempdir().unwrap();
    let Some((path, tensor)) = gguf_with_type(dir.path(), 99, 1) else {
        return;
    };
    let line = run_bad(&["generate", "--model", s(&path), "--prompt", "Hi"]);
    assert_mentions(&line, &[s(&path), &tensor, "quantization", "99"]);
    let line = run_bad(&["inspect", "--model", s(&path)]);
    assert_mentions(&line, &[s(&path), &tensor, "quantization", "99"]);
}

#[test]
fn known_but_unsupported_quantization_iq2_xxs() {
    // IQ2_XXS (ggml type 16) is a known type tuneguard cannot dequantize; its 256-element blocks
    // need rows that are a multiple of 256.
    let dir = tempfile::tempdir().unwrap();
    let Some((path, tensor)) = gguf_with_type(dir.path(), 16, 256) else {
        return;
    };
    let line = run_bad(&["generate", "--model", s(&path), "--prompt", "Hi"]);
    assert_mentions(&line, &[s(&path), &tensor, "quantization", "IQ2_XXS"]);
}

// ---------------------------------------------------------------------------------------------
// 7-8: tokenizer and chat template that do not fit
// ---------------------------------------------------------------------------------------------

#[test]
fn tokenizer_larger_than_model_vocab() {
    let Some(dir) = hf_variant(|c| c["vocab_size"] = json!(1000), &[]) else {
        return;
    };
    let tok = dir.path().join("tokenizer.json");
    let line = run_bad(&["generate", "--model", s(dir.path()), "--prompt", "Hi"]);
    assert_mentions(&line, &[s(&tok), "49152 tokens", "1000"]);
    let line = run_bad(&["inspect", "--model", s(dir.path())]);
    assert_mentions(&line, &[s(&tok), "49152 tokens", "1000"]);
}

#[test]
fn chat_template_raises_exception() {
    let tmpl = "{{ raise_exception('no system messages') }}";
    let Some(dir) = hf_variant(|_| {}, &[("chat_template.jinja", tmpl)]) else {
        return;
    };
    let jinja = dir.path().join("chat_template.jinja");
    let line = run_bad(&["generate", "--model", s(dir.path()), "--chat", "--prompt", "Hi", "--max-new-tokens", "2"]);
    assert_mentions(&line, &[s(&jinja), "template", "no system messages"]);
}

#[test]
fn chat_template_syntax_error() {
    let tmpl = "{% for m in messages %}{{ m.content }}";
    let Some(dir) = hf_variant(|_| {}, &[("chat_template.jinja", tmpl)]) else {
        return;
    };
    let jinja = dir.path().join("chat_template.jinja");
    let line = run_bad(&["generate", "--model", s(dir.path()), "--chat", "--prompt", "Hi", "--max-new-tokens", "2"]);
    assert_mentions(&line, &[s(&jinja), "template", "syntax error"]);
}

// ---------------------------------------------------------------------------------------------
// 9-11: bad generation requests
// ---------------------------------------------------------------------------------------------

#[test]
fn max_new_tokens_zero() {
    let Some(model) = default_model() else { return };
    let line = run_bad(&["generate", "--model", s(&model), "--prompt", "Hi", "--max-new-tokens", "0"]);
    assert_mentions(&line, &["max_new_tokens", "at least 1"]);
}

#[test]
fn prompt_longer_than_context_window() {
    let Some(dir) = hf_variant(|c| c["max_position_embeddings"] = json!(16), &[]) else {
        return;
    };
    let prompt = long_prompt();
    let line = run_bad(&["generate", "--model", s(dir.path()), "--prompt", &prompt, "--max-new-tokens", "2"]);
    assert_mentions(&line, &["prompt", "context window", "16"]);
}

#[test]
fn adapter_dir_without_adapter_config() {
    let Some(model) = default_model() else { return };
    let adapter = tempfile::tempdir().unwrap();
    let line = run_bad(&["generate", "--model", s(&model), "--adapter", s(adapter.path()), "--prompt", "Hi"]);
    assert_mentions(&line, &[s(&adapter.path().join("adapter_config.json")), "no such file"]);
}

#[test]
fn top_p_zero() {
    let Some(model) = default_model() else { return };
    let line = run_bad(&["generate", "--model", s(&model), "--prompt", "Hi", "--temperature", "0.7", "--top-p", "0"]);
    assert_mentions(&line, &["top_p", "got 0"]);
}

#[test]
fn negative_temperature() {
    let Some(model) = default_model() else { return };
    for args in [["--temperature", "-1"], ["--temperature=-1", "--top-k=5"]] {
        let mut full = vec!["generate", "--model", s(&model), "--prompt", "Hi"];
        full.extend(args);
        let line = run_bad(&full);
        assert_mentions(&line, &["temperature", "-1"]);
    }
}

// ---------------------------------------------------------------------------------------------
// Positive control: the same binary and model work on good input.
// ---------------------------------------------------------------------------------------------

#[test]
fn good_input_generates_text() {
    let Some(model) = default_model() else { return };
    let out = tuneguard(&["generate", "--model", s(&model), "--max-new-tokens", "5", "--prompt", "Hello"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "generate failed ({:?}): {stderr}", out.status);
    assert!(!stderr.contains("error"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.trim().is_empty(), "no text generated; stderr: {stderr}");
}

#[test]
fn named_safetensors_file_is_the_one_loaded() {
    // A garbage `other.safetensors` beside a good model.safetensors must be read, not replaced.
    let Some(dir) = hf_variant(|_| {}, &[("other.safetensors", "garbage")]) else { return };
    let other = dir.path().join("other.safetensors");
    let line = run_bad(&["inspect", "--model", s(&other)]);
    assert_mentions(&line, &[s(&other), "invalid safetensors"]);
}

#[test]
fn safetensors_file_without_config_names_config_json() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("model.safetensors");
    std::fs::write(&file, "x").unwrap();
    let line = run_bad(&["generate", "--model", s(&file), "--prompt", "hi"]);
    assert_mentions(&line, &[s(&tmp.path().join("config.json")), "not found"]);
}

#[test]
fn threads_out_of_range_is_a_usage_error() {
    for n in ["0", "100000"] {
        let out = tuneguard(&["--threads", n, "inspect"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--threads {n}: {stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains("--threads"), "--threads {n}: {stderr}");
    }
}

#[test]
fn closed_stdout_is_not_a_crash() {
    let Some(model) = default_model() else { return };
    for args in [
        vec!["inspect"],
        vec!["inspect", "--json"],
        vec!["generate", "--prompt", "Once upon a time", "--max-new-tokens", "40"],
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tuneguard"));
        cmd.args(&args)
            .args(["--model", s(&model)])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        drop(child.stdout.take()); // the reader goes away before anything is written
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

/// Regression: `audit` and `data lock` printed with `println!`, which panics on a closed pipe.
#[test]
fn closed_stdout_is_not_a_crash_for_the_data_commands() {
    let tmp = tempfile::tempdir().unwrap();
    // A copy beside the manifest: `data lock` refuses data outside the manifest's folder.
    let data = tmp.path().join("selfinstruct_seed_tasks.jsonl");
    std::fs::copy(tuneguard_model::testutil::repo_root().join("data/quickstart/selfinstruct_seed_tasks.jsonl"), &data)
        .unwrap();
    let (out_dir, manifest) = (tmp.path().join("audit"), tmp.path().join("m.json"));
    for args in
        [vec!["audit", s(&data), "--out", s(&out_dir)], vec!["data", "lock", s(&data), "--manifest", s(&manifest)]]
    {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tuneguard"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}
