//! `benchmark.json`, `benchmark.md` and `benchmark.html`: a skill's eval results across its
//! versions. The HTML file is self-contained (inline SVG, no script, no server).

use crate::run::SuiteRun;
use crate::stats::{Lift, Rate};
use crate::suite::{CaseId, Split};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use skill_core::fsutil::atomic_write;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One configuration's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// `with skill`, `no skill`, `v2`...
    pub label: String,
    /// Pass rate and interval.
    pub rate: Rate,
    /// Mean prompt + completion tokens per case.
    pub tokens_per_case: f64,
    /// Mean completion tokens per case.
    pub completion_tokens_per_case: f64,
    /// Mean seconds per case.
    pub seconds_per_case: f64,
    /// Cases that could not be run or graded.
    pub errors: usize,
}

impl Summary {
    /// The summary of a run.
    pub fn of(run: &SuiteRun) -> Summary {
        Summary {
            label: run.label.clone(),
            rate: run.rate(),
            tokens_per_case: run.tokens_per_case(),
            completion_tokens_per_case: run.completion_tokens_per_case(),
            seconds_per_case: run.seconds_per_case(),
            errors: run.errors(),
        }
    }
}

/// A case's outcome in both configurations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseRow {
    /// The case.
    pub id: CaseId,
    /// Its split.
    pub split: Split,
    /// Passed with the skill.
    pub with_skill: bool,
    /// Passed in the baseline.
    pub baseline: Option<bool>,
}

/// One `skd eval` (or one distillation round's final measurement).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkEntry {
    /// RFC 3339 UTC.
    pub time: String,
    /// Skill version number, when the text is a recorded version.
    pub version: Option<u32>,
    /// Hash of the skill text.
    pub skill_hash: String,
    /// The student.
    pub model: String,
    /// With the skill.
    pub with_skill: Summary,
    /// The baseline, if one was run.
    pub baseline: Option<Summary>,
    /// Paired lift over the baseline.
    pub lift: Option<Lift>,
    /// Per case.
    pub cases: Vec<CaseRow>,
}

impl BenchmarkEntry {
    /// The splits its cases come from.
    pub fn splits(&self) -> std::collections::BTreeSet<Split> {
        self.cases.iter().map(|c| c.split).collect()
    }

    /// An entry from a run with the skill and an optional baseline run on the same cases.
    pub fn new(with_skill: &SuiteRun, baseline: Option<&SuiteRun>, version: Option<u32>) -> BenchmarkEntry {
        let cases = with_skill
            .results
            .iter()
            .map(|r| CaseRow {
                id: r.id.clone(),
                split: r.split,
                with_skill: r.passed,
                baseline: baseline.and_then(|b| b.results.iter().find(|x| x.id == r.id)).map(|x| x.passed),
            })
            .collect::<Vec<_>>();
        let lift = baseline.map(|_| {
            let paired: Vec<(bool, bool)> =
                cases.iter().filter_map(|c| c.baseline.map(|b| (c.with_skill, b))).collect();
            let (with, base): (Vec<bool>, Vec<bool>) = paired.into_iter().unzip();
            Lift::paired(&with, &base)
        });
        BenchmarkEntry {
            time: skill_core::time::rfc3339(skill_core::time::now_unix()),
            version,
            skill_hash: with_skill.skill_hash.clone().unwrap_or_default(),
            model: with_skill.model.clone(),
            with_skill: Summary::of(with_skill),
            baseline: baseline.map(Summary::of),
            lift,
            cases,
        }
    }
    /// The same entry with only the cases in `ids`: the pass rates and the paired lift are
    /// computed again from its per-case rows. Tokens, times and error counts stay the whole
    /// run's, since `benchmark.json` keeps no per-case figures for them.
    pub fn restricted_to(&self, ids: &[CaseId]) -> BenchmarkEntry {
        let ids: std::collections::HashSet<&CaseId> = ids.iter().collect();
        let cases: Vec<CaseRow> = self.cases.iter().filter(|c| ids.contains(&c.id)).cloned().collect();
        let with_passed = cases.iter().filter(|c| c.with_skill).count();
        let with_skill = Summary { rate: Rate::wilson(with_passed, cases.len()), ..self.with_skill.clone() };
        let paired: Vec<(bool, bool)> = cases.iter().filter_map(|c| c.baseline.map(|b| (c.with_skill, b))).collect();
        let baseline = self.baseline.as_ref().map(|b| {
            let passed = paired.iter().filter(|(_, base)| *base).count();
            Summary { rate: Rate::wilson(passed, paired.len()), ..b.clone() }
        });
        let lift = self.lift.as_ref().map(|_| {
            let (with, base): (Vec<bool>, Vec<bool>) = paired.iter().copied().unzip();
            Lift::paired(&with, &base)
        });
        BenchmarkEntry { with_skill, baseline, lift, cases, ..self.clone() }
    }
}

