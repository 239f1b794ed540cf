//! The recall check: does search surface a skill for the words its users type?
//!
//! The teacher writes queries a user with the skill's job would type and near-misses about
//! related jobs. Retrieval over the skill library (the other skills plus this one, in a
//! scratch index) must rank the skill first for the former and not for the latter. Half of
//! each kind tunes the description (the teacher rewrites it from the misses, at most twice);
//! the other half, held out, decides whether the check passed.

use crate::teacher_io::{counted, teacher_request};
use crate::worked_examples::without_worked_examples;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use skill_core::fsutil::atomic_write;
use skill_core::{Embedder, Skill, Teacher, Usage};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The retrieval check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecallReport {
    /// Queries that should rank the skill first, and whether they did.
    pub positive: Vec<(String, bool)>,
    /// Near-misses that should not, and whether they did not.
    pub negative: Vec<(String, bool)>,
    /// Near-misses set aside as near-copies of a should-find query.
    #[serde(default)]
    pub discarded_near_misses: Vec<String>,
    /// Why the check could not be run (the teacher's queries were unusable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_checked: Option<String>,
    /// Why the description rewriting stopped early (the teacher's rewrite was unusable);
    /// the queries were ranked against the description as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_failed: Option<String>,
    /// Near-misses that are other skills' descriptions, used when the teacher wrote fewer
    /// than two usable ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub near_misses_from_library: Vec<String>,
    /// Description rewrites the teacher wrote.
    pub rewrites: usize,
    /// With rewrites: how many of all the queries the description given to the check got
    /// right, and how many the rewritten one did. The rewrite is kept (and the report is of
    /// it) only when it gets more right; otherwise the report is of the description given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right_before_and_after: Option<(usize, usize)>,
    /// Whether the rewritten description was kept (see `right_before_and_after`).
    #[serde(default)]
    pub rewrite_kept: bool,
    /// Final check on the held-out half of the queries passed.
    pub passed: bool,
}

impl RecallReport {
    /// The report of a check that could not run, and why.
    pub fn not_checked(why: String) -> Self {
        RecallReport {
            positive: Vec::new(),
            negative: Vec::new(),
            discarded_near_misses: Vec::new(),
            rewrites: 0,
            right_before_and_after: None,
            rewrite_kept: false,
            passed: false,
            not_checked: Some(why),
            rewrite_failed: None,
            near_misses_from_library: Vec::new(),
        }
    }
}

/// The check's verdict on ranked queries: every held-out query (the second half of each
/// kind, the first half having tuned the description) came out right.
pub fn held_out_passed(positive: &[(String, bool)], negative: &[(String, bool)]) -> bool {
    positive[positive.len() / 2..].iter().chain(&negative[negative.len() / 2..]).all(|(_, ok)| *ok)
}

/// Queries, each with whether retrieval got it right.
pub type Ranked = Vec<(String, bool)>;

/// What a check found, and the skill with its final description.
#[derive(Debug, Clone)]
pub struct RecallOutcome {
    /// Each query and whether retrieval got it right.
    pub report: RecallReport,
    /// The SKILL.md with the rewritten description when `report.rewrite_kept`, else the one
    /// given to the check.
    pub markdown: String,
    /// When a rewrite was kept: the should-find and near-miss rankings of the description
    /// given to the check, for a caller that does not save the rewrite (a dry run).
    pub given_ranking: Option<(Ranked, Ranked)>,
}

/// The check's inputs.
pub struct RecallChecker<'a> {
    /// Writes the queries and rewrites the description.
    pub teacher: &'a dyn Teacher,
    /// The skill's name (its folder in the library).
    pub skill_name: String,
    /// The library whose other skills compete for each query.
    pub library_root: Option<PathBuf>,
    /// Queries of each kind to ask for (at least 2).
    pub queries_per_kind: usize,
    /// Wall-clock limit on each teacher request.
    pub teacher_timeout: Duration,
    /// Rank with hybrid search (BM25 and this model's embeddings, as `skd search --hybrid`)
    /// instead of BM25 alone, which is what `skd run` and the distillation use.
    pub embedder: Option<Arc<dyn Embedder>>,
    /// Where the library's embeddings are kept between checks (with `embedder`): the search
    /// index's folder, so a skill is embedded once for search and every check alike. None:
    /// each check embeds the whole library again in its scratch index.
    pub vector_cache: Option<PathBuf>,
}

#[derive(Deserialize)]
struct RecallQueries {
    should_find: Vec<String>,
    should_not_find: Vec<String>,
}

