//! Validate SKILL.md files against the Agent Skills specification and print every problem
//! with its line, as `skd skill validate` does.
//!
//! ```sh
//! cargo run -p skd-examples --example validate_skill -- path/to/skill/SKILL.md [--strict]
//! ```

use anyhow::{Result, bail};
use skill_core::{Severity, ValidationMode, validate_file};
use std::path::PathBuf;

fn main() -> Result<()> {
    let mut strict = false;
    let mut files = Vec::new();
    for arg in std::env::args().skip(1) {
        if arg == "--strict" {
            strict = true;
        } else {
            files.push(PathBuf::from(arg));
        }
    }
    if files.is_empty() {
        bail!("usage: validate_skill SKILL.md... [--strict]");
    }
    let mode = if strict { ValidationMode::Strict } else { ValidationMode::Lenient };
    let mut errors = 0;
    for file in files {
        let (skill, diagnostics) = validate_file(&file, mode);
        if let Some(skill) = &skill {
            println!("{}: `{}`: {}", file.display(), skill.name(), skill.description().trim());
        }
        for d in &diagnostics {
            println!("  {d}");
        }
        errors += diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    }
    if errors > 0 {
        bail!("{errors} error(s)");
    }
    Ok(())
}