/// All entries of a skill, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Benchmark {
    /// The skill.
    pub skill: String,
    /// Entries, oldest first.
    pub entries: Vec<BenchmarkEntry>,
}

/// The three report files of a folder.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportPaths {
    /// `benchmark.json`
    pub json: PathBuf,
    /// `benchmark.md`
    pub markdown: PathBuf,
    /// `benchmark.html`
    pub html: PathBuf,
}

impl Benchmark {
    /// Reads `benchmark.json` in `dir`; empty when there is none.
    pub fn load(dir: &Path, skill: &str) -> Result<Benchmark> {
        let path = dir.join("benchmark.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| Error::Suite {
                path,
                line: e.line(),
                message: format!("corrupt benchmark file (move it away to start a new one): {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Benchmark { skill: skill.to_string(), entries: Vec::new() })
            }
            Err(e) => Err(skill_core::Error::io(&path, e).into()),
        }
    }

    /// Adds an entry, replacing an earlier one for the same skill text, model, baseline and
    /// splits: a `--split validation` run does not erase the sealed-test measurement of the
    /// same text (which the proof table reads), while measuring the same splits again, more
    /// cases or fewer, replaces it.
    pub fn push(&mut self, entry: BenchmarkEntry) {
        let label = entry.baseline.as_ref().map(|b| b.label.clone());
        let splits = entry.splits();
        self.entries.retain(|e| {
            !(e.skill_hash == entry.skill_hash
                && e.model == entry.model
                && e.baseline.as_ref().map(|b| b.label.clone()) == label
                && e.splits() == splits)
        });
        self.entries.push(entry);
    }

