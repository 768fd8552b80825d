//! Pre-flight lint on the real default model (SmolLM2-135M-Instruct) and real data: the
//! quickstart recipe fires nothing; a template that leaves out `<|im_end|>`, a `max_len` that
//! cuts every answer and a foreign (Llama 2) template each fire their lint.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Result;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tuneguard_audit::lint::{chat_template_from_path, ids, lint_report_text, run_lints, Lint, LintInput, Severity};
use tuneguard_data::tokenize::{ChatTokenizer, Overflow, TokenizeOptions};
use tuneguard_data::{load_file, DataFormat, Example, LoadOptions};
use tuneguard_model::chat::ChatTemplate;
use tuneguard_model::config::ModelConfig;
use tuneguard_model::gguf::GgufFile;
use tuneguard_model::testutil::{repo_root, require_default_model, shared_dir};
use tuneguard_model::tokenizer::TextTokenizer;

/// SmolLM2's ChatML template, except that assistant replies end with a newline instead of
/// `<|im_end|>`: the end-of-turn token never reaches the labels.
const NO_IM_END: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' + message['content'] + '\n' }}{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// meta-llama/Llama-2-7b-chat-hf's template (tokenizer_config.json).
const LLAMA2: &str = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/// The default model's tokenizer, template and embedding size (no weights decoded).
struct Model {
    tokenizer: TextTokenizer,
    template: ChatTemplate,
    vocab: usize,
}

fn model() -> Result<Option<Model>> {
    let Some(path) = require_default_model() else { return Ok(None) };
    let g = GgufFile::open(&path)?;
    let tokenizer = TextTokenizer::from_gguf(&g)?;
    let template = ChatTemplate::from_gguf(&g, tokenizer.bos_token(), tokenizer.eos_token())?
        .ok_or_else(|| anyhow::anyhow!("the default model has a chat template"))?;
    Ok(Some(Model { tokenizer, template, vocab: ModelConfig::from_gguf(&g)?.vocab_size }))
}

/// Examples and their lines, shuffled and split as `tuneguard train` does (seed, val first).
struct Split {
    path: PathBuf,
    train: Vec<Example>,
    lines: Vec<usize>,
    val: Vec<Example>,
}

fn split(path: &Path, limit: usize, val_size: usize, seed: u64) -> Result<Split> {
    let opts = LoadOptions { format: Some(DataFormat::instruction()), ..Default::default() };
    let data = load_file(path, &opts)?;
    let mut order: Vec<usize> = (0..data.examples.len().min(limit)).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let (val, train) = order.split_at(val_size);
    Ok(Split {
        path: path.to_path_buf(),
        train: train.iter().map(|&i| data.examples[i].clone()).collect(),
        lines: train.iter().map(|&i| data.lines[i]).collect(),
        val: val.iter().map(|&i| data.examples[i].clone()).collect(),
    })
}

fn quickstart() -> Result<Split> {
    split(&repo_root().join("data/quickstart/selfinstruct_seed_tasks.jsonl"), usize::MAX, 25, 0)
}

/// configs/quickstart.toml: max_len 384, overflow drop, no packing, batch 4, the model's template.
fn input<'a>(m: &'a Model, s: &'a Split) -> LintInput<'a> {
    LintInput {
        tokenizer: &m.tokenizer,
        model_vocab_size: m.vocab,
        model_chat_template: Some(&m.template),
        data_chat_template: None,
        end_of_turn: None,
        train: &s.train,
        train_lines: Some(&s.lines),
        train_path: Some(&s.path),
        val: &s.val,
        tokenize: TokenizeOptions { max_len: 384, overflow: Overflow::Drop },
        packing: false,
        packing_uses_masks: true,
        pad_token_id: m.tokenizer.pad_id(),
        batch_size: 4,
    }
}

fn fired(lints: &[Lint]) -> BTreeSet<&'static str> {
    lints.iter().map(|l| l.id).collect()
}

fn find<'a>(lints: &'a [Lint], id: &str) -> &'a Lint {
    lints.iter().find(|l| l.id == id).unwrap_or_else(|| panic!("{id} did not fire: {lints:#?}"))
}

