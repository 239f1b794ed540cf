//! Index a folder of markdown notes and a skill library, then ask a question through the
//! engine-neutral `Retriever` trait, as the agent loop does.
//!
//! ```sh
//! cargo run -p skd-examples --example search_notes -- NOTES_DIR [SKILLS_DIR] "how do I ..."
//! ```
//! With no arguments it builds a small demo corpus in a temporary folder.

use anyhow::Result;
use retrieval::{SearchIndex, Sources};
use skill_core::{Hit, RetrievalQuery, Retriever, Scope, SkillLibrary};
use std::path::PathBuf;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let demo = tempfile::tempdir()?;
    let (notes, skills, question) = match args.as_slice() {
        [notes, skills, question] => (PathBuf::from(notes), PathBuf::from(skills), question.clone()),
        [notes, question] => (PathBuf::from(notes), demo.path().join("no-skills"), question.clone()),
        _ => {
            let notes = demo.path().join("notes");
            let skills = demo.path().join("skills");
            std::fs::create_dir_all(&notes)?;
            std::fs::write(
                notes.join("deploy.md"),
                "# Deploy\n\n## Rollback\n\nRun `kubectl rollout undo deploy/web`.\n",
            )?;
            SkillLibrary::new(&skills).create(
                "k8s-rollback",
                "Roll back a Kubernetes deployment safely.",
                "\n1. Check the rollout history.\n2. Undo to the last good revision.\n",
            )?;
            (notes, skills, "how do I roll back a deployment".to_string())
        }
    };

    let mut index = SearchIndex::open_or_create(&demo.path().join("index"))?;
    let sources = Sources { note_roots: vec![notes], library: Some(SkillLibrary::new(skills)), max_file_bytes: 0 };
    let report = index.update(&sources, false, &mut |_| {})?;
    println!(
        "indexed {} files ({} chunks), {} skipped",
        report.files_indexed,
        index.num_chunks(),
        report.skipped.len()
    );

    let retriever: Box<dyn Retriever> = Box::new(index);
    let hits = retriever.retrieve(&RetrievalQuery { text: question.clone(), limit: 5, scope: Scope::All }).await?;
    println!("{question:?}:");
    for hit in hits {
        match hit {
            Hit::Skill(s) => println!("  skill {:<24} {:>6.2}  {}", s.name, s.score, s.description),
            Hit::Note(n) => println!(
                "  note  {}:{}-{} [{}] {:>6.2}",
                n.path.display(),
                n.line_start,
                n.line_end,
                n.heading_path.join(" > "),
                n.score
            ),
        }
    }
    Ok(())
}
