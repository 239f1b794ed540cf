//! Every version of a skill, kept beside it in `<skill>/.history/`.
//!
//! Layout: `vNNNN.md` is the full `SKILL.md` of version N, `vNNNN.json` its [`VersionInfo`]
//! (time, content hash, message, scores). Version files are created with a no-clobber hard link
//! and the whole save runs under an exclusive lock on `.history/.lock`, so two `skd`
//! processes saving at once each get their own version number and neither is lost. The
//! `SKILL.md` itself is replaced atomically after its version is recorded, so a crash leaves
//! either the old or the new file, and the new content is in the history either way.
//!
//! Edits made by hand between saves are not lost either: before recording a new version (or
//! restoring an old one), a `SKILL.md` that differs from the latest recorded version is
//! recorded first.

use crate::fsutil::{atomic_create_new, atomic_write, read_utf8};
use crate::skill::content_hash;
use crate::time::{now_unix, rfc3339};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

/// Folder (inside the skill folder) that holds the history.
pub const HISTORY_DIR: &str = ".history";

/// What is recorded about one version.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VersionInfo {
    /// 1-based version number.
    pub version: u32,
    /// When it was recorded, Unix seconds.
    pub created_unix: i64,
    /// The same time as RFC 3339 UTC.
    pub created: String,
    /// blake3 hex digest of the content.
    pub hash: String,
    /// Size of the content in bytes.
    pub bytes: usize,
    /// Why it was recorded (`created`, `restored from v2`, a distillation round...).
    pub message: String,
    /// Eval scores attached later (metric name to value), e.g. `pass_rate`.
    #[serde(default)]
    pub scores: BTreeMap<String, f64>,
}

/// How the `SKILL.md` on disk relates to the recorded history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WorkingCopy {
    /// Identical to this recorded version.
    Recorded {
        /// The version it equals.
        version: u32,
    },
    /// Differs from every recorded version's latest (edited by hand since the last save).
    Unrecorded,
    /// No `SKILL.md` on disk.
    Missing,
}

/// Which text to compare in a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revision {
    /// A recorded version.
    Version(u32),
    /// The `SKILL.md` currently on disk.
    Working,
}

/// The version history of one skill folder.
#[derive(Debug, Clone)]
pub struct VersionStore {
    skill_dir: PathBuf,
}

impl VersionStore {
    /// The store of the skill in `skill_dir`.
    pub fn new(skill_dir: impl Into<PathBuf>) -> Self {
        VersionStore { skill_dir: skill_dir.into() }
    }

    fn history_dir(&self) -> PathBuf {
        self.skill_dir.join(HISTORY_DIR)
    }

    fn skill_md(&self) -> PathBuf {
        self.skill_dir.join(crate::library::SKILL_FILE)
    }

    fn content_path(&self, v: u32) -> PathBuf {
        self.history_dir().join(format!("v{v:04}.md"))
    }

    fn info_path(&self, v: u32) -> PathBuf {
        self.history_dir().join(format!("v{v:04}.json"))
    }

    /// Takes the history's exclusive lock; released when the returned file is dropped.
    fn lock(&self) -> Result<File> {
        let dir = self.history_dir();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join(".lock");
        let file =
            OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
        file.lock().map_err(|e| Error::io(&path, e))?;
        Ok(file)
    }

    /// All recorded versions, oldest first.
    pub fn history(&self) -> Result<Vec<VersionInfo>> {
        let dir = self.history_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let mut numbers = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(n) =
                name.strip_prefix('v').and_then(|s| s.strip_suffix(".json")).and_then(|s| s.parse::<u32>().ok())
            {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        numbers.into_iter().map(|n| self.info(n)).collect()
    }

    /// The record of version `v`.
    pub fn info(&self, v: u32) -> Result<VersionInfo> {
        let path = self.info_path(v);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(self.not_found(v)),
            Err(e) => return Err(Error::io(&path, e)),
        };
        serde_json::from_str(&text).map_err(|e| Error::Parse {
            path: path.clone(),
            line: e.line(),
            message: format!("corrupt version record: {e}"),
        })
    }

    fn not_found(&self, v: u32) -> Error {
        Error::NotFound {
            what: format!("version {v} of {}", self.skill_dir.display()),
            hint: Some("`skd skill history NAME` lists the versions".into()),
        }
    }

    /// The full `SKILL.md` text of a revision.
    pub fn content(&self, rev: Revision) -> Result<String> {
        match rev {
            Revision::Working => read_utf8(&self.skill_md()),
            Revision::Version(v) => {
                let path = self.content_path(v);
                if !path.exists() {
                    return Err(self.not_found(v));
                }
                read_utf8(&path)
            }
        }
    }

    /// How the file on disk relates to the history.
    pub fn working_copy(&self) -> Result<WorkingCopy> {
        let path = self.skill_md();
        if !path.exists() {
            return Ok(WorkingCopy::Missing);
        }
        let hash = content_hash(&read_utf8(&path)?);
        // Not only the newest: a distillation that was not beneficial records its result as
        // a later version and leaves SKILL.md on an earlier one.
        Ok(match self.history()?.into_iter().rev().find(|v| v.hash == hash) {
            Some(v) => WorkingCopy::Recorded { version: v.version },
            None => WorkingCopy::Unrecorded,
        })
    }

