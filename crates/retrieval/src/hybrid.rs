//! Hybrid search: the BM25 ranking of [`SearchIndex`] and a ranking by meaning (the cosine
//! similarity of sentence embeddings) fused by weighted reciprocal rank, so a question in other
//! words than its note's still finds it, and an exact term still counts.
//!
//! Each document's embedding is computed once and kept beside the index
//! (`vectors-<model>.bin`, keyed by the hash of the text embedded), so a search embeds only
//! the query and documents that changed since.

use crate::Result;
use crate::index::{SearchHit, SearchIndex, SearchOptions};
use skill_core::embed_cache::CachedEmbedder;
use skill_core::{Embedder, Hit, RetrievalQuery, Retriever, cosine};
use std::collections::HashMap;
use std::path::PathBuf;
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

        let key = |h: &SearchHit| (h.path.clone(), h.line_start);
        let mut fused: HashMap<(PathBuf, usize), (f64, SearchHit)> = HashMap::new();
        for (rank, hit) in lexical.into_iter().enumerate() {
            fused.entry(key(&hit)).or_insert((0.0, hit)).0 += 1.0 / (RRF_K + rank as f64 + 1.0);
        }
        for (rank, (i, _)) in by_meaning.into_iter().enumerate() {
            let hit = &documents[i].0;
            // A BM25 hit keeps its highlighted snippet.
            fused.entry(key(hit)).or_insert_with(|| (0.0, hit.clone())).0 +=
                self.meaning_weight / (RRF_K + rank as f64 + 1.0);
        }
        let mut hits: Vec<(f64, SearchHit)> = fused.into_values().collect();
        hits.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.path.cmp(&b.1.path)));
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

#[async_trait::async_trait]
impl Retriever for HybridSearch {
    async fn retrieve(&self, query: &RetrievalQuery) -> skill_core::Result<Vec<Hit>> {
        let opts = SearchOptions { limit: query.limit, scope: query.scope, ..SearchOptions::default() };
        let hits = self.search(&query.text, &opts).map_err(|e| skill_core::Error::backend("hybrid search", e))?;
        Ok(hits.into_iter().map(crate::index::to_hit).collect())
    }
}
