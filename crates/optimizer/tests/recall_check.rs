//! The recall check against a real tantivy index of a real skill library on disk, with a
//! scripted teacher (its answers written here, like a cassette) so each path is exercised
//! exactly: a description that search already finds, a rewrite that fixes a miss, and a
//! rewrite the teacher cannot get right.

use async_trait::async_trait;
use optimizer::recall::{RecallChecker, held_out_passed};
use skill_core::{Completion, CompletionRequest, Teacher, Usage};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Answers each request with the next scripted reply and remembers what it was asked.
struct Scripted {
    replies: Mutex<Vec<&'static str>>,
    asked: Mutex<Vec<String>>,
}

impl Scripted {
    fn new(replies: &[&'static str]) -> Self {
        let mut replies = replies.to_vec();
        replies.reverse();
        Scripted { replies: Mutex::new(replies), asked: Mutex::new(Vec::new()) }
    }
}

#[async_trait]
impl Teacher for Scripted {
    fn model_id(&self) -> &str {
        "scripted"
    }
    async fn complete(&self, request: &CompletionRequest) -> skill_core::Result<Completion> {
        let last = request.messages.last().map(|m| m.content.clone()).unwrap_or_default();
        self.asked.lock().expect("lock").push(last);
        let text = self.replies.lock().expect("lock").pop().expect("a scripted reply for every request");
        Ok(Completion {
            text: text.to_string(),
            usage: Usage { prompt_tokens: 100, completion_tokens: 10 },
            elapsed: Duration::ZERO,
            finish_reason: "stop".into(),
        })
    }
}

fn write_skill(root: &Path, name: &str, description: &str, body: &str) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("SKILL.md"), format!("---\nname: {name}\ndescription: {description}\n---\n{body}\n"))
        .expect("write");
}

fn library() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tmp");
    write_skill(
        tmp.path(),
        "sort-words",
        "Sort a list of words alphabetically.",
        "1. Compare first letters.\n2. Write the sorted list.",
    );
    write_skill(
        tmp.path(),
        "count-objects",
        "Count how many objects a list has, the total number of fruits, animals, vegetables or instruments.",
        "1. List each object.\n2. Add them up.",
    );
    tmp
}

const QUERIES: &str = r#"{"should_find": ["how many fruits do I have in total", "count the animals in this list",
  "total number of vegetables I own", "how many musical instruments are listed"],
  "should_not_find": ["sort these words alphabetically", "put these names in alphabetical order",
  "alphabetize my list of cities", "which word comes first in the dictionary"]}"#;

fn checker<'a>(teacher: &'a Scripted, root: &Path) -> RecallChecker<'a> {
    RecallChecker {
        teacher,
        skill_name: "count-objects".into(),
        library_root: Some(root.to_path_buf()),
        queries_per_kind: 4,
        teacher_timeout: Duration::from_secs(5),
        embedder: None,
        vector_cache: None,
    }
}

#[tokio::test]
async fn a_description_search_finds_passes_without_rewrites() {
    let lib = library();
    let markdown = std::fs::read_to_string(lib.path().join("count-objects/SKILL.md")).expect("read");
    let teacher = Scripted::new(&[QUERIES]);
    let mut tokens = 0;
    let outcome = checker(&teacher, lib.path())
        .check(&markdown, &mut |u| tokens += u.prompt_tokens + u.completion_tokens)
        .await
        .expect("checked");
    let report = &outcome.report;
    assert_eq!(report.rewrites, 0, "{report:?}");
    assert_eq!(report.positive.len(), 4);
    assert_eq!(report.negative.len(), 4);
    assert!(report.passed, "{report:?}");
    assert_eq!(outcome.markdown, markdown);
    assert_eq!(tokens, 110, "the queries' usage was counted");
    // The teacher saw the description and procedure, not the frontmatter's name.
    let asked = teacher.asked.lock().expect("lock");
    assert!(asked[0].contains("Count how many objects") && !asked[0].contains("count-objects"), "{}", asked[0]);
}

