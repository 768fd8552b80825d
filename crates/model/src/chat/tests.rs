//! Unit tests of chat templates: the default model's golden prompt, error reporting,
//! transformers compatibility (filters, functions, Python methods) and template discovery.
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::functions::strftime_utc;
use super::{find_chat_template_in_dir, ChatMessage, ChatTemplate};
use crate::error::ModelError;
use crate::gguf::GgufFile;
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
    let t = ChatTemplate::from_gguf(&gguf, tok.bos_token(), tok.eos_token()).expect("compile").expect("has template");
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
    let t =
        tmpl("{{ {'b': 1, 'a': [1, 2]} | tojson(indent=2, sort_keys=true) }}|{{ 'é' | tojson(ensure_ascii=true) }}");
    assert_eq!(t.render(&[], false).expect("render"), "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": 1\n}|\"\\u00e9\"");
    let t = tmpl("{% generation %}{{ messages[0].content }}{% endgeneration %}|{{ strftime_now('%Y') | length }}|{{ messages[0].items() | list | length }}");
    assert_eq!(t.render(&[ChatMessage::new("assistant", "ok")], false).expect("render"), "ok|4|2");
    let mut extra = BTreeMap::new();
    extra.insert("enable_thinking".to_string(), serde_json::json!(false));
    let t = tmpl(
        "{% if enable_thinking is defined and not enable_thinking %}no-think{% endif %}{% if tools %}tools{% endif %}",
    );
    assert_eq!(t.render_with(&[], false, &extra).expect("render"), "no-think");
}

#[test]
fn chat_strftime() {
    // 2024-07-23 12:34:56 UTC, a Tuesday, day 205 of a leap year.
    let t = 1_721_738_096;
    assert_eq!(strftime_utc("%d %b %Y", t), "23 Jul 2024");
    assert_eq!(strftime_utc("%A %B %j %H:%M:%S %I%p %y %F %%", t), "Tuesday July 205 12:34:56 12PM 24 2024-07-23 %");
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
