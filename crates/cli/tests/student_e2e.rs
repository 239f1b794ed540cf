//! `skd run`, `skd serve`, `skd models` and `skd mcp` end to end, with the real SmolLM2-135M.

mod common;

use agent_loop::mcp::{McpServer, McpServerConfig};
use common::Env;
use serde_json::{Value, json};
use skill_core::{ChatMessage, CompletionRequest, Role, Student};
use student::OpenAiCompatStudent;

#[test]
fn models_list_and_path() {
    let env = Env::new();
    let list = env.json(&["models", "list", "--json"], 0);
    let ids: Vec<&str> =
        list["models"].as_array().expect("models").iter().map(|m| m["id"].as_str().expect("id")).collect();
    assert_eq!(ids, ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]);
    env.pull_smollm2();
    let path = env.ok(&["models", "path", "smollm2-135m"], 0);
    assert!(path.trim().ends_with("SmolLM2-135M-Instruct.Q4_1.gguf"), "{path}");
    // pulling a model that is there does nothing and says where it is
    let pulled = env.json(&["models", "pull", "smollm2-135m", "--json"], 0);
    assert_eq!(pulled["models"][0]["path"].as_str(), Some(path.trim()));
    env.stderr(&["models", "path", "no-such-model"], 3);
}

#[test]
fn bad_student_files_are_clear_errors() {
    let env = Env::new();
    let bad = env.path("work/broken.gguf");
    std::fs::write(&bad, b"definitely not a model").expect("write");
    let err = env.stderr(&["run", "--student", bad.to_str().expect("utf8"), "hello"], 5);
    assert!(err.contains("broken.gguf") && err.contains("not a GGUF file"), "{err}");
    let err = env.stderr(&["run", "--student", "gpt-17", "hello"], 5);
    assert!(err.contains("unknown model `gpt-17`") && err.contains("smollm2-135m"), "{err}");
}

#[test]
fn run_streams_steps_and_writes_a_transcript() {
    let env = Env::new();
    env.pull_smollm2();
    std::fs::write(env.path("work/notes.txt"), "The secret word is heliotrope.\n").expect("write");
    env.ok(&["skill", "new", "read-notes", "-d", "Read notes.txt and answer from it."], 0);
    let out = env.run(&[
        "run",
        "--student",
        "smollm2-135m",
        "--max-steps",
        "3",
        "--max-tokens",
        "96",
        "--json",
        "What is the secret word in notes.txt?",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert_eq!(events[0]["event"], "start");
    assert_eq!(events[1]["event"], "retrieved");
    assert_eq!(events[1]["skills"][0]["name"], "read-notes");
    assert!(events.iter().any(|e| e["event"] == "skill_activated"));
    let last = events.last().expect("events");
    assert_eq!(last["event"], "finish");
    assert!(matches!(last["outcome"].as_str(), Some("answered" | "step_budget_exhausted")), "{last}");
    // Constrained decoding: every reply the 135M model finished (not cut off at the token
    // limit) is a valid action for a known tool or a final answer.
    let calls: Vec<&Value> = events.iter().filter(|e| e["event"] == "model_call").collect();
    assert!(!calls.is_empty());
    let tools: Vec<&str> =
        events[0]["tools"].as_array().expect("tools").iter().map(|t| t.as_str().expect("name")).collect();
    for call in calls.iter().filter(|c| c["finish_reason"] == "stop") {
        let reply: Value =
            serde_json::from_str(call["output"].as_str().expect("output")).unwrap_or_else(|e| panic!("{e}: {call}"));
        let valid = reply["final_answer"].is_string()
            || reply["tool"].as_str().is_some_and(|t| tools.contains(&t) || t == "activate_skill");
        assert!(valid, "{reply}");
    }
    let finished = calls.iter().filter(|c| c["finish_reason"] == "stop").count();
    let invalid = events.iter().filter(|e| e["event"] == "invalid_reply").count();
    assert!(invalid <= calls.len() - finished, "only replies cut off at the token limit may be unusable: {stdout}");
    // The transcript on disk holds the same events.
    let runs = env.path("data/skd/runs");
    let files: Vec<_> = std::fs::read_dir(&runs).expect("runs dir").collect();
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(files[0].as_ref().expect("entry").path()).expect("read");
    assert_eq!(text.lines().count(), events.len());
}

#[test]
fn serve_answers_openai_compatible_requests() {
    let env = Env::new();
    env.pull_smollm2();
    let server = env.serve("smollm2-135m");
    let url = server.url.clone();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/v1"), "{url}");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let result = rt.block_on(async {
        let remote = OpenAiCompatStudent::new(&url, "default", None);
        let mut request = CompletionRequest::new(vec![ChatMessage::new(Role::User, "Give a color as JSON.")]);
        request.max_tokens = 40;
        request.json_schema = Some(json!({"type": "object", "properties": {"color": {"type": "string", "maxLength": 12}}, "required": ["color"], "additionalProperties": false}));
        let constrained = remote.complete(&request).await?;
        let plain = remote.complete(&CompletionRequest { json_schema: None, max_tokens: 8, ..request }).await?;
        let down = OpenAiCompatStudent::new("http://127.0.0.1:9/v1", "default", None).complete(&CompletionRequest::new(vec![])).await;
        Ok::<_, skill_core::Error>((constrained, plain, down))
    });
    drop(server);
    let (constrained, plain, down) = result.expect("requests");
    let value: Value = serde_json::from_str(&constrained.text).unwrap_or_else(|e| panic!("{e}: {}", constrained.text));
    assert!(value["color"].is_string(), "{value}");
    assert!(constrained.usage.prompt_tokens > 0);
    assert!(plain.usage.completion_tokens > 0 && plain.usage.completion_tokens <= 8);
    let err = down.expect_err("nothing listens on port 9");
    assert!(err.to_string().contains("cannot reach http://127.0.0.1:9/v1"), "{err}");
}

