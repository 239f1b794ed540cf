//! Hybrid search: the BM25 ranking of [`SearchIndex`] and a ranking by meaning (the cosine
//! similarity of sentence embeddings) fused by weighted reciprocal rank, so a question in other
//! words than its note's still finds it, and an exact term still counts. The fusion is by
//! document (MaxP, see `fuse`): one hit a note.
//!
//! Each document's embedding is computed once and kept beside the index
//! (`vectors-<model>.bin`, keyed by the hash of the text embedded), so a search embeds only
//! the query and documents that changed since.

use crate::Result;
use crate::index::{SearchHit, SearchIndex, SearchOptions};
use skill_core::embed_cache::CachedEmbedder;
use skill_core::{Embedder, Hit, RetrievalQuery, Retriever, cosine};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// The constant of reciprocal rank fusion (Cormack et al. 2009): a document's fused score is
/// the sum over rankings of weight / (K + its rank).
const RRF_K: f64 = 60.0;
/// The ranking by meaning's weight in the fusion (BM25's is 1). With equal weights a note's
/// fused score hardly depends on its rank in either list (1/61 against 1/62 at K = 60) but on
/// being in both; the ranking by meaning lists every document, so any note sharing a word
/// with the question won. On the paraphrased questions of `everyday/notes-recall` BM25 ranks
/// the right note first for 16 of 24 and 14 of 36, the embeddings for 23 of 24 and 34 of 36,
/// and equal weights for 21 and 26. Chosen on the 24 questions and on keyword queries (one
/// per section, its two rarest words: BM25 22 of 23, embeddings 18): every weight from 2 to
/// 8 kept 22 of 23 keyword queries and got 22 of 24 questions; 4 is the middle of that range.
pub const DEFAULT_MEANING_WEIGHT: f64 = 4.0;
/// How far down each ranking the fusion looks.
const DEPTH: usize = 50;
/// Characters of a document embedded (the model reads 256 tokens at most).
const EMBED_CHARS: usize = 1000;

/// [`SearchIndex`] with meaning-based ranking fused in.
pub struct HybridSearch {
    index: Arc<SearchIndex>,
    embedder: Arc<dyn Embedder>,
    /// The documents' vectors, read from beside the index once and kept for every query.
    vectors: CachedEmbedder<'static>,
    /// See [`DEFAULT_MEANING_WEIGHT`].
    meaning_weight: f64,
}

impl std::fmt::Debug for HybridSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridSearch").field("index", &self.index).field("embedder", &self.embedder.id()).finish()
    }
}

impl HybridSearch {
    /// Hybrid search over `index` with `embedder`'s vectors.
    pub fn new(index: Arc<SearchIndex>, embedder: Arc<dyn Embedder>) -> Self {
        let model = embedder.clone();
        let vectors =
            CachedEmbedder::lazy(embedder.id(), index.dir(), move || Ok(Box::new(model.clone()) as Box<dyn Embedder>));
        HybridSearch { index, embedder, vectors, meaning_weight: DEFAULT_MEANING_WEIGHT }
    }

    /// The same search with the documents' vectors kept in `dir` (`vectors-<model>.bin`, by
    /// the hash of each text) rather than beside the index: an index built afresh for each
    /// use (the recall check's scratch index) then embeds only the texts not seen before.
    pub fn with_vector_cache(mut self, dir: &Path) -> Self {
        let model = self.embedder.clone();
        self.vectors =
            CachedEmbedder::lazy(self.embedder.id(), dir, move || Ok(Box::new(model.clone()) as Box<dyn Embedder>));
        self
    }

    /// The same search with the ranking by meaning weighted `weight` against BM25's 1 in the
    /// fusion (1 is plain reciprocal rank fusion; a larger weight trusts meaning more).
    pub fn with_meaning_weight(mut self, weight: f64) -> Self {
        self.meaning_weight = weight.max(0.0);
        self
    }

