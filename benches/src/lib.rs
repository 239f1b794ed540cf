//! Deterministic synthetic corpora for the benchmarks: markdown notes with headings and a
//! skill library, written to a folder.

use std::fs;
use std::path::Path;

/// Words the generator draws from; a Zipf-like skew makes some words common and most rare,
/// like real notes.
const VOCAB: &[&str] = &[
    "deploy",
    "rollback",
    "database",
    "migration",
    "backup",
    "restore",
    "kubernetes",
    "cluster",
    "invoice",
    "customer",
    "email",
    "report",
    "quarterly",
    "budget",
    "meeting",
    "agenda",
    "python",
    "rust",
    "compile",
    "test",
    "benchmark",
    "latency",
    "cache",
    "index",
    "search",
    "query",
    "token",
    "model",
    "prompt",
    "skill",
    "agent",
    "tool",
    "server",
    "client",
    "request",
    "response",
    "error",
    "retry",
    "timeout",
    "config",
    "secret",
    "password",
    "rotate",
    "key",
    "certificate",
    "renew",
    "domain",
    "dns",
    "network",
    "firewall",
    "port",
    "docker",
    "image",
    "build",
    "release",
    "version",
    "changelog",
    "review",
    "merge",
    "branch",
    "commit",
    "bisect",
    "debug",
    "profile",
    "memory",
    "leak",
    "thread",
    "lock",
    "queue",
    "worker",
    "schedule",
    "cron",
    "monitor",
    "alert",
    "dashboard",
    "metric",
    "log",
    "trace",
    "incident",
    "postmortem",
    "oncall",
    "runbook",
    "checklist",
    "onboarding",
    "laptop",
    "vpn",
    "printer",
    "travel",
    "expense",
    "receipt",
    "tax",
    "calendar",
    "holiday",
    "recipe",
    "garden",
    "bicycle",
    "repair",
    "insurance",
];

/// A small deterministic PRNG (xorshift64*), so corpora are identical on every run.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// Next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A word, skewed towards the start of the vocabulary.
    pub fn word(&mut self) -> &'static str {
        let a = (self.next_u64() % VOCAB.len() as u64) as usize;
        let b = (self.next_u64() % VOCAB.len() as u64) as usize;
        VOCAB[a.min(b)]
    }

    fn sentence(&mut self, words: usize) -> String {
        let mut s: Vec<&str> = (0..words).map(|_| self.word()).collect();
        s.push("and");
        s.rotate_right(1);
        s.join(" ")
    }
}

/// Writes `count` notes of `sections` sections each under `dir` (100 per subfolder).
pub fn write_notes(dir: &Path, count: usize, sections: usize, seed: u64) -> std::io::Result<()> {
    let mut rng = Rng::new(seed);
    for i in 0..count {
        let sub = dir.join(format!("area-{:03}", i / 100));
        fs::create_dir_all(&sub)?;
        let mut text = format!("# {} {} notes {i}\n\n{}.\n", rng.word(), rng.word(), rng.sentence(12));
        for s in 0..sections {
            text.push_str(&format!("\n## {} {} step {s}\n\n", rng.word(), rng.word()));
            for _ in 0..3 {
                text.push_str(&rng.sentence(15));
                text.push_str(".\n");
            }
        }
        fs::write(sub.join(format!("note-{i:05}.md")), text)?;
    }
    Ok(())
}

/// Writes `count` skills under `dir`.
pub fn write_skills(dir: &Path, count: usize, seed: u64) -> std::io::Result<()> {
    let mut rng = Rng::new(seed);
    for i in 0..count {
        let name = format!("{}-{}-{i}", rng.word(), rng.word());
        let skill_dir = dir.join(&name);
        fs::create_dir_all(&skill_dir)?;
        let text = format!(
            "---\nname: {name}\ndescription: {}. Use when {}.\n---\n\n# Steps\n\n1. {}.\n2. {}.\n",
            rng.sentence(10),
            rng.sentence(6),
            rng.sentence(12),
            rng.sentence(12)
        );
        fs::write(skill_dir.join("SKILL.md"), text)?;
    }
    Ok(())
}

/// Queries shaped like what people type: two to five words, some in quotes.
pub fn queries(count: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| {
            let n = 2 + (rng.next_u64() % 4) as usize;
            let words: Vec<&str> = (0..n).map(|_| rng.word()).collect();
            if i % 5 == 0 {
                format!("\"{} {}\" {}", words[0], words[1], words[2..].join(" "))
            } else {
                format!("how do I {}", words.join(" "))
            }
        })
        .collect()
}

/// The value at percentile `p` (0-100) of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
