//! End-to-end: `tuneguard audit` on bad input names the problem (exit 2), and its help says what
//! it takes and what its exit codes mean. No model needed.
use std::path::Path;
use std::process::{Command, Output};

fn tuneguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tuneguard"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("cannot run the tuneguard binary")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

#[test]
fn audit_of_missing_file_says_it_does_not_exist() {
    // It used to say the file "is where the audit would write its output": two failed
    // canonicalize calls compared equal.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    for name in ["missing.jsonl", "missing.toml"] {
        let missing = dir.path().join(name);
        let o = tuneguard(&["audit", s(&missing), "--out", s(&out)]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr, format!("error: {}: does not exist\n", missing.display()));
        assert!(!out.exists(), "nothing written");
    }
    let o = tuneguard(&["audit", s(dir.path())]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with(&format!("error: {}: is a folder", dir.path().display())), "{stderr}");
}

#[test]
fn audit_help_says_inputs_are_data_files_or_a_recipe_and_lists_the_exit_codes() {
    let o = tuneguard(&["audit", "--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    for want in [
        "Usage: tuneguard audit [OPTIONS] <DATA|RECIPE>...",
        "Or one recipe (.toml)",
        "Exit codes:",
        "0 nothing would stop training",
        "1 training would stop: a check set to `fail` fired, no usable row is left, or (recipe) a lint error fired",
        "2 bad input",
    ] {
        assert!(help.contains(want), "{want:?} missing from:\n{help}");
    }
}
