//! `skd init`, `skd skill ...`, `skd config show`.

use crate::Exit;
use crate::config::{Config, ENV_VARS, default_file_text};
use crate::output::{JSON_SCHEMA_VERSION, NotFound, print_json};
use anyhow::{Context, Result, bail};
use serde_json::json;
use skill_core::validate::is_valid;
use skill_core::versions::{Revision, WorkingCopy};
use skill_core::{Diagnostic, Severity, Skill, SkillEntry, ValidationMode, VersionStore, validate_file};
use std::path::{Path, PathBuf};

const BODY_TEMPLATE: &str = "\n# {title}\n\n## When to use\n\n- Describe the situations this skill is for.\n\n## Steps\n\n1. First step.\n2. Second step.\n\n## Output\n\nDescribe the expected result.\n";

pub fn init(config: &Config, force: bool) -> Result<Exit> {
    let path = &config.config_file;
    if path.exists() && !force {
        println!("config file exists: {} (use --force to overwrite)", path.display());
    } else {
        skill_core::fsutil::atomic_write(path, default_file_text(&config.skills_dir.value).as_bytes())?;
        println!("wrote {}", path.display());
    }
    for dir in std::iter::once(&config.skills_dir.value).chain(config.notes.value.iter()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            println!("created {}", dir.display());
        }
    }
    println!(
        "next: put markdown notes in {}, then `skd index`",
        config.notes.value.first().map(|p| p.display().to_string()).unwrap_or_default()
    );
    Ok(Exit::Ok)
}

pub fn new(config: &Config, name: &str, description: &str, body_file: Option<&Path>, as_json: bool) -> Result<Exit> {
    let body = match body_file {
        Some(f) => skill_core::fsutil::read_utf8(f)?,
        None => BODY_TEMPLATE.replace("{title}", &title_case(name)),
    };
    let (entry, info) = config.library().create(name, description, &body)?;
    if as_json {
        print_json(&json!({"schema_version": JSON_SCHEMA_VERSION, "skill": entry, "version": info}))?;
    } else {
        println!("created {} (v{})", entry.skill_md().display(), info.version);
    }
    Ok(Exit::Ok)
}

fn title_case(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn list(config: &Config, as_json: bool) -> Result<Exit> {
    let discovery = config.library().discover();
    let mut rows = Vec::new();
    for entry in &discovery.skills {
        let (skill, diags) = validate_file(&entry.skill_md(), ValidationMode::Lenient);
        let versions = VersionStore::new(&entry.dir).history().map(|h| h.len()).unwrap_or(0);
        rows.push((entry, skill, diags, versions));
    }
    if as_json {
        let skills: Vec<_> = rows
            .iter()
            .map(|(entry, skill, diags, versions)| {
                json!({
                    "name": entry.name,
                    "description": skill.as_ref().map(|s| s.description().to_string()),
                    "path": entry.skill_md(),
                    "root": entry.root,
                    "writable": entry.writable,
                    "versions": versions,
                    "valid": is_valid(diags),
                    "errors": diags.iter().filter(|d| d.severity == Severity::Error).count(),
                    "warnings": diags.iter().filter(|d| d.severity == Severity::Warning).count(),
                })
            })
            .collect();
        print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "skills": skills,
            "shadowed": discovery.shadowed,
            "skipped": discovery.skipped,
        }))?;
    } else {
        if rows.is_empty() {
            eprintln!(
                "no skills in {} (create one with `skd skill new NAME -d DESCRIPTION`)",
                config.skills_dir.value.display()
            );
        }
        for (entry, skill, diags, versions) in &rows {
            let desc = skill
                .as_ref()
                .map(|s| crate::output::one_line(s.description()))
                .unwrap_or_else(|| "(unreadable: run `skd skill validate`)".into());
            let desc: String = if desc.chars().count() > 80 {
                format!("{}...", desc.chars().take(77).collect::<String>())
            } else {
                desc
            };
            let flag = if !is_valid(diags) {
                " [invalid]"
            } else if !entry.writable {
                " [imported]"
            } else {
                ""
            };
            println!("{:<32} v{:<3} {desc}{flag}", entry.name, versions);
        }
        for s in &discovery.shadowed {
            eprintln!("note: {} is hidden by a skill of the same name in an earlier folder", s.dir.display());
        }
        for s in &discovery.skipped {
            eprintln!("skipped {}: {}", s.path.display(), s.reason);
        }
    }
    Ok(Exit::Ok)
}

