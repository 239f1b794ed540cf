//! `skd` end to end: the real binary on real folders, isolated from the user's config.

mod common;

use common::Env;
use serde_json::Value;
use std::fs;
use std::path::Path;

#[test]
fn help_and_version() {
    let env = Env::new();
    let help = env.ok(&["--help"], 0);
    for cmd in ["init", "index", "search", "get", "skill", "config"] {
        assert!(help.contains(cmd), "{help}");
    }
    assert!(help.contains("Exit codes"));
    let skill_help = env.ok(&["skill", "--help"], 0);
    for cmd in ["new", "list", "show", "validate", "history", "diff", "restore", "import"] {
        assert!(skill_help.contains(cmd), "{skill_help}");
    }
    assert!(env.ok(&["--version"], 0).starts_with("skd "));
    env.stderr(&["no-such-command"], 2);
    env.stderr(&["search"], 2);
    // A resumed distillation keeps the settings it began with: changing one is refused
    // before anything loads (the stop limits may be given again).
    for flag in [&["--no-bare-job"][..], &["--minibatch", "3"], &["--job", "Add numbers."]] {
        let args = [&["distill", "some-skill", "--resume"][..], flag].concat();
        let err = env.stderr(&args, 2);
        assert!(err.contains(flag[0]) && err.contains("cannot be used with"), "{err}");
    }
    // Flags whose default is applied after parsing still show the default the run will use.
    let distill_help = env.ok(&["distill", "--help"], 0);
    let defaults = optimizer::distill::DistillConfig::default();
    for (flag, default) in [
        ("--rounds", defaults.max_rounds.to_string()),
        ("--patience", defaults.patience.to_string()),
        ("--teacher-timeout", defaults.teacher_timeout_secs.to_string()),
        ("--minibatch", defaults.minibatch.to_string()),
    ] {
        let line = distill_help.lines().skip_while(|l| !l.contains(flag)).take(4).collect::<String>();
        assert!(line.contains(&format!("[default: {default}]")), "{flag}: {line}");
    }
}

#[test]
fn init_writes_config_and_folders_once() {
    let env = Env::new();
    let out = env.ok(&["init"], 0);
    assert!(out.contains("wrote"), "{out}");
    let cfg = env.path("config/skd/config.toml");
    assert!(cfg.is_file());
    assert!(env.skills_dir().is_dir());
    fs::write(&cfg, format!("{}\n# mine\n", fs::read_to_string(&cfg).expect("read"))).expect("edit");
    let again = env.ok(&["init"], 0);
    assert!(again.contains("exists"), "{again}");
    assert!(fs::read_to_string(&cfg).expect("read").contains("# mine"), "init must not overwrite");
    let shown = env.json(&["config", "show", "--json"], 0);
    assert_eq!(shown["config"]["config_file_exists"], true);
    assert_eq!(shown["config"]["notes"]["origin"], "file");
    assert_eq!(shown["config"]["import_skill_dirs"]["origin"], "env");
    assert!(shown["environment"]["SKD_NOTES"].is_string());
    // A config with an error: every command names the file and the line; `init --force`
    // replaces it.
    fs::write(&cfg, "notes = [\"a\"]\nmax_file_mb = \"lots\"\n").expect("edit");
    let err = env.stderr(&["config", "show"], 4);
    assert!(err.contains("config.toml") && err.contains("line 2"), "{err}");
    // A value of the right type that is out of range: the line too.
    fs::write(&cfg, "notes = [\"a\"]\n\nmax_file_mb = -1\n").expect("edit");
    let err = env.stderr(&["config", "show"], 4);
    assert!(err.contains("config.toml:3: max_file_mb must be a positive number"), "{err}");
    fs::write(&cfg, "engine = \"llama.cpp\"\n[tool_timeouts]\nshell = 0\n").expect("edit");
    let err = env.stderr(&["config", "show"], 4);
    assert!(err.contains("config.toml:3: tool_timeouts.shell must be a positive number"), "{err}");
    let forced = env.ok(&["init", "--force"], 0);
    assert!(forced.contains("wrote"), "{forced}");
    env.ok(&["config", "show"], 0);
    // `skd init` writes the file SKD_CONFIG names when it does not exist yet.
    let named = env.path("elsewhere/skd.toml");
    fs::create_dir_all(named.parent().expect("parent")).expect("mkdir");
    let out = env.cmd(&["init"]).env("SKD_CONFIG", &named).output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(named.is_file());
}

