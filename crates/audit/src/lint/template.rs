//! Is the data rendered the way the model was tuned and will be served? A template is judged by
//! what it renders for a few probe conversations, not by its source text, so templates that
//! differ only in Jinja whitespace or style agree.
use std::path::{Path, PathBuf};

use tuneguard_model::chat::{find_chat_template_in_dir, ChatMessage, ChatTemplate};
use tuneguard_model::tokenizer::TextTokenizer;
use tuneguard_model::ModelError;

use super::ids;
use super::prepare::snippet;
use super::{Lint, Severity};
use crate::error::{AuditError, Result};

/// Compiles a chat template given as Jinja text (e.g. a recipe's inline `data.chat_template`),
/// with the tokenizer's bos/eos texts. `origin` names it in errors and lint messages.
///
/// # Errors
/// `Model` (`ChatTemplate`) when the text does not parse.
pub fn chat_template_from_str(
    source: &str,
    tokenizer: &TextTokenizer,
    origin: impl Into<PathBuf>,
) -> Result<ChatTemplate> {
    Ok(ChatTemplate::new(source.to_string(), tokenizer.bos_token(), tokenizer.eos_token(), origin)?)
}

/// Loads a chat template from a file holding the Jinja text (e.g. `chat_template.jinja`), or
/// from a Hugging Face model directory (its `chat_template.jinja` or `tokenizer_config.json`).
///
/// # Errors
/// `Io` naming the file when it cannot be read; `Model` (`ChatTemplate`) when it does not parse
/// or the directory has no template.
pub fn chat_template_from_path(path: &Path, tokenizer: &TextTokenizer) -> Result<ChatTemplate> {
    if path.is_dir() {
        return match find_chat_template_in_dir(path)? {
            Some((src, origin)) => chat_template_from_str(&src, tokenizer, origin),
            None => Err(ModelError::ChatTemplate {
                path: path.to_path_buf(),
                reason: "no chat_template.jinja, and no chat_template in tokenizer_config.json".into(),
            }
            .into()),
        };
    }
    let src = std::fs::read_to_string(path).map_err(|err| AuditError::Io { path: path.to_path_buf(), err })?;
    chat_template_from_str(&src, tokenizer, path)
}

/// A stand-in for a model without a template: plain text renders nothing, chat examples fail
/// with a clear message (as training does).
pub(crate) fn no_template(tokenizer: &TextTokenizer) -> Result<ChatTemplate> {
    chat_template_from_str(
        "{{ raise_exception('the model has no chat template; give the data one (data.chat_template)') }}",
        tokenizer,
        "<no chat template>",
    )
}

/// Probe conversations `(messages, add_generation_prompt)`: single and multi-turn, with and
/// without a system message, and a generation prompt.
fn probes() -> Vec<(Vec<ChatMessage>, bool)> {
    let m = ChatMessage::new;
    let q = m("user", "What is the capital of France?");
    let a = m("assistant", "Paris.");
    vec![
        (vec![q.clone(), a.clone()], false),
        (vec![m("system", "You are a concise assistant."), q.clone(), a.clone()], false),
        (vec![q.clone(), a, m("user", "And of Italy?"), m("assistant", "Rome.")], false),
        (vec![q], true),
    ]
}

/// Roles of a probe, for messages: `system, user, assistant (+ generation prompt)`.
fn describe(messages: &[ChatMessage], gen: bool) -> String {
    let roles: Vec<&str> = messages.iter().map(|m| m.role.as_str()).collect();
    format!("{}{}", roles.join(", "), if gen { " + generation prompt" } else { "" })
}

/// Byte offset of the first difference of `a` and `b`, on a char boundary of both.
fn first_difference(a: &str, b: &str) -> usize {
    a.char_indices().zip(b.chars()).find(|((_, x), y)| x != y).map_or(a.len().min(b.len()), |((i, _), _)| i)
}

/// `foreign_chat_template` (warning): the data's template renders a probe conversation
/// differently from the model's own. Nothing to compare when either is absent.
pub(crate) fn foreign_chat_template(model: Option<&ChatTemplate>, data: Option<&ChatTemplate>) -> Option<Lint> {
    let (model, data) = (model?, data?);
    if model.source() == data.source() {
        return None;
    }
    let (probe, detail) = probes().into_iter().find_map(|(msgs, gen)| {
        let want = model.render(&msgs, gen).ok()?;
        let detail = match data.render(&msgs, gen) {
            Ok(got) if got == want => return None,
            Ok(got) => {
                let at = first_difference(&got, &want);
                format!("from byte {at}, data {} vs model {}", snippet(&got[at..], 40), snippet(&want[at..], 40))
            }
            Err(e) => format!("the data's template fails where the model's renders: {e}"),
        };
        Some((describe(&msgs, gen), detail))
    })?;
    Some(Lint {
        id: ids::FOREIGN_CHAT_TEMPLATE,
        severity: Severity::Warning,
        message: format!(
            "the data's chat template ({}) renders the probe conversation ({probe}) differently from the model's own \
             ({}): {detail}",
            data.origin().display(),
            model.origin().display()
        ),
        fix: "drop the custom template to train with the model's own (the format it was tuned on and is served \
              with), or serve the fine-tuned model with the same custom template"
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn template(src: &str) -> ChatTemplate {
        ChatTemplate::new(src.into(), Some("<|im_start|>".into()), Some("<|im_end|>".into()), "t.jinja")
            .expect("template parses")
    }

    #[test]
    fn rendering_not_source_decides() {
        let model = template(SMOLLM2);
        // Same output, different Jinja spacing and a comment.
        let restyled = SMOLLM2.replace("{% for message in messages %}", "{#- same -#}{%- for message in messages -%}");
        assert_eq!(foreign_chat_template(Some(&model), Some(&template(&restyled))), None);
        assert_eq!(foreign_chat_template(Some(&model), Some(&template(SMOLLM2))), None);
        assert_eq!(foreign_chat_template(None, Some(&template("x"))), None);
        assert_eq!(foreign_chat_template(Some(&model), None), None);
    }

    #[test]
    fn other_rendering_fires_with_the_first_difference() {
        let model = template(SMOLLM2);
        let zephyr = "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}";
        let lint = foreign_chat_template(Some(&model), Some(&template(zephyr))).expect("fires");
        assert_eq!((lint.id, lint.severity), (ids::FOREIGN_CHAT_TEMPLATE, Severity::Warning));
        assert!(lint.message.contains("(user, assistant)"), "{}", lint.message);
        assert!(lint.message.contains("from byte 2, data \"user|>\\nWhat"), "{}", lint.message);
        // Identical until the system message, which this template refuses.
        let no_system = format!(
            "{{% if messages[0]['role'] == 'system' %}}{{{{ raise_exception('no system role') }}}}{{% endif %}}{SMOLLM2}"
        );
        let lint = foreign_chat_template(Some(&model), Some(&template(&no_system))).expect("fires");
        assert!(lint.message.contains("(system, user, assistant)"), "{}", lint.message);
        assert!(lint.message.contains("fails where the model's renders") && lint.message.contains("no system role"));
    }

    #[test]
    fn first_difference_offsets() {
        assert_eq!(first_difference("abc", "abd"), 2);
        assert_eq!(first_difference("ab", "abc"), 2);
        assert_eq!(first_difference("é1", "é2"), 2);
    }
}
