//! Overlap of a generated answer with its references.
//!
//! - [`exact_match`] and [`token_f1`]: the official SQuAD v2.0 evaluation script (Rajpurkar
//!   et al. 2016, 2018; transformers' `squad_metrics` carries the same functions): both texts
//!   are normalized (lower case, ASCII punctuation removed, the articles a/an/the removed,
//!   whitespace collapsed); token F1 is the harmonic mean of the precision and recall of the
//!   shared tokens (a multiset intersection), 1 when both sides are empty after normalization
//!   and 0 when one is; with several references the best score counts.
//! - [`rouge_l`]: ROUGE-L F-measure (Lin 2004, "ROUGE: A Package for Automatic Evaluation of
//!   Summaries"), as Google's `rouge-score` package computes it without stemming: text lower
//!   cased, every run of characters other than `a-z0-9` a separator, precision and recall of
//!   the longest common subsequence of tokens; 0 when either side has no token; with several
//!   references the best F-measure counts.
use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;

use crate::info::{MetricInfo, EXACT_MATCH, ROUGE_L, TOKEN_F1};
use crate::Metric;

/// The SQuAD answer normalization (`normalize_answer`).
pub fn normalize_answer(s: &str) -> String {
    static ARTICLES: OnceLock<Regex> = OnceLock::new();
    let articles = ARTICLES.get_or_init(|| Regex::new(r"\b(a|an|the)\b").unwrap_or_else(|_| unreachable!()));
    let lower = s.to_lowercase();
    let no_punct: String = lower.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    let no_articles = articles.replace_all(&no_punct, " ");
    no_articles.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// 1.0 when the normalized prediction equals a normalized reference, else 0.0.
pub fn exact_match(prediction: &str, references: &[&str]) -> f64 {
    let p = normalize_answer(prediction);
    if references.iter().any(|r| normalize_answer(r) == p) {
        1.0
    } else {
        0.0
    }
}

/// The best SQuAD token F1 of `prediction` against `references` (0.0 when there is none).
pub fn token_f1(prediction: &str, references: &[&str]) -> f64 {
    references.iter().map(|r| token_f1_one(prediction, r)).fold(0.0, f64::max)
}

fn token_f1_one(prediction: &str, reference: &str) -> f64 {
    let (p, r) = (normalize_answer(prediction), normalize_answer(reference));
    let (p, r): (Vec<&str>, Vec<&str>) = (p.split_whitespace().collect(), r.split_whitespace().collect());
    if p.is_empty() || r.is_empty() {
        return if p == r { 1.0 } else { 0.0 };
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &r {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0usize;
    for t in &p {
        if let Some(n) = counts.get_mut(t).filter(|n| **n > 0) {
            *n -= 1;
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / p.len() as f64;
    let recall = same as f64 / r.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// `rouge-score`'s tokens: lower case, split at every character outside `a-z0-9`.
pub fn rouge_tokens(s: &str) -> Vec<String> {
    s.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Precision, recall and F-measure of ROUGE-L for one reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RougeScore {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

/// ROUGE-L of `prediction` against one reference.
pub fn rouge_l_score(prediction: &str, reference: &str) -> RougeScore {
    let (p, r) = (rouge_tokens(prediction), rouge_tokens(reference));
    if p.is_empty() || r.is_empty() {
        return RougeScore { precision: 0.0, recall: 0.0, fmeasure: 0.0 };
    }
    let lcs = lcs_len(&r, &p) as f64;
    let (precision, recall) = (lcs / p.len() as f64, lcs / r.len() as f64);
    let fmeasure = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    RougeScore { precision, recall, fmeasure }
}

/// The best ROUGE-L F-measure against `references` (0.0 when there is none).
pub fn rouge_l(prediction: &str, references: &[&str]) -> f64 {
    references.iter().map(|r| rouge_l_score(prediction, r).fmeasure).fold(0.0, f64::max)
}

/// Length of the longest common subsequence (one row of the dynamic programme at a time).
fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { prev[j + 1].max(cur[j]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The mean over answers of one of the scores above.
#[derive(Debug, Clone, Copy)]
pub struct MeanOverAnswers {
    info: MetricInfo,
    score: fn(&str, &[&str]) -> f64,
    sum: f64,
    n: usize,
}

impl MeanOverAnswers {
    pub fn exact_match() -> Self {
        MeanOverAnswers { info: EXACT_MATCH, score: exact_match, sum: 0.0, n: 0 }
    }
    pub fn token_f1() -> Self {
        MeanOverAnswers { info: TOKEN_F1, score: token_f1, sum: 0.0, n: 0 }
    }
    pub fn rouge_l() -> Self {
        MeanOverAnswers { info: ROUGE_L, score: rouge_l, sum: 0.0, n: 0 }
    }
}

impl Metric for MeanOverAnswers {
    /// (prediction, references)
    type Item<'a> = (&'a str, &'a [&'a str]);

    fn info(&self) -> MetricInfo {
        self.info
    }

    fn update(&mut self, (prediction, references): Self::Item<'_>) {
        self.sum += (self.score)(prediction, references);
        self.n += 1;
    }

    fn value(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_scores() {
        assert_eq!(normalize_answer("  The  Eiffel-Tower, in PARIS! "), "eiffeltower in paris");
        assert_eq!(exact_match("the Eiffel Tower", &["Eiffel Tower.", "x"]), 1.0);
        assert_eq!(exact_match("Eiffel", &["Eiffel Tower"]), 0.0);
        // prediction "eiffel tower paris" vs "eiffel tower": 2 shared, p = 2/3, r = 1
        assert!((token_f1("Eiffel Tower, Paris", &["the Eiffel Tower"]) - 0.8).abs() < 1e-15);
        assert_eq!(token_f1("a", &["the"]), 1.0); // both empty after normalization
        assert_eq!(token_f1("x", &[]), 0.0);
        // LCS of "the cat sat on the mat" / "the cat on a mat": the cat on mat = 4
        let s = rouge_l_score("the cat on a mat", "the cat sat on the mat");
        assert_eq!((s.precision, s.recall), (4.0 / 5.0, 4.0 / 6.0));
        assert_eq!(rouge_tokens("Don't STOP—2x!"), ["don", "t", "stop", "2x"]);
        assert_eq!(rouge_l("...", &["a b"]), 0.0);
        let mut m = MeanOverAnswers::exact_match();
        assert_eq!(m.value(), None);
        m.update(("a", &["a"]));
        m.update(("b", &["c"]));
        assert_eq!(m.value(), Some(0.5));
        assert_eq!(m.info().name, "exact_match");
    }
}
