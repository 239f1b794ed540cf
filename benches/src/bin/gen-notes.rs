//! Writes a synthetic corpus: `gen-notes DIR NOTES [SKILLS]` creates DIR/notes and DIR/skills.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, notes, rest @ ..] = args.as_slice() else {
        bail!("usage: gen-notes DIR NOTES [SKILLS]");
    };
    let dir = PathBuf::from(dir);
    let notes: usize = notes.parse().context("NOTES must be a number")?;
    let skills: usize = rest.first().map(|s| s.parse()).transpose().context("SKILLS must be a number")?.unwrap_or(100);
    skd_benches::write_notes(&dir.join("notes"), notes, 3, 7)?;
    skd_benches::write_skills(&dir.join("skills"), skills, 11)?;
    println!("wrote {notes} notes and {skills} skills under {}", dir.display());
    Ok(())
}
