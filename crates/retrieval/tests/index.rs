//! The search index on real folders: ranking, chunking, incremental updates, bad input.

use retrieval::{HitKind, Progress, SearchIndex, SearchOptions, Sources};
use skill_core::{Hit, RetrievalQuery, Retriever, Scope, SkillLibrary};
use std::fs;
use std::path::PathBuf;

struct Fixture {
    _tmp: tempfile::TempDir,
    notes: PathBuf,
    skills: PathBuf,
    index_dir: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().expect("tmp");
        let notes = tmp.path().join("notes");
        let skills = tmp.path().join("skills");
        let index_dir = tmp.path().join("index");
        fs::create_dir_all(&notes).expect("mkdir");
        fs::create_dir_all(&skills).expect("mkdir");
        Fixture { _tmp: tmp, notes, skills, index_dir }
    }

    fn sources(&self) -> Sources {
        Sources {
            note_roots: vec![self.notes.clone()],
            library: Some(SkillLibrary::new(&self.skills)),
            max_file_bytes: 0,
        }
    }

    fn note(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.notes.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, text).expect("write");
        p
    }

    fn skill(&self, name: &str, description: &str, body: &str) -> PathBuf {
        let p = self.skills.join(name).join("SKILL.md");
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, format!("---\nname: {name}\ndescription: {description}\n---\n{body}")).expect("write");
        p
    }

    fn update(&self) -> (SearchIndex, retrieval::IndexReport) {
        let mut index = SearchIndex::open_or_create(&self.index_dir).expect("open");
        let report = index.update(&self.sources(), false, &mut |_| {}).expect("update");
        (index, report)
    }
}

fn search(index: &SearchIndex, q: &str, scope: Scope) -> Vec<retrieval::SearchHit> {
    index.search(q, &SearchOptions { limit: 10, scope, snippet_chars: 160 }).expect("search")
}

#[test]
fn note_hits_name_file_heading_path_lines_and_highlight() {
    let f = Fixture::new();
    let path = f.note(
        "ops/deploy.md",
        "# Deploy\n\nShip it.\n\n## Rollback\n\nTo roll back a deployment, run kubectl rollout undo.\n\n## Other\n\nUnrelated.\n",
    );
    let (index, _) = f.update();
    let hits = search(&index, "rollout undo", Scope::All);
    assert_eq!(hits.len(), 1);
    let h = &hits[0];
    assert_eq!(h.kind, HitKind::Note);
    assert_eq!(h.path, path);
    assert_eq!(h.title, "Deploy");
    assert_eq!(h.heading_path, ["Deploy", "Rollback"]);
    assert_eq!((h.line_start, h.line_end), (5, 7));
    let marked: Vec<&str> = h.highlights.iter().map(|[s, e]| &h.snippet[*s..*e]).collect();
    assert_eq!(marked, ["rollout", "undo"]);
}

#[test]
fn english_stemming_matches_word_forms() {
    let f = Fixture::new();
    f.note("a.md", "# Deploying services\n\nWe deployed twice.\n");
    let (index, _) = f.update();
    for q in ["deploy", "deployment", "DEPLOYS", "déploy"] {
        assert_eq!(search(&index, q, Scope::All).len(), 1, "{q}");
    }
}

#[test]
fn skill_name_and_description_outrank_body_and_notes() {
    let f = Fixture::new();
    f.skill("invoice-parser", "Parse invoices into line items.", "\nSteps for invoice parsing.\n");
    f.skill("email-writer", "Write polite emails.", "\nMention the invoice parser if asked about invoice parsing.\n");
    f.note("misc.md", "# Misc\n\nSometimes an invoice needs parsing by hand.\n");
    let (index, report) = f.update();
    assert_eq!(report.added, 3);
    let hits = search(&index, "invoice parser", Scope::All);
    assert_eq!(hits[0].name.as_deref(), Some("invoice-parser"), "{hits:#?}");
    assert_eq!(hits.len(), 3, "{hits:#?}");
    let skills_only = search(&index, "invoice", Scope::Skills);
    assert!(skills_only.iter().all(|h| h.kind == HitKind::Skill));
    assert_eq!(skills_only.len(), 2);
    let notes_only = search(&index, "invoice", Scope::Notes);
    assert_eq!(notes_only.len(), 1);
    assert_eq!(notes_only[0].kind, HitKind::Note);

    // headings weigh more than body text
    let g = Fixture::new();
    g.note("a.md", "# Alpha\n\n## Backups\n\nnightly job\n");
    g.note("b.md", "# Beta\n\n## Misc\n\nbackups happen sometimes, backups are good\n");
    let (index, _) = g.update();
    let hits = search(&index, "backups", Scope::All);
    assert_eq!(hits[0].heading_path, ["Alpha", "Backups"], "{hits:#?}");
}