pub fn show(config: &Config, name: &str, as_json: bool) -> Result<Exit> {
    let entry = config.library().find(name)?;
    let skill = Skill::read(&entry.skill_md())?;
    if as_json {
        let store = VersionStore::new(&entry.dir);
        print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "name": entry.name,
            "path": entry.skill_md(),
            "writable": entry.writable,
            "frontmatter": skill.meta(),
            "body": skill.body(),
            "working_copy": store.working_copy()?,
            "versions": store.history()?.len(),
        }))?;
    } else {
        print!("{}", skill.to_markdown());
    }
    Ok(Exit::Ok)
}

/// Resolves a validate target: a skill name, a skill folder, or a SKILL.md path.
fn validate_target(config: &Config, target: &str) -> Result<PathBuf> {
    let p = PathBuf::from(target);
    if p.is_file() {
        return Ok(p);
    }
    if p.is_dir() {
        let f = p.join(skill_core::library::SKILL_FILE);
        if f.is_file() {
            return Ok(f);
        }
        return Err(NotFound(format!("{} has no SKILL.md", p.display())).into());
    }
    Ok(config.library().find(target)?.skill_md())
}

pub fn validate(config: &Config, targets: &[String], strict: bool, as_json: bool) -> Result<Exit> {
    let mode = if strict { ValidationMode::Strict } else { ValidationMode::Lenient };
    let files: Vec<PathBuf> = if targets.is_empty() {
        config.library().discover().skills.iter().map(SkillEntry::skill_md).collect()
    } else {
        targets.iter().map(|t| validate_target(config, t)).collect::<Result<_>>()?
    };
    let results: Vec<(PathBuf, Vec<Diagnostic>)> = files
        .into_iter()
        .map(|f| {
            let (_, diags) = validate_file(&f, mode);
            (f, diags)
        })
        .collect();
    let errors: usize = results.iter().map(|(_, d)| d.iter().filter(|x| x.severity == Severity::Error).count()).sum();
    let warnings: usize =
        results.iter().map(|(_, d)| d.iter().filter(|x| x.severity == Severity::Warning).count()).sum();
    let invalid = results.iter().filter(|(_, d)| !is_valid(d)).count();
    if as_json {
        let files: Vec<_> =
            results.iter().map(|(f, d)| json!({"path": f, "valid": is_valid(d), "diagnostics": d})).collect();
        print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "mode": if strict { "strict" } else { "lenient" },
            "files": files,
            "errors": errors,
            "warnings": warnings,
        }))?;
    } else {
        for (f, diags) in &results {
            if diags.is_empty() {
                println!("ok    {}", f.display());
            }
            for d in diags {
                println!("{d}");
            }
        }
        println!("{} skill(s) checked: {} invalid, {errors} error(s), {warnings} warning(s)", results.len(), invalid);
    }
    Ok(if invalid > 0 { Exit::Negative } else { Exit::Ok })
}

fn writable_store(config: &Config, name: &str) -> Result<(SkillEntry, VersionStore)> {
    let entry = config.library().find(name)?;
    let store = VersionStore::new(&entry.dir);
    Ok((entry, store))
}