#[tokio::test]
async fn a_rewrite_fixes_a_description_search_misses_and_an_unusable_one_ends_rewriting() {
    let lib = library();
    // A description with none of its users' words: search cannot find it.
    let vague = "---\nname: count-objects\ndescription: Handle inventory questions.\n---\n1. Go through it.\n";
    let fixed =
        r#"{"description": "Count how many objects, fruits, animals, vegetables or instruments a list has in total."}"#;
    let teacher = Scripted::new(&[QUERIES, fixed]);
    let outcome = checker(&teacher, lib.path()).check(vague, &mut |_| {}).await.expect("checked");
    assert_eq!(outcome.report.rewrites, 1, "{:?}", outcome.report);
    assert!(outcome.markdown.contains("fruits, animals"), "{}", outcome.markdown);
    assert!(outcome.report.positive.iter().filter(|(_, ok)| *ok).count() >= 3, "{:?}", outcome.report);
    assert_eq!(outcome.report.rewrite_failed, None);
    let (before, after) = outcome.report.right_before_and_after.expect("a rewrite is compared");
    assert!(outcome.report.rewrite_kept && after > before, "{:?}", outcome.report);
    let (given_positive, given_negative) = outcome.given_ranking.as_ref().expect("the given description's ranking");
    assert_eq!(given_positive.iter().chain(given_negative).filter(|(_, ok)| *ok).count(), before);
    // The rewrite request named what went wrong.
    assert!(teacher.asked.lock().expect("lock")[1].contains("how many fruits"), "the misses are shown");

    // A rewrite that gets no more queries right than the description it replaces is not
    // kept: the outcome is the description given, and the report is of it.
    let worse = r#"{"description": "Sort words alphabetically, put names in alphabetical order, alphabetize cities."}"#;
    let teacher = Scripted::new(&[QUERIES, worse, worse]);
    let outcome = checker(&teacher, lib.path()).check(vague, &mut |_| {}).await.expect("checked");
    let report = &outcome.report;
    assert_eq!(report.rewrites, 2, "{report:?}");
    let (before, after) = report.right_before_and_after.expect("compared");
    assert!(!report.rewrite_kept && after <= before, "{report:?}");
    assert_eq!(outcome.markdown, vague);
    assert!(outcome.given_ranking.is_none(), "the report already is the given description's");
    let right = report.positive.iter().chain(&report.negative).filter(|(_, ok)| *ok).count();
    assert_eq!(right, before, "the report ranks the description kept: {report:?}");

    // A teacher that answers the rewrite with an empty description twice (the request and
    // its repair): the check still ranks every query, against the description as it is.
    let empty = r#"{"description": ""}"#;
    let teacher = Scripted::new(&[QUERIES, empty, empty]);
    let outcome = checker(&teacher, lib.path()).check(vague, &mut |_| {}).await.expect("checked, not abandoned");
    let report = &outcome.report;
    assert_eq!(report.rewrites, 0);
    assert!(report.rewrite_failed.as_deref().is_some_and(|w| w.contains("1 to 1024")), "{report:?}");
    assert_eq!(outcome.markdown, vague);
    assert_eq!((report.positive.len(), report.negative.len()), (4, 4));
    assert!(!report.passed, "search does not find the vague description: {report:?}");
}

#[tokio::test]
async fn queries_that_are_only_the_skill_name_leave_the_check_not_run() {
    let lib = library();
    let markdown = std::fs::read_to_string(lib.path().join("count-objects/SKILL.md")).expect("read");
    let names = r#"{"should_find": ["count-objects", "count-objects"], "should_not_find": ["sort-words", "x"]}"#;
    let teacher = Scripted::new(&[names, names]);
    let mut tokens = 0;
    let err = checker(&teacher, lib.path())
        .check(&markdown, &mut |u| tokens += u.prompt_tokens + u.completion_tokens)
        .await
        .expect_err("unusable");
    assert_eq!(tokens, 220, "both unusable answers still cost their tokens");
    let text = err.to_string();
    assert!(matches!(err, optimizer::Error::TeacherOutput(_)), "{text}");
    assert!(text.contains("should_find has 0 usable queries"), "{text}");
    // The repair request does not quote the name back: a small teacher copies it.
    let asked = teacher.asked.lock().expect("lock");
    assert_eq!(asked.len(), 2, "one request and one repair");
    assert!(!asked[1].contains("count-objects"), "{}", asked[1]);
}

