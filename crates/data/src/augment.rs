//! Text augmentation: modified copies of training examples. `system_prompt_variants` re-renders
//! chat examples under varied system prompts, so the adapter learns the task rather than one
//! exact prompt prefix (the "system prompt diversity" used e.g. in Orca, Mukherjee et al. 2023).
//! Copies are made only from training examples, after the validation split, so they cannot leak.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use tuneguard_model::chat::ChatMessage;

use crate::record::Example;

/// Generic assistant system prompts, used when the recipe gives none.
pub const DEFAULT_SYSTEM_PROMPTS: &[&str] = &[
    "You are a helpful assistant.",
    "You are a knowledgeable assistant. Answer accurately and concisely.",
    "You are an AI assistant. Follow the user's instructions carefully.",
    "You are a friendly assistant who gives clear, direct answers.",
    "You are a careful assistant. Think about the request, then answer it.",
    "You are an expert assistant. Provide a precise and complete response.",
    "You are a polite assistant that helps users with their tasks.",
    "You are an assistant. Respond to the request below as well as you can.",
];

/// For each chat example, `copies` new examples whose system message is replaced (or, when it
/// has none, preceded) by a prompt from `prompts` (empty = [`DEFAULT_SYSTEM_PROMPTS`]). The
/// copies of one example get distinct prompts while the pool lasts; the choice is seeded. Text
/// examples have no system prompt and are not copied. Returns the copies only, as
/// (index of the original, copy).
pub fn system_prompt_variants(
    examples: &[Example],
    copies: usize,
    prompts: &[String],
    seed: u64,
) -> Vec<(usize, Example)> {
    let pool: Vec<&str> =
        if prompts.is_empty() { DEFAULT_SYSTEM_PROMPTS.to_vec() } else { prompts.iter().map(String::as_str).collect() };
    let mut out = Vec::new();
    if copies == 0 || pool.is_empty() {
        return out;
    }
    for (i, ex) in examples.iter().enumerate() {
        let Example::Chat(messages) = ex else { continue };
        let mut order: Vec<usize> = (0..pool.len()).collect();
        order.shuffle(&mut ChaCha12Rng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        for c in 0..copies {
            let prompt = pool[order[c % order.len()]];
            let mut m = messages.clone();
            match m.iter_mut().find(|x| x.role == "system") {
                Some(sys) => sys.content = prompt.to_string(),
                None => m.insert(0, ChatMessage::new("system", prompt)),
            }
            out.push((i, Example::Chat(m)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(system: Option<&str>) -> Example {
        let mut m = Vec::new();
        if let Some(s) = system {
            m.push(ChatMessage::new("system", s));
        }
        m.push(ChatMessage::new("user", "Name a prime."));
        m.push(ChatMessage::new("assistant", "7"));
        Example::Chat(m)
    }

    #[test]
    fn copies_vary_the_system_prompt_and_keep_the_turns() {
        let data = vec![chat(None), chat(Some("Be terse.")), Example::Text("plain".into())];
        let out = system_prompt_variants(&data, 2, &[], 9);
        assert_eq!(out.len(), 4, "two copies of each chat example, none of the text one");
        for (i, ex) in &out {
            let Example::Chat(m) = ex else { panic!("chat expected") };
            assert_eq!(m.len(), 3, "a system message is added or replaced, never duplicated");
            assert_eq!(m[0].role, "system");
            assert!(DEFAULT_SYSTEM_PROMPTS.contains(&m[0].content.as_str()));
            let Example::Chat(orig) = &data[*i] else { panic!("chat expected") };
            let turns: Vec<&ChatMessage> = orig.iter().filter(|x| x.role != "system").collect();
            assert_eq!(m[1..].iter().collect::<Vec<_>>(), turns, "the turns are unchanged");
        }
        let Example::Chat(a) = &out[0].1 else { unreachable!() };
        let Example::Chat(b) = &out[1].1 else { unreachable!() };
        assert_ne!(a[0].content, b[0].content, "two copies of one example get different prompts");
        assert_eq!(out, system_prompt_variants(&data, 2, &[], 9), "seeded");
    }

    #[test]
    fn a_given_pool_is_used_and_zero_copies_is_off() {
        let data = vec![chat(None)];
        let pool = vec!["P1".to_string()];
        let out = system_prompt_variants(&data, 3, &pool, 0);
        assert!(out.iter().all(|(_, e)| matches!(e, Example::Chat(m) if m[0].content == "P1")));
        assert!(system_prompt_variants(&data, 0, &pool, 0).is_empty());
    }
}