#[test]
fn skill_lifecycle_new_list_show_history_diff_restore() {
    let env = Env::new();
    let created = env.json(&["skill", "new", "pdf-extract", "-d", "Extract text from PDF files.", "--json"], 0);
    assert_eq!(created["version"]["version"], 1);
    let md = env.skills_dir().join("pdf-extract/SKILL.md");
    assert!(md.is_file());
    env.stderr(&["skill", "new", "pdf-extract", "-d", "again"], 5);
    let err = env.stderr(&["skill", "new", "Bad_Name", "-d", "x"], 5);
    assert!(err.contains("lowercase"), "{err}");

    let list = env.json(&["skill", "list", "--json"], 0);
    assert_eq!(list["skills"][0]["name"], "pdf-extract");
    assert_eq!(list["skills"][0]["versions"], 1);
    assert_eq!(list["skills"][0]["valid"], true);

    let shown = env.ok(&["skill", "show", "pdf-extract"], 0);
    assert_eq!(shown, fs::read_to_string(&md).expect("read"));
    let shown = env.json(&["skill", "show", "pdf-extract", "--json"], 0);
    assert_eq!(shown["frontmatter"]["description"], "Extract text from PDF files.");
    assert_eq!(shown["working_copy"]["state"], "recorded");
    env.stderr(&["skill", "show", "nope"], 3);
    let err = env.stderr(&["run", "--skill", "nope", "--student", "no-such-model", "do it"], 3);
    assert!(err.contains("nope"), "{err}");

    // a hand edit shows up in history and diff, and is kept when restoring
    let original = fs::read_to_string(&md).expect("read");
    fs::write(&md, original.replace("Extract text from PDF files.", "Extract text and tables from PDF files."))
        .expect("edit");
    let history = env.json(&["skill", "history", "pdf-extract", "--json"], 0);
    assert_eq!(history["working_copy"]["state"], "unrecorded");
    let diff = env.ok(&["skill", "diff", "pdf-extract"], 1);
    assert!(diff.contains("+description: Extract text and tables from PDF files."), "{diff}");
    let restored = env.json(&["skill", "restore", "pdf-extract", "v1", "--json"], 0);
    assert_eq!(restored["version"]["version"], 3);
    assert_eq!(fs::read_to_string(&md).expect("read"), original);
    let history = env.json(&["skill", "history", "pdf-extract", "--json"], 0);
    let versions = history["versions"].as_array().expect("array");
    assert_eq!(versions.len(), 3);
    assert!(versions[1]["message"].as_str().expect("msg").contains("edited outside skd"));
    let diff = env.ok(&["skill", "diff", "pdf-extract", "1", "2"], 1);
    assert!(diff.contains("-description: Extract text from PDF files."), "{diff}");
    assert_eq!(env.ok(&["skill", "diff", "pdf-extract", "1", "3"], 0).trim(), "no differences");
    env.stderr(&["skill", "restore", "pdf-extract", "9"], 3);
    env.stderr(&["skill", "restore", "pdf-extract", "latest"], 5);
    let human = env.ok(&["skill", "history", "pdf-extract"], 0);
    assert!(human.contains("v3") && human.contains("(current)"), "{human}");
    // A record edited by hand with a short hash is listed as it is, not a panic.
    let record = env.skills_dir().join("pdf-extract/.history/v0002.json");
    let mut info: Value = serde_json::from_str(&fs::read_to_string(&record).expect("read")).expect("json");
    info["hash"] = Value::from("ab\u{e9}");
    fs::write(&record, info.to_string()).expect("write");
    let human = env.ok(&["skill", "history", "pdf-extract"], 0);
    assert!(human.lines().any(|l| l.starts_with("v2") && l.contains(" ab\u{e9} ")), "{human}");
}

#[test]
fn validate_reports_all_problems_with_lines_and_exit_codes() {
    let env = Env::new();
    env.ok(&["skill", "new", "good-one", "-d", "Fine."], 0);
    let bad_dir = env.skills_dir().join("bad-one");
    fs::create_dir_all(&bad_dir).expect("mkdir");
    fs::write(bad_dir.join("SKILL.md"), "---\nname: Bad_One\ndescription: \"\"\ncolour: red\n---\nbody\n")
        .expect("write");

    let out = env.ok(&["skill", "validate"], 1);
    let path = bad_dir.join("SKILL.md");
    assert!(out.contains(&format!("{}:2: error[name-format]", path.display())), "{out}");
    assert!(out.contains(&format!("{}:3: error[description-empty]", path.display())), "{out}");
    assert!(out.contains(&format!("{}:4: warning[unknown-key]", path.display())), "{out}");
    assert!(out.contains("2 skill(s) checked: 1 invalid"), "{out}");

    env.ok(&["skill", "validate", "good-one"], 0);
    let v = env.json(&["skill", "validate", "good-one", "--json"], 0);
    assert_eq!(v["files"][0]["valid"], true);

    // strict mode turns unknown keys into errors
    let extra = env.skills_dir().join("extra");
    fs::create_dir_all(&extra).expect("mkdir");
    fs::write(extra.join("SKILL.md"), "---\nname: extra\ndescription: d\nauthor: me\n---\nbody\n").expect("write");
    env.ok(&["skill", "validate", "extra"], 0);
    let strict = env.json(&["skill", "validate", "extra", "--strict", "--json"], 1);
    assert_eq!(strict["files"][0]["diagnostics"][0]["severity"], "error");
    assert_eq!(strict["files"][0]["diagnostics"][0]["line"], 4);

    // paths work as targets, including a folder
    env.ok(&["skill", "validate", extra.to_str().expect("utf8")], 0);
    env.stderr(&["skill", "validate", "missing-skill"], 3);

    // unparseable files
    let broken = env.skills_dir().join("broken");
    fs::create_dir_all(&broken).expect("mkdir");
    fs::write(broken.join("SKILL.md"), b"\xff\xfe").expect("write");
    let out = env.ok(&["skill", "validate", "broken"], 1);
    assert!(out.contains("not valid UTF-8"), "{out}");
}

