//! Audit throughput (a benchmark, not a test): validation + exact, conflicting and near
//! duplicates + control characters + PII + character-length outliers over N rows built from the
//! real instruction data, streamed from a temporary JSONL file.
//!
//! `cargo bench -p tuneguard-audit --bench audit_throughput -- [--rows 100000,1000000] [--threads 2]
//! [--num-perm 128] [--dir DIR]`
//!
//! Rows: SuperNI + Self-Instruct rows (instruction, context, response) in turn. Pass 0 is the
//! real data; in each later pass the words of every context and response are shuffled (seeded),
//! so the row is new while the task definition repeats, as in real instruction data. Every 50th
//! row is an earlier row with case and spacing changed (exact duplicate) and every 50th + 25 an
//! earlier row with a word added to its response (a conflicting answer: the same prompt).
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};
use tuneguard_audit::checks::{self, AuditConfig, AuditOptions};
use tuneguard_model::testutil::{peak_rss_mib, shared_dir};

type Error = Box<dyn std::error::Error>;

fn real_rows() -> Result<Vec<Value>, Error> {
    let mut rows = Vec::new();
    for rel in ["instruction/superni_en_shared.jsonl", "instruction/selfinstruct_seed_tasks.jsonl"] {
        for line in std::fs::read_to_string(shared_dir().join("data").join(rel))?.lines() {
            let v: Value = serde_json::from_str(line)?;
            rows.push(json!({"instruction": v["instruction"], "context": v["context"], "response": v["response"]}));
        }
    }
    Ok(rows)
}

/// SplitMix64 (Steele, Lea & Flood 2014), for the seeded shuffles.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn shuffle_words(s: &str, state: &mut u64) -> String {
    let mut w: Vec<&str> = s.split_whitespace().collect();
    for i in (1..w.len()).rev() {
        w.swap(i, (next(state) % (i as u64 + 1)) as usize);
    }
    w.join(" ")
}

fn field(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

/// Row `i` of the synthetic corpus.
fn row(real: &[Value], i: usize, state: &mut u64) -> Value {
    let base = &real[i % real.len()];
    let pass = i / real.len();
    if pass > 0 && i.is_multiple_of(50) {
        let r = row(real, i - 1 - (next(state) % 1000) as usize, &mut (i as u64));
        return json!({"instruction": field(&r, "instruction").to_uppercase(), "context": r["context"], "response": format!(" {} ", field(&r, "response"))});
    }
    if pass > 0 && i % 50 == 25 {
        let mut r = row(real, i - 1 - (next(state) % 1000) as usize, &mut (i as u64));
        r["response"] = json!(field(&r, "response") + " indeed");
        return r;
    }
    if pass == 0 {
        return base.clone();
    }
    let mut s = (i as u64) ^ 0x5EED;
    json!({
        "instruction": base["instruction"],
        "context": shuffle_words(&field(base, "context"), &mut s),
        "response": shuffle_words(&field(base, "response"), &mut s),
    })
}

fn write_corpus(path: &Path, real: &[Value], n: usize) -> Result<u64, Error> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut state = 42u64;
    for i in 0..n {
        serde_json::to_writer(&mut w, &row(real, i, &mut state))?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

struct Args {
    rows: Vec<usize>,
    num_perm: usize,
    threads: usize,
    dir: PathBuf,
}

fn parse_args() -> Result<Args, Error> {
    let mut a = Args {
        rows: vec![100_000, 1_000_000],
        num_perm: AuditConfig::default().num_perm,
        threads: 2,
        dir: std::env::temp_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        match k.as_str() {
            "--rows" => {
                a.rows = it.next().ok_or("--rows N[,N]")?.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            "--num-perm" => a.num_perm = it.next().ok_or("--num-perm N")?.parse()?,
            "--threads" => a.threads = it.next().ok_or("--threads N")?.parse()?,
            "--dir" => a.dir = it.next().ok_or("--dir DIR")?.into(),
            _ => {} // cargo bench adds --bench
        }
    }
    Ok(a)
}

/// Resets VmHWM (Linux ≥ 4.0), so each size reports its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() -> Result<(), Error> {
    let args = parse_args()?;
    rayon::ThreadPoolBuilder::new().num_threads(args.threads).build_global()?;
    let real = real_rows()?;
    println!("{} real rows; {} threads; num_perm {}", real.len(), args.threads, args.num_perm);
    println!("| rows | MB | seconds | rows/min | MB/s | peak RSS MiB | near-dup index rows | quarantined |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &args.rows {
        let dir = tempfile::tempdir_in(&args.dir)?;
        let path = dir.path().join("corpus.jsonl");
        let bytes = write_corpus(&path, &real, n)?;
        reset_peak_rss();
        let start = Instant::now();
        let cfg = AuditConfig { num_perm: args.num_perm, ..Default::default() };
        let report = checks::audit_files(&[path], &cfg, &AuditOptions::default())?;
        let secs = start.elapsed().as_secs_f64();
        let mb = bytes as f64 / 1e6;
        println!(
            "| {n} | {mb:.0} | {secs:.2} | {:.0} | {:.0} | {:.0} | {} | {} |",
            n as f64 / secs * 60.0,
            mb / secs,
            peak_rss_mib(),
            report.near_index_rows,
            report.rows.quarantined
        );
        let found: Vec<String> =
            report.counts.iter().filter(|(_, c)| c.found > 0).map(|(k, c)| format!("{k} {}", c.found)).collect();
        println!("  found: {}", found.join(", "));
    }
    Ok(())
}
