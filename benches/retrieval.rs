//! Index build for 1,000 and 10,000 generated notes, and query latency on about 10,000
//! chunks. Run with `cargo bench -p skd-benches`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use retrieval::{SearchIndex, SearchOptions, Sources};
use skd_benches::{percentile, queries, write_notes, write_skills};
use skill_core::SkillLibrary;
use std::time::{Duration, Instant};

fn sources(notes: &std::path::Path, skills: &std::path::Path) -> Sources {
    Sources { note_roots: vec![notes.to_path_buf()], library: Some(SkillLibrary::new(skills)), max_file_bytes: 0 }
}

fn index_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("index_build");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    for notes in [1_000usize, 10_000] {
        let corpus = tempfile::tempdir().expect("tmp");
        write_notes(&corpus.path().join("notes"), notes, 3, 7).expect("notes");
        write_skills(&corpus.path().join("skills"), 100, 11).expect("skills");
        let src = sources(&corpus.path().join("notes"), &corpus.path().join("skills"));
        group.bench_with_input(BenchmarkId::new("full", format!("{notes}_notes")), &src, |b, src| {
            b.iter_with_setup(tempfile::tempdir, |dir| {
                let dir = dir.expect("tmp");
                let mut index = SearchIndex::open_or_create(dir.path()).expect("open");
                index.update(src, false, &mut |_| {}).expect("update")
            })
        });
        // The common case: nothing changed since the last run.
        let dir = tempfile::tempdir().expect("tmp");
        let mut index = SearchIndex::open_or_create(dir.path()).expect("open");
        index.update(&src, false, &mut |_| {}).expect("update");
        group.bench_with_input(BenchmarkId::new("incremental_no_change", format!("{notes}_notes")), &src, |b, src| {
            b.iter(|| index.update(src, false, &mut |_| {}).expect("update"))
        });
    }
    group.finish();
}

fn query_latency(c: &mut Criterion) {
    // 2,500 notes x (preamble + 3 sections) = 10,000 chunks, plus 100 skills.
    let corpus = tempfile::tempdir().expect("tmp");
    write_notes(&corpus.path().join("notes"), 2_500, 3, 7).expect("notes");
    write_skills(&corpus.path().join("skills"), 100, 11).expect("skills");
    let dir = tempfile::tempdir().expect("tmp");
    let mut index = SearchIndex::open_or_create(dir.path()).expect("open");
    index
        .update(&sources(&corpus.path().join("notes"), &corpus.path().join("skills")), false, &mut |_| {})
        .expect("update");
    let chunks = index.num_chunks();
    let qs = queries(500, 3);
    let opts = SearchOptions::default();

    // Percentiles over many single queries, printed for the README (criterion reports means).
    for q in &qs {
        index.search(q, &opts).expect("warm");
    }
    let mut samples: Vec<f64> = qs
        .iter()
        .cycle()
        .take(5_000)
        .map(|q| {
            let t = Instant::now();
            let hits = index.search(q, &opts).expect("search");
            std::hint::black_box(hits);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    eprintln!(
        "query latency on {chunks} chunks, top 10 with snippets: p50 {:.3} ms, p95 {:.3} ms, p99 {:.3} ms",
        percentile(&samples, 50.0),
        percentile(&samples, 95.0),
        percentile(&samples, 99.0)
    );

    let mut group = c.benchmark_group("query");
    let mut i = 0;
    group.bench_function(format!("top10_snippets_{chunks}_chunks"), |b| {
        b.iter(|| {
            i = (i + 1) % qs.len();
            index.search(&qs[i], &opts).expect("search")
        })
    });
    group.finish();
}

criterion_group!(benches, query_latency, index_build);
criterion_main!(benches);
