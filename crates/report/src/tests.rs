//! Unit tests on the fixture run folder (`testutil`).
use scraper::{Html, Selector};

use crate::plot::{BEST_COLOR, MARGIN, STOP_COLOR, TRAIN_COLOR, VAL_COLOR, WIDTH, Y_LABEL_AREA};
use crate::testutil::{self, FIXTURE_BEST_STEP, FIXTURE_SCRIPT, FIXTURE_STEPS, FIXTURE_STOP_STEP};
use crate::*;

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    testutil::write_fixture_run(dir.path()).expect("fixture");
    dir
}

fn hex(c: plotters::style::RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// `(stroke, points)` of every `<polyline>` in an SVG document.
fn polylines(svg: &str) -> Vec<(String, Vec<(i32, i32)>)> {
    let doc = Html::parse_fragment(svg);
    let sel = Selector::parse("polyline").expect("selector");
    doc.select(&sel)
        .map(|e| {
            let pts = e.attr("points").unwrap_or("").split_whitespace();
            let pts = pts
                .filter_map(|p| p.split_once(','))
                .map(|(x, y)| (x.parse().expect("x"), y.parse().expect("y")))
                .collect();
            (e.attr("stroke").unwrap_or("").to_string(), pts)
        })
        .collect()
}

/// The trimmed content of every `<text>` element.
fn texts(svg: &str) -> Vec<String> {
    let doc = Html::parse_fragment(svg);
    let sel = Selector::parse("text").expect("selector");
    doc.select(&sel).map(|e| e.text().collect::<String>().trim().to_string()).collect()
}

/// Hand-computed pixel x of a step: the plotting area covers pixels MARGIN + Y_LABEL_AREA = 100 to
/// WIDTH - MARGIN - 1 = 899, and plotters maps step s of 0..40 to 100 + floor(799 s / 40).
fn step_x(step: u32) -> i32 {
    let x0 = (MARGIN + Y_LABEL_AREA) as i32;
    let last = (WIDTH - MARGIN - 1) as i32;
    x0 + (last - x0) * step as i32 / FIXTURE_STEPS as i32
}

#[test]
fn loss_svg_has_one_polyline_per_series_and_markers_at_their_steps() {
    let dir = fixture();
    let svg = loss_plot_svg(dir.path()).expect("svg");
    assert_eq!((step_x(FIXTURE_BEST_STEP), step_x(FIXTURE_STOP_STEP)), (699, 899));
    let lines = polylines(&svg);
    let of = |c| lines.iter().filter(|(s, _)| *s == hex(c)).map(|(_, p)| p.clone()).collect::<Vec<_>>();
    let (train, val, best, stop) = (of(TRAIN_COLOR), of(VAL_COLOR), of(BEST_COLOR), of(STOP_COLOR));
    assert_eq!((train.len(), val.len(), best.len(), stop.len()), (1, 1, 1, 1), "{lines:?}");
    // Validation: the base model at step 0 and four eval lines.
    assert_eq!((train[0].len(), val[0].len()), (FIXTURE_STEPS as usize, 5));
    assert_eq!(val[0][0].0, step_x(0));
    assert_eq!(train[0][0].0, step_x(1));
    assert!(best[0].iter().all(|p| p.0 == 699), "{:?}", best[0]);
    assert!(stop[0].iter().all(|p| p.0 == 899), "{:?}", stop[0]);
    let texts = texts(&svg);
    for text in ["best step 30 (val loss 2.1000)", "stopped at step 40", "training loss", "validation loss", "step"] {
        assert!(texts.iter().any(|t| t == text), "missing label {text:?} in {texts:?}");
    }
    // Five validation dots (the legend swatches are rects, not circles).
    assert_eq!(svg.matches("<circle").count(), 5);
}

#[test]
fn svg_text_is_plain_text_elements_needing_no_font_files() {
    let dir = fixture();
    let svg = loss_plot_svg(dir.path()).expect("svg");
    assert!(svg.starts_with("<svg") && svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.contains("font-family=\"sans-serif\""));
    assert!(svg.matches("<text").count() > 10);
    for absent in ["@font-face", "url(", "<image", "href"] {
        assert!(!svg.contains(absent), "{absent}");
    }
}

#[test]
fn report_escapes_text_from_the_run_folder() {
    let dir = fixture();
    let html = render_run_report(dir.path()).expect("html");
    assert!(!html.contains(FIXTURE_SCRIPT));
    assert!(!html.contains("<script"));
    assert!(html.contains("&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;"));
    assert!(html.contains("name = &quot;a &amp; b &lt;c&gt;&quot;"));
    assert!(html.contains("gap 0.25 &gt; 0.2 &amp; &lt;b&gt;rising&lt;/b&gt;"));
}

#[test]
fn report_shows_every_section() {
    let dir = fixture();
    let html = render_run_report(dir.path()).expect("html");
    let name = dir.path().file_name().expect("name").to_string_lossy().into_owned();
    let want = [
        format!("<title>tuneguard run report: {name}</title>"),
        "<td>40 of 60 planned</td>".into(),
        "<td>157.4 s (2 min 37 s)</td>".into(),
        "<td>255.5</td>".into(),
        "<td>step 30: val_loss 2.1000</td>".into(),
        "<td>no improvement in val_loss for 1 evaluations (patience 1)</td>".into(),
        "<th>near_dup_clusters</th><td class=\"num\">3</td>".into(),
        "<th>val_perplexity</th><td class=\"num\">8.8460</td>".into(),
        "<h2>Data audit</h2><table><tr><th>exact_duplicates</th><td class=\"num\">2</td>".into(),
        "<h2>Training curves</h2>".into(),
    ];
    for w in &want {
        assert!(html.contains(w.as_str()), "missing {w}");
    }
    assert_eq!(html.matches("<svg").count(), 3);
    // The evaluations table: a header row and one row per eval line.
    assert_eq!(
        html.split("<h2>Evaluations</h2>").nth(1).map(|t| t
            .split("</table>")
            .next()
            .unwrap_or("")
            .matches("<tr>")
            .count()),
        Some(5)
    );
}

#[test]
fn malformed_metrics_line_error_names_file_and_line_3() {
    let dir = fixture();
    let path = dir.path().join("metrics.jsonl");
    let good: Vec<String> = testutil::fixture_metrics().lines().map(String::from).collect();
    std::fs::write(&path, format!("{}\n{}\n{{\"step\": 3, \"loss\": \n{}\n", good[0], good[1], good[2]))
        .expect("write");
    for err in [render_run_report(dir.path()).expect_err("html"), loss_plot_svg(dir.path()).expect_err("svg")] {
        assert!(matches!(err, ReportError::MalformedLine { line: 3, .. }), "{err:?}");
        assert!(err.to_string().starts_with(&format!("{}:3: ", path.display())), "{err}");
    }
}

#[test]
fn malformed_summary_error_names_line_and_column() {
    let dir = fixture();
    std::fs::write(dir.path().join("summary.json"), "{\n  \"steps\": 4,\n  oops\n}").expect("write");
    let err = render_run_report(dir.path()).expect_err("bad summary");
    assert!(matches!(err, ReportError::MalformedJson { line: 3, column: 3, .. }), "{err:?}");
}

#[test]
fn empty_or_missing_metrics_give_a_page_saying_no_steps() {
    let dir = fixture();
    let metrics = dir.path().join("metrics.jsonl");
    std::fs::write(&metrics, "").expect("write");
    let html = render_run_report(dir.path()).expect("html");
    assert!(html.contains("No steps were recorded (metrics.jsonl is empty)."));
    assert!(!html.contains("<svg"));
    assert!(matches!(loss_plot_svg(dir.path()), Err(ReportError::NoSteps { path }) if path == metrics));
    std::fs::remove_file(&metrics).expect("rm");
    let html = render_run_report(dir.path()).expect("html");
    assert!(html.contains("No steps were recorded (metrics.jsonl not found)."));
}

#[test]
fn a_bare_folder_renders_with_sections_marked_na() {
    let dir = tempfile::tempdir().expect("tempdir");
    let html = render_run_report(dir.path()).expect("html");
    assert!(html.contains("<h2>Summary</h2>"));
    assert_eq!(html.matches("<span class=\"na\">n/a</span>").count(), 9 + 3, "9 summary rows, data, final, config");
    assert!(html.contains("No alarms."));
    let missing = dir.path().join("nope");
    assert!(matches!(render_run_report(&missing), Err(ReportError::NotADirectory { path }) if path == missing));
}

#[test]
fn old_runs_without_kind_or_early_stopping_still_plot_training_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = "{\"step\":1,\"total_steps\":2,\"loss\":2.2,\"lr\":0.0,\"tokens_per_s\":249.0}\n\
                 {\"step\":2,\"total_steps\":2,\"loss\":2.3,\"lr\":0.00025,\"tokens_per_s\":251.6}\n";
    std::fs::write(dir.path().join("metrics.jsonl"), lines).expect("write");
    let svg = loss_plot_svg(dir.path()).expect("svg");
    let lines: Vec<_> = polylines(&svg).into_iter().filter(|(s, _)| s != "#000000").collect();
    assert_eq!(lines.len(), 1, "training loss only, no markers (black = axes): {lines:?}");
    assert_eq!(lines[0].1.len(), 2);
}