    /// The BM25 hits and the nearest documents by meaning, fused by weighted reciprocal rank
    /// ([`DEFAULT_MEANING_WEIGHT`]); a hit's score is its fused score (comparable within one
    /// query only).
    pub fn search(&self, text: &str, opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        let limit = opts.limit.max(1);
        let lexical = self.index.search(text, &SearchOptions { limit: DEPTH.max(limit), ..*opts })?;
        let documents = self.index.documents(opts.scope, EMBED_CHARS)?;
        let texts: Vec<&str> = documents.iter().map(|(_, text)| text.as_str()).collect();
        let vectors = self.vectors.embed(&texts)?;
        let query = self.embedder.embed(&[text])?.pop().unwrap_or_default();
        let mut by_meaning: Vec<(usize, f32)> =
            vectors.iter().enumerate().map(|(i, v)| (i, cosine(v, &query))).collect();
        by_meaning.sort_by(|a, b| b.1.total_cmp(&a.1));
        by_meaning.truncate(DEPTH);

        let lexical: Vec<&SearchHit> = lexical.iter().collect();
        let meaning: Vec<&SearchHit> = by_meaning.iter().map(|&(i, _)| &documents[i].0).collect();
        let hits = fuse(&lexical, &meaning, self.meaning_weight);
        Ok(hits
            .into_iter()
            .take(limit)
            .map(|(score, mut hit)| {
                hit.score = score as f32;
                hit
            })
            .collect())
    }
}

/// Weighted reciprocal rank fusion by document (MaxP): a note's rank in each list is that of
/// its best section among the notes listed, so a note the words find in one section and the
/// meaning in another is one candidate found both ways, not two sections found once each.
/// One hit per document, best first: the section shown is the note's best by its own fused
/// score (a BM25 hit, listed first, keeps its highlighted snippet).
fn fuse(lexical: &[&SearchHit], meaning: &[&SearchHit], meaning_weight: f64) -> Vec<(f64, SearchHit)> {
    type Sections<'a> = HashMap<usize, (f64, &'a SearchHit)>;
    let mut notes: HashMap<&Path, (f64, Sections)> = HashMap::new();
    for (list, weight) in [(lexical, 1.0), (meaning, meaning_weight)] {
        let mut ranked: HashSet<&Path> = HashSet::new();
        for (position, &hit) in list.iter().enumerate() {
            let note = notes.entry(hit.path.as_path()).or_default();
            if ranked.insert(hit.path.as_path()) {
                note.0 += weight / (RRF_K + ranked.len() as f64);
            }
            note.1.entry(hit.line_start).or_insert((0.0, hit)).0 += weight / (RRF_K + position as f64 + 1.0);
        }
    }
    let mut hits: Vec<(f64, SearchHit)> = notes
        .into_values()
        .filter_map(|(score, sections)| {
            let best = sections
                .into_values()
                .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.line_start.cmp(&a.1.line_start)))?;
            Some((score, best.1.clone()))
        })
        .collect();
    hits.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.path.cmp(&b.1.path)));
    hits
}

#[async_trait::async_trait]
impl Retriever for HybridSearch {
    async fn retrieve(&self, query: &RetrievalQuery) -> skill_core::Result<Vec<Hit>> {
        let opts = SearchOptions { limit: query.limit, scope: query.scope, ..SearchOptions::default() };
        let hits = self.search(&query.text, &opts).map_err(|e| skill_core::Error::backend("hybrid search", e))?;
        Ok(hits.into_iter().map(crate::index::to_hit).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::HitKind;
    use std::path::PathBuf;

    fn section(note: &str, line_start: usize) -> SearchHit {
        SearchHit {
            kind: HitKind::Note,
            score: 0.0,
            path: PathBuf::from(note),
            title: note.into(),
            name: None,
            description: None,
            heading_path: Vec::new(),
            line_start,
            line_end: line_start + 5,
            snippet: String::new(),
            highlights: Vec::new(),
        }
    }

    #[test]
    fn a_note_found_by_words_in_one_section_and_by_meaning_in_another_is_found_both_ways() {
        let (a1, a2, b1) = (section("a.md", 1), section("a.md", 10), section("b.md", 1));
        // Words rank a.md's first section first, meaning its second; b.md's one section comes
        // second in both. By section, b.md's would win (1/62 + 4/62 against a2's 4/61).
        let fused = fuse(&[&a1, &b1], &[&a2, &b1], 4.0);
        let order: Vec<(&str, usize)> =
            fused.iter().map(|(_, h)| (h.path.to_str().expect("utf-8"), h.line_start)).collect();
        assert_eq!(order, [("a.md", 10), ("b.md", 1)], "one hit a note, a.md's best section shown");
        assert!((fused[0].0 - 5.0 / 61.0).abs() < 1e-12 && (fused[1].0 - 5.0 / 62.0).abs() < 1e-12);
        // A note's rank counts notes, not sections: a third section of a.md ahead of b.md in
        // the words' list does not push b.md down it.
        let a3 = section("a.md", 20);
        let fused = fuse(&[&a1, &a3, &b1], &[&a2, &b1], 4.0);
        assert!((fused[1].0 - 5.0 / 62.0).abs() < 1e-12, "{fused:?}");
    }
}