#[test]
fn index_search_get_end_to_end() {
    let env = Env::new();
    env.note("ops/deploy.md", "# Deploy\n\nShip it.\n\n## Rollback\n\nRun kubectl rollout undo to roll back.\n");
    env.note("cooking.md", "# Pasta\n\nBoil for nine minutes.\n");
    env.ok(&["skill", "new", "k8s-rollback", "-d", "Roll back a Kubernetes deployment safely."], 0);

    // search before any index builds it
    let first = env.json(&["search", "roll back", "--json"], 0);
    assert_eq!(first["hits"][0]["kind"], "skill", "{first:#}");
    assert_eq!(first["hits"][0]["name"], "k8s-rollback");

    let report = env.json(&["index", "--json"], 0);
    assert_eq!(report["report"]["files_read"], 0, "nothing changed since the search built the index");
    assert_eq!(report["report"]["files_indexed"], 3);

    let notes = env.json(&["search", "rollout", "undo", "--notes", "--json"], 0);
    let hit = &notes["hits"][0];
    assert_eq!(hit["kind"], "note");
    assert_eq!(hit["heading_path"], serde_json::json!(["Deploy", "Rollback"]));
    assert_eq!(hit["line_start"], 5);
    assert_eq!(hit["line_end"], 7);
    assert!(hit["snippet"].as_str().expect("snippet").contains("rollout"));
    assert_eq!(notes["hits"].as_array().expect("hits").len(), 1);

    let skills = env.json(&["search", "pasta", "--skills", "--json"], 1);
    assert_eq!(skills["hits"].as_array().expect("hits").len(), 0);
    let human = env.ok(&["search", "boil", "pasta", "-n", "1"], 0);
    assert!(human.contains("cooking.md:1-3"), "{human}");

    // Query syntax is never an error: each of these is searched as words, and none is in
    // the notes (exit 1: no hits).
    for q in ["\"unbalanced", "a:b (c", "[]{}^~*?\\", "日本語"] {
        let out = env.run(&["search", q, "--json"]);
        assert_eq!(out.status.code(), Some(1), "{q}: {:?}", out);
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(v["hits"].as_array().map(Vec::len), Some(0), "{q}: {v}");
    }
    let found = env.json(&["search", "rollout (", "--json"], 0);
    assert!(!found["hits"].as_array().expect("hits").is_empty(), "a stray parenthesis still finds words: {found}");

    // get: whole file, the section around a line, a range, JSON, and errors
    let section = env.ok(&["get", "ops/deploy.md:6"], 0);
    assert_eq!(section.trim_end(), "## Rollback\n\nRun kubectl rollout undo to roll back.");
    let range = env.ok(&["get", "ops/deploy.md:1-3"], 0);
    assert_eq!(range.trim_end(), "# Deploy\n\nShip it.");
    let whole = env.json(&["get", "cooking.md", "--json"], 0);
    assert_eq!(whole["line_end"], 3);
    let via_hit = env.json(&["get", &format!("{}:{}", hit["path"].as_str().expect("path"), 5), "--json"], 0);
    assert_eq!(via_hit["heading_path"], serde_json::json!(["Deploy", "Rollback"]));
    assert!(env.ok(&["get", "k8s-rollback"], 0).contains("name: k8s-rollback"));
    env.stderr(&["get", "nope.md"], 3);
    env.stderr(&["get", "cooking.md:99"], 3);

    // incremental: change one note
    std::thread::sleep(std::time::Duration::from_millis(20));
    env.note("cooking.md", "# Pasta\n\nBoil for ten minutes, then drain.\n");
    let report = env.json(&["index", "--json"], 0);
    assert_eq!(report["report"]["files_read"], 1);
    assert_eq!(report["report"]["updated"], 1);
    env.json(&["search", "drain", "--json"], 0);
}

#[test]
fn import_from_agent_folders() {
    let env = Env::new();
    let src = env.path("import/web-research");
    fs::create_dir_all(src.join("references")).expect("mkdir");
    fs::write(
        src.join("SKILL.md"),
        "---\nname: web-research\ndescription: Research a topic on the web.\n---\nSteps.\n",
    )
    .expect("write");
    fs::write(src.join("references/sources.md"), "list").expect("write");
    let list = env.json(&["skill", "list", "--json"], 0);
    assert_eq!(list["skills"][0]["writable"], false);
    env.stderr(&["skill", "restore", "web-research", "1"], 5);
    let imported = env.json(&["skill", "import", "web-research", "--json"], 0);
    assert_eq!(imported["version"]["version"], 1);
    assert!(env.skills_dir().join("web-research/references/sources.md").is_file());
    let list = env.json(&["skill", "list", "--json"], 0);
    assert_eq!(list["skills"][0]["writable"], true);
    assert_eq!(list["shadowed"].as_array().expect("arr").len(), 1);
    let again = env.stderr(&["skill", "import", "web-research"], 5);
    assert!(again.contains("already exists"), "{again}");
}

