//! Skill discovery, import and version history on real folders.

use skill_core::versions::{Revision, WorkingCopy};
use skill_core::{Error, Skill, SkillLibrary, VersionStore};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, text).expect("write");
}

fn skill_md(name: &str, desc: &str) -> String {
    format!("---\nname: {name}\ndescription: {desc}\n---\n\nDo {name}.\n")
}

#[test]
fn discovers_nested_skills_and_import_roots_with_shadowing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let lib_root = tmp.path().join("lib");
    let import = tmp.path().join("claude");
    write(&lib_root.join("alpha/SKILL.md"), &skill_md("alpha", "a"));
    write(&lib_root.join("alpha/scripts/helper/SKILL.md"), &skill_md("helper", "not a skill: inside alpha"));
    write(&lib_root.join("category/beta/SKILL.md"), &skill_md("beta", "b"));
    write(&lib_root.join(".history/v0001.md"), "hidden");
    write(&lib_root.join("notes.md"), "not a skill");
    write(&import.join("alpha/SKILL.md"), &skill_md("alpha", "shadowed"));
    write(&import.join("gamma/SKILL.md"), &skill_md("gamma", "g"));

    let lib = SkillLibrary::new(&lib_root).with_import_roots([import.clone(), tmp.path().join("missing")]);
    let d = lib.discover();
    let names: Vec<_> = d.skills.iter().map(|s| (s.name.as_str(), s.writable)).collect();
    assert_eq!(names, [("alpha", true), ("beta", true), ("gamma", false)]);
    assert_eq!(d.shadowed.len(), 1);
    assert_eq!(d.shadowed[0].dir, import.join("alpha"));
    assert!(d.skipped.is_empty(), "{:?}", d.skipped);
    assert_eq!(lib.find("gamma").expect("gamma").root, import);
    assert!(matches!(lib.find("nope"), Err(Error::NotFound { .. })));
}

#[cfg(unix)]
#[test]
fn symlink_loops_are_counted_not_followed_forever() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("lib");
    write(&root.join("real/SKILL.md"), &skill_md("real", "r"));
    fs::create_dir_all(root.join("deep")).expect("mkdir");
    std::os::unix::fs::symlink(&root, root.join("deep/loop")).expect("symlink");
    let d = SkillLibrary::new(&root).discover();
    assert_eq!(d.skills.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["real"]);
    assert!(d.skipped.iter().any(|s| s.reason.contains("symlink loop")), "{:?}", d.skipped);
}

