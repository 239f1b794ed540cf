//! The on-disk tantivy index of notes and skills, and its incremental update.

use crate::chunk::chunk_markdown;
use crate::{Error, Result};
use skill_core::library::SkillLibrary;
use skill_core::{Hit, NoteHit, RetrievalQuery, Retriever, Scope, Skill, SkillHit};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{Bm25StatisticsProvider, BooleanQuery, BoostQuery, Occur, PhraseQuery, Query, TermQuery};
use tantivy::schema::{
    Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

/// Bumped whenever the schema or the chunking changes; an index of another version is rebuilt.
const SCHEMA_VERSION: u32 = 3;
const ANALYZER: &str = "skd_en";
const MANIFEST: &str = "manifest.json";
const WRITER_HEAP_BYTES: usize = 64 * 1024 * 1024;

/// Default limit on the size of a note; larger files are skipped and reported.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Field weights: what a match in each field counts relative to the body.
pub const BOOST_SKILL_NAME: f32 = 3.0;
/// Weight of a skill's description.
pub const BOOST_SKILL_DESCRIPTION: f32 = 2.0;
/// Weight of a note's title.
pub const BOOST_NOTE_TITLE: f32 = 2.0;
/// Weight of a note section's headings.
pub const BOOST_NOTE_HEADINGS: f32 = 2.0;

/// What to index.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Folders of markdown notes (`*.md`, `*.markdown`), walked recursively.
    pub note_roots: Vec<PathBuf>,
    /// The skill library whose `SKILL.md` files are indexed as skills.
    pub library: Option<SkillLibrary>,
    /// Files larger than this are skipped (0 means [`DEFAULT_MAX_FILE_BYTES`]).
    pub max_file_bytes: u64,
}

/// A file the indexer did not index, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// The file or folder.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// What an update did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct IndexReport {
    /// Files found in the sources.
    pub files_seen: usize,
    /// Files whose content was read (new, or size/time changed).
    pub files_read: usize,
    /// New files indexed.
    pub added: usize,
    /// Changed files re-indexed.
    pub updated: usize,
    /// Files gone from the sources and dropped from the index.
    pub removed: usize,
    /// Files whose content was unchanged.
    pub unchanged: usize,
    /// Chunks (note sections and skills) written.
    pub chunks_written: usize,
    /// Notes and skills now in the index.
    pub files_indexed: usize,
    /// Files and folders skipped, with reasons.
    pub skipped: Vec<Skipped>,
    /// True when the whole index was rebuilt (first run, `--full`, or a stale manifest).
    pub full_rebuild: bool,
    /// Wall-clock time.
    pub elapsed_ms: u128,
}

/// Progress of an update, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Walking the sources; files found so far.
    Scanning {
        /// Files found.
        found: usize,
    },
    /// Checking and indexing files.
    Indexing {
        /// Files processed.
        done: usize,
        /// Files to process.
        total: usize,
    },
    /// Writing the index to disk.
    Committing,
}

/// Kind of an indexed document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HitKind {
    /// A skill (`SKILL.md`).
    Skill,
    /// A note section.
    Note,
}

impl HitKind {
    fn as_str(self) -> &'static str {
        match self {
            HitKind::Skill => "skill",
            HitKind::Note => "note",
        }
    }
}

/// Search settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchOptions {
    /// At most this many hits.
    pub limit: usize,
    /// Skills, notes or both.
    pub scope: Scope,
    /// Maximum snippet length in characters.
    pub snippet_chars: usize,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions { limit: 10, scope: Scope::All, snippet_chars: 160 }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SearchHit {
    /// `skill` or `note`.
    pub kind: HitKind,
    /// BM25 relevance with field weights; comparable within one query only.
    pub score: f32,
    /// The note file, or the skill's `SKILL.md`.
    pub path: PathBuf,
    /// Note title, or skill name.
    pub title: String,
    /// Skill name (skills only).
    pub name: Option<String>,
    /// Skill description (skills only).
    pub description: Option<String>,
    /// Headings down to the matched section (notes only; empty for text before the first heading).
    pub heading_path: Vec<String>,
    /// First line of the hit, 1-based.
    pub line_start: usize,
    /// Last line of the hit, 1-based, inclusive.
    pub line_end: usize,
    /// Excerpt around the matched words.
    pub snippet: String,
    /// Byte ranges in `snippet` of the matched words.
    pub highlights: Vec<[usize; 2]>,
}