#[tokio::test]
async fn near_misses_that_ask_for_the_same_job_are_asked_for_again() {
    let lib = library();
    let markdown = std::fs::read_to_string(lib.path().join("count-objects/SKILL.md")).expect("read");
    // Every near-miss is a should-find query with a word changed.
    let copies = r#"{"should_find": ["how many fruits do I have in total", "count the animals in this list",
      "total number of vegetables I own", "how many musical instruments are listed"],
      "should_not_find": ["how many fruits do I have in all", "count the animals in this big list"]}"#;
    let others = r#"{"should_not_find": ["sort these words alphabetically", "put these city names in alphabetical order",
      "how many musical instruments are listed here", "how many fruits do I have in all"]}"#;
    let teacher = Scripted::new(&[copies, others]);
    let outcome = checker(&teacher, lib.path()).check(&markdown, &mut |_| {}).await.expect("checked");
    let report = &outcome.report;
    // The first two copies and the follow-up's new one are set aside and reported (its
    // repeat of an earlier copy once).
    assert_eq!(report.discarded_near_misses.len(), 3, "{report:?}");
    // The follow-up's near-copy is dropped too; its two real near-misses are ranked.
    let negatives: Vec<&str> = report.negative.iter().map(|(q, _)| q.as_str()).collect();
    assert_eq!(negatives, ["sort these words alphabetically", "put these city names in alphabetical order"]);
    assert!(report.passed, "{report:?}");
    let follow_up = teacher.asked.lock().expect("lock")[1].clone();
    assert!(follow_up.contains("- how many fruits do I have in all"), "the copies are shown: {follow_up}");

    // A teacher that keeps writing copies: the check is not run, and says why.
    let again = r#"{"should_not_find": ["how many fruits do I have in all", "count the animals in this big list"]}"#;
    let teacher = Scripted::new(&[copies, again, again]);
    let err = checker(&teacher, lib.path()).check(&markdown, &mut |_| {}).await.expect_err("no near-misses");
    assert!(err.to_string().contains("near-copies of its should-find"), "{err}");
}

#[tokio::test]
async fn without_usable_near_misses_the_neighbouring_skills_jobs_stand_in() {
    let lib = library();
    write_skill(lib.path(), "convert-units", "Convert a length from inches to centimetres.", "1. Multiply by 2.54.");
    let markdown = std::fs::read_to_string(lib.path().join("count-objects/SKILL.md")).expect("read");
    let copies = r#"{"should_find": ["how many fruits do I have in total", "count the animals in this list",
      "total number of vegetables I own", "how many musical instruments are listed"],
      "should_not_find": ["how many fruits do I have in all"]}"#;
    let again = r#"{"should_not_find": ["how many fruits do I have in all"]}"#;
    let teacher = Scripted::new(&[copies, again, again]);
    let outcome = checker(&teacher, lib.path()).check(&markdown, &mut |_| {}).await.expect("checked");
    let report = &outcome.report;
    let mut from_library = report.near_misses_from_library.clone();
    from_library.sort();
    assert_eq!(from_library, ["Convert a length from inches to centimetres.", "Sort a list of words alphabetically."]);
    let negatives: Vec<&str> = report.negative.iter().map(|(q, _)| q.as_str()).collect();
    assert_eq!(negatives.len(), 2, "{report:?}");
    assert!(report.passed, "each neighbour's own job ranks that neighbour first: {report:?}");
}

#[test]
fn only_the_held_out_halves_decide() {
    let q = |oks: &[bool]| oks.iter().map(|ok| ("q".to_string(), *ok)).collect::<Vec<_>>();
    // The first half of each kind tuned the description; its misses do not count.
    assert!(held_out_passed(&q(&[false, false, true, true]), &q(&[false, true])));
    assert!(!held_out_passed(&q(&[true, true, true, false]), &q(&[true, true])));
    assert!(!held_out_passed(&q(&[true, true]), &q(&[true, false])));
    // An odd count holds out the larger half.
    assert!(!held_out_passed(&q(&[true, false, true]), &q(&[])));
}

