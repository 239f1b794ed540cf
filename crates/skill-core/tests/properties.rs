//! Property tests: SKILL.md written and read back, and the parser on arbitrary input.

use proptest::prelude::*;
use skill_core::Skill;
use skill_core::skill::yaml_scalar;

/// A skill's frontmatter with its description left out, to compare the rest.
fn without_description(meta: &skill_core::SkillMeta) -> skill_core::SkillMeta {
    skill_core::SkillMeta { description: None, ..meta.clone() }
}

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
    fn every_frontmatter_key_reads_back_and_setting_one_leaves_the_others_as_written(
        license in any_text(),
        compatibility in any_text(),
        meta_key in "[a-z][a-z0-9_]{0,12}",
        meta_value in any_text(),
        tools in proptest::collection::vec("[A-Za-z][A-Za-z_]{0,10}", 1..4),
        new_description in any_text(),
    ) {
        let markdown = format!(
            "---\nname: weekly-update\ndescription: Draft the weekly update.\nlicense: {}\ncompatibility: {}\n\
             metadata:\n  {meta_key}: {}\nallowed-tools:\n{}---\nBody.\n",
            yaml_scalar(&license),
            yaml_scalar(&compatibility),
            yaml_scalar(&meta_value),
            tools.iter().map(|t| format!("  - {t}\n")).collect::<String>(),
        );
        let mut skill = Skill::parse(&markdown, None).map_err(|e| TestCaseError::fail(format!("{markdown}: {e}")))?;
        let meta = skill.meta().clone();
        prop_assert_eq!(meta.license.as_deref(), Some(license.as_str()));
        prop_assert_eq!(meta.compatibility.as_deref(), Some(compatibility.as_str()));
        prop_assert_eq!(meta.metadata.get(&meta_key).map(String::as_str), Some(meta_value.as_str()));
        prop_assert_eq!(meta.allowed_tools.as_ref(), Some(&tools));
        let before = skill.frontmatter_text().to_string();
        skill.set_field("description", &new_description).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = Skill::parse(&skill.to_markdown(), None).expect("set_field writes valid frontmatter");
        prop_assert_eq!(again.meta().description.as_deref(), Some(new_description.as_str()));
        prop_assert_eq!(&without_description(again.meta()), &without_description(&meta));
        // Byte for byte, only the description's lines changed.
        let others = |text: &str| {
            text.lines().filter(|l| !l.starts_with("description:") && l.starts_with(|c: char| !c.is_whitespace()))
                .map(str::to_string).collect::<Vec<_>>()
        };
        prop_assert_eq!(others(skill.frontmatter_text()), others(&before));
    }

    #[test]
    fn the_parser_never_panics(text in any_text(), prefix in prop_oneof![Just(""), Just("---\n"), Just("---\nname: x\n")]) {
        let _ = Skill::parse(&format!("{prefix}{text}"), None);
        let _ = Skill::parse(&format!("{prefix}{text}\n---\n{text}"), None);
    }
}