#[derive(Debug, Clone, Copy)]
struct Fields {
    path: Field,
    kind: Field,
    title: Field,
    headings: Field,
    name: Field,
    description: Field,
    skill_body: Field,
    note_body: Field,
    line_start: Field,
    line_end: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    let fields = Fields {
        path: b.add_text_field("path", STRING | STORED),
        kind: b.add_text_field("kind", STRING | STORED),
        title: b.add_text_field("title", text.clone()),
        headings: b.add_text_field("headings", text.clone()),
        name: b.add_text_field("name", text.clone()),
        description: b.add_text_field("description", text.clone()),
        skill_body: b.add_text_field("skill_body", text.clone()),
        note_body: b.add_text_field("note_body", text),
        line_start: b.add_u64_field("line_start", STORED | INDEXED),
        line_end: b.add_u64_field("line_end", STORED),
    };
    (b.build(), fields)
}

fn analyzer() -> TextAnalyzer {
    let builder = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter);
    match StopWordFilter::new(Language::English) {
        Some(stop) => builder.filter(stop).filter(Stemmer::new(Language::English)).build(),
        None => builder.filter(Stemmer::new(Language::English)).build(),
    }
}

/// Which files are indexed, with what content hash. Written after every commit; its
/// `generation` is also the commit's payload, so a manifest that does not belong to the
/// committed index (a crash between the two writes) is detected and the index rebuilt.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Manifest {
    schema: u32,
    generation: String,
    files: BTreeMap<PathBuf, FileState>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct FileState {
    hash: String,
    size: u64,
    mtime_ns: u128,
    kind: HitKind,
}

/// The search index of notes and skills, stored in one folder.
pub struct SearchIndex {
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    fields: Fields,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex").field("dir", &self.dir).finish()
    }
}