#[derive(Deserialize)]
struct NearMisses {
    should_not_find: Vec<String>,
}

/// Sampling temperature for query writing: greedy decoding makes a small teacher repeat one
/// query until the token limit; the queries are kept in the report, so nothing depends on
/// drawing the same ones again.
const QUERY_TEMPERATURE: Option<f32> = Some(0.7);

fn bullet_list(items: &[String]) -> String {
    items.iter().map(|i| format!("- {i}")).collect::<Vec<_>>().join("\n")
}

#[derive(Deserialize)]
struct NewDescription {
    description: String,
}

impl RecallChecker<'_> {
    /// Runs the check on `markdown` (a SKILL.md). Each teacher answer's token usage goes to
    /// `on_usage` as it arrives. Queries the teacher could not write usably after one repair
    /// request are [`Error::TeacherOutput`]; the caller decides whether that stops it.
    pub async fn check(&self, markdown: &str, on_usage: &mut (dyn FnMut(&Usage) + Send)) -> Result<RecallOutcome> {
        let name = self.skill_name.clone();
        let n = self.queries_per_kind.max(2);
        let best = markdown.to_string();
        // The teacher sees the description and the procedure, not the frontmatter: shown
        // `name: bbh-navigate`, a small teacher writes the name as every query.
        let shown = Skill::parse(&best, None).map_err(Error::Core)?;
        let user = format!(
            "Here is a skill. Write {n} search queries a user with this job would type (they should find this \
             skill) and {n} near-miss queries about related but different jobs (they should not). Write them in \
             a user's own words, as questions or requests, not as names or identifiers.\n\n## What the skill is \
             for\n{}\n\n## The skill\n{}\n\n\
             Reply with JSON only: {{\"should_find\": [\"...\"], \"should_not_find\": [\"...\"]}}",
            shown.description(),
            without_worked_examples(shown.body()).trim()
        );
        let queries: RecallQueries = self
            // About 60 tokens a query (word_sorting's are whole word lists), both kinds.
            .ask(
                user,
                (150 + 120 * n as u32).clamp(600, 4000),
                QUERY_TEMPERATURE,
                on_usage,
                "recall queries",
                |q: &RecallQueries| {
                    let (find, miss) = (
                        searchable_queries(&q.should_find, &name).len(),
                        searchable_queries(&q.should_not_find, &name).len(),
                    );
                    // Too few near-misses are asked for again below, or taken from the library.
                    if find < 2 {
                        // The skill's name stays out of this message: quoted back to a small
                        // teacher, it is what the teacher writes as every query.
                        Err(format!(
                            "should_find has {find} usable queries (should_not_find has {miss}); it needs at least 2 \
                         different ones, each a question or request in a user's own words (no identifiers or \
                         hyphenated names)"
                        ))
                    } else {
                        Ok(())
                    }
                },
            )
            .await?;
        let queries = RecallQueries {
            should_find: searchable_queries(&queries.should_find, &name),
            should_not_find: searchable_queries(&queries.should_not_find, &name),
        };
        // A "near-miss" that is a should-find query with a word changed cannot be told apart
        // by any description: it is set aside (and reported) rather than failing the check.
        let (mut near_misses, mut discarded): (Vec<String>, Vec<String>) = queries
            .should_not_find
            .iter()
            .cloned()
            .partition(|n| !queries.should_find.iter().any(|p| too_similar(n, p)));
        // Small teachers write near-misses as the skill's own queries with a word changed.
        // Asked once more, with those shown, for queries about other jobs.
        if near_misses.len() < 2 {
            let copies = if discarded.is_empty() {
                String::new()
            } else {
                format!(
                    "These were meant as near-misses, but they ask for the same job:\n{}\n\n",
                    bullet_list(&discarded)
                )
            };
            let user = format!(
                "These search queries should find a skill:\n{}\n\n{copies}Write {n} near-miss queries a user \
                 would type for different jobs that share some words with this one (the same kind of input, a \
                 different task). Write them in a user's own words.\n\n\
                 Reply with JSON only: {{\"should_not_find\": [\"...\"]}}",
                bullet_list(&queries.should_find),
            );
            let have = near_misses.len();
            let should_find = &queries.should_find;
            let distinct = |q: &NearMisses| -> Vec<String> {
                searchable_queries(&q.should_not_find, &name)
                    .into_iter()
                    .filter(|m| !should_find.iter().any(|p| too_similar(m, p)))
                    .collect()
            };
            let asked = self
                .ask(
                    user,
                    (100 + 60 * n as u32).clamp(400, 2000),
                    QUERY_TEMPERATURE,
                    on_usage,
                    "near-misses",
                    |q: &NearMisses| {
                        let usable = distinct(q).len();
                        if have + usable < 2 {
                            Err(format!(
                                "{usable} of these are about a different job than the skill's; write at least 2"
                            ))
                        } else {
                            Ok(())
                        }
                    },
                )
                .await;
            match asked {
                Ok(more) => {
                    let kept = distinct(&more);
                    for miss in searchable_queries(&more.should_not_find, &name) {
                        if kept.contains(&miss) {
                            if !near_misses.contains(&miss) {
                                near_misses.push(miss);
                            }
                        } else if !discarded.contains(&miss) {
                            // Copies again: set aside and reported like the first ones.
                            discarded.push(miss);
                        }
                    }
                }
                Err(Error::TeacherOutput(why)) => tracing::info!(skill = %name, %why, "no usable near-misses"),
                Err(e) => return Err(e),
            }
        }
        // Still too few: the jobs of the skill's neighbours in the library are near-misses by
        // definition (a user asking for one of them must get that skill, not this one).
        let mut from_library = Vec::new();
        if near_misses.len() < 2 {
            // Least similar first: the tail of each kind is held out, so the neighbours most
            // easily confused with this skill are the ones that decide the check.
            let mut neighbours = self.neighbour_descriptions(shown.description(), &queries.should_find, n);
            neighbours.reverse();
            for miss in neighbours {
                if !near_misses.contains(&miss) {
                    near_misses.push(miss.clone());
                    from_library.push(miss);
                }
            }
        }
        if near_misses.len() < 2 {
            let teacher = if discarded.is_empty() {
                "the teacher wrote fewer than two usable near-misses".to_string()
            } else {
                discarded.truncate(6);
                format!(
                    "the teacher's near-misses asked for the skill's own job (near-copies of its should-find \
                     queries: {discarded:?})"
                )
            };
            let library = if self.library_root.is_some() {
                "the library has too few other skills to stand in"
            } else {
                "there is no library whose skills could stand in"
            };
            return Err(Error::TeacherOutput(format!(
                "{teacher}, and {library}, so nothing could check that search keeps the skill out of other jobs"
            )));
        }
        // Half of each kind to tune the description on, half held out to check it.
        let pos_train = &queries.should_find[..queries.should_find.len() / 2];
        let neg_train = &near_misses[..near_misses.len() / 2];
        let original = best;
        let mut markdown = original.clone();
        let mut rewrites = 0;
        let mut rewrite_failed = None;
        loop {
            let train_ok = self.rank_queries(&markdown, pos_train, neg_train)?;
            if train_ok.iter().all(|(_, ok)| *ok) || rewrites >= 2 {
                break;
            }
            let missed: Vec<&String> = train_ok.iter().filter(|(_, ok)| !ok).map(|(q, _)| q).collect();
            let current = Skill::parse(&markdown, None).map_err(Error::Core)?;
            let user = format!(
                "Search over a skill library ranks skills by their name, description and text. For the skill \
                 below, these queries went wrong (should-find queries that did not rank it first, or near-misses \
                 that did): {missed:?}. Rewrite only the description (one or two sentences, <= 1024 characters) \
                 with the words users search for, so that it ranks first for its own job and not for related \
                 ones.\n\nCurrent description: {}\n\nReply with JSON only: {{\"description\": \"...\"}}",
                current.meta().description.clone().unwrap_or_default()
            );
            let asked = self
                .ask(user, 300, None, on_usage, "description", |d: &NewDescription| {
                    if d.description.trim().is_empty() || d.description.len() > 1024 {
                        Err("the description must be 1 to 1024 characters".into())
                    } else {
                        Ok(())
                    }
                })
                .await;
            // An unusable rewrite ends the rewriting, not the check: the queries are ranked
            // against the description as it is.
            let new: NewDescription = match asked {
                Ok(new) => new,
                Err(Error::TeacherOutput(why)) => {
                    rewrite_failed = Some(why);
                    break;
                }
                Err(e) => return Err(e),
            };
            let mut skill = current;
            skill.set_field("description", &new.description).map_err(Error::Core)?;
            markdown = skill.to_markdown();
            rewrites += 1;
        }
        // One index of the final description ranks every query; the held-out halves are the
        // tails of each kind.
        let rank_all = |markdown: &str| -> Result<(Ranked, Ranked)> {
            let mut positive = self.rank_queries(markdown, &queries.should_find, &near_misses)?;
            let negative = positive.split_off(queries.should_find.len());
            Ok((positive, negative))
        };
        let right = |ranked: &(Ranked, Ranked)| ranked.0.iter().chain(&ranked.1).filter(|(_, ok)| *ok).count();
        let mut ranked = rank_all(&markdown)?;
        let mut right_before_and_after = None;
        let mut rewrite_kept = false;
        let mut given_ranking = None;
        if rewrites > 0 {
            // A rewrite is kept only when it gets more of all the queries right than the
            // description it replaces (the held-out half alone is too few to decide on).
            let before = rank_all(&original)?;
            let (now, after) = (right(&before), right(&ranked));
            right_before_and_after = Some((now, after));
            rewrite_kept = after > now;
            if rewrite_kept {
                given_ranking = Some(before);
            } else {
                markdown = original;
                ranked = before;
            }
        }
        let (positive, negative) = ranked;
        let passed = held_out_passed(&positive, &negative);
        tracing::info!(skill = %name, rewrites, passed, "recall check");
        Ok(RecallOutcome {
            report: RecallReport {
                positive,
                negative,
                discarded_near_misses: discarded,
                rewrites,
                right_before_and_after,
                rewrite_kept,
                passed,
                not_checked: None,
                rewrite_failed,
                near_misses_from_library: from_library,
            },
            markdown,
            given_ranking,
        })
    }

    /// Asks the teacher for JSON that `validate` accepts (one repair request), counting usage.
    async fn ask<T: serde::de::DeserializeOwned>(
        &self,
        user: String,
        max_tokens: u32,
        temperature: Option<f32>,
        on_usage: &mut (dyn FnMut(&Usage) + Send),
        what: &str,
        validate: impl Fn(&T) -> std::result::Result<(), String>,
    ) -> Result<T> {
        let mut request = teacher_request(user, max_tokens, self.teacher_timeout);
        request.temperature = temperature;
        counted(teacher::ask_json(self.teacher, &request, what, validate).await, on_usage)
    }

    /// Up to `n` descriptions of the library's other skills, most similar to `description`
    /// first, leaving out any that is a near-copy of a should-find query.
    fn neighbour_descriptions(&self, description: &str, should_find: &[String], n: usize) -> Vec<String> {
        let own = word_set(description);
        let mut found: Vec<(f64, String)> = self
            .other_skills()
            .into_iter()
            .filter_map(|entry| std::fs::read_to_string(entry.skill_md()).ok())
            .filter_map(|text| Skill::parse(&text, None).ok().map(|s| s.description().trim().to_string()))
            .filter(|d| !d.is_empty() && !should_find.iter().any(|p| too_similar(d, p)))
            .map(|d| {
                let words = word_set(&d);
                let union = own.union(&words).count().max(1);
                (own.intersection(&words).count() as f64 / union as f64, d)
            })
            .collect();
        // Most similar first; ties by text, so the choice does not depend on folder order.
        found.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        found.dedup_by(|a, b| a.1 == b.1);
        found.into_iter().take(n).map(|(_, d)| d).collect()
    }

    /// The library's skills other than this one, found as search finds them.
    fn other_skills(&self) -> Vec<skill_core::SkillEntry> {
        let Some(root) = &self.library_root else { return Vec::new() };
        let discovery = skill_core::SkillLibrary::new(root).discover();
        discovery.skills.into_iter().filter(|entry| entry.name != self.skill_name).collect()
    }

    /// (query, ok) for each query: ok when the skill ranks first for a should-find query, or
    /// not first for a near-miss. Builds a scratch index of the library: blocking work, kept
    /// off the async runtime's workers.
    pub fn rank_queries(
        &self,
        markdown: &str,
        should_find: &[String],
        should_not: &[String],
    ) -> Result<Vec<(String, bool)>> {
        skill_core::blocking(|| self.rank_in_scratch_index(markdown, should_find, should_not))
    }

    fn rank_in_scratch_index(
        &self,
        markdown: &str,
        should_find: &[String],
        should_not: &[String],
    ) -> Result<Vec<(String, bool)>> {
        let scratch = tempfile::tempdir().map_err(|e| Error::other(format!("scratch folder: {e}")))?;
        let lib_root = scratch.path().join("skills");
        let name = self.skill_name.as_str();
        for entry in self.other_skills() {
            let (src, dir) = (entry.skill_md(), lib_root.join(&entry.name));
            std::fs::create_dir_all(&dir).map_err(|e| skill_core::Error::io(&dir, e))?;
            std::fs::copy(&src, dir.join("SKILL.md")).map_err(|e| skill_core::Error::io(&src, e))?;
        }
        let dir = lib_root.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| skill_core::Error::io(&dir, e))?;
        atomic_write(&dir.join("SKILL.md"), markdown.as_bytes())?;
        let mut index = retrieval::SearchIndex::open_or_create(&scratch.path().join("index"))
            .map_err(|e| Error::other(e.to_string()))?;
        let sources =
            retrieval::Sources { library: Some(skill_core::SkillLibrary::new(&lib_root)), ..Default::default() };
        index.update(&sources, true, &mut |_| {}).map_err(|e| Error::other(e.to_string()))?;
        let opts = retrieval::SearchOptions { limit: 3, scope: skill_core::Scope::Skills, ..Default::default() };
        let index = Arc::new(index);
        let hybrid = self.embedder.clone().map(|model| {
            let search = retrieval::HybridSearch::new(index.clone(), model);
            match &self.vector_cache {
                Some(dir) => search.with_vector_cache(dir),
                None => search,
            }
        });
        let top = |q: &str| -> Result<Option<String>> {
            let hits = match &hybrid {
                Some(hybrid) => hybrid.search(q, &opts),
                None => index.search(q, &opts),
            }
            .map_err(|e| Error::other(e.to_string()))?;
            Ok(hits.into_iter().next().and_then(|h| h.name))
        };
        let mut out = Vec::new();
        for q in should_find {
            out.push((q.clone(), top(q)?.as_deref() == Some(name)));
        }
        for q in should_not {
            out.push((q.clone(), top(q)?.as_deref() != Some(name)));
        }
        Ok(out)
    }
}