    /// Writes the three files into `dir` (each atomically).
    pub fn write(&self, dir: &Path) -> Result<ReportPaths> {
        std::fs::create_dir_all(dir).map_err(|e| skill_core::Error::io(dir, e))?;
        let paths = ReportPaths {
            json: dir.join("benchmark.json"),
            markdown: dir.join("benchmark.md"),
            html: dir.join("benchmark.html"),
        };
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::other(e.to_string()))?;
        atomic_write(&paths.json, &json)?;
        atomic_write(&paths.markdown, self.markdown().as_bytes())?;
        atomic_write(&paths.html, self.html().as_bytes())?;
        Ok(paths)
    }

    /// The Markdown report: the latest entry in detail, then the history.
    pub fn markdown(&self) -> String {
        let mut md = format!("# Benchmark: {}\n\n", self.skill);
        let Some(latest) = self.entries.last() else {
            md.push_str("No results yet.\n");
            return md;
        };
        let _ = writeln!(md, "Latest: {} on `{}`{}\n", latest.time, latest.model, version_text(latest.version));
        md.push_str(
            "| configuration | pass rate | 95% CI | tokens/case | completion tokens/case | s/case | errors |\n",
        );
        md.push_str("|---|---|---|---|---|---|---|\n");
        for s in std::iter::once(&latest.with_skill).chain(latest.baseline.as_ref()) {
            let _ = writeln!(
                md,
                "| {} | {:.1}% ({}/{}) | {:.1}–{:.1}% | {:.0} | {:.0} | {:.1} | {} |",
                s.label,
                s.rate.rate * 100.0,
                s.rate.passed,
                s.rate.total,
                s.rate.low * 100.0,
                s.rate.high * 100.0,
                s.tokens_per_case,
                s.completion_tokens_per_case,
                s.seconds_per_case,
                s.errors
            );
        }
        if let Some(lift) = &latest.lift {
            let _ = writeln!(md, "\nLift over the baseline: {lift}.");
        }
        let changed: Vec<&CaseRow> =
            latest.cases.iter().filter(|c| c.baseline.is_some_and(|b| b != c.with_skill)).collect();
        if !changed.is_empty() {
            md.push_str("\nCases that differ from the baseline:\n\n");
            for c in changed {
                let _ = writeln!(
                    md,
                    "- `{}` ({}): {}",
                    c.id,
                    c.split.as_str(),
                    if c.with_skill { "gained" } else { "lost" }
                );
            }
        }
        md.push_str(
            "\n## History\n\n| time | version | model | with skill | baseline | lift |\n|---|---|---|---|---|---|\n",
        );
        for e in &self.entries {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.1}% | {} | {} |",
                e.time,
                e.version.map(|v| format!("v{v}")).unwrap_or_else(|| "-".into()),
                e.model,
                e.with_skill.rate.rate * 100.0,
                e.baseline
                    .as_ref()
                    .map(|b| format!("{:.1}% ({})", b.rate.rate * 100.0, b.label))
                    .unwrap_or_else(|| "-".into()),
                e.lift.map(|l| format!("{:+.1}", l.delta * 100.0)).unwrap_or_else(|| "-".into())
            );
        }
        md
    }

    /// The HTML report: an SVG chart of accuracy (with 95% intervals) across entries, and
    /// the history table.
    pub fn html(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Benchmark: {}</title>\n\
             <style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}\
             td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}th{{background:#f4f4f4}}\
             .with{{stroke:#1f6feb;fill:#1f6feb}}.base{{stroke:#999;fill:#999}}.trend{{stroke:#1f6feb;fill:none}}</style></head><body>\n\
             <h1>Benchmark: {}</h1>\n",
            escape(&self.skill),
            escape(&self.skill)
        );
        out.push_str(&self.svg_chart());
        out.push_str(
            "<p><span style=\"color:#1f6feb\">&#9679;</span> with the skill &nbsp; \
             <span style=\"color:#999\">&#9679;</span> baseline &nbsp; bars: 95% Wilson intervals</p>\n",
        );
        out.push_str("<table><tr><th>time</th><th>version</th><th>model</th><th>with skill</th><th>95% CI</th><th>baseline</th><th>lift (points)</th><th>tokens/case</th><th>s/case</th></tr>\n");
        for e in &self.entries {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}% ({}/{})</td><td>{:.1}–{:.1}%</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.1}</td></tr>",
                escape(&e.time),
                e.version.map(|v| format!("v{v}")).unwrap_or_else(|| "-".into()),
                escape(&e.model),
                e.with_skill.rate.rate * 100.0,
                e.with_skill.rate.passed,
                e.with_skill.rate.total,
                e.with_skill.rate.low * 100.0,
                e.with_skill.rate.high * 100.0,
                e.baseline
                    .as_ref()
                    .map(|b| format!("{:.1}% ({})", b.rate.rate * 100.0, escape(&b.label)))
                    .unwrap_or_else(|| "-".into()),
                e.lift.map(|l| format!("{:+.1}", l.delta * 100.0)).unwrap_or_else(|| "-".into()),
                e.with_skill.tokens_per_case,
                e.with_skill.seconds_per_case
            );
        }
        out.push_str("</table>\n</body></html>\n");
        out
    }

    fn svg_chart(&self) -> String {
        let (w, h, left, bottom, top) = (640.0, 280.0, 48.0, 40.0, 16.0);
        let n = self.entries.len().max(1);
        let plot_w = w - left - 16.0;
        let plot_h = h - bottom - top;
        let x = |i: usize| left + plot_w * (i as f64 + 0.5) / n as f64;
        let y = |rate: f64| top + plot_h * (1.0 - rate);
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"accuracy across versions\">\n"
        );
        for pct in [0, 25, 50, 75, 100] {
            let yy = y(f64::from(pct) / 100.0);
            let _ = writeln!(
                svg,
                "<line x1=\"{left}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{pct}%</text>",
                w - 16.0,
                left - 6.0,
                yy + 4.0
            );
        }
        let mut line = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let xi = x(i);
            for (rate, class, dx) in std::iter::once((&e.with_skill.rate, "with", 0.0))
                .chain(e.baseline.as_ref().map(|b| (&b.rate, "base", 6.0)))
            {
                let _ = writeln!(
                    svg,
                    "<line class=\"{class}\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke-width=\"2\"/><circle class=\"{class}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\"><title>{:.1}% ({}/{})</title></circle>",
                    xi + dx,
                    xi + dx,
                    y(rate.low),
                    y(rate.high),
                    xi + dx,
                    y(rate.rate),
                    rate.rate * 100.0,
                    rate.passed,
                    rate.total
                );
            }
            line.push(format!("{:.1},{:.1}", xi, y(e.with_skill.rate.rate)));
            let label = e.version.map(|v| format!("v{v}")).unwrap_or_else(|| format!("#{}", i + 1));
            let _ = writeln!(
                svg,
                "<text x=\"{xi:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
                h - bottom + 16.0,
                escape(&label)
            );
        }
        if line.len() > 1 {
            let _ = writeln!(svg, "<polyline class=\"trend\" points=\"{}\"/>", line.join(" "));
        }
        svg.push_str("</svg>\n");
        svg
    }
}