impl SearchIndex {
    /// Opens the index in `dir`, creating an empty one if there is none. An index of an older
    /// schema version is discarded (it is a cache: `update` rebuilds it).
    pub fn open_or_create(dir: &Path) -> Result<SearchIndex> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (schema, fields) = schema();
        let index = if dir.join("meta.json").exists() {
            match Index::open_in_dir(dir) {
                Ok(index) if index.schema() == schema => index,
                // Unreadable, or written by another schema version: it is only a cache.
                _ => recreate(dir, schema)?,
            }
        } else {
            Index::create_in_dir(dir, schema).map_err(|e| Error::tantivy(dir, e))?
        };
        Self::with_index(dir, index, fields)
    }

    /// Opens an existing index for searching only; fails with [`Error::NoIndex`] when there is none.
    pub fn open(dir: &Path) -> Result<SearchIndex> {
        if !dir.join("meta.json").exists() {
            return Err(Error::NoIndex(dir.to_path_buf()));
        }
        let (schema, fields) = schema();
        let index = Index::open_in_dir(dir).map_err(|e| Error::tantivy(dir, e))?;
        if index.schema() != schema {
            return Err(Error::Stale(dir.to_path_buf()));
        }
        Self::with_index(dir, index, fields)
    }

    fn with_index(dir: &Path, index: Index, fields: Fields) -> Result<SearchIndex> {
        index.tokenizers().register(ANALYZER, analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| Error::tantivy(dir, e))?;
        Ok(SearchIndex { dir: dir.to_path_buf(), index, reader, fields })
    }

    /// The folder the index lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of indexed chunks (note sections plus skills).
    pub fn num_chunks(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Brings the index up to date with `sources`: new and changed files are (re)indexed,
    /// deleted ones dropped, unchanged ones not even read (size and modification time match)
    /// or not re-indexed (content hash matches). The update is one tantivy commit, so a crash
    /// part-way leaves the previous index intact and searchable.
    pub fn update(&mut self, sources: &Sources, full: bool, progress: &mut dyn FnMut(Progress)) -> Result<IndexReport> {
        let started = Instant::now();
        let mut report = IndexReport::default();
        let mut writer: IndexWriter<TantivyDocument> = self.index.writer(WRITER_HEAP_BYTES).map_err(|e| match e {
            tantivy::TantivyError::LockFailure(..) => Error::Busy(self.dir.clone()),
            e => Error::tantivy(&self.dir, e),
        })?;

        let committed_payload = self.index.load_metas().ok().and_then(|m| m.payload);
        let mut manifest = match read_manifest(&self.dir) {
            Some(m) if !full && m.schema == SCHEMA_VERSION && Some(&m.generation) == committed_payload.as_ref() => m,
            _ => {
                report.full_rebuild = true;
                writer.delete_all_documents().map_err(|e| Error::tantivy(&self.dir, e))?;
                Manifest { schema: SCHEMA_VERSION, ..Manifest::default() }
            }
        };

        let max_bytes = if sources.max_file_bytes == 0 { DEFAULT_MAX_FILE_BYTES } else { sources.max_file_bytes };
        let candidates = scan(sources, &mut report.skipped, progress);
        report.files_seen = candidates.len();
        let total = candidates.len();
        let mut present: HashSet<PathBuf> = HashSet::with_capacity(total);
        let mut changed = report.full_rebuild;

        for (i, (path, kind)) in candidates.iter().enumerate() {
            if i % 64 == 0 {
                progress(Progress::Indexing { done: i, total });
            }
            let meta = match std::fs::metadata(path) {
                Ok(m) => m,
                Err(e) => {
                    report.skipped.push(Skipped { path: path.clone(), reason: e.to_string() });
                    continue;
                }
            };
            if meta.len() > max_bytes {
                report.skipped.push(Skipped {
                    path: path.clone(),
                    reason: format!(
                        "too large ({:.1} MB; the limit is {:.1} MB, set max_file_mb)",
                        mb(meta.len()),
                        mb(max_bytes)
                    ),
                });
                continue;
            }
            let mtime_ns =
                meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
            let previous = manifest.files.get(path).cloned();
            if let Some(prev) = &previous
                && prev.size == meta.len()
                && prev.mtime_ns == mtime_ns
                && prev.kind == *kind
            {
                present.insert(path.clone());
                report.unchanged += 1;
                continue;
            }
            report.files_read += 1;
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) => {
                    report.skipped.push(Skipped { path: path.clone(), reason: e.to_string() });
                    continue;
                }
            };
            let hash = blake3::hash(&bytes).to_hex().to_string();
            let state = FileState { hash: hash.clone(), size: meta.len(), mtime_ns, kind: *kind };
            if previous.as_ref().is_some_and(|p| p.hash == hash && p.kind == *kind) {
                // Touched but not changed: remember the new time, keep the indexed chunks.
                manifest.files.insert(path.clone(), state);
                present.insert(path.clone());
                report.unchanged += 1;
                continue;
            }
            let text = match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    report.skipped.push(Skipped {
                        path: path.clone(),
                        reason: format!("not valid UTF-8 (first bad byte at offset {})", e.utf8_error().valid_up_to()),
                    });
                    continue;
                }
            };
            let docs = match kind {
                HitKind::Note => self.note_docs(path, &text),
                HitKind::Skill => match self.skill_doc(path, &text) {
                    Ok(doc) => vec![doc],
                    Err(reason) => {
                        report.skipped.push(Skipped { path: path.clone(), reason });
                        continue;
                    }
                },
            };
            writer.delete_term(Term::from_field_text(self.fields.path, &path_key(path)));
            report.chunks_written += docs.len();
            for doc in docs {
                writer.add_document(doc).map_err(|e| Error::tantivy(&self.dir, e))?;
            }
            if previous.is_some() {
                report.updated += 1;
            } else {
                report.added += 1;
            }
            manifest.files.insert(path.clone(), state);
            present.insert(path.clone());
            changed = true;
        }
        progress(Progress::Indexing { done: total, total });

        let gone: Vec<PathBuf> = manifest.files.keys().filter(|p| !present.contains(*p)).cloned().collect();
        for path in gone {
            writer.delete_term(Term::from_field_text(self.fields.path, &path_key(&path)));
            manifest.files.remove(&path);
            report.removed += 1;
            changed = true;
        }
        report.files_indexed = manifest.files.len();

        if changed {
            progress(Progress::Committing);
            manifest.generation = new_generation();
            let mut prepared = writer.prepare_commit().map_err(|e| Error::tantivy(&self.dir, e))?;
            prepared.set_payload(&manifest.generation);
            prepared.commit().map_err(|e| Error::tantivy(&self.dir, e))?;
            writer.wait_merging_threads().map_err(|e| Error::tantivy(&self.dir, e))?;
        } else {
            drop(writer);
        }
        write_manifest(&self.dir, &manifest)?;
        self.reader.reload().map_err(|e| Error::tantivy(&self.dir, e))?;
        report.elapsed_ms = started.elapsed().as_millis();
        Ok(report)
    }

    fn note_docs(&self, path: &Path, text: &str) -> Vec<TantivyDocument> {
        let f = &self.fields;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let note = chunk_markdown(text, &stem);
        note.chunks
            .into_iter()
            .map(|chunk| {
                let mut doc = TantivyDocument::default();
                doc.add_text(f.path, path_key(path));
                doc.add_text(f.kind, HitKind::Note.as_str());
                doc.add_text(f.title, &note.title);
                for h in &chunk.heading_path {
                    doc.add_text(f.headings, h);
                }
                doc.add_text(f.note_body, &chunk.text);
                doc.add_u64(f.line_start, chunk.line_start as u64);
                doc.add_u64(f.line_end, chunk.line_end as u64);
                doc
            })
            .collect()
    }

    fn skill_doc(&self, path: &Path, text: &str) -> std::result::Result<TantivyDocument, String> {
        let f = &self.fields;
        let skill = Skill::parse(text, Some(path)).map_err(|e| format!("invalid SKILL.md: {e}"))?;
        let name = skill
            .meta()
            .name
            .clone()
            .or_else(|| path.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let mut doc = TantivyDocument::default();
        doc.add_text(f.path, path_key(path));
        doc.add_text(f.kind, HitKind::Skill.as_str());
        // Skills set only skill fields: per-kind BM25 statistics rely on it.
        doc.add_text(f.name, &name);
        doc.add_text(f.description, skill.description());
        doc.add_text(f.skill_body, skill.body());
        doc.add_u64(f.line_start, 1);
        doc.add_u64(f.line_end, text.lines().count().max(1) as u64);
        Ok(doc)
    }

    /// Searches with any user text: words are matched stemmed across all fields with their
    /// weights, `"quoted words"` as phrases; nothing the user types is a syntax error.
    ///
    /// Skills and notes are scored separately, each with the average field lengths of its own
    /// kind (see `KindStatistics`), then merged by score.
    pub fn search(&self, text: &str, opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        let kinds: &[HitKind] = match opts.scope {
            Scope::All => &[HitKind::Skill, HitKind::Note],
            Scope::Skills => &[HitKind::Skill],
            Scope::Notes => &[HitKind::Note],
        };
        let searcher = self.reader.searcher();
        let limit = opts.limit.max(1);
        let mut scored: Vec<(f32, tantivy::DocAddress, HitKind)> = Vec::new();
        let mut queries = Vec::new();
        for &kind in kinds {
            let Some(query) = self.build_query(text, kind) else {
                return Ok(Vec::new());
            };
            let kind_filter =
                TermQuery::new(Term::from_field_text(self.fields.kind, kind.as_str()), IndexRecordOption::Basic);
            let docs_of_kind = searcher.search(&kind_filter, &Count).map_err(|e| Error::tantivy(&self.dir, e))? as u64;
            if docs_of_kind == 0 {
                continue;
            }
            let stats = KindStatistics {
                searcher: &searcher,
                kind_docs: docs_of_kind,
                all_docs: searcher.total_num_docs().map_err(|e| Error::tantivy(&self.dir, e))?,
            };
            let top = searcher
                .search_with_statistics_provider(&*query, &TopDocs::with_limit(limit).order_by_score(), &stats)
                .map_err(|e| Error::tantivy(&self.dir, e))?;
            scored.extend(top.into_iter().map(|(score, addr)| (score, addr, kind)));
            queries.push((kind, query));
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.truncate(limit);

        let mut generators = Vec::new();
        for (kind, query) in &queries {
            let fields: &[Field] = match kind {
                HitKind::Skill => &[self.fields.description, self.fields.skill_body],
                HitKind::Note => &[self.fields.note_body],
            };
            for &field in fields {
                let mut generator =
                    SnippetGenerator::create(&searcher, &**query, field).map_err(|e| Error::tantivy(&self.dir, e))?;
                generator.set_max_num_chars(opts.snippet_chars);
                generators.push((*kind, field, generator));
            }
        }

        let mut hits = Vec::with_capacity(scored.len());
        for (score, address, kind) in scored {
            let doc: TantivyDocument = searcher.doc(address).map_err(|e| Error::tantivy(&self.dir, e))?;
            let text_of = |field: Field| doc.get_first(field).and_then(|v| v.as_str()).unwrap_or("").to_string();
            let u64_of = |field: Field| doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0) as usize;
            // The first field (description before body for skills) with a highlighted match.
            let snippet = generators
                .iter()
                .filter(|(k, _, _)| *k == kind)
                .map(|(_, _, g)| g.snippet_from_doc(&doc))
                .find(|s| !s.highlighted().is_empty());
            let (snippet_text, highlights) = match snippet {
                Some(s) => (s.fragment().to_string(), s.highlighted().iter().map(|r| [r.start, r.end]).collect()),
                None => {
                    let fallback = match kind {
                        HitKind::Skill => text_of(self.fields.description),
                        HitKind::Note => text_of(self.fields.note_body),
                    };
                    (truncate_chars(&fallback, opts.snippet_chars), Vec::new())
                }
            };
            let headings: Vec<String> =
                doc.get_all(self.fields.headings).filter_map(|v| v.as_str().map(String::from)).collect();
            hits.push(SearchHit {
                kind,
                score,
                path: PathBuf::from(text_of(self.fields.path)),
                title: match kind {
                    HitKind::Skill => text_of(self.fields.name),
                    HitKind::Note => text_of(self.fields.title),
                },
                name: (kind == HitKind::Skill).then(|| text_of(self.fields.name)),
                description: (kind == HitKind::Skill).then(|| text_of(self.fields.description)),
                heading_path: headings,
                line_start: u64_of(self.fields.line_start),
                line_end: u64_of(self.fields.line_end),
                snippet: snippet_text,
                highlights,
            });
        }
        Ok(hits)
    }

    /// Every document of the scope, as hits without a score: the snippet is the start of the
    /// note section's text or the skill's description, and `text` what a meaning-based
    /// ranking compares (a note's title, headings and text; a skill's name and description).
    pub fn documents(&self, scope: Scope, text_chars: usize) -> Result<Vec<(SearchHit, String)>> {
        let searcher = self.reader.searcher();
        let mut out = Vec::new();
        for segment in searcher.segment_readers() {
            let store = segment.get_store_reader(64).map_err(|e| Error::tantivy(&self.dir, e))?;
            for doc_id in 0..segment.max_doc() {
                if segment.is_deleted(doc_id) {
                    continue;
                }
                let doc: TantivyDocument = store.get(doc_id).map_err(|e| Error::tantivy(&self.dir, e))?;
                let text_of = |field: Field| doc.get_first(field).and_then(|v| v.as_str()).unwrap_or("").to_string();
                let u64_of = |field: Field| doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0) as usize;
                let kind = match text_of(self.fields.kind).as_str() {
                    "skill" => HitKind::Skill,
                    _ => HitKind::Note,
                };
                let wanted = match scope {
                    Scope::All => true,
                    Scope::Skills => kind == HitKind::Skill,
                    Scope::Notes => kind == HitKind::Note,
                };
                if !wanted {
                    continue;
                }
                let headings: Vec<String> =
                    doc.get_all(self.fields.headings).filter_map(|v| v.as_str().map(String::from)).collect();
                let (title, compared, snippet) = match kind {
                    HitKind::Skill => {
                        let (name, description) = (text_of(self.fields.name), text_of(self.fields.description));
                        let compared = format!("{}: {description}", name.replace('-', " "));
                        (name, compared, description)
                    }
                    HitKind::Note => {
                        let (title, body) = (text_of(self.fields.title), text_of(self.fields.note_body));
                        let compared = format!("{title}. {}\n{body}", headings.join(" > "));
                        (title, compared, body)
                    }
                };
                out.push((
                    SearchHit {
                        kind,
                        score: 0.0,
                        path: PathBuf::from(text_of(self.fields.path)),
                        title,
                        name: (kind == HitKind::Skill).then(|| text_of(self.fields.name)),
                        description: (kind == HitKind::Skill).then(|| text_of(self.fields.description)),
                        heading_path: headings,
                        line_start: u64_of(self.fields.line_start),
                        line_end: u64_of(self.fields.line_end),
                        snippet: truncate_chars(&snippet, 160),
                        highlights: Vec::new(),
                    },
                    truncate_chars(&compared, text_chars),
                ));
            }
        }
        Ok(out)
    }

    /// The query for one kind of document, over that kind's fields with their weights.
    fn build_query(&self, text: &str, kind: HitKind) -> Option<Box<dyn Query>> {
        let (phrases, words) = split_phrases(text);
        let mut analyzer = analyzer();
        let mut tokens = |s: &str| {
            let mut out = Vec::new();
            let mut stream = analyzer.token_stream(s);
            while let Some(tok) = stream.next() {
                out.push(tok.text.clone());
            }
            out
        };
        let word_tokens = tokens(&words);
        let phrase_tokens: Vec<Vec<String>> = phrases.iter().map(|p| tokens(p)).filter(|t| !t.is_empty()).collect();
        if word_tokens.is_empty() && phrase_tokens.is_empty() {
            return None;
        }
        let f = &self.fields;
        let weighted: &[(Field, f32)] = match kind {
            HitKind::Skill => {
                &[(f.name, BOOST_SKILL_NAME), (f.description, BOOST_SKILL_DESCRIPTION), (f.skill_body, 1.0)]
            }
            HitKind::Note => &[(f.title, BOOST_NOTE_TITLE), (f.headings, BOOST_NOTE_HEADINGS), (f.note_body, 1.0)],
        };
        let mut per_field: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for &(field, boost) in weighted {
            let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            let mut seen = HashSet::new();
            for tok in &word_tokens {
                if seen.insert(tok.clone()) {
                    clauses.push((
                        Occur::Should,
                        Box::new(TermQuery::new(Term::from_field_text(field, tok), IndexRecordOption::WithFreqs)),
                    ));
                }
            }
            for phrase in &phrase_tokens {
                let terms: Vec<Term> = phrase.iter().map(|t| Term::from_field_text(field, t)).collect();
                let q: Box<dyn Query> = if terms.len() == 1 {
                    Box::new(TermQuery::new(terms[0].clone(), IndexRecordOption::WithFreqs))
                } else {
                    Box::new(PhraseQuery::new(terms))
                };
                // Phrases weigh more than loose words: the user asked for them exactly.
                clauses.push((Occur::Should, Box::new(BoostQuery::new(q, 2.0))));
            }
            per_field.push((Occur::Should, Box::new(BoostQuery::new(Box::new(BooleanQuery::new(clauses)), boost))));
        }
        Some(Box::new(BooleanQuery::new(per_field)))
    }
}