#[test]
fn skd_mcp_is_a_real_stdio_tool_source() {
    let env = Env::new();
    env.note("ops/deploy.md", "# Deploy\n\n## Rollback\n\nRun kubectl rollout undo.\n");
    env.ok(&["skill", "new", "k8s-rollback", "-d", "Roll back a deployment."], 0);
    env.ok(&["index"], 0);
    let mut vars = std::collections::BTreeMap::new();
    for (k, v) in [
        ("HOME", env.path("home")),
        ("XDG_CONFIG_HOME", env.path("config")),
        ("XDG_CACHE_HOME", env.path("cache")),
        ("XDG_DATA_HOME", env.path("data")),
        ("SKD_IMPORT_SKILL_DIRS", env.path("import")),
    ] {
        vars.insert(k.to_string(), v.to_string_lossy().into_owned());
    }
    let config = McpServerConfig {
        name: "skd".into(),
        command: env!("CARGO_BIN_EXE_skd").into(),
        args: vec!["mcp".into()],
        env: vars,
    };
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let server = McpServer::connect(&config).await.expect("connect");
        let tools = server.tools();
        let mut names: Vec<String> = tools.iter().map(|t| t.spec().name).collect();
        names.sort();
        assert_eq!(names, ["skd_list_skills", "skd_read_skill", "skd_search"]);
        let search = tools.iter().find(|t| t.spec().name == "skd_search").expect("search");
        let out = search.call(json!({"query": "rollout undo", "scope": "notes"})).await.expect("call");
        assert!(
            !out.is_error && out.content.contains("deploy.md:3-5") && out.content.contains("Deploy > Rollback"),
            "{}",
            out.content
        );
        let read = tools.iter().find(|t| t.spec().name == "skd_read_skill").expect("read");
        let out = read.call(json!({"name": "k8s-rollback"})).await.expect("call");
        assert!(out.content.contains("description: Roll back a deployment."), "{}", out.content);
        let missing = read.call(json!({"name": "nope"})).await.expect("call");
        assert!(missing.is_error && missing.content.contains("not found"), "{}", missing.content);
        let bad = search.call(json!({"query": "x", "scope": "everything"})).await.expect("call");
        assert!(bad.is_error);
    });
    let broken = McpServerConfig {
        name: "ghost".into(),
        command: "/nonexistent/server".into(),
        args: vec![],
        env: Default::default(),
    };
    let err = rt.block_on(McpServer::connect(&broken)).expect_err("no such program");
    assert!(err.to_string().contains("MCP server `ghost`") && err.to_string().contains("cannot start"), "{err}");
}
