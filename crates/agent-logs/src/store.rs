//! The episodes read so far, with a watermark per session file.

use crate::episode::{Episode, episodes};
use crate::{Error, LogSource, Result};
use serde::{Deserialize, Serialize};
use skill_core::redact::Redactor;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Version of the store's file.
const STORE_VERSION: u32 = 1;
/// The readers' version: raised when they record more of a session (2: file changes, tokens
/// and times; 3: deleted files), so files read before are read again.
const READER_VERSION: u32 = 3;

/// What is kept of one session file: its size and modification time when it was read (the
/// watermark), and the episodes read from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FileEntry {
    source: String,
    /// The readers' version when it was read: a file read by older readers is read again
    /// while it is still there (what they did not record, such as the files an episode
    /// wrote, comes in), and kept as read while it is gone.
    #[serde(default)]
    reader: u32,
    len: u64,
    modified: u64,
    episodes: Vec<Episode>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoreFile {
    schema_version: u32,
    files: BTreeMap<PathBuf, FileEntry>,
}

/// How a scan treats files.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Files modified less than this long ago are sessions still being written: they wait
    /// for the next scan.
    pub quiet: Duration,
    /// The time to measure `quiet` from.
    pub now: SystemTime,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions { quiet: Duration::from_secs(15 * 60), now: SystemTime::now() }
    }
}

/// A file that could not be read; the scan went on without it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The source.
    pub source: String,
    /// The file.
    pub file: PathBuf,
    /// What was wrong (with the line, where there is one).
    pub message: String,
}

/// What a scan did, per source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    /// Files read (new or changed), per source.
    pub read: BTreeMap<String, usize>,
    /// Files unchanged since the last scan, per source.
    pub unchanged: BTreeMap<String, usize>,
    /// Files still being written, left for the next scan, per source.
    pub waiting: BTreeMap<String, usize>,
    /// Episodes read by this scan, per source.
    pub episodes: BTreeMap<String, usize>,
    /// Files that could not be read.
    pub problems: Vec<Problem>,
}

/// The episodes read so far (`episodes.json` in the store's folder).
#[derive(Debug)]
pub struct EpisodeStore {
    path: PathBuf,
    data: StoreFile,
}

impl EpisodeStore {
    /// The default folder: `$XDG_STATE_HOME/skd/logs` (`~/.local/state/skd/logs`).
    pub fn default_dir() -> PathBuf {
        dirs::state_dir().unwrap_or_else(|| crate::home().join(".local/state")).join("skd").join("logs")
    }

    /// Opens the store in `dir` (empty when it has no file yet). A file that does not parse
    /// is an error naming it: it is never replaced silently, since the logs it came from may
    /// be gone.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("episodes.json");
        let data = match std::fs::read(&path) {
            Ok(bytes) => {
                let data: StoreFile = serde_json::from_slice(&bytes).map_err(|e| Error::Store {
                    path: path.clone(),
                    message: format!("not an episode store ({e}); move it away to start again"),
                })?;
                if data.schema_version != STORE_VERSION {
                    return Err(Error::Store {
                        path,
                        message: format!("schema version {} (this skd reads {STORE_VERSION})", data.schema_version),
                    });
                }
                data
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                StoreFile { schema_version: STORE_VERSION, files: BTreeMap::new() }
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        Ok(EpisodeStore { path, data })
    }

    /// Reads what is new in each source: files not seen before or changed since (a changed
    /// file is read again whole and its episodes replaced), except those still being
    /// written. A file that cannot be read is reported and its earlier episodes kept; files
    /// that are gone keep theirs. Saves the store when a file was read.
    pub fn scan(
        &mut self,
        sources: &[Box<dyn LogSource>],
        options: &ScanOptions,
        redactor: &Redactor,
    ) -> Result<ScanReport> {
        let mut report = ScanReport::default();
        for source in sources {
            let name = source.name().to_string();
            for file in source.files() {
                let Ok(meta) = std::fs::metadata(&file) else { continue };
                let modified = meta.modified().unwrap_or(UNIX_EPOCH);
                if options.now.duration_since(modified).is_ok_and(|age| age < options.quiet) || modified > options.now {
                    *report.waiting.entry(name.clone()).or_default() += 1;
                    continue;
                }
                let modified = modified.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                if self
                    .data
                    .files
                    .get(&file)
                    .is_some_and(|f| f.len == meta.len() && f.modified == modified && f.reader == READER_VERSION)
                {
                    *report.unchanged.entry(name.clone()).or_default() += 1;
                    continue;
                }
                match source.read(&file) {
                    Ok(session) => {
                        let found = episodes(&name, &file, &session, redactor);
                        *report.read.entry(name.clone()).or_default() += 1;
                        *report.episodes.entry(name.clone()).or_default() += found.len();
                        self.data.files.insert(
                            file,
                            FileEntry {
                                source: name.clone(),
                                reader: READER_VERSION,
                                len: meta.len(),
                                modified,
                                episodes: found,
                            },
                        );
                    }
                    Err(e) => report.problems.push(Problem { source: name.clone(), file, message: e.to_string() }),
                }
            }
        }
        // A night with nothing new writes nothing (the store is the largest file it keeps).
        if !report.read.is_empty() {
            self.save()?;
        }
        Ok(report)
    }

    /// Every episode kept, oldest first (episodes without a time last, by file).
    pub fn episodes(&self) -> Vec<&Episode> {
        let mut all: Vec<&Episode> = self.data.files.values().flat_map(|f| &f.episodes).collect();
        all.sort_by(|a, b| match (&a.time, &b.time) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.file.cmp(&b.file),
        });
        all
    }

    fn save(&self) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let bytes = serde_json::to_vec(&self.data)
            .map_err(|e| Error::Store { path: self.path.clone(), message: e.to_string() })?;
        skill_core::fsutil::atomic_write(&self.path, &bytes)
            .map_err(|e| Error::Store { path: self.path.clone(), message: e.to_string() })
    }
}