/// BM25 statistics for one kind of document. The fields of a kind are only ever set on
/// documents of that kind, so a field's token total is already per kind; BM25 divides it by
/// the document count to get the average field length, which must be the kind's count, not
/// the index's (thousands of short note chunks would otherwise make every skill description
/// look long). The idf keeps the whole index's count: how informative a word is depends on
/// the whole knowledge base. tantivy computes both from one count, so the token total is
/// scaled to give the per-kind average with the global count.
struct KindStatistics<'a> {
    searcher: &'a tantivy::Searcher,
    kind_docs: u64,
    all_docs: u64,
}

impl Bm25StatisticsProvider for KindStatistics<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        let tokens = self.searcher.total_num_tokens(field)?;
        Ok((tokens as u128 * self.all_docs as u128 / self.kind_docs.max(1) as u128) as u64)
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.all_docs)
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        self.searcher.doc_freq(term)
    }
}

#[async_trait::async_trait]
impl Retriever for SearchIndex {
    async fn retrieve(&self, query: &RetrievalQuery) -> skill_core::Result<Vec<Hit>> {
        let opts = SearchOptions { limit: query.limit, scope: query.scope, ..SearchOptions::default() };
        let hits = self.search(&query.text, &opts).map_err(|e| skill_core::Error::backend("tantivy", e))?;
        Ok(hits.into_iter().map(to_hit).collect())
    }
}

