//! A skill library: folders of `<name>/SKILL.md` with optional `scripts/`, `references/`
//! and `assets/`.
//!
//! The library has one writable root (where `skd skill new` and distillation save) and any
//! number of read-only import roots, by default the places other agents keep skills:
//! `.agents/skills` (in the current project), `~/.claude/skills` and `~/.pi/agent/skills`.
//! When two roots hold a skill of the same name, the earlier root wins and the later one is
//! reported as shadowed.

use crate::validate::{ValidationMode, name_problems};
use crate::versions::{VersionInfo, VersionStore};
use crate::{Diagnostic, Error, Result, Skill};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The file name that marks a skill folder.
pub const SKILL_FILE: &str = "SKILL.md";
/// How deep below a root skill folders are looked for (allows `category/name/SKILL.md`).
pub const MAX_DEPTH: usize = 4;

/// Where a skill was found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkillEntry {
    /// The folder's name, which a valid skill's `name` equals.
    pub name: String,
    /// The skill's folder.
    pub dir: PathBuf,
    /// The root it was found under.
    pub root: PathBuf,
    /// False for skills from import roots: they are read, never written.
    pub writable: bool,
}

impl SkillEntry {
    /// Path of the `SKILL.md`.
    pub fn skill_md(&self) -> PathBuf {
        self.dir.join(SKILL_FILE)
    }
}

/// A path discovery did not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedPath {
    /// The path.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

/// The result of walking the library's roots.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Discovery {
    /// Skills found, in root order then name order.
    pub skills: Vec<SkillEntry>,
    /// Skills hidden by a skill of the same name in an earlier root.
    pub shadowed: Vec<SkillEntry>,
    /// Paths that could not be read (unreadable folders, symlink loops...).
    pub skipped: Vec<SkippedPath>,
}

/// A skill library: one writable root plus read-only import roots.
#[derive(Debug, Clone)]
pub struct SkillLibrary {
    root: PathBuf,
    import_roots: Vec<PathBuf>,
}

