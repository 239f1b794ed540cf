//! `skd index`, `skd search`, `skd get`.

use crate::Exit;
use crate::config::Config;
use crate::output::{JSON_SCHEMA_VERSION, NotFound, highlight, one_line, print_json, stdout_is_tty};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use retrieval::{HitKind, IndexReport, Progress, SearchIndex, SearchOptions};
use serde_json::json;
use skill_core::Scope;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Updates the index, with a progress bar on a terminal.
pub fn update_index(config: &Config, full: bool, show_progress: bool) -> Result<IndexReport> {
    let mut index = SearchIndex::open_or_create(&config.index_dir.value)?;
    let bar = if show_progress && std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.enable_steady_tick(Duration::from_millis(120));
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
    let mut on_progress = |p: Progress| match p {
        Progress::Scanning { found } => bar.set_message(format!("scanning: {found} files")),
        Progress::Indexing { done, total } => {
            if bar.length() != Some(total as u64) {
                bar.set_length(total as u64);
                bar.set_style(
                    ProgressStyle::with_template("{bar:30} {pos}/{len} files {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_message("");
            }
            bar.set_position(done as u64);
        }
        Progress::Committing => bar.set_message("writing index"),
    };
    let report = index.update(&config.sources(), full, &mut on_progress);
    bar.finish_and_clear();
    Ok(report?)
}

pub fn index(config: &Config, full: bool, as_json: bool, quiet: bool) -> Result<Exit> {
    let report = update_index(config, full, !quiet && !as_json)?;
    if as_json {
        print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "index_dir": config.index_dir.value,
            "report": report,
        }))?;
    } else {
        println!(
            "indexed {} files ({} new, {} changed, {} removed, {} unchanged; {} read) in {} ms{}",
            report.files_indexed,
            report.added,
            report.updated,
            report.removed,
            report.unchanged,
            report.files_read,
            report.elapsed_ms,
            if report.full_rebuild { ", full rebuild" } else { "" }
        );
        if !report.skipped.is_empty() {
            println!("skipped {}:", report.skipped.len());
            for s in &report.skipped {
                println!("  {}: {}", s.path.display(), s.reason);
            }
        }
    }
    Ok(Exit::Ok)
}

pub fn search(config: &Config, query: &str, scope: Scope, limit: usize, hybrid: bool, as_json: bool) -> Result<Exit> {
    let index = match SearchIndex::open(&config.index_dir.value) {
        Ok(index) => index,
        Err(retrieval::Error::NoIndex(_) | retrieval::Error::Stale(_)) => {
            // First search on this machine: build the index rather than fail.
            if !as_json {
                eprintln!("building the search index (first search)...");
            }
            update_index(config, false, !as_json)?;
            SearchIndex::open(&config.index_dir.value)?
        }
        Err(e) => return Err(e.into()),
    };
    let opts = SearchOptions { limit, scope, ..SearchOptions::default() };
    let index = std::sync::Arc::new(index);
    let hits = if hybrid {
        let embedder = crate::logs_cmds::load_embedder(config, as_json)?;
        retrieval::HybridSearch::new(index.clone(), std::sync::Arc::from(embedder)).search(query, &opts)?
    } else {
        index.search(query, &opts)?
    };
    if as_json {
        print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "query": query,
            "scope": scope,
            "mode": if hybrid { "hybrid" } else { "bm25" },
            "hits": hits,
        }))?;
    } else {
        let tty = stdout_is_tty();
        for hit in &hits {
            match hit.kind {
                HitKind::Skill => {
                    println!("skill  {}  ({:.2})", hit.name.as_deref().unwrap_or(&hit.title), hit.score);
                    println!("       {}", hit.path.display());
                }
                HitKind::Note => {
                    let heading =
                        if hit.heading_path.is_empty() { hit.title.clone() } else { hit.heading_path.join(" > ") };
                    println!("note   {heading}  ({:.2})", hit.score);
                    println!("       {}:{}-{}", hit.path.display(), hit.line_start, hit.line_end);
                }
            }
            println!("       {}", one_line(&highlight(&hit.snippet, &hit.highlights, tty)));
        }
        if hits.is_empty() {
            eprintln!("no matches for {query:?} in {} chunks", index.num_chunks());
        }
    }
    Ok(if hits.is_empty() { Exit::Negative } else { Exit::Ok })
}

/// Splits `PATH:LINE` / `PATH:START-END` when the whole string is not itself a file.
fn parse_target(target: &str) -> (String, Option<(usize, Option<usize>)>) {
    if Path::new(target).exists() {
        return (target.to_string(), None);
    }
    if let Some((path, spec)) = target.rsplit_once(':') {
        let range = match spec.split_once('-') {
            Some((a, b)) => a.parse().ok().zip(b.parse().ok()).map(|(a, b)| (a, Some(b))),
            None => spec.parse().ok().map(|a| (a, None)),
        };
        if let Some(range) = range {
            return (path.to_string(), Some(range));
        }
    }
    (target.to_string(), None)
}

fn resolve(config: &Config, path: &str) -> Option<PathBuf> {
    let p = crate::config::expand(path, &std::env::current_dir().ok()?);
    if p.is_file() {
        return Some(p);
    }
    let roots = config
        .notes
        .value
        .iter()
        .chain(std::iter::once(&config.skills_dir.value))
        .chain(config.import_skill_dirs.value.iter());
    for root in roots {
        let candidate = root.join(path);
        if candidate.is_file() {
            return Some(candidate);
        }
        // `skd get pdf-extract` finds the skill's SKILL.md.
        let skill = candidate.join(skill_core::library::SKILL_FILE);
        if skill.is_file() {
            return Some(skill);
        }
    }
    None
}

pub fn get(config: &Config, target: &str, as_json: bool) -> Result<Exit> {
    let (path, range) = parse_target(target);
    let file = resolve(config, &path).ok_or_else(|| {
        NotFound(format!("no file {path} (looked in the current folder, the notes folders and the skill library)"))
    })?;
    let text = skill_core::fsutil::read_utf8(&file).with_context(|| format!("cannot print {}", file.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let total = lines.len();
    let (start, end, heading_path) = match range {
        None => (1, total, Vec::new()),
        Some((a, Some(b))) => (a, b.min(total), Vec::new()),
        Some((line, None)) => {
            let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let note = retrieval::chunk::chunk_markdown(&text, &stem);
            match note.chunks.iter().find(|c| c.line_start <= line && line <= c.line_end) {
                Some(c) => (c.line_start, c.line_end, c.heading_path.clone()),
                None => (line, line, Vec::new()),
            }
        }
    };
    if start == 0 || start > total.max(1) || start > end.max(start) {
        return Err(NotFound(format!("{}: line {start} is outside the file ({total} lines)", file.display())).into());
    }
    let selected = if total == 0 { String::new() } else { lines[start - 1..end.max(start).min(total)].join("\n") };
    if as_json {
        print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "path": file,
            "line_start": start,
            "line_end": end,
            "heading_path": heading_path,
            "text": selected,
        }))?;
    } else {
        println!("{selected}");
    }
    Ok(Exit::Ok)
}
