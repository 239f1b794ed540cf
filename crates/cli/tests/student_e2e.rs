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
    assert_eq!(ids, ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "all-minilm-l6-v2"]);
    env.pull_smollm2();
    let path = env.ok(&["models", "path", "smollm2-135m"], 0);
    assert!(path.trim().ends_with("SmolLM2-135M-Instruct.Q4_1.gguf"), "{path}");
    // pulling a model that is there does nothing and says where it is
    let pulled = env.json(&["models", "pull", "smollm2-135m", "--json"], 0);
    assert_eq!(pulled["models"][0]["path"].as_str(), Some(path.trim()));
    // The spec `skd run --student` takes, engine prefix and all, names the same file.
    let pulled = env.json(&["models", "pull", "llama:smollm2-135m", "--json"], 0);
    assert_eq!(pulled["models"][0]["path"].as_str(), Some(path.trim()));
    assert_eq!(env.ok(&["models", "path", "mistral:smollm2-135m"], 0), path);
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
    // A task SmolLM2-135M answers right through the reply grammar (greedy decoding, so the
    // answer is the same on every run): the reply opens with the protocol's reasoning
    // opener, reasons, then the grammar takes it to the answer line. The answer must be
    // exactly "Paris": a broken grammar, parser or answer cleaning gives something else
    // (checked: expecting "Lyon" fails). On mistral.rs, whose CPU kernels are the same AVX2
    // code on every x86 machine: llama.cpp picks AVX-512 kernels where the CPU has them, and
    // a 135M model's greedy reply changes with them (llama.cpp's grammar replies are tested
    // in crates/student/tests/llama_cpp.rs).
    let out = env.run(&[
        "run",
        "--student",
        "mistral:smollm2-135m",
        "--max-steps",
        "2",
        "--reasoning-tokens",
        "64",
        "--json",
        "What is the capital of France?",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert_eq!(events[0]["event"], "start");
    assert_eq!(events[1]["event"], "retrieved");
    let last = events.last().expect("events");
    assert_eq!((last["event"].as_str(), last["outcome"].as_str()), (Some("finish"), Some("answered")), "{stdout}");
    assert_eq!(last["answer"], "Paris", "{stdout}");
    let calls: Vec<&Value> = events.iter().filter(|e| e["event"] == "model_call").collect();
    assert_eq!(calls.len(), 1, "one step, no correction: {stdout}");
    let output = calls[0]["output"].as_str().expect("output");
    assert!(output.starts_with(agent_loop::protocol::DEFAULT_REASONING_OPENER), "{output:?}");
    let last_line = output.trim_end().lines().last().unwrap_or_default();
    assert!(
        last_line.trim_start_matches('*').to_lowercase().starts_with("answer: ") && last_line.contains("Paris"),
        "the reply ends at its answer line: {output:?}"
    );
    // Read-only unless asked: no write_file without --write.
    let tools = |events: &[Value]| -> Vec<String> {
        events[0]["tools"].as_array().expect("tools").iter().map(|t| t.as_str().expect("name").to_string()).collect()
    };
    assert_eq!(tools(&events), ["calculate", "count_words", "find_lines", "list_dir", "read_file", "search_notes"]);
    // The transcript on disk holds the same events.
    let runs = env.path("data/skd/runs");
    let files: Vec<_> = std::fs::read_dir(&runs).expect("runs dir").collect();
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(files[0].as_ref().expect("entry").path()).expect("read");
    assert_eq!(text.lines().count(), events.len());

    let out = env.run(&[
        "run",
        "--student",
        "smollm2-135m",
        "--max-steps",
        "1",
        "--reasoning-tokens",
        "8",
        "--write",
        "--json",
        "hi",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first: Value = serde_json::from_str(stdout.lines().next().expect("start")).expect("json");
    assert!(tools(&[first]).contains(&"write_file".to_string()), "{stdout}");
}

#[test]
fn bench_reports_llama_cpp_counters_in_its_json() {
    let env = Env::new();
    env.pull_smollm2();
    let args = ["bench", "student", "--model", "smollm2-135m", "--prompts", "4", "--prefix-tokens", "200"];
    let args = [&args[..], &["--max-tokens", "4", "--modes", "llama-batched", "--json"]].concat();
    let out = env.run(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let batched = &report["results"][0];
    let counters = &batched["llama_cpp"];
    // One batch: the ~200-token prefix is prefilled once (into sequence 0) and copied into
    // each request's sequence, so fewer tokens are prefilled than the prompts hold.
    let shared = counters["shared_prompt_tokens"].as_u64().expect("shared_prompt_tokens");
    let prefilled = counters["prefill_tokens"].as_u64().expect("prefill_tokens");
    let prompt_tokens = batched["prompt_tokens"].as_u64().expect("prompt_tokens");
    assert!(shared >= 4 * 150, "{counters}");
    assert!(prefilled < prompt_tokens - 2 * 150, "{batched}");
    assert_eq!(counters["loaded_prompt_tokens"], 0, "no prefix cache on disk in the benchmark");
    // With --json the counters are in the report, not printed beside it.
    assert!(!stderr.contains("outside llama_decode"), "{stderr}");
}

#[test]
fn serve_answers_openai_compatible_requests() {
    let env = Env::new();
    env.pull_smollm2();
    // llama.cpp is served by skd's own endpoint, mistral.rs by mistralrs-server-core.
    for spec in ["llama:smollm2-135m", "mistral:smollm2-135m"] {
        serve_answers_on(&env, spec);
    }
}

fn serve_answers_on(env: &Env, spec: &str) {
    let server = env.serve(spec);
    let url = server.url.clone();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/v1"), "{url}");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let result = rt.block_on(async {
        let remote = OpenAiCompatStudent::new(&url, "default", None);
        let continues = remote.discover().await;
        let mut request = CompletionRequest::new(vec![ChatMessage::new(Role::User, "Give a color as JSON.")]);
        request.max_tokens = 40;
        request.json_schema = Some(json!({"type": "object", "properties": {"color": {"type": "string", "maxLength": 12}}, "required": ["color"], "additionalProperties": false}));
        let constrained = remote.complete(&request).await?;
        let plain = remote.complete(&CompletionRequest { json_schema: None, max_tokens: 8, ..request }).await?;
        // Continued, the reply starts where the assistant's message ends.
        let mut count = CompletionRequest::new(vec![
            ChatMessage::new(Role::User, "Count from 1 to 10, separated by commas."),
            ChatMessage::new(Role::Assistant, "1, 2, 3, 4,"),
        ]);
        count.max_tokens = 3;
        let counted = remote.complete(&count).await?;
        let down = OpenAiCompatStudent::new("http://127.0.0.1:9/v1", "default", None).complete(&CompletionRequest::new(vec![])).await;
        Ok::<_, skill_core::Error>((continues, constrained, plain, counted, down))
    });
    drop(server);
    let (continues, constrained, plain, counted, down) = result.expect("requests");
    // skd's own endpoint continues a last assistant message, as llama.cpp does in-process, and
    // lists it, so the agent loop's two-request reply works over HTTP; mistral.rs's does not.
    assert_eq!(continues, spec.starts_with("llama:"), "{spec}");
    if continues {
        assert!(counted.text.trim_start().starts_with('5'), "{spec}: {:?}", counted.text);
    }
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
        startup_timeout_secs: 20.0,
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
        startup_timeout_secs: 20.0,
    };
    let err = rt.block_on(McpServer::connect(&broken)).expect_err("no such program");
    assert!(err.to_string().contains("MCP server `ghost`") && err.to_string().contains("cannot start"), "{err}");
}

#[test]
fn an_mcp_server_that_never_answers_times_out_and_gets_only_its_declared_environment() {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    // Prints its environment to stderr, then never speaks MCP.
    let silent = McpServerConfig {
        name: "silent".into(),
        command: "sh".into(),
        args: vec!["-c".into(), "env >&2; sleep 30".into()],
        env: [("DECLARED_SETTING".to_string(), "yes".to_string())].into_iter().collect(),
        startup_timeout_secs: 1.0,
    };
    let started = std::time::Instant::now();
    let err = rt.block_on(McpServer::connect(&silent)).expect_err("no handshake").to_string();
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "the timeout ended the wait");
    assert!(err.contains("no handshake and tool list within 1s"), "{err}");
    // Its stderr is kept and shown; it saw PATH, HOME and what the config declares, not
    // skd's own environment (cargo sets CARGO_MANIFEST_DIR for this test process).
    assert!(err.contains("DECLARED_SETTING=yes") && err.contains("PATH="), "{err}");
    assert!(!err.contains("CARGO_MANIFEST_DIR"), "{err}");
}