/// Lowercase words in order.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

fn word_set(text: &str) -> std::collections::BTreeSet<String> {
    words(text).into_iter().collect()
}

/// The queries a user could have typed: not empty, not the skill's own name (a small teacher
/// writes `bbh-navigate` as every query, which any index ranks first and proves nothing),
/// each once.
fn searchable_queries(queries: &[String], skill_name: &str) -> Vec<String> {
    let name_words = word_set(skill_name);
    // A hyphenated name inside a query is the identifier, not words a user searches with
    // ("use bbh-navigate"); a one-word name ("navigate") is an ordinary word.
    let name = skill_name.to_lowercase();
    let names_the_skill = |query: &str| name.contains('-') && query.to_lowercase().contains(&name);
    let mut seen: Vec<Vec<String>> = Vec::new();
    let mut out = Vec::new();
    for query in queries {
        // Repeats are the same words in the same order ("not True or False" and "False or not
        // True" are different queries).
        let sequence = words(query);
        let set: std::collections::BTreeSet<String> = sequence.iter().cloned().collect();
        if set.is_empty() || set == name_words || names_the_skill(query) || seen.contains(&sequence) {
            continue;
        }
        seen.push(sequence);
        out.push(query.trim().to_string());
    }
    out
}

/// Two queries share most of their words (Jaccard similarity of their word sets >= 0.6).
fn too_similar(a: &str, b: &str) -> bool {
    let (wa, wb) = (word_set(a), word_set(b));
    let union = wa.union(&wb).count();
    union > 0 && wa.intersection(&wb).count() as f64 / union as f64 >= 0.6
}

#[cfg(test)]
mod tests {
    use super::searchable_queries;

    #[test]
    fn the_skill_name_and_repeats_are_not_search_queries() {
        let q = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let name = "bbh-navigate";
        assert!(searchable_queries(&q(&[name, "BBH Navigate", "use bbh-navigate", "  "]), name).is_empty());
        assert_eq!(
            searchable_queries(
                &q(&["do I end up where I started?", "Do I end up where I started", "walk steps"]),
                name
            ),
            q(&["do I end up where I started?", "walk steps"])
        );
        // A one-word name is an ordinary word in a query.
        assert_eq!(searchable_queries(&q(&["navigate", "navigate home"]), "navigate"), q(&["navigate home"]));
    }

    #[test]
    fn near_copies_of_a_query_are_too_similar_to_be_near_misses() {
        assert!(super::too_similar("not ( ( not not True ) ) is", "not ( ( not not True ) )"));
        assert!(super::too_similar("evaluate a boolean expression", "Evaluate the boolean expression"));
        assert!(!super::too_similar("evaluate a boolean expression", "sort a list of words alphabetically"));
        assert!(!super::too_similar("", ""));
    }
}