#[test]
fn quoted_phrases_match_exactly() {
    let f = Fixture::new();
    f.note("a.md", "# A\n\nthe red car is fast\n");
    f.note("b.md", "# B\n\nthe car is red\n");
    let (index, _) = f.update();
    let hits = search(&index, "\"red car\"", Scope::All);
    assert_eq!(hits.len(), 1);
    assert!(hits[0].path.ends_with("a.md"));
}

#[test]
fn any_user_text_is_a_valid_query() {
    let f = Fixture::new();
    f.note("a.md", "# Errors\n\nerror: file not found (ENOENT) in C++ code\n");
    let (index, _) = f.update();
    let nasty = [
        "",
        "   ",
        "\"",
        "\"\"",
        "\"unbalanced",
        "a:b",
        "error: file",
        "title:foo",
        "(",
        ")",
        "[1 TO",
        "{",
        "}",
        "^",
        "~2",
        "*",
        "?",
        "+",
        "-",
        "!",
        "AND",
        "OR NOT",
        "a AND",
        "\\",
        "C++",
        "100%",
        "日本語のテキスト",
        "emoji 🚀 test",
        "'single'",
        "`code`",
        "<tag>",
        "&&",
        "||",
        "a\u{0}b",
        "ENOENT)",
        "field:\"quoted value\"",
        &"x".repeat(10_000),
    ];
    for q in nasty {
        let result = index.search(q, &SearchOptions::default());
        assert!(result.is_ok(), "{q:?}: {result:?}");
    }
    assert_eq!(search(&index, "error: file", Scope::All).len(), 1);
    assert_eq!(search(&index, "(ENOENT)", Scope::All).len(), 1);
    assert!(search(&index, "", Scope::All).is_empty());
}

#[test]
fn incremental_updates_reread_only_changed_files() {
    let f = Fixture::new();
    let a = f.note("a.md", "# A\n\nalpha\n");
    let b = f.note("b.md", "# B\n\nbravo\n");
    f.note("c.md", "# C\n\ncharlie\n");
    let (_, first) = f.update();
    assert!(first.full_rebuild);
    assert_eq!((first.added, first.files_read, first.files_indexed), (3, 3, 3));

    let (_, second) = f.update();
    assert!(!second.full_rebuild);
    assert_eq!((second.files_read, second.unchanged, second.added, second.updated), (0, 3, 0, 0));

    // change a, delete b, add d
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&a, "# A\n\nalpha and zulu\n").expect("write");
    fs::remove_file(&b).expect("rm");
    f.note("d.md", "# D\n\ndelta\n");
    let (index, third) = f.update();
    assert_eq!((third.files_read, third.updated, third.added, third.removed, third.unchanged), (2, 1, 1, 1, 1));
    assert_eq!(search(&index, "zulu", Scope::All).len(), 1);
    assert!(search(&index, "bravo", Scope::All).is_empty());
    assert_eq!(search(&index, "delta", Scope::All).len(), 1);
    assert_eq!(search(&index, "alpha", Scope::All).len(), 1, "old chunks of a.md are gone");

    // touched but identical: read (time changed) but not re-indexed
    let c = f.notes.join("c.md");
    let text = fs::read(&c).expect("read");
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&c, text).expect("rewrite");
    let (_, fourth) = f.update();
    assert_eq!((fourth.files_read, fourth.updated, fourth.unchanged), (1, 0, 3));
    let (_, fifth) = f.update();
    assert_eq!(fifth.files_read, 0, "the new time was remembered");
}

#[test]
fn a_stale_manifest_means_a_full_rebuild_and_the_old_index_stays_searchable() {
    let f = Fixture::new();
    f.note("a.md", "# A\n\nalpha\n");
    let (index, _) = f.update();
    // A crash after tantivy's commit but before the manifest was written leaves a manifest
    // that does not match the commit payload.
    fs::write(f.index_dir.join("manifest.json"), "{ not json").expect("corrupt");
    assert_eq!(search(&index, "alpha", Scope::All).len(), 1, "the committed index is still usable");
    let reopened = SearchIndex::open(&f.index_dir).expect("open");
    assert_eq!(search(&reopened, "alpha", Scope::All).len(), 1);
    let (index, report) = f.update();
    assert!(report.full_rebuild);
    assert_eq!(index.num_chunks(), 1, "no duplicates after the rebuild");
}

#[test]
fn a_corrupt_index_is_rebuilt_by_update_and_reported_by_open() {
    let f = Fixture::new();
    f.note("a.md", "# A\n\nalpha\n");
    f.update();
    fs::write(f.index_dir.join("meta.json"), "garbage").expect("corrupt");
    assert!(SearchIndex::open(&f.index_dir).is_err());
    let (index, report) = f.update();
    assert!(report.full_rebuild);
    assert_eq!(search(&index, "alpha", Scope::All).len(), 1);
}

#[test]
fn missing_index_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let err = SearchIndex::open(&tmp.path().join("none")).expect_err("no index");
    assert!(err.to_string().contains("run `skd index` first"), "{err}");
}

