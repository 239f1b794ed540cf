//! Property tests: the eval suite parser on arbitrary text and on generated suites.

use evals::EvalSuite;
use proptest::prelude::*;
use std::path::Path;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
        prop_oneof![Just("agent"), Just("answer"), Just("test"), Just("regex"), Just("("), Just("../x")]
            .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("id".to_string()),
                    Just("prompt".to_string()),
                    Just("mode".to_string()),
                    Just("split".to_string()),
                    Just("graders".to_string()),
                    Just("type".to_string()),
                    Just("pattern".to_string()),
                    Just("workspace".to_string()),
                    Just("expected_output".to_string()),
                    Just("files".to_string()),
                    any::<String>(),
                ],
                inner,
                0..5,
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_is_refused_or_parsed_without_a_panic(text in any::<String>()) {
        let _ = EvalSuite::parse(&text, Path::new("evals.json"));
    }

    #[test]
    fn generated_suites_are_checked_without_a_panic(cases in proptest::collection::vec(json_value(), 0..5)) {
        let suite = serde_json::json!({"skill_name": "x", "evals": cases}).to_string();
        let _ = EvalSuite::parse(&suite, Path::new("evals.json"));
    }
}