    /// Records `markdown` as a new version and makes it the `SKILL.md` on disk.
    ///
    /// Returns the latest version unchanged when the content equals it. A `SKILL.md` edited
    /// by hand since the last save is recorded first, so it stays restorable.
    pub fn save(&self, markdown: &str, message: &str) -> Result<VersionInfo> {
        let _lock = self.lock()?;
        let (mut latest, _) = self.snapshot_unrecorded_locked()?;
        let hash = content_hash(markdown);
        if let Some(info) = &latest
            && info.hash == hash
        {
            // Already recorded; still make sure the file on disk is that content.
            if !self.skill_md().exists() {
                atomic_write(&self.skill_md(), markdown.as_bytes())?;
            }
            return Ok(info.clone());
        }
        let info = self.record_locked(markdown, message, latest.take())?;
        atomic_write(&self.skill_md(), markdown.as_bytes())?;
        Ok(info)
    }

    /// Records `markdown` as a new version and leaves the `SKILL.md` on disk as it is (a
    /// result to adopt later with [`VersionStore::restore`]). A `SKILL.md` not yet recorded
    /// is recorded first, so the history holds both. Returns the version that holds
    /// `markdown`: an existing one when some version already has this content.
    pub fn record(&self, markdown: &str, message: &str) -> Result<VersionInfo> {
        let _lock = self.lock()?;
        let (latest, history) = self.snapshot_unrecorded_locked()?;
        let hash = content_hash(markdown);
        if let Some(existing) = history.into_iter().rev().find(|v| v.hash == hash) {
            return Ok(existing);
        }
        self.record_locked(markdown, message, latest)
    }

    /// Makes version `v` current again, as a new version (history only grows).
    pub fn restore(&self, v: u32) -> Result<VersionInfo> {
        let content = self.content(Revision::Version(v))?;
        self.save(&content, &format!("restored from v{v}"))
    }

    /// Attaches eval scores to version `v` (merged with any already there).
    pub fn record_scores(&self, v: u32, scores: &BTreeMap<String, f64>) -> Result<VersionInfo> {
        let _lock = self.lock()?;
        let mut info = self.info(v)?;
        info.scores.extend(scores.iter().map(|(k, v)| (k.clone(), *v)));
        let json = serde_json::to_string_pretty(&info).map_err(|e| Error::backend("serde_json", e))?;
        atomic_write(&self.info_path(v), json.as_bytes())?;
        Ok(info)
    }

    /// Unified diff between two revisions.
    pub fn diff(&self, from: Revision, to: Revision) -> Result<String> {
        let a = self.content(from)?;
        let b = self.content(to)?;
        let label = |r: Revision| match r {
            Revision::Version(v) => format!("v{v}"),
            Revision::Working => "working copy".to_string(),
        };
        Ok(similar::TextDiff::from_lines(&a, &b)
            .unified_diff()
            .context_radius(3)
            .header(&label(from), &label(to))
            .to_string())
    }

    /// Records the on-disk `SKILL.md` if no version holds it; returns the latest version and
    /// the whole history (read once, with that record in it).
    fn snapshot_unrecorded_locked(&self) -> Result<(Option<VersionInfo>, Vec<VersionInfo>)> {
        let mut history = self.history()?;
        let latest = history.last().cloned();
        let path = self.skill_md();
        if !path.exists() {
            return Ok((latest, history));
        }
        let on_disk = read_utf8(&path)?;
        let hash = content_hash(&on_disk);
        // The latest, or an earlier version kept on disk while a later one waits to be adopted.
        if history.iter().rev().any(|v| v.hash == hash) {
            return Ok((latest, history));
        }
        let message =
            if latest.is_some() { "edited outside skd (recorded before the next save)" } else { "first recorded" };
        let recorded = self.record_locked(&on_disk, message, latest)?;
        history.push(recorded.clone());
        Ok((Some(recorded), history))
    }

    fn record_locked(&self, markdown: &str, message: &str, latest: Option<VersionInfo>) -> Result<VersionInfo> {
        let mut version = latest.map(|i| i.version + 1).unwrap_or(1);
        loop {
            let created_unix = now_unix();
            let info = VersionInfo {
                version,
                created_unix,
                created: rfc3339(created_unix),
                hash: content_hash(markdown),
                bytes: markdown.len(),
                message: message.to_string(),
                scores: BTreeMap::new(),
            };
            // Content first, record second: a version is listed only once its text is safe.
            match atomic_create_new(&self.content_path(version), markdown.as_bytes()) {
                Ok(()) => {}
                Err(Error::Conflict(_)) => {
                    // A content file without a record (a crash between the two writes, or a
                    // writer that ignored the lock): never overwrite it, take the next number.
                    version += 1;
                    continue;
                }
                Err(e) => return Err(e),
            }
            let json = serde_json::to_string_pretty(&info).map_err(|e| Error::backend("serde_json", e))?;
            atomic_create_new(&self.info_path(version), json.as_bytes())?;
            return Ok(info);
        }
    }

    /// The skill folder this store belongs to.
    pub fn skill_dir(&self) -> &Path {
        &self.skill_dir
    }
}