#[test]
fn bad_input_is_skipped_and_reported() {
    let f = Fixture::new();
    f.note("good.md", "# Good\n\nfine text\n");
    f.note("empty.md", "");
    fs::write(f.notes.join("binary.md"), b"# Bad\n\xff\xfe not utf8").expect("write");
    f.note("big.md", &format!("# Big\n\n{}", "lots of words here\n".repeat(300_000)));
    f.note("rule.md", "# Rule\n\nabove\n\n---\n\nbelow the rule\n");
    f.note("ignored.txt", "not markdown");
    f.note(".obsidian/cache.md", "# hidden\n");
    f.skill("broken", "x", "");
    fs::write(f.skills.join("broken/SKILL.md"), "---\nname: broken\ndescription: [oops\n---\n").expect("write");
    f.skill("fine", "A fine skill.", "\nbody\n");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&f.notes, f.notes.join("loop")).expect("symlink");

    let mut index = SearchIndex::open_or_create(&f.index_dir).expect("open");
    let sources = Sources { max_file_bytes: 1024 * 1024, ..f.sources() };
    let report = index.update(&sources, false, &mut |_| {}).expect("update never fails on bad files");
    let reasons: Vec<String> = report
        .skipped
        .iter()
        .map(|s| {
            format!(
                "{}: {}",
                s.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                s.reason
            )
        })
        .collect();
    assert!(reasons.iter().any(|r| r.starts_with("binary.md: not valid UTF-8")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("big.md: too large")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("SKILL.md: invalid SKILL.md") && r.contains(":3:")), "{reasons:?}");
    #[cfg(unix)]
    assert!(reasons.iter().any(|r| r.contains("symlink loop")), "{reasons:?}");
    assert_eq!(report.skipped.len(), if cfg!(unix) { 4 } else { 3 }, "{reasons:?}");
    // good.md, empty.md, rule.md and the fine skill
    assert_eq!(report.files_indexed, 4);
    assert_eq!(search(&index, "below rule", Scope::All).len(), 1);
    assert!(search(&index, "hidden", Scope::All).is_empty());
    assert_eq!(search(&index, "fine skill", Scope::Skills).len(), 1);
}

#[test]
fn a_file_that_turns_bad_drops_out() {
    let f = Fixture::new();
    let p = f.note("a.md", "# A\n\nalpha\n");
    f.update();
    fs::write(&p, b"\xff\xff").expect("write");
    let (index, report) = f.update();
    assert_eq!(report.removed, 1);
    assert!(search(&index, "alpha", Scope::All).is_empty());
}

#[test]
fn progress_is_reported() {
    let f = Fixture::new();
    for i in 0..5 {
        f.note(&format!("n{i}.md"), "# N\n\ntext\n");
    }
    let mut index = SearchIndex::open_or_create(&f.index_dir).expect("open");
    let mut events = Vec::new();
    index.update(&f.sources(), false, &mut |p| events.push(p)).expect("update");
    assert!(events.contains(&Progress::Scanning { found: 5 }));
    assert!(events.contains(&Progress::Indexing { done: 5, total: 5 }));
    assert!(events.contains(&Progress::Committing));
}

#[test]
fn concurrent_update_is_refused_with_a_clear_error() {
    let f = Fixture::new();
    f.note("a.md", "# A\n\nalpha\n");
    let index = SearchIndex::open_or_create(&f.index_dir).expect("open");
    let tantivy_index = tantivy::Index::open_in_dir(index.dir()).expect("open raw");
    let _writer: tantivy::IndexWriter = tantivy_index.writer(15_000_000).expect("hold the lock");
    let mut second = SearchIndex::open_or_create(&f.index_dir).expect("open");
    let err = second.update(&f.sources(), false, &mut |_| {}).expect_err("busy");
    assert!(err.to_string().contains("being updated by another process"), "{err}");
}

#[tokio::test]
async fn retriever_returns_skill_and_note_hits() {
    let f = Fixture::new();
    f.skill("git-bisect", "Find the commit that introduced a bug with git bisect.", "\n1. git bisect start\n");
    f.note("git.md", "# Git\n\n## Bisect\n\nUse bisect to find a bad commit.\n");
    let (index, _) = f.update();
    let retriever: Box<dyn Retriever> = Box::new(index);
    let hits = retriever
        .retrieve(&RetrievalQuery { text: "find the commit that introduced a bug".into(), limit: 5, scope: Scope::All })
        .await
        .expect("retrieve");
    assert!(matches!(&hits[0], Hit::Skill(s) if s.name == "git-bisect"), "{hits:#?}");
    assert!(hits.iter().any(|h| matches!(h, Hit::Note(n) if n.heading_path == ["Git", "Bisect"] && n.line_start == 3)));
    assert!(hits.windows(2).all(|w| w[0].score() >= w[1].score()));
}