pub fn history(config: &Config, name: &str, as_json: bool) -> Result<Exit> {
    let (entry, store) = writable_store(config, name)?;
    let versions = store.history()?;
    let working = store.working_copy()?;
    if as_json {
        print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "name": entry.name,
            "versions": versions,
            "working_copy": working,
        }))?;
    } else {
        if versions.is_empty() {
            println!("{name}: no recorded versions yet (the file on disk is recorded at the next save)");
        }
        for v in &versions {
            let scores = if v.scores.is_empty() {
                String::new()
            } else {
                format!("  [{}]", v.scores.iter().map(|(k, s)| format!("{k}={s:.3}")).collect::<Vec<_>>().join(" "))
            };
            let current = if working == (WorkingCopy::Recorded { version: v.version }) { " (current)" } else { "" };
            println!("v{:<4} {}  {}  {}{scores}{current}", v.version, v.created, short_hash(&v.hash), v.message);
        }
        if working == WorkingCopy::Unrecorded {
            println!("working copy: edited since the last recorded version (`skd skill diff {name}` shows how)");
        }
    }
    Ok(Exit::Ok)
}

fn parse_revision(s: &str) -> Result<Revision> {
    if s == "working" || s == "current" {
        return Ok(Revision::Working);
    }
    let n = s.trim_start_matches(['v', 'V']);
    match n.parse::<u32>() {
        Ok(v) if v > 0 => Ok(Revision::Version(v)),
        _ => bail!("`{s}` is not a version: use a number like 3 or v3, or `working`"),
    }
}

pub fn diff(config: &Config, name: &str, from: Option<&str>, to: Option<&str>) -> Result<Exit> {
    let (_, store) = writable_store(config, name)?;
    let history = store.history()?;
    let latest = history.last().map(|v| v.version);
    let (a, b) = match (from, to) {
        (Some(f), Some(t)) => (parse_revision(f)?, parse_revision(t)?),
        (Some(f), None) => (parse_revision(f)?, Revision::Working),
        (None, _) => match (store.working_copy()?, latest) {
            (WorkingCopy::Unrecorded, Some(l)) => (Revision::Version(l), Revision::Working),
            (_, Some(l)) if l > 1 => (Revision::Version(l - 1), Revision::Version(l)),
            _ => {
                println!("{name}: nothing to compare yet (fewer than two versions)");
                return Ok(Exit::Ok);
            }
        },
    };
    let text = store.diff(a, b)?;
    if text.is_empty() {
        println!("no differences");
        return Ok(Exit::Ok);
    }
    print!("{text}");
    Ok(Exit::Negative)
}

pub fn restore(config: &Config, name: &str, version: &str, as_json: bool) -> Result<Exit> {
    let (entry, store) = writable_store(config, name)?;
    if !entry.writable {
        bail!(
            "skill `{name}` is imported from {} and read-only; `skd skill import {name}` copies it into the library first",
            entry.root.display()
        );
    }
    let Revision::Version(v) = parse_revision(version)? else {
        bail!("restore needs a recorded version number");
    };
    let info = store.restore(v)?;
    if as_json {
        print_json(&json!({"schema_version": JSON_SCHEMA_VERSION, "name": name, "version": info}))?;
    } else {
        println!("restored v{v} of {name} as v{}", info.version);
    }
    Ok(Exit::Ok)
}

pub fn export(config: &Config, name: &str, to: &Path, force: bool) -> Result<Exit> {
    let library = config.library();
    let entry = library.find(name)?;
    let (_, diags) = validate_file(&entry.skill_md(), ValidationMode::Lenient);
    if !is_valid(&diags) {
        return Err(skill_core::Error::Invalid { path: entry.skill_md(), diagnostics: diags }.into());
    }
    let (dest, written) = library.export(&entry, to, force)?;
    if written {
        println!("exported {name} -> {}", dest.display());
    } else {
        println!("{} already holds this version of {name}", dest.display());
    }
    Ok(Exit::Ok)
}

