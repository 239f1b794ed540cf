//! Property tests: the workspace's file tools on generated paths (`..`, absolute parts,
//! symlinks out of it) never read or write outside it, and the transcript reader takes any
//! bytes without panicking.

use agent_loop::tools::Workspace;
use agent_loop::transcript::read_transcript;
use proptest::prelude::*;
use std::path::Path;

const SECRET: &str = "outside the workspace";

/// A workspace beside a file and a folder it must not reach, with symlinks inside pointing
/// at both.
fn layout(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let ws = root.join("ws");
    let outside = root.join("outside");
    std::fs::create_dir_all(ws.join("sub")).expect("mkdir");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(outside.join("secret.txt"), SECRET).expect("write");
    std::fs::write(root.join("secret.txt"), SECRET).expect("write");
    std::fs::write(ws.join("inner.txt"), "inside").expect("write");
    std::os::unix::fs::symlink("../outside/secret.txt", ws.join("link.txt")).expect("symlink");
    std::os::unix::fs::symlink("../outside", ws.join("outdir")).expect("symlink");
    std::os::unix::fs::symlink("../../outside", ws.join("sub/up")).expect("symlink");
    (ws, outside)
}

fn part(outside: String) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just("".to_string()),
        Just("sub".to_string()),
        Just("up".to_string()),
        Just("outdir".to_string()),
        Just("link.txt".to_string()),
        Just("inner.txt".to_string()),
        Just("secret.txt".to_string()),
        Just("outside".to_string()),
        Just("new.txt".to_string()),
        Just(outside),
        "[a-z]{1,3}".prop_map(|s| s),
    ]
}

fn outside_files(outside: &Path, root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(outside)
        .expect("ls")
        .chain(std::fs::read_dir(root).expect("ls"))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn file_tools_stay_beneath_the_workspace(
        parts in proptest::collection::vec(part(String::new()), 1..6),
        absolute in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().expect("tmp");
        let (ws, outside) = layout(tmp.path());
        let before = outside_files(&outside, tmp.path());
        let mut requested = parts.join("/");
        if absolute {
            requested = format!("{}/{requested}", tmp.path().display());
        }
        let workspace = Workspace::new(&ws);
        if let Ok((bytes, _)) = workspace.read(&requested, 1 << 16) {
            prop_assert!(!String::from_utf8_lossy(&bytes).contains(SECRET), "read {requested}");
        }
        if let Ok(names) = workspace.list(&requested) {
            prop_assert!(!names.iter().any(|n| n == "secret.txt"), "listed {requested}: {names:?}");
        }
        let _ = workspace.write(&requested, b"written");
        prop_assert_eq!(outside_files(&outside, tmp.path()), before, "wrote {}", requested);
        prop_assert_eq!(std::fs::read_to_string(outside.join("secret.txt")).expect("read"), SECRET);
    }

    #[test]
    fn any_bytes_are_read_as_a_transcript_or_refused_without_a_panic(
        lines in proptest::collection::vec(
            prop_oneof![
                any::<Vec<u8>>(),
                Just(br#"{"event":"start","schema_version":1,"run_id":"r","time":"t","task":"x","student":"s","max_steps":1,"tools":[]}"#.to_vec()),
                Just(br#"{"event":"finish","outcome":"answered","answer":"a","steps":1,"prompt_tokens":1,"completion_tokens":1,"elapsed_ms":1,"error":null}"#.to_vec()),
                Just(br#"{"event":"model_call","step":1}"#.to_vec()),
                Just(b"{\"event\":".to_vec()),
            ],
            0..8,
        ),
    ) {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("run.jsonl");
        std::fs::write(&path, lines.join(&b'\n')).expect("write");
        let _ = read_transcript(&path);
    }
}
