//! Property tests: SKILL.md written and read back, and the parser on arbitrary input.

use proptest::prelude::*;
use skill_core::Skill;
use skill_core::skill::yaml_scalar;

/// Any text a description or a YAML value may hold, control characters and YAML syntax
/// included.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        // Denser in the characters YAML gives meaning to.
        proptest::collection::vec(
            prop_oneof![
                Just(": "),
                Just(" #"),
                Just("-"),
                Just("'"),
                Just("\""),
                Just("\\"),
                Just("\n"),
                Just("\t"),
                Just("0x1F"),
                Just(".inf"),
                Just("1e9"),
                Just("null"),
                Just("~"),
                Just("yes"),
                Just("["),
                Just("{"),
                Just("&a"),
                Just("*a"),
                Just("!t"),
                Just("|"),
                Just(">"),
                Just("%"),
                Just("@"),
                Just("`"),
                Just(" "),
                Just("word"),
                Just("日本"),
                Just("\u{1b}"),
                Just("---"),
            ],
            0..12,
        )
        .prop_map(|parts| parts.concat()),
    ]
}

proptest! {
    #[test]
    fn a_yaml_scalar_reads_back_as_the_same_string(text in any_text()) {
        let rendered = yaml_scalar(&text);
        let docs = yaml_rust2::YamlLoader::load_from_str(&format!("k: {rendered}\n"));
        let docs = docs.map_err(|e| TestCaseError::fail(format!("{text:?} as {rendered}: {e}")))?;
        prop_assert_eq!(docs[0]["k"].as_str(), Some(text.as_str()), "written as {}", rendered);
    }

    #[test]
    fn a_new_skill_reads_back_with_its_name_description_and_body(
        name in "[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?",
        description in any_text(),
        body in any_text(),
    ) {
        let skill = Skill::new(&name, &description, &body);
        let again = Skill::parse(&skill.to_markdown(), None).expect("written by Skill::new");
        prop_assert_eq!(again.meta().name.as_deref(), Some(name.as_str()));
        prop_assert_eq!(again.meta().description.as_deref(), Some(description.as_str()));
        prop_assert_eq!(again.body(), body.as_str());
    }

    #[test]
    fn the_parser_never_panics(text in any_text(), prefix in prop_oneof![Just(""), Just("---\n"), Just("---\nname: x\n")]) {
        let _ = Skill::parse(&format!("{prefix}{text}"), None);
        let _ = Skill::parse(&format!("{prefix}{text}\n---\n{text}"), None);
    }
}
