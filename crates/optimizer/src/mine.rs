//! Mining: episodes grouped by the job they ask for, and the groups that should become
//! skills.
//!
//! Tasks are embedded (a sentence-embedding model, so paraphrases of one job across agents
//! fall together and a changed name, date or file does not split it; digits are masked
//! first, so tasks that differ only in their numbers are one text, embedded once) and
//! grouped greedily:
//! each task joins the group whose mean direction is nearest when that is within
//! [`MineConfig::same_job`], else starts one; a second pass puts each task in its nearest
//! group, so the order the tasks came in matters less. A group of at least
//! [`MineConfig::min_episodes`] is a recurring job. It is covered by a library skill when
//! one of its episodes used the skill or the skill's description is within
//! [`MineConfig::covers`] of the group; a covered job whose episodes fail is a `refine`
//! proposal, an uncovered one a `new` proposal, and a covered job that goes well is left
//! alone. One-off tasks never become proposals.

use agent_logs::{Episode, OutcomeKind};
use serde::{Deserialize, Serialize};
use skill_core::{Embedder, cosine};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Settings of a mining run.
#[derive(Debug, Clone)]
pub struct MineConfig {
    /// Episodes a job needs to be proposed.
    pub min_episodes: usize,
    /// The least cosine similarity between a task and a group's direction for the task to
    /// join it. 0.4 on all-MiniLM-L6-v2: on the generated history of the tests, paraphrases of
    /// one job were 0.42 to 0.88 apart, tasks of different jobs at most 0.39.
    pub same_job: f32,
    /// The least cosine similarity between a group and a skill's name and description for
    /// the skill to cover the group.
    pub covers: f32,
    /// Episodes listed as evidence per proposal, at most.
    pub max_evidence: usize,
}

impl Default for MineConfig {
    fn default() -> Self {
        MineConfig { min_episodes: 3, same_job: 0.4, covers: 0.5, max_evidence: 10 }
    }
}

/// A skill of the library, as mining sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LibrarySkill {
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
}

/// What a proposal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalKind {
    /// A job with no skill: distill one.
    New,
    /// A job whose skill fails: refine it.
    Refine,
}

/// One episode shown as evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The log source.
    pub source: String,
    /// The session file.
    pub file: PathBuf,
    /// The task, in the user's words.
    pub task: String,
    /// `success`, `failure` or `unknown`.
    pub outcome: OutcomeKind,
}

/// A skill that should exist, or should be better.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposal {
    /// New skill or refinement.
    pub kind: ProposalKind,
    /// The skill to refine (`refine`), or the nearest library skill (`new`, when any).
    pub skill: Option<String>,
    /// The similarity of the nearest library skill to the job (what decided `new` or
    /// `refine` when no episode used a skill).
    pub skill_score: Option<f32>,
    /// The job, in the words of its most central task (or the teacher's sentence for it,
    /// when one was asked for: see [`crate::job`]).
    pub job: String,
    /// The most central task, when `job` is the teacher's sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub central_task: Option<String>,
    /// Episodes of the job.
    pub episodes: usize,
    /// Those that failed.
    pub failures: usize,
    /// Episodes per source.
    pub sources: BTreeMap<String, usize>,
    /// Tool calls an episode of the job made, on average: what the job costs an agent each
    /// time it comes back (the one measure of cost every log source records).
    pub mean_tool_calls: f64,
    /// Minutes from the task to the agent's last response, on average over the episodes
    /// whose logs have times: what the job costs its user in waiting. None when none has.
    pub mean_minutes: Option<f64>,
    /// Tokens an episode's model calls used, on average over the episodes whose logs count
    /// them. Shown, not ranked on: agents count them differently (one resends a 30,000-token
    /// context each call, another a 2,000-token one), so they compare within a source only.
    pub mean_tokens: Option<f64>,
    /// The ranking score: see [`ranking_score`].
    pub score: f64,
    /// Some of the episodes, the failures first.
    pub evidence: Vec<Evidence>,
    /// Every episode of the job, as indices into the episodes given to [`mine`].
    #[serde(skip)]
    pub members: Vec<usize>,
}

impl Proposal {
    /// What the job costs each time, in words: `5.0 tool calls, 4.2 min, 31000 tokens` (the
    /// minutes and tokens where the logs have them).
    pub fn cost_summary(&self) -> String {
        let mut parts = vec![format!("{:.1} tool calls", self.mean_tool_calls)];
        parts.extend(self.mean_minutes.map(|m| format!("{m:.1} min")));
        parts.extend(self.mean_tokens.map(|t| format!("{:.0} tokens", t)));
        parts.join(", ")
    }

    /// The job's episodes, out of the `episodes` that were given to [`mine`].
    pub fn members_in<'a>(&self, episodes: &[&'a Episode]) -> Vec<&'a Episode> {
        self.members.iter().map(|&i| episodes[i]).collect()
    }
}