#[test]
fn create_save_history_diff_restore() {
    let tmp = tempfile::tempdir().expect("tmp");
    let lib = SkillLibrary::new(tmp.path().join("lib"));
    let (entry, v1) = lib.create("pdf-extract", "Extract PDF text.", "\n1. Open the PDF.\n").expect("create");
    assert_eq!(v1.version, 1);
    assert_eq!(v1.message, "created");
    assert!(matches!(lib.create("pdf-extract", "again", ""), Err(Error::Conflict(_))));
    assert!(matches!(lib.create("Bad_Name", "d", ""), Err(Error::Conflict(_))));

    let mut skill = Skill::read(&entry.skill_md()).expect("read");
    skill.set_body("\n1. Open the PDF.\n2. Extract tables too.\n");
    let v2 = lib.save(&entry, &skill, "add tables").expect("save");
    assert_eq!(v2.version, 2);
    // saving identical content records nothing new
    assert_eq!(lib.save(&entry, &skill, "same").expect("save").version, 2);

    // an invalid skill is refused and nothing changes
    let mut bad = skill.clone();
    bad.set_field("description", "").expect("set");
    assert!(matches!(lib.save(&entry, &bad, "bad"), Err(Error::Invalid { .. })));
    assert_eq!(Skill::read(&entry.skill_md()).expect("read").body(), skill.body());

    let store = VersionStore::new(&entry.dir);
    let diff = store.diff(Revision::Version(1), Revision::Version(2)).expect("diff");
    assert!(diff.contains("+2. Extract tables too."), "{diff}");
    assert!(diff.starts_with("--- v1\n+++ v2\n"), "{diff}");

    let v3 = store.restore(1).expect("restore");
    assert_eq!(v3.version, 3);
    assert_eq!(v3.message, "restored from v1");
    assert_eq!(fs::read_to_string(entry.skill_md()).expect("read"), store.content(Revision::Version(1)).expect("v1"));
    assert!(matches!(store.restore(99), Err(Error::NotFound { .. })));

    let mut scores = BTreeMap::new();
    scores.insert("pass_rate".to_string(), 0.75);
    store.record_scores(2, &scores).expect("scores");
    let history = store.history().expect("history");
    assert_eq!(history.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(history[1].scores.get("pass_rate"), Some(&0.75));
    assert_eq!(store.working_copy().expect("wc"), WorkingCopy::Recorded { version: 3 });
}

#[test]
fn hand_edits_are_recorded_before_being_replaced() {
    let tmp = tempfile::tempdir().expect("tmp");
    let lib = SkillLibrary::new(tmp.path().join("lib"));
    let (entry, _) = lib.create("a", "d", "\noriginal\n").expect("create");
    let hand = skill_md("a", "edited by hand");
    fs::write(entry.skill_md(), &hand).expect("edit");
    let store = VersionStore::new(&entry.dir);
    assert_eq!(store.working_copy().expect("wc"), WorkingCopy::Unrecorded);
    let diff = store.diff(Revision::Version(1), Revision::Working).expect("diff");
    assert!(diff.contains("+description: edited by hand"), "{diff}");
    // restoring v1 must not lose the hand edit: it becomes v2, the restore v3
    let restored = store.restore(1).expect("restore");
    assert_eq!(restored.version, 3);
    assert_eq!(store.content(Revision::Version(2)).expect("v2"), hand);
    assert!(store.info(2).expect("v2").message.contains("edited outside skd"));
}

#[test]
fn concurrent_writers_never_lose_a_version() {
    let tmp = tempfile::tempdir().expect("tmp");
    let lib = SkillLibrary::new(tmp.path().join("lib"));
    let (entry, _) = lib.create("shared", "d", "\nv1\n").expect("create");
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let dir = entry.dir.clone();
            std::thread::spawn(move || {
                let store = VersionStore::new(dir);
                for i in 0..8 {
                    store.save(&skill_md("shared", &format!("writer {t} save {i}")), "concurrent").expect("save");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("join");
    }
    let store = VersionStore::new(&entry.dir);
    let history = store.history().expect("history");
    assert_eq!(history.len(), 1 + 6 * 8);
    let numbers: Vec<u32> = history.iter().map(|v| v.version).collect();
    assert_eq!(numbers, (1..=49).collect::<Vec<_>>());
    for t in 0..6 {
        for i in 0..8 {
            let wanted = skill_md("shared", &format!("writer {t} save {i}"));
            assert!(
                history.iter().any(|v| store.content(Revision::Version(v.version)).expect("content") == wanted),
                "writer {t} save {i} lost"
            );
        }
    }
}

#[test]
fn a_crash_between_content_and_record_never_overwrites() {
    let tmp = tempfile::tempdir().expect("tmp");
    let lib = SkillLibrary::new(tmp.path().join("lib"));
    let (entry, _) = lib.create("a", "d", "\nbody\n").expect("create");
    // Simulate a crash that left v0002.md without its record.
    fs::write(entry.dir.join(".history/v0002.md"), "orphan").expect("orphan");
    let store = VersionStore::new(&entry.dir);
    let info = store.save(&skill_md("a", "next"), "after crash").expect("save");
    assert_eq!(info.version, 3);
    assert_eq!(fs::read_to_string(entry.dir.join(".history/v0002.md")).expect("read"), "orphan");
}

#[test]
fn import_copies_the_whole_skill_folder() {
    let tmp = tempfile::tempdir().expect("tmp");
    let import = tmp.path().join("agents");
    write(&import.join("tool-x/SKILL.md"), &skill_md("tool-x", "x"));
    write(&import.join("tool-x/scripts/run.sh"), "echo hi\n");
    let lib = SkillLibrary::new(tmp.path().join("lib")).with_import_roots([import]);
    let entry = lib.find("tool-x").expect("find");
    assert!(!entry.writable);
    let skill = Skill::read(&entry.skill_md()).expect("read");
    assert!(matches!(lib.save(&entry, &skill, "x"), Err(Error::Conflict(_))), "imported skills are read-only");
    let (copied, v) = lib.import(&entry).expect("import");
    assert_eq!(v.version, 1);
    assert!(copied.writable);
    assert_eq!(fs::read_to_string(copied.dir.join("scripts/run.sh")).expect("read"), "echo hi\n");
    assert_eq!(lib.find("tool-x").expect("find").dir, copied.dir, "the library copy now wins");
}

#[test]
fn a_recorded_version_waits_without_replacing_the_skill_on_disk() {
    let tmp = tempfile::tempdir().expect("tmp");
    let lib = SkillLibrary::new(tmp.path().join("lib"));
    let (entry, _) = lib.create("a", "d", "\noriginal\n").expect("create");
    let original = fs::read_to_string(entry.skill_md()).expect("read");
    let store = VersionStore::new(&entry.dir);
    let waiting = skill_md("a", "distilled, not beneficial");
    let v2 = store.record(&waiting, "distilled").expect("record");
    assert_eq!(v2.version, 2);
    assert_eq!(fs::read_to_string(entry.skill_md()).expect("read"), original, "SKILL.md is untouched");
    // The file on disk is still known as v1, not as a hand edit to be recorded again.
    assert_eq!(store.working_copy().expect("wc"), WorkingCopy::Recorded { version: 1 });
    assert_eq!(store.record(&waiting, "again").expect("same content").version, 2);
    let other = skill_md("a", "another draft");
    assert_eq!(store.record(&other, "distilled").expect("record").version, 3);
    // Adopting it is a restore.
    store.restore(2).expect("adopt");
    assert_eq!(fs::read_to_string(entry.skill_md()).expect("read"), waiting);
    assert_eq!(store.history().expect("history").len(), 4);
}

#[test]
fn publishing_replaces_our_own_earlier_version_and_never_another_agents_skill() {
    let tmp = tempfile::tempdir().expect("tmp");
    let lib = SkillLibrary::new(tmp.path().join("lib"));
    let claude = tmp.path().join("claude-skills");
    let (entry, _) = lib.create("tip", "Work out a tip.", "\n1. Multiply.\n").expect("create");
    let (dest, written) = lib.publish(&entry, &claude).expect("first publish");
    assert!(written);
    let v1 = fs::read_to_string(entry.skill_md()).expect("v1");
    assert_eq!(fs::read_to_string(dest.join("SKILL.md")).expect("published"), v1);
    // A new version is adopted: what is out there is our v1, so it is replaced.
    let v2 = skill_md("tip", "Work out a tip, rounded up to the next whole euro.");
    VersionStore::new(&entry.dir).save(&v2, "adopted").expect("v2");
    assert!(lib.publish(&entry, &claude).expect("second publish").1);
    assert_eq!(fs::read_to_string(dest.join("SKILL.md")).expect("published"), v2);
    assert!(!lib.publish(&entry, &claude).expect("same again").1, "the same content is no change");
    // The other agent's user edits their copy: it is theirs now, and stays.
    let theirs = skill_md("tip", "My own tip rules.");
    write(&dest.join("SKILL.md"), &theirs);
    let v3 = skill_md("tip", "Work out a tip; ask for the percentage when none is given.");
    VersionStore::new(&entry.dir).save(&v3, "adopted").expect("v3");
    assert!(matches!(lib.publish(&entry, &claude), Err(Error::Conflict(_))));
    assert_eq!(fs::read_to_string(dest.join("SKILL.md")).expect("kept"), theirs);
    assert!(!dest.join(".history").exists() && !dest.join("evals").exists(), "skd's own folders stay home");
}