#[test]
fn config_errors_and_env_overrides() {
    let env = Env::new();
    let cfg = env.path("custom.toml");
    fs::write(&cfg, "notes = [\"notes-a\"]\nskils_dir = \"typo\"\n").expect("write");
    let err = env.stderr(&["--config", cfg.to_str().expect("utf8"), "config", "show"], 4);
    assert!(err.contains("custom.toml") && err.contains("skils_dir"), "{err}");
    fs::write(&cfg, "notes = [\"notes-a\"]\nmax_file_mb = -1\n").expect("write");
    env.stderr(&["--config", cfg.to_str().expect("utf8"), "config", "show"], 4);
    env.stderr(&["--config", "/nonexistent.toml", "config", "show"], 4);
    fs::write(&cfg, "[tool_timeouts]\nshell = 0\n").expect("write");
    let err = env.stderr(&["--config", cfg.to_str().expect("utf8"), "config", "show"], 4);
    assert!(err.contains("tool_timeouts.shell") && err.contains("positive"), "{err}");
    fs::write(&cfg, "teacher_prices = [0.15, -1]\n").expect("write");
    let err = env.stderr(&["--config", cfg.to_str().expect("utf8"), "config", "show"], 4);
    assert!(err.contains("teacher_prices"), "{err}");
    fs::write(&cfg, "[tool_timeouts]\nshell = 90\n").expect("write");
    env.ok(&["--config", cfg.to_str().expect("utf8"), "config", "show"], 0);

    fs::write(&cfg, "notes = [\"notes-a\"]\n").expect("write");
    let shown = env.json(&["--config", cfg.to_str().expect("utf8"), "config", "show", "--json"], 0);
    assert_eq!(shown["config"]["notes"]["value"][0], env.path("notes-a").to_str().expect("utf8"));
    let over = env
        .cmd(&["--config", cfg.to_str().expect("utf8"), "config", "show", "--json"])
        .env("SKD_NOTES", "/x:/y")
        .env("SKD_MAX_FILE_MB", "2")
        .output()
        .expect("run");
    let v: Value = serde_json::from_slice(&over.stdout).expect("json");
    assert_eq!(v["config"]["notes"]["value"], serde_json::json!(["/x", "/y"]));
    assert_eq!(v["config"]["notes"]["origin"], "env");
    assert_eq!(v["config"]["max_file_bytes"]["value"], 2 * 1024 * 1024);
    let bad = env.cmd(&["config", "show"]).env("SKD_MAX_FILE_MB", "lots").output().expect("run");
    assert_eq!(bad.status.code(), Some(4));
    assert_eq!(env.ok(&["config", "path"], 0).trim(), env.path("config/skd/config.toml").to_str().expect("utf8"));

    // The teacher: the file, SKD_TEACHER over it, OPENAI_MODEL (+ OPENAI_BASE_URL) when neither.
    let cfg_arg = cfg.to_str().expect("utf8");
    let teacher_of = |vars: &[(&str, &str)]| {
        let mut cmd = env.cmd(&["--config", cfg_arg, "config", "show", "--json"]);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run");
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        (v["config"]["teacher"]["value"].clone(), v["config"]["teacher"]["origin"].clone())
    };
    fs::write(&cfg, "teacher = \"http://127.0.0.1:9/v1#judge\"\n").expect("write");
    assert_eq!(teacher_of(&[]), (serde_json::json!("http://127.0.0.1:9/v1#judge"), serde_json::json!("file")));
    assert_eq!(teacher_of(&[("SKD_TEACHER", "qwen2.5-coder-1.5b")]).0, "qwen2.5-coder-1.5b");
    fs::write(&cfg, "").expect("write");
    assert_eq!(teacher_of(&[]).0, Value::Null);
    let (value, origin) = teacher_of(&[("OPENAI_MODEL", "gpt-4o-mini"), ("OPENAI_BASE_URL", "http://h:1/v1")]);
    assert_eq!((value, origin), (serde_json::json!("http://h:1/v1#gpt-4o-mini"), serde_json::json!("env")));
}

#[test]
fn two_processes_restoring_at_once_lose_no_version() {
    let env = Env::new();
    env.ok(&["skill", "new", "race", "-d", "first"], 0);
    let md = env.skills_dir().join("race/SKILL.md");
    fs::write(&md, "---\nname: race\ndescription: second\n---\nbody\n").expect("edit");
    env.ok(&["skill", "restore", "race", "1"], 0); // v2 = hand edit, v3 = restore of v1
    // Alternate between two contents so every restore records a version.
    let mut children = Vec::new();
    for i in 0..8 {
        let v = if i % 2 == 0 { "2" } else { "3" };
        children.push(
            env.cmd(&["skill", "restore", "race", v]).stdout(std::process::Stdio::null()).spawn().expect("spawn"),
        );
    }
    for mut c in children {
        assert!(c.wait().expect("wait").success());
    }
    let history = env.json(&["skill", "history", "race", "--json"], 0);
    let versions: Vec<u64> =
        history["versions"].as_array().expect("arr").iter().map(|v| v["version"].as_u64().expect("n")).collect();
    let n = versions.len() as u64;
    assert_eq!(versions, (1..=n).collect::<Vec<_>>(), "version numbers are dense and unique");
    assert!(n >= 4, "{versions:?}");
    for v in &versions {
        let p = env.skills_dir().join(format!("race/.history/v{v:04}.md"));
        assert!(Path::new(&p).is_file(), "{p:?}");
    }
    // The file on disk is one of the recorded versions.
    assert_eq!(history["working_copy"]["state"], "recorded");
}

#[test]
fn hub_model_specs_fail_clearly_when_the_hub_is_unreachable() {
    let env = Env::new();
    // A loopback port nothing listens on, as HF_ENDPOINT (a mirror) would name.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let out = env
        .cmd(&["models", "pull", "hf:acme/tiny/x.gguf"])
        .env("HF_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(5), "an other failure");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hf:acme/tiny/x.gguf") && err.contains("cannot reach"), "{err}");
    let bad = env.stderr(&["models", "pull", "hf:acme"], 5);
    assert!(bad.contains("hf:OWNER/REPO"), "{bad}");
}

/// The shell tool's sandbox: `skd __sandbox` confines a command with Landlock (this kernel
/// enforces it; the test says so if it does not), so a command cannot write outside the
/// folders it was given, through the real `Shell` tool as the agent calls it.
#[test]
fn shell_commands_cannot_write_outside_the_workspace() {
    use agent_loop::shell::{Shell, ShellConfig};
    use skill_core::Tool;
    let env = Env::new();
    let skd = std::path::PathBuf::from(env!("CARGO_BIN_EXE_skd"));
    let probe = env.ok(&["__sandbox", "--probe"], 0);
    assert_eq!(probe.trim(), "full", "this kernel must enforce Landlock for the test to mean anything");
    let workspace = env.path("work");
    let outside = env.path("outside.txt");
    let config = ShellConfig { sandbox_program: Some(skd), ..ShellConfig::default() };
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let run = |write: bool, command: String| {
        let shell = Shell::new(&workspace, write, config.clone());
        rt.block_on(shell.call(serde_json::json!({ "command": command }))).expect("call")
    };
    let inside = run(true, "echo hi > inside.txt && cat inside.txt".into());
    assert!(!inside.is_error && inside.content.contains("stdout:\nhi"), "{}", inside.content);
    let escaped = run(true, format!("echo leak > {}", outside.display()));
    assert!(escaped.is_error && escaped.content.contains("Permission denied"), "{}", escaped.content);
    assert!(!outside.exists(), "nothing was written outside the workspace");
    // A read-only run's shell writes nowhere, not even in the workspace.
    let read_only = run(false, "echo x > ro.txt".into());
    assert!(read_only.is_error && read_only.content.contains("Permission denied"), "{}", read_only.content);
    assert!(!workspace.join("ro.txt").exists());
    // It still reads, runs programs, and has a temporary folder of its own.
    let reads = run(false, "cat inside.txt && echo t > \"$TMPDIR/t\" && cat \"$TMPDIR/t\"".into());
    assert!(!reads.is_error && reads.content.contains("hi\nt"), "{}", reads.content);
}