/// A template written to a `.jinja` file, as a recipe names it.
fn template_file(m: &Model, dir: &Path, name: &str, src: &str) -> Result<ChatTemplate> {
    let path = dir.join(name);
    std::fs::write(&path, src)?;
    Ok(chat_template_from_path(&path, &m.tokenizer)?)
}

#[test]
fn quickstart_recipe_fires_no_lint() -> Result<()> {
    let Some(m) = model()? else { return Ok(()) };
    let s = quickstart()?;
    let lints = run_lints(&input(&m, &s))?;
    assert_eq!(lints, vec![], "{}", lint_report_text(&lints));
    // The model's own template given explicitly is not foreign.
    let own = chat_template_from_path(&PathBuf::from("/nonexistent"), &m.tokenizer);
    assert!(own.is_err());
    let own = tuneguard_audit::lint::chat_template_from_str(m.template.source(), &m.tokenizer, "own.jinja")?;
    let lints = run_lints(&LintInput { data_chat_template: Some(&own), ..input(&m, &s) })?;
    assert_eq!(lints, vec![], "{}", lint_report_text(&lints));
    Ok(())
}

#[test]
fn template_without_im_end_fires_eos_not_supervised() -> Result<()> {
    let Some(m) = model()? else { return Ok(()) };
    let s = quickstart()?;
    let dir = tempfile::tempdir()?;
    let t = template_file(&m, dir.path(), "no_im_end.jinja", NO_IM_END)?;
    // Training itself refuses this template; the lint says why, with the data.
    let strict = ChatTokenizer::new(&m.tokenizer, &t)?;
    assert!(strict.tokenize_all(&s.train, input(&m, &s).tokenize).is_err());
    let lints = run_lints(&LintInput { data_chat_template: Some(&t), ..input(&m, &s) })?;
    let want = BTreeSet::from([ids::EOS_NOT_SUPERVISED, ids::PAD_IS_EOS_UNSUPERVISED, ids::FOREIGN_CHAT_TEMPLATE]);
    assert_eq!(fired(&lints), want, "{}", lint_report_text(&lints));
    let eos = find(&lints, ids::EOS_NOT_SUPERVISED);
    assert_eq!(eos.severity, Severity::Error);
    // Every kept example: "N of N", none masked, all missing.
    let n: usize = eos.message.split(' ').next().unwrap_or_default().parse()?;
    assert!(n > 100, "{}", eos.message);
    assert!(eos.message.starts_with(&format!(
        "{n} of {n} training examples have a reply whose end-of-turn token `<|im_end|>` (id 2)"
    )));
    assert!(eos.message.contains(&format!("(0 masked, {n} not written after the reply)")), "{}", eos.message);
    assert!(eos.message.contains("selfinstruct_seed_tasks.jsonl:"), "{}", eos.message);
    let report = lint_report_text(&lints);
    assert!(report.starts_with("error[eos_not_supervised]: "), "{report}");
    assert_eq!(report.lines().count(), 3);
    Ok(())
}

#[test]
fn truncation_that_cuts_every_answer_fires_no_supervised_tokens() -> Result<()> {
    let Some(m) = model()? else { return Ok(()) };
    let s = quickstart()?;
    let tokenize = TokenizeOptions { max_len: 24, overflow: Overflow::Truncate };
    let lints = run_lints(&LintInput { tokenize, ..input(&m, &s) })?;
    // The held-out examples lose their answers too, so the validation set is empty.
    assert_eq!(fired(&lints), BTreeSet::from([ids::NO_SUPERVISED_TOKENS, ids::VAL_TOO_SMALL]));
    let lint = find(&lints, ids::NO_SUPERVISED_TOKENS);
    assert_eq!(lint.severity, Severity::Error);
    assert!(
        lint.message.starts_with("150 of 150 training examples (100.0%) have no supervised token after templating and truncation to max_len 24"),
        "{}",
        lint.message
    );
    assert!(lint.message.contains("(0 of them have none even before truncation)"), "{}", lint.message);
    assert!(find(&lints, ids::VAL_TOO_SMALL)
        .message
        .starts_with("all 25 held-out examples are dropped by tokenization (0 too long, 25 with nothing supervised)"));
    Ok(())
}

