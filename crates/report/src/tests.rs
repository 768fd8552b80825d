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