impl SkillLibrary {
    /// A library whose writable root is `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SkillLibrary { root: root.into(), import_roots: Vec::new() }
    }

    /// Adds read-only roots searched after the writable one.
    pub fn with_import_roots(mut self, roots: impl IntoIterator<Item = PathBuf>) -> Self {
        self.import_roots.extend(roots);
        self
    }

    /// The usual places other agents keep skills, relative to a project folder and a home.
    pub fn default_import_roots(project_dir: &Path, home: Option<&Path>) -> Vec<PathBuf> {
        let mut roots = vec![project_dir.join(".agents/skills")];
        if let Some(home) = home {
            roots.push(home.join(".claude/skills"));
            roots.push(home.join(".pi/agent/skills"));
        }
        roots
    }

    /// The writable root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// All roots, writable first.
    pub fn roots(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.root.as_path()).chain(self.import_roots.iter().map(PathBuf::as_path))
    }

    /// Walks every root for `SKILL.md` folders. Missing roots are not an error (nothing to
    /// import); unreadable folders and symlink loops are counted in `skipped`.
    pub fn discover(&self) -> Discovery {
        let mut out = Discovery::default();
        let mut seen: HashSet<String> = HashSet::new();
        let mut seen_dirs: HashSet<PathBuf> = HashSet::new();
        for (i, root) in self.roots().enumerate() {
            let writable = i == 0;
            if !root.exists() {
                continue;
            }
            let mut found = Vec::new();
            let mut walker =
                walkdir::WalkDir::new(root).follow_links(true).max_depth(MAX_DEPTH).sort_by_file_name().into_iter();
            loop {
                let entry = match walker.next() {
                    None => break,
                    Some(Ok(e)) => e,
                    Some(Err(e)) => {
                        let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| root.to_path_buf());
                        let reason = if e.loop_ancestor().is_some() {
                            "symlink loop".to_string()
                        } else {
                            e.io_error().map(|io| io.to_string()).unwrap_or_else(|| e.to_string())
                        };
                        out.skipped.push(SkippedPath { path, reason });
                        continue;
                    }
                };
                if !entry.file_type().is_dir() {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.depth() > 0 && name.starts_with('.') {
                    walker.skip_current_dir();
                    continue;
                }
                if entry.depth() > 0 && entry.path().join(SKILL_FILE).is_file() {
                    // A skill folder: its scripts/ references/ assets/ are not skills.
                    walker.skip_current_dir();
                    let canonical = entry.path().canonicalize().unwrap_or_else(|_| entry.path().to_path_buf());
                    if !seen_dirs.insert(canonical) {
                        continue;
                    }
                    found.push(SkillEntry {
                        name,
                        dir: entry.path().to_path_buf(),
                        root: root.to_path_buf(),
                        writable,
                    });
                }
            }
            for entry in found {
                if seen.insert(entry.name.clone()) {
                    out.skills.push(entry);
                } else {
                    out.shadowed.push(entry);
                }
            }
        }
        out
    }

    /// Finds a skill by name (first root wins).
    pub fn find(&self, name: &str) -> Result<SkillEntry> {
        self.discover().skills.into_iter().find(|s| s.name == name).ok_or_else(|| Error::NotFound {
            what: format!("skill \"{name}\""),
            hint: Some("`skd skill list` shows the skills there are".into()),
        })
    }

    /// Creates a new skill in the writable root and records it as version 1.
    ///
    /// Refuses invalid names and existing skills, and refuses to write a skill that fails
    /// validation.
    pub fn create(&self, name: &str, description: &str, body: &str) -> Result<(SkillEntry, VersionInfo)> {
        let problems = name_problems(name);
        if !problems.is_empty() {
            return Err(Error::Conflict(format!("invalid skill name `{name}`: {}", problems.join("; "))));
        }
        let dir = self.root.join(name);
        if dir.join(SKILL_FILE).exists() {
            return Err(Error::Conflict(format!("skill `{name}` already exists at {}", dir.display())));
        }
        let skill = Skill::new(name, description, body);
        let entry = SkillEntry { name: name.to_string(), dir, root: self.root.clone(), writable: true };
        let info = self.save(&entry, &skill, "created")?;
        Ok((entry, info))
    }

    /// Validates and saves a skill as a new version (see [`VersionStore::save`]).
    pub fn save(&self, entry: &SkillEntry, skill: &Skill, message: &str) -> Result<VersionInfo> {
        if !entry.writable {
            return Err(Error::Conflict(format!(
                "skill `{}` is imported from {} and is read-only here; `skd skill import {}` copies it into the library",
                entry.name,
                entry.root.display(),
                entry.name
            )));
        }
        let path = entry.skill_md();
        let markdown = skill.to_markdown();
        let reparsed = Skill::parse(&markdown, Some(&path))?;
        let diagnostics: Vec<Diagnostic> = crate::validate_skill(&reparsed, ValidationMode::Lenient)
            .into_iter()
            .filter(|d| d.severity == crate::Severity::Error)
            .collect();
        if !diagnostics.is_empty() {
            return Err(Error::Invalid { path, diagnostics });
        }
        VersionStore::new(&entry.dir).save(&markdown, message)
    }

    /// Copies an imported skill (with its scripts, references and assets) into the writable
    /// root and records it as a version.
    pub fn import(&self, entry: &SkillEntry) -> Result<(SkillEntry, VersionInfo)> {
        let dest = self.root.join(&entry.name);
        if dest.join(SKILL_FILE).exists() {
            return Err(Error::Conflict(format!("skill `{}` already exists at {}", entry.name, dest.display())));
        }
        copy_tree(&entry.dir, &dest, &[".history"])?;
        let markdown = crate::fsutil::read_utf8(&entry.skill_md())?;
        let new_entry = SkillEntry { name: entry.name.clone(), dir: dest, root: self.root.clone(), writable: true };
        // The copied SKILL.md is on disk already; recording it makes it version 1.
        let info =
            VersionStore::new(&new_entry.dir).save(&markdown, &format!("imported from {}", entry.dir.display()))?;
        Ok((new_entry, info))
    }

    /// Copies a skill to another agent's skill folder (`~/.claude/skills`,
    /// `~/.pi/agent/skills`, `.agents/skills`): `SKILL.md` and its resources, without skd's
    /// own `.history` and `evals`. A skill of that name already there with other content is
    /// left alone unless `replace`; the same content is no change. Returns the folder and
    /// whether anything was written.
    pub fn export(&self, entry: &SkillEntry, to: &Path, replace: bool) -> Result<(PathBuf, bool)> {
        let dest = to.join(&entry.name);
        let ours = crate::fsutil::read_utf8(&entry.skill_md())?;
        if let Ok(theirs) = crate::fsutil::read_utf8(&dest.join(SKILL_FILE)) {
            if theirs == ours {
                return Ok((dest, false));
            }
            if !replace {
                return Err(Error::Conflict(format!(
                    "{} holds another `{}` (pass --force to replace it)",
                    dest.display(),
                    entry.name
                )));
            }
        }
        copy_tree(&entry.dir, &dest, &[".history", "evals"])?;
        Ok((dest, true))
    }

    /// Publishes a skill to another agent's skill folder as [`SkillLibrary::export`] does,
    /// replacing what is there only when it is one of this skill's own recorded versions: a
    /// newly adopted version follows the last one out, and a skill of the same name that
    /// the other agent's user wrote (or edited) is never overwritten (a conflict error).
    pub fn publish(&self, entry: &SkillEntry, to: &Path) -> Result<(PathBuf, bool)> {
        let theirs = to.join(&entry.name).join(SKILL_FILE);
        let ours_before = match crate::fsutil::read_utf8(&theirs) {
            Ok(text) => {
                let hash = crate::skill::content_hash(&text);
                VersionStore::new(&entry.dir).history()?.iter().any(|v| v.hash == hash)
            }
            Err(_) => false,
        };
        self.export(entry, to, ours_before)
    }
}

/// Copies a folder tree, leaving out every entry under a folder named in `skip`.
fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> Result<()> {
    for entry in walkdir::WalkDir::new(from).follow_links(false) {
        let entry = entry.map_err(|e| Error::io(e.path().unwrap_or(from), std::io::Error::other(e.to_string())))?;
        let rel = entry.path().strip_prefix(from).unwrap_or(entry.path());
        if rel.components().any(|c| skip.iter().any(|s| c.as_os_str() == *s)) {
            continue;
        }
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).map_err(|e| Error::io(&dest, e))?;
        } else if entry.file_type().is_file() {
            let bytes = std::fs::read(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            crate::fsutil::atomic_write(&dest, &bytes)?;
        }
    }
    Ok(())
}