/// Super-NaturalInstructions prompts are long: at max_len 256 some answers are cut away. The
/// lint's count and share must equal what training drops.
#[test]
fn partial_loss_of_answers_matches_training_counts() -> Result<()> {
    let Some(m) = model()? else { return Ok(()) };
    let s = split(&shared_dir().join("data/instruction/superni_en_shared.jsonl"), 400, 40, 0)?;
    let tokenize = TokenizeOptions { max_len: 256, overflow: Overflow::Truncate };
    let lints = run_lints(&LintInput { tokenize, ..input(&m, &s) })?;
    let (_, stats) = ChatTokenizer::new(&m.tokenizer, &m.template)?.tokenize_all(&s.train, tokenize)?;
    assert!(stats.dropped_no_supervised > 0 && stats.kept > 0, "{stats:?}");
    let lint = find(&lints, ids::NO_SUPERVISED_TOKENS);
    let share = 100.0 * stats.dropped_no_supervised as f64 / 360.0;
    let want = format!("{} of 360 training examples ({share:.1}%)", stats.dropped_no_supervised);
    assert!(lint.message.starts_with(&want), "{want} / {}", lint.message);
    assert_eq!(lint.severity, Severity::Warning);
    assert_eq!(fired(&lints), BTreeSet::from([ids::NO_SUPERVISED_TOKENS]), "{}", lint_report_text(&lints));
    Ok(())
}

#[test]
fn llama2_template_for_a_chatml_model_fires_foreign_chat_template() -> Result<()> {
    let Some(m) = model()? else { return Ok(()) };
    let s = quickstart()?;
    let dir = tempfile::tempdir()?;
    let t = template_file(&m, dir.path(), "llama2.jinja", LLAMA2)?;
    let lints = run_lints(&LintInput { data_chat_template: Some(&t), ..input(&m, &s) })?;
    assert_eq!(fired(&lints), BTreeSet::from([ids::FOREIGN_CHAT_TEMPLATE]), "{}", lint_report_text(&lints));
    let lint = find(&lints, ids::FOREIGN_CHAT_TEMPLATE);
    assert_eq!(lint.severity, Severity::Warning);
    assert!(lint.message.contains("llama2.jinja"), "{}", lint.message);
    assert!(lint.message.contains("(user, assistant)") && lint.message.contains("[INST]"), "{}", lint.message);
    Ok(())
}

/// A row the template refuses (Llama 2's raises unless user and assistant alternate) is left
/// out of the lint, as training leaves it out as a row of its own; only when no training example
/// renders is the lint an error, naming the first.
#[test]
fn a_row_the_template_refuses_does_not_stop_the_lint() -> Result<()> {
    let Some(m) = model()? else { return Ok(()) };
    let mut s = quickstart()?;
    let dir = tempfile::tempdir()?;
    let t = template_file(&m, dir.path(), "llama2.jinja", LLAMA2)?;
    fn twice(e: &Example) -> Example {
        match e {
            Example::Chat(c) => Example::Chat(vec![c[0].clone(), c[0].clone(), c[1].clone()]),
            other => other.clone(),
        }
    }
    s.train[7] = twice(&s.train[7]);
    let lints = run_lints(&LintInput { data_chat_template: Some(&t), ..input(&m, &s) })?;
    assert_eq!(fired(&lints), BTreeSet::from([ids::FOREIGN_CHAT_TEMPLATE]), "{}", lint_report_text(&lints));
    s.train = s.train.iter().map(twice).collect();
    let err = run_lints(&LintInput { data_chat_template: Some(&t), ..input(&m, &s) }).expect_err("nothing renders");
    assert!(err.to_string().starts_with("example 0: "), "{err}");
    assert!(err.to_string().contains("Conversation roles must alternate"), "{err}");
    Ok(())
}