/// The real embedding model, as `skd recall --hybrid` loads it.
fn embedding_model() -> std::sync::Arc<dyn skill_core::Embedder> {
    use student::models::{ALL_MINILM_L6_V2, ModelStore, find_known};
    let known = find_known(ALL_MINILM_L6_V2).expect("known");
    let store = ModelStore::new(ModelStore::default_dir());
    let weights = store.pull(&known, &mut |_| {}).expect("pull all-MiniLM-L6-v2");
    let [tokenizer, config] = [0, 1].map(|i| store.companion_path(&known.companions[i]));
    std::sync::Arc::new(embed::MiniLm::load(&weights, &tokenizer, &config).expect("load"))
}

#[test]
fn with_an_embedding_model_the_check_ranks_as_hybrid_search_does() {
    let lib = library();
    let markdown = std::fs::read_to_string(lib.path().join("count-objects/SKILL.md")).expect("read");
    let teacher = Scripted::new(&[]);
    // Words of the other skill ("word list"), the meaning of this one (a sum of animals):
    // BM25 ranks sort-words first, the fusion with meaning count-objects.
    let should_find: Vec<String> =
        ["I have a word list of pets: dog, cat, cow. what's the sum", "sum of the pets in this words list"]
            .map(String::from)
            .into();
    let should_not = vec!["arrange these names from A to Z".to_string()];
    let by_words = checker(&teacher, lib.path()).rank_queries(&markdown, &should_find, &should_not).expect("bm25");
    let by_both = RecallChecker { embedder: Some(embedding_model()), ..checker(&teacher, lib.path()) }
        .rank_queries(&markdown, &should_find, &should_not)
        .expect("hybrid");
    assert_eq!(by_words.iter().map(|(_, ok)| *ok).collect::<Vec<_>>(), [false, false, true], "{by_words:?}");
    assert_eq!(by_both.iter().map(|(_, ok)| *ok).collect::<Vec<_>>(), [true, true, true], "{by_both:?}");
}

/// The real model, counting the texts it is given.
struct Counted(std::sync::Arc<dyn skill_core::Embedder>, std::sync::atomic::AtomicUsize);

impl skill_core::Embedder for Counted {
    fn id(&self) -> &str {
        self.0.id()
    }
    fn embed(&self, texts: &[&str]) -> skill_core::Result<Vec<Vec<f32>>> {
        self.1.fetch_add(texts.len(), std::sync::atomic::Ordering::Relaxed);
        self.0.embed(texts)
    }
}

#[test]
fn a_kept_vector_cache_embeds_the_library_once_across_checks() {
    let lib = library();
    let markdown = std::fs::read_to_string(lib.path().join("count-objects/SKILL.md")).expect("read");
    let teacher = Scripted::new(&[]);
    let cache = tempfile::tempdir().expect("tmp");
    let model = std::sync::Arc::new(Counted(embedding_model(), std::sync::atomic::AtomicUsize::new(0)));
    let checker = RecallChecker {
        embedder: Some(model.clone()),
        vector_cache: Some(cache.path().to_path_buf()),
        ..checker(&teacher, lib.path())
    };
    let (find, miss) = (vec!["sum of the pets in this list".to_string()], vec!["sort these names".to_string()]);
    let embedded = || model.1.swap(0, std::sync::atomic::Ordering::Relaxed);
    let first = checker.rank_queries(&markdown, &find, &miss).expect("first");
    assert_eq!(embedded(), 2 + 2, "the library's two skills and the two queries");
    let second = checker.rank_queries(&markdown, &find, &miss).expect("second");
    assert_eq!(embedded(), 2, "the queries only: the skills' vectors were kept");
    assert_eq!(first, second);
    // A changed description is one new text.
    let changed = markdown.replacen("description: ", "description: Adds up counted things. ", 1);
    assert_ne!(changed, markdown);
    checker.rank_queries(&changed, &find, &miss).expect("third");
    assert_eq!(embedded(), 1 + 2);
}