#[test]
fn run_keeps_mcp_secrets_out_of_warnings_and_logs_and_honours_workspace_write() {
    let env = Env::new();
    let token = "tok-9f8e7d6c5b4a39281706";
    let cfg = env.path("config/skd/config.toml");
    fs::create_dir_all(cfg.parent().expect("parent")).expect("mkdir");
    // Two servers that log their token to stderr: one never speaks MCP, one is `skd mcp`.
    fs::write(
        &cfg,
        format!(
            "workspace_write = true\n\n[[mcp_servers]]\nname = \"leaky\"\ncommand = \"sh\"\n\
             args = [\"-c\", \"echo using $LEAKY_API_TOKEN >&2; sleep 30\"]\nstartup_timeout_secs = 1.0\n\
             [mcp_servers.env]\nLEAKY_API_TOKEN = \"{token}\"\n\n\
             [[mcp_servers]]\nname = \"wrapped\"\ncommand = \"sh\"\n\
             args = [\"-c\", \"echo using $LEAKY_API_TOKEN >&2; exec {skd} mcp\"]\n\
             [mcp_servers.env]\nLEAKY_API_TOKEN = \"{token}\"\n",
            skd = env!("CARGO_BIN_EXE_skd"),
        ),
    )
    .expect("config");
    // No student answers on port 9: the run ends with a model error after its start event.
    let out = env.run(&["run", "--json", "--no-transcript", "--student", "http://127.0.0.1:9/v1#m", "t"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stderr.contains("MCP server `leaky`") && stderr.contains("using [REDACTED]"), "{stderr}");
    assert!(!stderr.contains(token) && !stdout.contains(token), "{stderr}\n{stdout}");
    let start: serde_json::Value = serde_json::from_str(stdout.lines().next().expect("a start event")).expect("json");
    assert_eq!(start["event"], "start", "{stdout}");
    assert!(start["tools"].as_array().expect("tools").iter().any(|t| t == "write_file"), "{start}");
    // The stderr a connected server wrote is kept beside the transcript, redacted too.
    let out = env.run(&["run", "--student", "http://127.0.0.1:9/v1#m", "t"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let transcript = stderr.lines().find_map(|l| l.strip_prefix("transcript: ")).expect("a transcript");
    let log = std::path::Path::new(transcript).with_extension("mcp-wrapped.stderr");
    let log = fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}\n{stderr}", log.display()));
    assert!(log.contains("using [REDACTED]") && !log.contains(token), "{log}");
}

#[test]
fn the_confidence_that_activates_a_retrieved_skill_comes_from_the_config() {
    let env = Env::new();
    let skill = env.skills_dir().join("receipt-totals");
    fs::create_dir_all(&skill).expect("mkdir");
    fs::write(
        skill.join("SKILL.md"),
        "---\nname: receipt-totals\ndescription: Total the receipts in an expense file by adding up its amounts.\n---\n\n\
         1. Add the amounts.\n2. Answer with the total alone.\n",
    )
    .expect("skill");
    let student = common::Replay::start(vec![("receipts", "Let's think step by step. 4 + 5 = 9.\nAnswer: 9".into())]);
    let spec = format!("{}#replay", student.url);
    let cfg = env.path("config/skd/config.toml");
    fs::create_dir_all(cfg.parent().expect("parent")).expect("mkdir");
    let activations = |config: &str| -> Vec<Value> {
        fs::write(&cfg, config).expect("config");
        let out = env.run(&["run", "--json", "--no-transcript", "--student", &spec, "Total the receipts: 4 and 5."]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let events: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
        assert_eq!(events.last().expect("events")["answer"], "9", "{stdout}");
        events.into_iter().filter(|e| e["event"] == "skill_activated").collect()
    };
    // The only hit, and a threshold it clears: activated without asking the model.
    let low = activations("confident_min_score = 0.01\n");
    assert_eq!(low.len(), 1, "{low:?}");
    assert_eq!((low[0]["name"].as_str(), low[0]["reason"].as_str()), (Some("receipt-totals"), Some("confident")));
    // The same hit under a threshold no score reaches: left to the model, which answered.
    assert_eq!(activations("confident_min_score = 1000\n"), Vec::<Value>::new());
    fs::write(&cfg, "confident_ratio = 0.5\n").expect("config");
    let err = env.stderr(&["config", "show"], 4);
    assert!(err.contains("confident_ratio must be a number of at least 1"), "{err}");
}

/// Writes a session file as if its agent finished with it an hour ago (newer files are
/// sessions still being written, which `skd logs` leaves for later).
fn write_old_session(path: &std::path::Path, lines: &[serde_json::Value]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).expect("write");
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options().write(true).open(path).expect("open").set_modified(an_hour_ago).expect("mtime");
}

#[test]
fn logs_lists_the_episodes_of_each_agent_and_reads_only_what_is_new() {
    use serde_json::json;
    let env = Env::new();
    write_old_session(
        &env.path("home/.claude/projects/-home-ana/s-1.jsonl"),
        &[
            json!({"type": "user", "sessionId": "s-1", "cwd": "/home/ana", "timestamp": "2026-11-30T09:00:00Z", "message": {"role": "user", "content": "Total the amounts in expenses.csv"}}),
            json!({"type": "assistant", "sessionId": "s-1", "timestamp": "2026-11-30T09:00:05Z", "message": {"id": "m1", "role": "assistant", "content": [{"type": "text", "text": "The total is 40."}]}}),
            json!({"type": "user", "sessionId": "s-1", "timestamp": "2026-11-30T09:01:00Z", "message": {"role": "user", "content": "no, it is 42"}}),
        ],
    );
    write_old_session(
        &env.path("home/.codex/sessions/2026/12/02/rollout-2026-12-02T10-00-00-c-9.jsonl"),
        &[
            json!({"timestamp": "2026-12-02T10:00:00Z", "type": "session_meta", "payload": {"id": "c-9", "cwd": "/home/ana/site"}}),
            json!({"timestamp": "2026-12-02T10:00:00Z", "type": "event_msg", "payload": {"type": "user_message", "message": "Draft the weekly update"}}),
            json!({"timestamp": "2026-12-02T10:00:09Z", "type": "response_item", "payload": {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done."}]}}),
            json!({"timestamp": "2026-12-02T10:01:00Z", "type": "event_msg", "payload": {"type": "user_message", "message": "thanks!"}}),
        ],
    );
    let v = env.json(&["logs", "--json"], 0);
    let found: Vec<(&str, &str, &str)> = v["episodes"]
        .as_array()
        .expect("episodes")
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap_or(""),
                e["task"].as_str().unwrap_or(""),
                e["outcome"]["kind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("claude-code", "Total the amounts in expenses.csv", "failure"),
            ("codex", "Draft the weekly update", "success")
        ]
    );
    assert_eq!(v["episodes"][0]["outcome"]["correction"], "no, it is 42");
    assert_eq!(v["scan"]["read"], json!({"claude-code": 1, "codex": 1}));

    // A second run reads nothing again, and still lists both.
    let again = env.json(&["logs", "--json"], 0);
    assert_eq!(again["scan"]["read"], json!({}));
    assert_eq!(again["scan"]["unchanged"], json!({"claude-code": 1, "codex": 1}));
    assert_eq!(again["episodes"].as_array().map(Vec::len), Some(2));

    // Filters, and the text listing.
    let codex = env.json(&["logs", "--json", "--source", "codex", "--since", "2026-12-01"], 0);
    assert_eq!(codex["episodes"].as_array().map(Vec::len), Some(1));
    assert_eq!(env.json(&["logs", "--json", "--since", "2026-12-03"], 0)["episodes"], json!([]));
    let text = env.ok(&["logs"], 0);
    assert!(text.contains("claude-code  failure  Total the amounts in expenses.csv"), "{text}");
    assert!(env.stderr(&["logs", "--source", "emacs"], 2).contains("emacs"));
    assert!(env.stderr(&["logs", "--since", "last tuesday"], 2).contains("not a date"));
}

#[test]
fn logs_reads_the_agent_log_folders_the_config_adds() {
    use serde_json::json;
    let env = Env::new();
    // A Claude Code folder copied from another machine, named in the config.
    write_old_session(
        &env.path("old-laptop/.claude/projects/-home-ana/s-7.jsonl"),
        &[
            json!({"type": "user", "sessionId": "s-7", "cwd": "/home/ana", "timestamp": "2026-11-20T09:00:00Z", "message": {"role": "user", "content": "Sort the receipts by date"}}),
            json!({"type": "assistant", "sessionId": "s-7", "timestamp": "2026-11-20T09:00:05Z", "message": {"id": "m1", "role": "assistant", "content": [{"type": "text", "text": "Sorted."}]}}),
        ],
    );
    write_old_session(
        &env.path("home/.claude/projects/-home-ana/s-8.jsonl"),
        &[
            json!({"type": "user", "sessionId": "s-8", "cwd": "/home/ana", "timestamp": "2026-11-21T09:00:00Z", "message": {"role": "user", "content": "Rename the scans by their dates"}}),
            json!({"type": "assistant", "sessionId": "s-8", "timestamp": "2026-11-21T09:00:05Z", "message": {"id": "m1", "role": "assistant", "content": [{"type": "text", "text": "Renamed."}]}}),
        ],
    );
    let cfg = env.path("config/skd/config.toml");
    fs::create_dir_all(cfg.parent().expect("parent")).expect("mkdir");
    // Relative to the config file's folder; the default folder named again is read once.
    fs::write(&cfg, "[agent_log_dirs]\nclaude-code = [\"../../old-laptop/.claude\", \"../../home/.claude\"]\n")
        .expect("config");
    let v = env.json(&["logs", "--json"], 0);
    let tasks: Vec<&str> =
        v["episodes"].as_array().expect("episodes").iter().map(|e| e["task"].as_str().unwrap_or("")).collect();
    assert_eq!(tasks, ["Sort the receipts by date", "Rename the scans by their dates"]);
    assert_eq!(v["scan"]["read"], json!({"claude-code": 2}));
    let shown = env.json(&["config", "show", "--json"], 0);
    assert_eq!(shown["config"]["agent_log_dirs"]["origin"], "file");
    assert_eq!(shown["config"]["agent_log_dirs"]["value"]["claude_code"].as_array().map(Vec::len), Some(2));
    let listed = env.stderr(&["logs"], 0);
    assert!(listed.contains("old-laptop/.claude/projects"), "the folder is listed: {listed}");
    // An agent skd does not know is a config error naming the file and line.
    fs::write(&cfg, "\n[agent_log_dirs]\nemacs = [\"~/.emacs.d\"]\n").expect("config");
    let err = env.stderr(&["logs"], 4);
    assert!(err.contains("config.toml") && err.contains("line 3") && err.contains("emacs"), "{err}");
}

#[test]
fn feedback_on_a_run_becomes_its_outcome_in_logs() {
    use serde_json::json;
    let env = Env::new();
    write_old_session(
        &env.path("data/skd/runs/20261203T070000-ab.jsonl"),
        &[
            json!({"event": "start", "schema_version": 1, "run_id": "20261203T070000-ab", "time": "2026-12-03T07:00:00Z", "task": "Total expenses.csv", "student": "m", "max_steps": 8, "tools": []}),
            json!({"event": "finish", "outcome": "answered", "answer": "40", "steps": 1, "prompt_tokens": 1, "completion_tokens": 1, "elapsed_ms": 1, "error": null}),
        ],
    );
    let before = env.json(&["logs", "--json", "--wait-minutes", "0"], 0);
    assert_eq!(before["episodes"][0]["outcome"]["kind"], "success", "skd answered: {before}");
    assert!(
        env.ok(&["feedback", "20261203T070000-ab", "bad", "--note", "the total is 42"], 0).contains("recorded: bad")
    );
    // The transcript changed, so it is read again (nothing waits: --wait-minutes 0).
    let after = env.json(&["logs", "--json", "--wait-minutes", "0"], 0);
    assert_eq!(after["episodes"][0]["outcome"]["kind"], "failure");
    assert_eq!(after["episodes"][0]["outcome"]["correction"], "the total is 42");
    assert!(env.stderr(&["feedback", "no-such-run", "good"], 3).contains("no run `no-such-run`"));
    assert_eq!(env.run(&["feedback", "20261203T070000-ab", "meh"]).status.code(), Some(2));
}

#[test]
fn mine_proposes_a_job_that_recurs_across_agents_and_not_a_one_off() {
    use serde_json::json;
    let env = Env::new();
    let claude = |file: &str, task: &str| {
        write_old_session(
            &env.path(&format!("home/.claude/projects/-home-ana/{file}.jsonl")),
            &[
                json!({"type": "user", "sessionId": file, "timestamp": "2026-11-30T09:00:00Z", "message": {"role": "user", "content": task}}),
            ],
        )
    };
    write_old_session(
        &env.path("home/.claude/projects/-home-ana/a.jsonl"),
        &[
            json!({"type": "user", "sessionId": "a", "timestamp": "2026-11-30T09:00:00Z", "message": {"role": "user", "content": "Draft the weekly status update for the team"}}),
            json!({"type": "assistant", "sessionId": "a", "timestamp": "2026-11-30T09:00:09Z", "message": {"id": "m", "role": "assistant", "content": [{"type": "text", "text": "Shipped: login. Next: billing."}]}}),
            json!({"type": "user", "sessionId": "a", "timestamp": "2026-11-30T09:01:00Z", "message": {"role": "user", "content": "thanks!"}}),
        ],
    );
    claude("b", "Put together my weekly status update");
    claude("c", "Write a haiku about autumn");
    write_old_session(
        &env.path("home/.codex/sessions/2026/12/02/rollout-2026-12-02T10-00-00-c-9.jsonl"),
        &[
            json!({"timestamp": "2026-12-02T10:00:00Z", "type": "session_meta", "payload": {"id": "c-9", "cwd": "/home/ana"}}),
            json!({"timestamp": "2026-12-02T10:00:00Z", "type": "event_msg", "payload": {"type": "user_message", "message": "Write this week's status update for my manager"}}),
        ],
    );
    let suites = env.path("mined");
    let v = env.json(&["mine", "--json", "--write-suites", suites.to_str().expect("utf8")], 0);
    assert_eq!(v["episodes"], 4, "{v}");
    // The one settled episode (accepted) is the suite's one case, its answer the reference.
    assert_eq!(v["suites"].as_array().map(Vec::len), Some(1), "{v}");
    let suite_path = v["suites"][0]["path"].as_str().expect("path");
    assert!(suite_path.contains("/mined/mined-"), "{suite_path}");
    let suite: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(suite_path).expect("suite")).expect("json");
    assert_eq!(suite["evals"].as_array().map(Vec::len), Some(1), "{suite}");
    assert_eq!(suite["evals"][0]["prompt"], "Draft the weekly status update for the team");
    assert_eq!(suite["evals"][0]["expected_output"], "Shipped: login. Next: billing.");
    let proposals = v["proposals"].as_array().expect("proposals");
    assert_eq!(proposals.len(), 1, "{v}");
    assert_eq!((proposals[0]["kind"].as_str(), proposals[0]["episodes"].as_u64()), (Some("new"), Some(3)));
    assert!(proposals[0]["job"].as_str().is_some_and(|j| j.contains("status update")), "{v}");
    let files: Vec<&str> =
        proposals[0]["evidence"].as_array().expect("evidence").iter().filter_map(|e| e["file"].as_str()).collect();
    assert!(files.iter().all(|f| std::path::Path::new(f).is_absolute()) && files.len() == 3, "{files:?}");
    assert_eq!(proposals[0]["sources"], json!({"claude-code": 2, "codex": 1}));

    // With a teacher, the job is its sentence for the group and the central task is kept.
    let sentence = "Draft the weekly status update from what shipped and what comes next.";
    let teacher = common::Replay::start(vec![("same job on different days", sentence.into())]);
    let spec = format!("{}#replay", teacher.url);
    let named = env.json(&["mine", "--json", "--teacher", &spec], 0);
    assert_eq!(named["proposals"][0]["job"], sentence, "{named}");
    assert_eq!(named["proposals"][0]["central_task"], proposals[0]["job"], "{named}");
    let asked = teacher.requests.lock().expect("lock").clone();
    assert_eq!(asked.len(), 1, "one request a proposal");
    let prompt = asked[0]["messages"][1]["content"].as_str().expect("prompt");
    assert!(prompt.contains("the user accepted: Shipped: login. Next: billing."), "{prompt}");
}

#[test]
fn a_run_stopped_with_ctrl_c_is_recorded_as_interrupted() {
    let env = Env::new();
    // A student that takes its time, so the run is still going when it is stopped.
    let student = common::Replay::start_slow(vec![("", "Answer: 9".into())], std::time::Duration::from_secs(20));
    let spec = format!("{}#slow", student.url);
    let child = env
        .cmd(&["run", "--student", &spec, "--no-skill", "Add 4 and 5"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn skd run");
    let runs = env.path("data/skd/runs");
    let started = std::time::Instant::now();
    let transcript = loop {
        let found = std::fs::read_dir(&runs).ok().and_then(|mut d| d.next()).and_then(|e| e.ok()).map(|e| e.path());
        if let Some(path) = found.filter(|_| !student.requests.lock().expect("lock").is_empty()) {
            break path;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the run never reached the model");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let kill = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&transcript).expect("transcript");
    let last: serde_json::Value = serde_json::from_str(text.lines().last().expect("a line")).expect("json");
    assert_eq!((last["event"].as_str(), last["reason"].as_str()), (Some("aborted"), Some("interrupted")), "{text}");
    // Every line carries its time.
    assert!(text.lines().all(|l| l.contains("\"time\":\"20")), "{text}");
    let logs = env.json(&["logs", "--json", "--source", "skd", "--wait-minutes", "0"], 0);
    assert_eq!(logs["episodes"][0]["outcome"]["evidence"], "interrupted by the user", "{logs}");
}

#[test]
fn skill_export_copies_a_skill_to_another_agents_folder_and_keeps_a_different_one() {
    let env = Env::new();
    env.ok(&["skill", "new", "weekly-update", "-d", "Draft the weekly update. Use on Fridays."], 0);
    let skill_dir = env.skills_dir().join("weekly-update");
    std::fs::create_dir_all(skill_dir.join("evals")).expect("mkdir");
    std::fs::write(skill_dir.join("evals/evals.json"), "{}").expect("write");
    std::fs::create_dir_all(skill_dir.join("references")).expect("mkdir");
    std::fs::write(skill_dir.join("references/template.md"), "# Template\n").expect("write");
    let to = env.path("home/.claude/skills");
    let to_arg = to.to_str().expect("utf8");
    assert!(env.ok(&["skill", "export", "weekly-update", "--to", to_arg], 0).contains("exported weekly-update"));
    let exported = to.join("weekly-update");
    assert_eq!(
        std::fs::read_to_string(exported.join("SKILL.md")).expect("SKILL.md"),
        std::fs::read_to_string(skill_dir.join("SKILL.md")).expect("ours")
    );
    assert!(exported.join("references/template.md").is_file());
    assert!(!exported.join(".history").exists() && !exported.join("evals").exists(), "skd's own files stay home");
    assert!(env.ok(&["skill", "export", "weekly-update", "--to", to_arg], 0).contains("already holds"));
    // Another agent's own skill of that name is not overwritten unless asked.
    std::fs::write(exported.join("SKILL.md"), "---\nname: weekly-update\ndescription: Theirs.\n---\nTheirs.\n")
        .expect("write");
    assert!(env.stderr(&["skill", "export", "weekly-update", "--to", to_arg], 5).contains("--force"));
    assert!(std::fs::read_to_string(exported.join("SKILL.md")).expect("kept").contains("Theirs."));
    env.ok(&["skill", "export", "weekly-update", "--to", to_arg, "--force"], 0);
    assert!(!std::fs::read_to_string(exported.join("SKILL.md")).expect("replaced").contains("Theirs."));
    env.stderr(&["skill", "export", "no-such-skill", "--to", to_arg], 3);
}

#[test]
fn a_second_night_is_refused_while_one_runs() {
    let env = Env::new();
    let state = env.path("state");
    std::fs::create_dir_all(state.join("nightly")).expect("mkdir");
    // This test process plays the running night: it holds the lock.
    let lock = std::fs::File::create(state.join("nightly/lock")).expect("lock file");
    lock.try_lock().expect("lock");
    let out = env
        .cmd(&["nightly", "--teacher", "http://127.0.0.1:9/v1#none"])
        .env("SKD_STATE_DIR", &state)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another night is running"), "{stderr}");
    let status = env.cmd(&["nightly", "status"]).env("SKD_STATE_DIR", &state).output().expect("status");
    assert_eq!(String::from_utf8_lossy(&status.stdout).lines().next(), Some("a night is starting"));
    drop(lock);
    let status = env.cmd(&["nightly", "status"]).env("SKD_STATE_DIR", &state).output().expect("status");
    assert_eq!(String::from_utf8_lossy(&status.stdout).trim(), "no night has finished yet");
}

#[test]
fn nightly_install_without_a_scheduler_prints_the_line_to_add() {
    let env = Env::new();
    // No systemctl or crontab on this PATH.
    let empty = env.path("empty-bin");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let out = env
        .cmd(&["nightly", "install", "--at", "04:05"])
        .env("PATH", &empty)
        .env("SKD_STATE_DIR", env.path("state"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("5 4 * * * ") && line.contains(" nightly >> ") && line.ends_with("# skd-nightly"),
        "{stderr}"
    );
    let bad = env.cmd(&["nightly", "install", "--at", "25:00"]).env("PATH", &empty).output().expect("run");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--at 25:00: not a time of day"), "{bad:?}");
}

#[test]
fn thresholds_that_are_not_probabilities_are_refused_before_anything_runs() {
    let env = Env::new();
    for (args, flag) in [
        (&["nightly", "--gate-p", "0"][..], "--gate-p"),
        (&["nightly", "--gate-p", "1.5"][..], "--gate-p"),
        (&["distill", "some-skill", "--keep-p", "2"][..], "--keep-p"),
        (&["distill", "some-skill", "--keep-p", "nan"][..], "--keep-p"),
    ] {
        let stderr = env.stderr(args, 2);
        assert!(stderr.contains(flag) && stderr.contains("is not a probability in (0, 1]"), "{args:?}: {stderr}");
    }
}