/// A hit as the agent loop takes it.
pub(crate) fn to_hit(h: SearchHit) -> Hit {
    match h.kind {
        HitKind::Skill => Hit::Skill(SkillHit {
            name: h.name.unwrap_or_default(),
            description: h.description.unwrap_or_default(),
            path: h.path,
            score: h.score,
        }),
        HitKind::Note => Hit::Note(NoteHit {
            path: h.path,
            title: h.title,
            heading_path: h.heading_path,
            line_start: h.line_start,
            line_end: h.line_end,
            snippet: h.snippet,
            score: h.score,
        }),
    }
}

/// Splits `"quoted phrases"` from the other words. An unbalanced quote counts as a word
/// separator, never an error.
fn split_phrases(text: &str) -> (Vec<String>, String) {
    let mut phrases = Vec::new();
    let mut words = String::new();
    let parts: Vec<&str> = text.split('"').collect();
    let balanced = parts.len() % 2 == 1;
    for (i, part) in parts.iter().enumerate() {
        let is_phrase = i % 2 == 1 && (balanced || i + 1 < parts.len());
        if is_phrase {
            phrases.push(part.to_string());
        } else {
            words.push(' ');
            words.push_str(part);
        }
    }
    (phrases, words)
}

fn scan(sources: &Sources, skipped: &mut Vec<Skipped>, progress: &mut dyn FnMut(Progress)) -> Vec<(PathBuf, HitKind)> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let skill_roots: Vec<PathBuf> = sources
        .library
        .iter()
        .flat_map(|lib| lib.roots().map(Path::to_path_buf).collect::<Vec<_>>())
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    if let Some(lib) = &sources.library {
        let discovery = lib.discover();
        skipped.extend(discovery.skipped.into_iter().map(|s| Skipped { path: s.path, reason: s.reason }));
        for entry in discovery.skills {
            let path = absolute(&entry.skill_md());
            if seen.insert(path.clone()) {
                out.push((path, HitKind::Skill));
            }
        }
    }
    for root in &sources.note_roots {
        if !root.exists() {
            skipped.push(Skipped { path: root.clone(), reason: "notes folder does not exist".into() });
            continue;
        }
        let mut walker = walkdir::WalkDir::new(root).follow_links(true).sort_by_file_name().into_iter();
        loop {
            let entry = match walker.next() {
                None => break,
                Some(Ok(e)) => e,
                Some(Err(e)) => {
                    let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| root.clone());
                    let reason = if e.loop_ancestor().is_some() {
                        "symlink loop (not followed)".to_string()
                    } else {
                        e.io_error().map(|io| io.to_string()).unwrap_or_else(|| e.to_string())
                    };
                    skipped.push(Skipped { path, reason });
                    continue;
                }
            };
            let name = entry.file_name().to_string_lossy();
            if entry.depth() > 0 && name.starts_with('.') {
                if entry.file_type().is_dir() {
                    walker.skip_current_dir();
                }
                continue;
            }
            if entry.file_type().is_dir() {
                // Skills are indexed as skills, not as notes.
                if entry.path().canonicalize().is_ok_and(|c| skill_roots.contains(&c)) {
                    walker.skip_current_dir();
                }
                continue;
            }
            let is_md = entry
                .path()
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("md") || e.eq_ignore_ascii_case("markdown"));
            if !is_md || !entry.file_type().is_file() {
                continue;
            }
            let path = absolute(entry.path());
            if seen.insert(path.clone()) {
                out.push((path, HitKind::Note));
                if out.len() % 256 == 0 {
                    progress(Progress::Scanning { found: out.len() });
                }
            }
        }
    }
    progress(Progress::Scanning { found: out.len() });
    out
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn path_key(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn truncate_chars(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(max).collect::<String>().trim_end())
    }
}

fn new_generation() -> String {
    let nanos = std::time::SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{nanos:x}-{:x}", std::process::id())
}

fn read_manifest(dir: &Path) -> Option<Manifest> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    let json = serde_json::to_vec(manifest).map_err(|e| Error::Corrupt(dir.join(MANIFEST), e.to_string()))?;
    skill_core::fsutil::atomic_write(&dir.join(MANIFEST), &json).map_err(Error::Core)
}

fn recreate(dir: &Path, schema: Schema) -> Result<Index> {
    // The index is a cache of the sources; an unreadable or outdated one is rebuilt.
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        removed.map_err(|e| Error::io(&path, e))?;
    }
    Index::create_in_dir(dir, schema).map_err(|e| Error::tantivy(dir, e))
}
