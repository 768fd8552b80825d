//! tuneguard-metrics against the reference implementations: the values in
//! `tests/data/reference.json` were computed by scikit-learn, transformers' squad_metrics and
//! rouge-score (`scripts/reference/metrics_reference.py`, which also lists their versions).
use serde_json::Value;
use tuneguard_metrics::classification::{accuracy, averaged, confusion_matrix, per_class, Average, ZeroDivision};
use tuneguard_metrics::text::{exact_match, normalize_answer, rouge_l, rouge_l_score, token_f1};

type Res = Result<(), Box<dyn std::error::Error>>;

fn reference() -> Result<Value, Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/reference.json");
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default()
}

/// A reference number (null is NaN) equals ours to 1e-12.
fn same(want: &Value, got: f64, what: &str) {
    match want.as_f64() {
        None => assert!(got.is_nan(), "{what}: want NaN, got {got}"),
        Some(w) => assert!((w - got).abs() <= 1e-12, "{what}: want {w}, got {got}"),
    }
}

fn same_all(want: &Value, got: &[f64], what: &str) {
    let want = want.as_array().cloned().unwrap_or_default();
    assert_eq!(want.len(), got.len(), "{what}: lengths");
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        same(w, *g, &format!("{what}[{i}]"));
    }
}

#[test]
fn classification_matches_scikit_learn() -> Res {
    let doc = reference()?;
    let cases = doc["classification"].as_array().ok_or("no cases")?;
    let mut checked = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let (t, p) = (ints(&case["y_true"]), ints(&case["y_pred"]));
        let labels = case.get("labels").map(ints);
        let e = &case["expected"];
        same(&e["accuracy"], accuracy(&t, &p)?, &format!("{name}: accuracy"));
        match (e.get("confusion_matrix"), confusion_matrix(&t, &p, labels.as_deref())) {
            (Some(want), Ok((_, got))) => {
                let want: Vec<Vec<usize>> = serde_json::from_value(want.clone())?;
                assert_eq!(got, want, "{name}: confusion matrix");
            }
            (None, Err(err)) => assert!(e["confusion_matrix_error"].is_string(), "{name}: {err}"),
            (want, got) => panic!("{name}: confusion matrix: want {want:?}, got {got:?}"),
        }
        for row in e["prf"].as_array().ok_or("no prf")? {
            let zd = match row["zero_division"].as_str() {
                Some("one") => ZeroDivision::One,
                Some("nan") => ZeroDivision::Nan,
                _ => ZeroDivision::Zero,
            };
            let beta = row["beta"].as_f64().ok_or("beta")?;
            let avg = row["average"].as_str().unwrap_or("?");
            let what = format!("{name}: average={avg} beta={beta} zero_division={zd:?}");
            if avg == "none" {
                let got = per_class(&t, &p, labels.as_deref(), beta, zd)?;
                same_all(&row["precision"], &got.precision, &format!("{what} precision"));
                same_all(&row["recall"], &got.recall, &format!("{what} recall"));
                same_all(&row["f_score"], &got.f_score, &format!("{what} f"));
                let support: Vec<usize> = serde_json::from_value(row["support"].clone())?;
                assert_eq!(got.support, support, "{what} support");
            } else {
                let average = match avg {
                    "binary" => Average::Binary { pos_label: 1 },
                    "micro" => Average::Micro,
                    "macro" => Average::Macro,
                    _ => Average::Weighted,
                };
                let got = averaged(&t, &p, labels.as_deref(), &average, beta, zd)?;
                same(&row["precision"], got.precision, &format!("{what} precision"));
                same(&row["recall"], got.recall, &format!("{what} recall"));
                same(&row["f_score"], got.f_score, &format!("{what} f"));
            }
            checked += 1;
        }
    }
    assert!(checked >= 400, "only {checked} reference rows");
    Ok(())
}

#[test]
fn text_scores_match_squad_and_rouge_score() -> Res {
    let doc = reference()?;
    for case in doc["text"].as_array().ok_or("no text cases")? {
        let pred = case["prediction"].as_str().ok_or("prediction")?;
        let refs: Vec<&str> = case["references"].as_array().ok_or("refs")?.iter().filter_map(Value::as_str).collect();
        assert_eq!(normalize_answer(pred), case["normalized"].as_str().unwrap_or("?"), "{pred:?}: normalized");
        same(&case["exact_match"], exact_match(pred, &refs), &format!("{pred:?}: exact match"));
        same(&case["token_f1"], token_f1(pred, &refs), &format!("{pred:?}: token F1"));
        let per_ref = case["rouge_l"].as_array().ok_or("rouge")?;
        for (r, want) in refs.iter().zip(per_ref) {
            let got = rouge_l_score(pred, r);
            same(&want["precision"], got.precision, &format!("{pred:?} vs {r:?}: ROUGE-L precision"));
            same(&want["recall"], got.recall, &format!("{pred:?} vs {r:?}: ROUGE-L recall"));
            same(&want["fmeasure"], got.fmeasure, &format!("{pred:?} vs {r:?}: ROUGE-L F"));
        }
        let best = per_ref.iter().filter_map(|s| s["fmeasure"].as_f64()).fold(0.0, f64::max);
        assert_eq!(rouge_l(pred, &refs), best, "{pred:?}: best ROUGE-L");
    }
    Ok(())
}