/// The result of a mining run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MineReport {
    /// Episodes read.
    pub episodes: usize,
    /// Groups found (one-offs included).
    pub jobs: usize,
    /// Proposals, best first.
    pub proposals: Vec<Proposal>,
}

/// Longest task text embedded (characters): the job is in the first lines; pasted logs and
/// files after them would only blur it.
const MAX_TASK_CHARS: usize = 600;

/// The text embedded for a task: its first [`MAX_TASK_CHARS`] characters with every run of
/// digits written as one `0`. An amount, a date or an id does not change the job ("a 15% tip
/// on 48 euros", "a 20% tip on 90 euros"), so such tasks are one text: they fall together,
/// and are embedded once.
fn embedding_text(task: &str) -> String {
    let mut out = String::with_capacity(task.len().min(MAX_TASK_CHARS));
    let mut in_number = false;
    for c in task.chars().take(MAX_TASK_CHARS) {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('0');
            }
            in_number = true;
        } else {
            out.push(c);
            in_number = false;
        }
    }
    out
}

/// Groups the episodes by job and proposes the skills that should exist.
pub fn mine(
    episodes: &[&Episode],
    library: &[LibrarySkill],
    embedder: &dyn Embedder,
    config: &MineConfig,
) -> crate::Result<MineReport> {
    // Each distinct text embedded once (a history repeats its tasks), then given to every
    // episode that has it.
    let tasks: Vec<String> = episodes.iter().map(|e| embedding_text(&e.task)).collect();
    let mut distinct: Vec<&str> = Vec::new();
    let mut index_of: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let slots: Vec<usize> = tasks
        .iter()
        .map(|t| {
            *index_of.entry(t.as_str()).or_insert_with(|| {
                distinct.push(t.as_str());
                distinct.len() - 1
            })
        })
        .collect();
    let distinct_vectors = embedder.embed(&distinct)?;
    let vectors: Vec<Vec<f32>> = slots.iter().map(|&k| distinct_vectors[k].clone()).collect();
    let skill_texts: Vec<String> =
        library.iter().map(|s| format!("{}: {}", s.name.replace('-', " "), s.description)).collect();
    let skill_vectors = embedder.embed(&skill_texts.iter().map(String::as_str).collect::<Vec<_>>())?;

    let groups = group(&vectors, config.same_job);
    let mut proposals = Vec::new();
    for members in groups.iter().filter(|g| g.len() >= config.min_episodes) {
        let direction = mean_direction(members.iter().map(|&i| vectors[i].as_slice()));
        let central = *members
            .iter()
            .max_by(|&&a, &&b| cosine(&vectors[a], &direction).total_cmp(&cosine(&vectors[b], &direction)))
            .expect("a group has members");
        let failures = members.iter().filter(|&&i| episodes[i].outcome.kind == OutcomeKind::Failure).count();
        // The skill the episodes used (skd's own runs say), else the nearest by description.
        let mut used: BTreeMap<&str, usize> = BTreeMap::new();
        for &i in members {
            if let Some(s) = &episodes[i].skill {
                *used.entry(s.name.as_str()).or_default() += 1;
            }
        }
        let nearest = skill_vectors
            .iter()
            .enumerate()
            .map(|(k, v)| (k, cosine(v, &direction)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let covering = match used.iter().max_by_key(|(_, n)| **n) {
            Some((name, _)) => Some(name.to_string()),
            None => nearest.filter(|(_, score)| *score >= config.covers).map(|(k, _)| library[k].name.clone()),
        };
        let kind = match (&covering, failures) {
            (Some(_), 0) => continue,
            (Some(_), _) => ProposalKind::Refine,
            (None, _) => ProposalKind::New,
        };
        let mut sources = BTreeMap::new();
        for &i in members {
            *sources.entry(episodes[i].source.clone()).or_insert(0) += 1;
        }
        let mut shown: Vec<usize> = members.clone();
        shown.sort_by_key(|&i| (episodes[i].outcome.kind != OutcomeKind::Failure, i));
        let evidence = shown
            .iter()
            .take(config.max_evidence)
            .map(|&i| Evidence {
                source: episodes[i].source.clone(),
                file: episodes[i].file.clone(),
                task: episodes[i].task.clone(),
                outcome: episodes[i].outcome.kind,
            })
            .collect();
        let n = members.len();
        let mean_tool_calls = members.iter().map(|&i| episodes[i].tools.len()).sum::<usize>() as f64 / n as f64;
        let mean_of = |values: Vec<f64>| (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
        let mean_minutes =
            mean_of(members.iter().filter_map(|&i| episodes[i].seconds).map(|s| s as f64 / 60.0).collect());
        let mean_tokens = mean_of(members.iter().filter_map(|&i| episodes[i].tokens).map(|t| t as f64).collect());
        proposals.push(Proposal {
            kind,
            skill: covering.or_else(|| nearest.map(|(k, _)| library[k].name.clone())),
            skill_score: nearest.map(|(_, s)| s),
            job: episodes[central].task.clone(),
            central_task: None,
            episodes: n,
            failures,
            sources,
            mean_tool_calls,
            mean_minutes,
            mean_tokens,
            score: ranking_score(n, failures, mean_tool_calls, mean_minutes),
            evidence,
            members: members.clone(),
        });
    }
    proposals.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.job.cmp(&b.job)));
    Ok(MineReport { episodes: episodes.len(), jobs: groups.len(), proposals })
}

/// How much a job is worth a skill: how often it comes back, counted again for the share of
/// those times it failed, and again for what it costs each time: the larger of its tool calls
/// in tens and its minutes of waiting in fives (ten tool calls or five minutes count one; the
/// larger, since the calls take the minutes). The cost term is mild on purpose: a job asked
/// twice as often stays ahead of one that takes a few more steps, while between jobs asked
/// alike the longer one, which a skill saves more work on, comes first.
pub fn ranking_score(episodes: usize, failures: usize, mean_tool_calls: f64, mean_minutes: Option<f64>) -> f64 {
    let n = episodes.max(1) as f64;
    let cost = (mean_tool_calls / 10.0).max(mean_minutes.unwrap_or(0.0) / 5.0);
    n * (1.0 + failures as f64 / n) * (1.0 + cost)
}

/// Greedy grouping by direction, then one pass that moves each vector to its nearest group.
fn group(vectors: &[Vec<f32>], threshold: f32) -> Vec<Vec<usize>> {
    // Each group's sum of vectors and, kept beside it, that sum's direction.
    let mut sums: Vec<Vec<f32>> = Vec::new();
    let mut directions: Vec<Vec<f32>> = Vec::new();
    for v in vectors {
        match nearest(&directions, v) {
            Some((g, sim)) if sim >= threshold => {
                sums[g].iter_mut().zip(v).for_each(|(s, x)| *s += x);
                directions[g] = normalized(&sums[g]);
            }
            _ => {
                sums.push(v.clone());
                directions.push(normalized(v));
            }
        }
    }
    let mut groups = vec![Vec::new(); directions.len()];
    for (i, v) in vectors.iter().enumerate() {
        if let Some((g, _)) = nearest(&directions, v) {
            groups[g].push(i);
        }
    }
    groups.retain(|g| !g.is_empty());
    groups
}

fn nearest(directions: &[Vec<f32>], v: &[f32]) -> Option<(usize, f32)> {
    directions.iter().enumerate().map(|(g, d)| (g, cosine(d, v))).max_by(|a, b| a.1.total_cmp(&b.1))
}

fn mean_direction<'a>(vectors: impl Iterator<Item = &'a [f32]>) -> Vec<f32> {
    let mut sum: Vec<f32> = Vec::new();
    for v in vectors {
        if sum.is_empty() {
            sum = vec![0.0; v.len()];
        }
        sum.iter_mut().zip(v).for_each(|(s, x)| *s += x);
    }
    normalized(&sum)
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / norm).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_masked_so_tasks_differing_only_in_them_are_one_text() {
        assert_eq!(embedding_text("What's a 15% tip on a 48 euro bill?"), "What's a 0% tip on a 0 euro bill?");
        assert_eq!(embedding_text("What's a 20% tip on a 90 euro bill?"), "What's a 0% tip on a 0 euro bill?");
        assert_eq!(embedding_text("Book 12.50 EUR on 2026-11-30, ref A17"), "Book 0.0 EUR on 0-0-0, ref A0");
        assert_eq!(embedding_text(&"x".repeat(700)).len(), MAX_TASK_CHARS);
    }

    /// Counts the texts it is asked to embed; every text points the same way.
    struct Counting(std::sync::atomic::AtomicUsize);

    impl Embedder for Counting {
        fn id(&self) -> &str {
            "counting"
        }
        fn embed(&self, texts: &[&str]) -> skill_core::Result<Vec<Vec<f32>>> {
            self.0.fetch_add(texts.len(), std::sync::atomic::Ordering::SeqCst);
            Ok(texts.iter().map(|_| vec![1.0, 0.0]).collect())
        }
    }

    #[test]
    fn each_distinct_task_text_is_embedded_once() {
        let tasks = ["Tip on 48 euros?", "Tip on 90 euros?", "Tip on 48 euros?", "Sort the names"];
        let episodes: Vec<Episode> =
            tasks.iter().map(|t| crate::settled_episode(t, OutcomeKind::Success, None, None)).collect();
        let refs: Vec<&Episode> = episodes.iter().collect();
        let counting = Counting(Default::default());
        let report = mine(&refs, &[], &counting, &MineConfig::default()).expect("mine");
        assert_eq!(counting.0.load(std::sync::atomic::Ordering::SeqCst), 2, "two distinct texts");
        assert_eq!(report.episodes, 4);
        assert_eq!(report.proposals[0].members, [0, 1, 2, 3], "every episode gets its text's vector");
    }
}
