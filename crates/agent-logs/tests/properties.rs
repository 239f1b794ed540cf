//! Property tests: every reader takes any bytes, and any JSON lines of the shapes it knows
//! with fields of the wrong types, without panicking: an error or a session, never a crash.

use agent_logs::{ClaudeCode, Codex, LogSource, Pi, SkdRuns, episodes};
use proptest::prelude::*;
use serde_json::{Value, json};
use skill_core::redact::Redactor;

fn sources(root: &std::path::Path) -> Vec<Box<dyn LogSource>> {
    vec![
        Box::new(SkdRuns::new(root.to_path_buf())),
        Box::new(Pi::new(root.to_path_buf())),
        Box::new(ClaudeCode::new(root.to_path_buf())),
        Box::new(Codex::new(root.to_path_buf())),
    ]
}

/// Values of any JSON type, small.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z \\[\\]<>/:]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Lines with the keys the readers look at, holding anything.
fn known_shape_line() -> impl Strategy<Value = Value> {
    let kind = prop::sample::select(vec![
        "user",
        "assistant",
        "message",
        "session",
        "session_meta",
        "response_item",
        "event_msg",
        "start",
        "finish",
        "tool_call",
        "summary",
    ]);
    (kind, any_value(), any_value(), any_value(), any_value()).prop_map(|(kind, message, payload, content, id)| {
        json!({"type": kind, "event": kind, "message": message, "payload": payload, "content": content,
               "id": id, "parentId": "x", "parentSession": "../nope.jsonl", "isSidechain": false})
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let tmp = tempfile::tempdir().expect("tmp");
        for name in ["a.jsonl", "rollout-a.jsonl", "rollout-b.jsonl.zst"] {
            let path = tmp.path().join(name);
            std::fs::write(&path, &bytes).expect("write");
            for source in sources(tmp.path()) {
                if let Ok(session) = source.read(&path) {
                    let _ = episodes(source.name(), &path, &session, &Redactor::new());
                }
            }
        }
    }

    #[test]
    fn lines_of_known_shapes_with_wrong_types_do_not_panic(lines in prop::collection::vec(known_shape_line(), 0..12)) {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("rollout-s.jsonl");
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, text).expect("write");
        for source in sources(tmp.path()) {
            let session = source.read(&path);
            prop_assert!(session.is_ok() || source.name() == "skd", "{}: {:?}", source.name(), session.err());
            if let Ok(session) = session {
                let _ = episodes(source.name(), &path, &session, &Redactor::new());
            }
        }
    }
}