pub fn import(config: &Config, source: &str, as_json: bool) -> Result<Exit> {
    let library = config.library();
    let path = PathBuf::from(source);
    let entry = if path.is_dir() {
        let dir = if path.file_name().is_some_and(|n| n == ".") { std::env::current_dir()? } else { path.clone() };
        let name = dir
            .canonicalize()
            .unwrap_or(dir.clone())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        SkillEntry { name, root: dir.parent().map(Path::to_path_buf).unwrap_or_default(), dir, writable: false }
    } else {
        let discovery = library.discover();
        discovery
            .skills
            .iter()
            .chain(discovery.shadowed.iter())
            .find(|e| e.name == source && !e.writable)
            .cloned()
            .ok_or_else(|| {
                NotFound(format!(
                    "no skill `{source}` in the import folders ({})",
                    config
                        .import_skill_dirs
                        .value
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?
    };
    let (_, diags) = validate_file(&entry.skill_md(), ValidationMode::Lenient);
    if !is_valid(&diags) {
        return Err(skill_core::Error::Invalid { path: entry.skill_md(), diagnostics: diags }.into());
    }
    let (new_entry, info) = library.import(&entry)?;
    if as_json {
        print_json(&json!({"schema_version": JSON_SCHEMA_VERSION, "skill": new_entry, "version": info}))?;
    } else {
        println!("imported {} into {} (v{})", entry.dir.display(), new_entry.dir.display(), info.version);
    }
    Ok(Exit::Ok)
}

pub fn config_show(config: &Config, as_json: bool) -> Result<Exit> {
    if as_json {
        let env: serde_json::Map<String, serde_json::Value> =
            ENV_VARS.iter().map(|(k, d)| (k.to_string(), json!(d))).collect();
        print_json(&json!({"schema_version": JSON_SCHEMA_VERSION, "config": config, "environment": env}))?;
        return Ok(Exit::Ok);
    }
    let origin = |o: crate::config::Origin| format!("{o:?}").to_lowercase();
    println!(
        "config file        {}{}",
        config.config_file.display(),
        if config.config_file_exists { "" } else { " (not present; defaults apply)" }
    );
    let list = |v: &[PathBuf]| v.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    println!("notes              {}  [{}]", list(&config.notes.value), origin(config.notes.origin));
    println!("skills_dir         {}  [{}]", config.skills_dir.value.display(), origin(config.skills_dir.origin));
    println!(
        "import_skill_dirs  {}  [{}]",
        list(&config.import_skill_dirs.value),
        origin(config.import_skill_dirs.origin)
    );
    println!(
        "publish_skill_dirs {}  [{}]",
        list(&config.publish_skill_dirs.value),
        origin(config.publish_skill_dirs.origin)
    );
    let more = &config.agent_log_dirs.value;
    for (agent, dirs) in
        [("skd", &more.skd), ("pi", &more.pi), ("claude-code", &more.claude_code), ("codex", &more.codex)]
    {
        if !dirs.is_empty() {
            println!("agent_log_dirs     {agent}: {}  [{}]", list(dirs), origin(config.agent_log_dirs.origin));
        }
    }
    println!("index_dir          {}  [{}]", config.index_dir.value.display(), origin(config.index_dir.origin));
    println!(
        "max_file_mb        {:.1}  [{}]",
        config.max_file_bytes.value as f64 / 1048576.0,
        origin(config.max_file_bytes.origin)
    );
    println!("student            {}  [{}]", config.student.value, origin(config.student.origin));
    println!("engine             {}  [{}]", config.engine.value, origin(config.engine.origin));
    println!(
        "teacher            {}  [{}]",
        config.teacher.value.as_deref().unwrap_or("(none)"),
        origin(config.teacher.origin)
    );
    println!("\nenvironment overrides:");
    for (k, d) in ENV_VARS {
        println!("  {k:<22} {d}");
    }
    Ok(Exit::Ok)
}

/// The first 12 characters of a content hash, or all of it when a hand-edited record holds
/// a shorter one (a byte index would panic there, or inside a multi-byte character).
fn short_hash(hash: &str) -> &str {
    hash.char_indices().nth(12).map_or(hash, |(end, _)| &hash[..end])
}
