//! The report is well-formed HTML5: html5ever's tree builder (exact errors on) reports no parse
//! error, the page is in no-quirks mode, and the SVG charts land in the SVG namespace.
use html5ever::driver::ParseOpts;
use html5ever::tendril::TendrilSink;
use html5ever::tokenizer::TokenizerOpts;
use scraper::{Html, HtmlTreeSink, Selector};
use tuneguard_report::{render_run_report, testutil};

fn parse_strict(text: &str) -> Html {
    let opts =
        ParseOpts { tokenizer: TokenizerOpts { exact_errors: true, ..Default::default() }, ..Default::default() };
    html5ever::driver::parse_document(HtmlTreeSink::new(Html::new_document()), opts).one(text)
}

fn select<'a>(doc: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    doc.select(&Selector::parse(css).expect("selector")).collect()
}

#[test]
fn the_checker_reports_errors_on_broken_html() {
    let doc = parse_strict("<!DOCTYPE html><html><head><title>x</title></head><body><p>a</div></table></body></html>");
    assert!(!doc.errors.is_empty());
    let doc = parse_strict("<html><body>no doctype</body></html>");
    assert_eq!(doc.quirks_mode, html5ever::tree_builder::QuirksMode::Quirks);
}

#[test]
fn fixture_report_parses_without_errors_and_holds_three_svg_charts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    testutil::write_fixture_run(dir.path())?;
    let html = render_run_report(dir.path())?;
    let doc = parse_strict(&html);
    assert!(doc.errors.is_empty(), "parse errors: {:?}", doc.errors);
    assert_eq!(doc.quirks_mode, html5ever::tree_builder::QuirksMode::NoQuirks);
    let svgs = select(&doc, "figure > svg");
    assert_eq!(svgs.len(), 3);
    for svg in &svgs {
        assert_eq!(svg.value().name.ns.as_ref(), "http://www.w3.org/2000/svg");
        assert!(svg.select(&Selector::parse("polyline").expect("selector")).count() > 0);
    }
    let name = dir.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let title: String = select(&doc, "title")[0].text().collect();
    assert_eq!(title, format!("tuneguard run report: {name}"));
    // The planted script is text inside <pre>, not an element.
    assert!(select(&doc, "script").is_empty());
    let pre: String = select(&doc, "pre")[0].text().collect();
    assert!(pre.contains(testutil::FIXTURE_SCRIPT));
    Ok(())
}

#[test]
fn pages_without_metrics_parse_without_errors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let bare = render_run_report(dir.path())?;
    std::fs::write(dir.path().join("metrics.jsonl"), "")?;
    let empty = render_run_report(dir.path())?;
    for html in [bare, empty] {
        let doc = parse_strict(&html);
        assert!(doc.errors.is_empty(), "parse errors: {:?}", doc.errors);
        assert!(select(&doc, "svg").is_empty());
    }
    Ok(())
}

#[test]
fn real_run_report_with_audit_data_and_run_sections_parses_without_errors() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/quickstart-6-steps");
    let html = render_run_report(&dir).expect("html");
    let doc = parse_strict(&html);
    assert!(doc.errors.is_empty(), "parse errors: {:?}", doc.errors);
    assert_eq!(select(&doc, "figure > svg").len(), 3);
    // Summary, evaluations, data, tokenization, final metrics and audit.
    assert_eq!(select(&doc, "table").len(), 6);
    assert_eq!(select(&doc, "ul.examples li").len(), 4);
}