#[test]
fn write_run_report_is_atomic_and_world_readable() {
    let dir = fixture();
    let path = write_run_report(dir.path()).expect("write");
    assert_eq!(path, dir.path().join("report.html"));
    let written = std::fs::read_to_string(&path).expect("read");
    assert_eq!(written, render_run_report(dir.path()).expect("html"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
    let names: Vec<_> =
        std::fs::read_dir(dir.path()).expect("ls").filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(names.len(), 5, "4 fixture files and report.html, no temp file left: {names:?}");
    let svg_out = dir.path().join("loss.svg");
    write_loss_plot_svg(dir.path(), &svg_out).expect("svg");
    assert_eq!(std::fs::read_to_string(&svg_out).expect("read"), loss_plot_svg(dir.path()).expect("svg"));
}

/// A real run's folder: `tuneguard train configs/quickstart.toml train.max_steps=6` (evaluations
/// at steps 0, 5 and 6), with the repository path shortened to /repo, and the `run` object and
/// `data.val_dropped` (the validation example `val_tokenize` dropped) added by hand, as newer
/// runs write them.
fn real_run() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/quickstart-6-steps")
}

/// The page's text between `<h2>{from}</h2>` and the next `<h2>`.
fn section(html: &str, from: &str) -> String {
    let start = html.find(&format!("<h2>{from}</h2>")).unwrap_or_else(|| panic!("no section {from}"));
    let rest = &html[start + from.len() + 9..];
    rest[..rest.find("<h2>").unwrap_or(rest.len())].to_string()
}

/// `(header, cells)` of every table row of an HTML fragment, as text.
fn table_rows(fragment: &str) -> Vec<Vec<String>> {
    let doc = Html::parse_fragment(fragment);
    let tr = Selector::parse("tr").expect("selector");
    let cell = Selector::parse("th, td").expect("selector");
    doc.select(&tr)
        .map(|r| r.select(&cell).map(|c| c.text().collect::<String>().trim().to_string()).collect())
        .collect()
}

#[test]
fn summary_shows_where_the_run_came_from_when_the_summary_says() {
    let html = render_run_report(&real_run()).expect("html");
    let rows = table_rows(&section(&html, "Summary"));
    let want = [
        ["started", "2026-12-01T23:10:00Z"],
        ["command line", "tuneguard train configs/quickstart.toml train.max_steps=6 output.dir=/tmp/qs --overwrite"],
        ["tuneguard version", "0.1.0"],
        ["model", "/repo/models/SmolLM2-135M-Instruct.Q4_1.gguf"],
        ["model sha256", "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"],
        ["steps", "6"],
    ];
    assert_eq!(rows[..6], want.map(|r| r.map(String::from).to_vec()));
    // Older runs have no `run` object: no such rows, and no n/a for them.
    let fixture = render_run_report(fixture().path()).expect("html");
    assert!(!fixture.contains("command line") && !fixture.contains("model sha256"));
    assert_eq!(
        shell_join_of(&["tuneguard", "train", "a b.toml", "x='1'"]),
        "tuneguard train 'a b.toml' 'x='\\''1'\\'''"
    );
}

fn shell_join_of(args: &[&str]) -> String {
    crate::page::shell_join(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
}

#[test]
fn data_section_reads_in_pipeline_order_with_labels_and_a_tokenization_table() {
    let html = render_run_report(&real_run()).expect("html");
    let rows = table_rows(&section(&html, "Data"));
    let want: &[&[&str]] = &[
        &["rows read", "175"],
        &["rejected by the loader (rejected.jsonl)", "0"],
        &["quarantined by the audit (quarantine.jsonl)", "0"],
        &["kept with audit warnings", "3"],
        &["training examples", "145"],
        &["validation examples", "24"],
        &["validation examples from", "split"],
        &["validation examples removed: exact copies of training examples", "0"],
        &["validation examples removed: near copies of training examples", "0"],
        &["training examples left out (data.max_train_examples)", "0"],
        &["training examples truncated to max_len", "0"],
        &["training examples dropped at tokenization", "5"],
        &["validation examples dropped at tokenization", "1"],
        &["augmented copies added to training", "0"],
        &["tokenization", "training", "validation"],
        &["examples", "150", "25"],
        &["kept", "145", "24"],
        &["truncated to max_len", "0", "0"],
        &["dropped: too long", "5", "1"],
        &["dropped: nothing supervised", "0", "0"],
        &["tokens", "19033", "2733"],
        &["supervised tokens", "7943", "1060"],
    ];
    assert_eq!(rows, want.iter().map(|r| r.iter().map(|c| c.to_string()).collect::<Vec<_>>()).collect::<Vec<_>>());
}

#[test]
fn audit_section_lists_the_checks_that_fired_with_their_first_findings() {
    let html = render_run_report(&real_run()).expect("html");
    let audit = section(&html, "Data audit");
    assert!(audit.contains("<p>175 rows audited: 172 clean, 3 kept with warnings, 0 quarantined.</p>"), "{audit}");
    let rows = table_rows(&audit);
    let file = "data/quickstart/selfinstruct_seed_tasks.jsonl";
    let row = |cells: [&str; 3], findings: String| {
        cells.iter().map(|c| c.to_string()).chain(std::iter::once(findings)).collect::<Vec<String>>()
    };
    let want = vec![
        row(["check", "rows", "action"], "first findings".into()),
        row(
            ["length_outlier", "1", "warn"],
            format!("{file}:63: length 1411 tokens is an outlier (modified z 4.07; median 122 tokens)"),
        ),
        row(
            ["pii_email", "2", "warn"],
            format!(
                "{file}:75: e-mail address em************om in message 1 (user) (2 in the row)\
                 {file}:167: e-mail address al*****************om in message 1 (user)"
            ),
        ),
        row(
            ["pii_phone", "1", "warn"],
            format!("{file}:75: phone number (1**********91 in message 1 (user) (2 in the row)"),
        ),
    ];
    assert_eq!(rows, want);
    assert!(audit.contains(
        "No findings: bad_role, conflicting_answer, control_chars, empty_field, exact_duplicate, field_count, \
         invalid_csv, invalid_json, invalid_utf8, missing_field, near_duplicate, no_assistant_turn, not_an_object, \
         pii_card, pii_iban, unknown_format, wrong_type."
    ));
    assert!(
        audit.contains("Lengths: median 122 tokens; outside 15–1000 is an outlier (modified z &gt; 3.5)."),
        "{audit}"
    );
    assert!(!audit.contains(".found") && !audit.contains(".listed"));
}

#[test]
fn smoothed_training_loss_is_the_ema_train_logged_and_is_drawn_over_the_raw_loss() {
    let run = crate::run::RunData::read(&real_run()).expect("read");
    assert_eq!(run.loss_ema, Some(0.9));
    let (label, smoothed) = run.smoothed_train_loss();
    assert_eq!(label, "training loss, smoothed (EMA 0.9)");
    assert_eq!(smoothed.len(), 6);
    // At the evaluations, train logged the same smoothing as `train_loss_smoothed`.
    for e in run.evals.iter().filter(|e| e.step > 0.0) {
        let logged = e.line.train_loss_smoothed.flatten().expect("logged");
        let at = smoothed.iter().find(|p| p.0 == e.step).expect("a point at the eval step").1;
        assert!((at - logged).abs() < 1e-12, "step {}: {at} vs {logged}", e.step);
    }
    // Step 1 is the first loss itself (bias correction), step 2 by hand.
    let (l1, l2) = (run.train[0].loss.expect("l1"), run.train[1].loss.expect("l2"));
    assert_eq!(smoothed[0], (1.0, l1));
    assert!((smoothed[1].1 - (0.9 * 0.1 * l1 + 0.1 * l2) / (1.0 - 0.81)).abs() < 1e-12);

    let svg = loss_plot_svg(&real_run()).expect("svg");
    let lines = polylines(&svg);
    let of = |c| lines.iter().filter(|(s, _)| *s == hex(c)).map(|(_, p)| p.len()).collect::<Vec<_>>();
    assert_eq!((of(TRAIN_COLOR), of(crate::plot::SMOOTH_COLOR)), (vec![6], vec![6]));
    let texts = texts(&svg);
    for t in ["training loss", "training loss, smoothed (EMA 0.9)", "validation loss"] {
        assert!(texts.iter().any(|x| x == t), "legend {t:?} in {texts:?}");
    }
    // Without train.loss_ema in config.toml the eval lines' values are drawn (the fixture: four).
    let run = crate::run::RunData::read(fixture().path()).expect("read");
    assert_eq!(run.smoothed_train_loss().1.len(), 4);
}

#[test]
fn a_folder_that_is_not_a_run_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), "not a run").expect("write");
    let err = write_run_report(dir.path()).expect_err("refused");
    assert!(matches!(&err, ReportError::NotARun { path } if path == dir.path()), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not a run folder (no metrics.jsonl, summary.json or config.toml; give the output.dir of `tuneguard train`)",
            dir.path().display()
        )
    );
    let svg = dir.path().join("loss.svg");
    assert!(matches!(write_loss_plot_svg(dir.path(), &svg), Err(ReportError::NotARun { .. })));
    let names: Vec<_> =
        std::fs::read_dir(dir.path()).expect("ls").filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(names, ["notes.txt"]);
    // One of the three files is enough: a run that stopped early still gets its report.
    std::fs::write(dir.path().join("config.toml"), "[train]\nloss_ema = 0.9\n").expect("write");
    assert_eq!(write_run_report(dir.path()).expect("report"), dir.path().join("report.html"));
}
