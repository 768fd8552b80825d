//! The fixture report rendered by headless Chromium (Debian's `chromium` package): the screenshot
//! script yields a PNG showing the charts, and the DOM Chromium builds holds the SVG and title.
//! Without Chromium these tests fail unless TUNEGUARD_ALLOW_MISSING_CHROMIUM=1.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use tuneguard_report::{testutil, write_run_report};

const ALLOW_MISSING_ENV: &str = "TUNEGUARD_ALLOW_MISSING_CHROMIUM";

/// Chromium's path (`$CHROMIUM`, else `chromium` on PATH), or `None` when the test should skip.
///
/// # Panics
/// When Chromium is missing and TUNEGUARD_ALLOW_MISSING_CHROMIUM=1 is not set: a rendering test
/// that passes without a browser would hide a broken setup.
fn require_chromium() -> Option<PathBuf> {
    let name = std::env::var_os("CHROMIUM").unwrap_or_else(|| "chromium".into());
    let path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(&name))
        .chain(std::iter::once(PathBuf::from(&name)))
        .find(|p| p.is_absolute() && p.is_file());
    if path.is_some() {
        return path;
    }
    if std::env::var(ALLOW_MISSING_ENV).is_ok_and(|v| v == "1") {
        eprintln!("note: skipping test: chromium not found ({ALLOW_MISSING_ENV}=1)");
        return None;
    }
    panic!("chromium not found on PATH: `apt-get install chromium` (or set {ALLOW_MISSING_ENV}=1 to skip)");
}

fn fixture_report() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    testutil::write_fixture_run(dir.path()).expect("fixture");
    let report = write_run_report(dir.path()).expect("report");
    (dir, report)
}

/// RGB pixels of a PNG (8 bits per channel after expansion) and its size.
fn decode_rgb(path: &Path) -> (Vec<[u8; 3]>, (u32, u32)) {
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("open png"));
    let mut decoder = png::Decoder::new(file);
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "expected colour, got {:?}", info.color_type);
    let px = buf[..info.buffer_size()].chunks(channels).map(|c| [c[0], c[1], c[2]]).collect();
    (px, (info.width, info.height))
}

fn near(p: [u8; 3], c: [u8; 3], tol: i32) -> bool {
    p.iter().zip(c).all(|(&a, b)| (i32::from(a) - i32::from(b)).abs() <= tol)
}

#[test]
fn screenshot_script_renders_a_report_with_visible_charts() {
    let Some(chromium) = require_chromium() else { return };
    let (dir, _) = fixture_report();
    let out = dir.path().join("shot.png");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/screenshot-report.sh");
    let start = Instant::now();
    let status = Command::new("bash").arg(&script).arg(dir.path()).arg(&out).env("CHROMIUM", &chromium).status();
    eprintln!("chromium screenshot took {:.2} s", start.elapsed().as_secs_f64());
    assert!(status.expect("run script").success());
    let (px, size) = decode_rgb(&out);
    assert_eq!(size, (1200, 2400));
    let non_white = px.iter().filter(|p| p.iter().any(|&c| c < 235)).count() as f64 / px.len() as f64;
    // Tables, three charts with grids and text: measured 5.2% (a blank page is 0%).
    assert!(non_white > 0.025, "non-white fraction {non_white:.4}");
    // The training-loss (blue) and validation-loss (orange) lines were drawn in colour
    // (measured 575 and 1429 px).
    let blue = px.iter().filter(|&&p| near(p, [31, 119, 180], 40)).count();
    let orange = px.iter().filter(|&&p| near(p, [255, 127, 14], 40)).count();
    eprintln!("non-white {non_white:.4}, blue {blue} px, orange {orange} px");
    assert!(blue > 200 && orange > 200, "blue {blue} px, orange {orange} px");
}

#[test]
fn chromium_dom_holds_the_charts_and_title() {
    let Some(chromium) = require_chromium() else { return };
    let (dir, report) = fixture_report();
    let profile = tempfile::tempdir().expect("profile");
    let start = Instant::now();
    let out = Command::new("timeout")
        .arg("120")
        .arg(&chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", report.display()))
        .output()
        .expect("run chromium");
    eprintln!("chromium --dump-dom took {:.2} s", start.elapsed().as_secs_f64());
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    let dom = String::from_utf8_lossy(&out.stdout);
    let name = dir.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    assert!(dom.contains(&format!("<title>tuneguard run report: {name}</title>")), "{dom:.500}");
    assert_eq!(dom.matches("<svg ").count(), 3);
    assert!(dom.contains("best step 30 (val loss 2.1000)"));
    // Chromium kept the planted script as text.
    assert!(!dom.contains("<script"));
}
