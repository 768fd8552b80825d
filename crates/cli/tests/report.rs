//! End-to-end: `tuneguard report RUN_DIR [--loss-svg PATH]` on the report crate's fixture run.
use std::path::Path;
use std::process::{Command, Output};

use tuneguard_report::testutil;

fn tuneguard(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tuneguard"))
        .arg("report")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("cannot run the tuneguard binary")
}

#[test]
fn report_writes_the_page_and_the_loss_svg_and_prints_their_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    testutil::write_fixture_run(dir.path()).expect("fixture");
    let svg = dir.path().join("loss.svg");
    let out = tuneguard(&[dir.path(), Path::new("--loss-svg"), &svg]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = dir.path().join("report.html");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, format!("{}\n{}\n", html.display(), svg.display()));
    assert_eq!(
        std::fs::read_to_string(&html).expect("html"),
        tuneguard_report::render_run_report(dir.path()).expect("render")
    );
    assert!(std::fs::read_to_string(&svg).expect("svg").starts_with("<svg"));
}

#[test]
fn bad_run_folders_exit_2_with_one_error_line_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = dir.path().join("metrics.jsonl");
    std::fs::write(&metrics, "{\"step\":1,\"loss\":2.0}\n{\"step\":2,\"loss\":1.9}\n{\"step\":3,\n").expect("write");
    let missing = dir.path().join("no-such-run");
    let cases = [
        (dir.path().to_path_buf(), format!("{}:3: malformed metrics line", metrics.display())),
        (missing.clone(), format!("{}: not a run folder", missing.display())),
    ];
    for (run_dir, want) in cases {
        let out = tuneguard(&[&run_dir]);
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with(&format!("error: {want}")), "{stderr}");
    }
}

#[test]
fn report_of_a_folder_that_is_not_a_run_exits_2_and_writes_nothing() {
    // It used to write an all-"n/a" report.html and exit 0.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), "not a run").expect("write");
    let svg = dir.path().join("loss.svg");
    let out = tuneguard(&[dir.path(), Path::new("--loss-svg"), &svg]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        format!(
            "error: {}: not a run folder (no metrics.jsonl, summary.json or config.toml; give the output.dir of \
             `tuneguard train`)\n",
            dir.path().display()
        )
    );
    let names: Vec<_> =
        std::fs::read_dir(dir.path()).expect("ls").filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(names, ["notes.txt"], "nothing written");
}