fn version_text(version: Option<u32>) -> String {
    version.map(|v| format!(", skill v{v}")).unwrap_or_default()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::CaseResult;
    use skill_core::Usage;

    fn run(label: &str, hash: Option<&str>, passed: &[bool]) -> SuiteRun {
        SuiteRun {
            label: label.into(),
            model: "m".into(),
            skill_hash: hash.map(str::to_string),
            results: passed
                .iter()
                .enumerate()
                .map(|(i, p)| CaseResult {
                    id: CaseId::Number(i as u64),
                    split: Split::Test,
                    passed: *p,
                    grades: Vec::new(),
                    output: String::new(),
                    extracted: String::new(),
                    tool_calls: Vec::new(),
                    events: Vec::new(),
                    usage: Usage { prompt_tokens: 10, completion_tokens: 5 },
                    elapsed_ms: 1000,
                    error: None,
                    cached: false,
                })
                .collect(),
        }
    }

    #[test]
    fn a_restricted_entry_counts_and_pairs_only_its_cases() {
        let base = run("no skill", None, &[false, true, false, true, true]);
        let entry =
            BenchmarkEntry::new(&run("v1", Some("h1"), &[true, true, true, false, false]), Some(&base), Some(1));
        assert_eq!(entry.lift.as_ref().map(|l| (l.gained, l.lost)), Some((2, 2)));
        let later = [CaseId::Number(2), CaseId::Number(3), CaseId::Number(4)];
        let part = entry.restricted_to(&later);
        assert_eq!(part.cases.len(), 3);
        assert_eq!((part.with_skill.rate.passed, part.with_skill.rate.total), (1, 3));
        assert_eq!(part.baseline.as_ref().map(|b| (b.rate.passed, b.rate.total)), Some((2, 3)));
        let lift = part.lift.expect("paired");
        assert_eq!((lift.gained, lift.lost), (1, 2));
        assert!((lift.delta + 1.0 / 3.0).abs() < 1e-12);
        assert!(entry.restricted_to(&[CaseId::Number(9)]).cases.is_empty());
    }

    #[test]
    fn entries_accumulate_per_skill_text_and_render() {
        let base = run("no skill", None, &[false, true, false, false]);
        let mut bench = Benchmark { skill: "s".into(), entries: Vec::new() };
        bench.push(BenchmarkEntry::new(&run("v1", Some("h1"), &[true, true, false, false]), Some(&base), Some(1)));
        bench.push(BenchmarkEntry::new(&run("v2", Some("h2"), &[true, true, true, false]), Some(&base), Some(2)));
        // The same text measured again replaces its entry.
        bench.push(BenchmarkEntry::new(&run("v2", Some("h2"), &[true, true, true, true]), Some(&base), Some(2)));
        assert_eq!(bench.entries.len(), 2);
        // On other splits it is another entry: the test-split one stays.
        let mut validation = run("v2", Some("h2"), &[false, true]);
        validation.results.iter_mut().for_each(|r| r.split = Split::Validation);
        bench.push(BenchmarkEntry::new(&validation, Some(&base), Some(2)));
        assert_eq!(bench.entries.len(), 3);
        bench.entries.pop();
        let latest = bench.entries.last().expect("latest");
        assert_eq!(latest.with_skill.rate.passed, 4);
        assert_eq!(latest.lift.expect("lift").gained, 3);
        let md = bench.markdown();
        assert!(md.contains("| v2 | 100.0% (4/4)") && md.contains("## History") && !md.contains("| - |"), "{md}");
        let html = bench.html();
        assert!(html.contains("<polyline class=\"trend\"") && html.contains("<title>100.0% (4/4)</title>"), "{html}");
        assert!(html.contains("<th>s/case</th>") && html.contains("<td>1.0</td></tr>"), "time per case: {html}");
        let dir = tempfile::tempdir().expect("tmp");
        let paths = bench.write(dir.path()).expect("write");
        assert_eq!(Benchmark::load(dir.path(), "s").expect("load"), bench);
        assert!(paths.html.is_file() && paths.markdown.is_file());
    }
}
