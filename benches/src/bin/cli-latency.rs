//! End-to-end latency of `skd search` as a user runs it: a new process per query against a
//! warm index. `cli-latency SKD_BINARY CORPUS_DIR [RUNS]` (CORPUS_DIR from `gen-notes`).

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [skd, corpus, rest @ ..] = args.as_slice() else {
        bail!("usage: cli-latency SKD_BINARY CORPUS_DIR [RUNS]");
    };
    let runs: usize = rest.first().map(|s| s.parse()).transpose().context("RUNS must be a number")?.unwrap_or(200);
    let corpus = PathBuf::from(corpus);
    let state = tempfile::tempdir()?;
    let skd_cmd = |args: &[&str]| {
        let mut c = Command::new(skd);
        c.args(args)
            .env("SKD_CONFIG", state.path().join("config.toml"))
            .env("SKD_NOTES", corpus.join("notes"))
            .env("SKD_SKILLS_DIR", corpus.join("skills"))
            .env("SKD_IMPORT_SKILL_DIRS", "")
            .env("SKD_INDEX_DIR", state.path().join("index"));
        c
    };
    std::fs::write(state.path().join("config.toml"), "")?;
    let t = Instant::now();
    let out = skd_cmd(&["index", "--quiet"]).output()?;
    if !out.status.success() {
        bail!("skd index failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    println!("{}", String::from_utf8_lossy(&out.stdout).trim());
    println!("cold index build (process included): {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let queries = skd_benches::queries(runs, 5);
    let mut samples = Vec::with_capacity(runs);
    for q in &queries {
        let t = Instant::now();
        let out = skd_cmd(&["search", q, "-n", "10"]).output()?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
        if !matches!(out.status.code(), Some(0 | 1)) {
            bail!("skd search {q:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    samples.sort_by(f64::total_cmp);
    let p = |x| skd_benches::percentile(&samples, x);
    println!(
        "skd search end to end, {runs} runs: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        p(50.0),
        p(95.0),
        p(100.0)
    );
    Ok(())
}
