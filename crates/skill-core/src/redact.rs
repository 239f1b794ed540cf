//! Secrets out of everything skd shows or keeps: transcripts, the terminal, `--json` output,
//! eval records, and other agents' logs read for mining.
//!
//! A [`Redactor`] recognizes secrets two ways:
//! - by value: the values of environment variables whose names say they hold a secret (KEY,
//!   TOKEN, SECRET, PASSWORD, CREDENTIAL, PASSPHRASE, AUTH), plus values the caller adds;
//! - by shape: OpenAI/Anthropic-style `sk-` keys, GitHub tokens (`ghp_`, `gho_`, `ghu_`,
//!   `ghs_`, `ghr_`, `github_pat_`), AWS access key ids (`AKIA`, `ASIA`), Slack tokens
//!   (`xoxb-`, `xoxp-`, ...), `Bearer` tokens, PEM private key blocks, the password of a
//!   URL's userinfo (`https://user:pass@host`), and the value of an assignment whose name
//!   says it is a secret (`DB_PASSWORD=...`, `aws_secret_access_key = ...`, `api_key: ...`,
//!   as `.env`, credentials and config files write them).
//!
//! Each is replaced by `[REDACTED]`.

use serde_json::Value;
use std::borrow::Cow;
use std::sync::OnceLock;

/// What replaces a secret.
pub const MARK: &str = "[REDACTED]";

/// Shortest environment value taken as a secret: shorter ones (`1`, `true`, `dev`) are
/// ordinary words that would blank out unrelated text.
const MIN_SECRET_CHARS: usize = 8;

/// Recognizes and removes secrets.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Known secret values, longest first (so a value containing another goes whole).
    values: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the values themselves.
        f.debug_struct("Redactor").field("values", &self.values.len()).finish()
    }
}

fn shapes() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(concat!(
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(-----END[A-Z0-9 ]*PRIVATE KEY-----|$)",
            r"|\bsk-[A-Za-z0-9_\-]{16,}",
            r"|\b(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}",
            r"|\bgithub_pat_[A-Za-z0-9_]{20,}",
            r"|\b(AKIA|ASIA)[0-9A-Z]{16}\b",
            r"|\bxox[abposr]-[A-Za-z0-9\-]{10,}",
            r"|(?i:\bbearer)\s+[A-Za-z0-9._~+/=\-]{16,}",
        ))
        .expect("valid regex")
    })
}

fn assignment() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    // NAME=value / NAME: value at the start of a line (quotes and `export` allowed): 1 what
    // comes before the name, 2 the name, 3 the separator, then the value. Narrower than
    // `is_secret_name` ("author: Jane" is not a secret).
    RE.get_or_init(|| {
        regex::Regex::new(concat!(
            r#"(?im)^(\s*(?:export\s+)?["']?)([a-z0-9_.\-]*"#,
            r"(?:secret|password|passwd|passphrase|token|credential|api[_\-]?key|access[_\-]?key|private[_\-]?key)",
            r#"[a-z0-9_.\-]*)(["']?\s*[=:]\s*)\S.*$"#,
        ))
        .expect("valid regex")
    })
}

fn userinfo() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    // scheme://user:password@host: the password goes, the user and host stay.
    RE.get_or_init(|| regex::Regex::new(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]*):[^\s/@]+@").expect("valid regex"))
}

/// True for an environment variable name that says it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "PASSPHRASE", "AUTH"].iter().any(|w| n.contains(w))
}

impl Redactor {
    /// Shapes only: no known values.
    pub fn new() -> Self {
        Redactor::default()
    }

    /// Shapes, plus the values of this process's secret-named environment variables.
    pub fn from_env() -> Self {
        Redactor::new().with_env(std::env::vars())
    }

    /// Adds the values of the secret-named variables among `vars`.
    pub fn with_env(self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let values: Vec<String> = vars.into_iter().filter(|(k, _)| is_secret_name(k)).map(|(_, v)| v).collect();
        self.with_values(values)
    }

    /// Adds known secret values (API keys the caller holds). Values shorter than 8
    /// characters are ignored.
    pub fn with_values(mut self, values: impl IntoIterator<Item = String>) -> Self {
        for v in values {
            let v = v.trim().to_string();
            if v.chars().count() >= MIN_SECRET_CHARS && !self.values.contains(&v) {
                self.values.push(v);
            }
        }
        self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        self
    }

    /// The text with every secret replaced by [`MARK`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = Cow::Owned(out.replace(v.as_str(), MARK));
            }
        }
        if shapes().is_match(&out) {
            out = Cow::Owned(shapes().replace_all(&out, MARK).into_owned());
        }
        if assignment().is_match(&out) {
            let replaced = assignment().replace_all(&out, |c: &regex::Captures| {
                // `max_tokens: 256` is a count of tokens, not one.
                if c[2].to_ascii_lowercase().ends_with("tokens") {
                    c[0].to_string()
                } else {
                    format!("{}{}{}{MARK}", &c[1], &c[2], &c[3])
                }
            });
            if replaced != out.as_ref() {
                out = Cow::Owned(replaced.into_owned());
            }
        }
        if userinfo().is_match(&out) {
            out = Cow::Owned(userinfo().replace_all(&out, format!("${{1}}:{MARK}@")).into_owned());
        }
        out
    }

    /// Redacts every string in a JSON value, object keys included.
    pub fn redact_json(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Cow::Owned(clean) = self.redact(s) {
                    *s = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    self.redact_json(&mut v);
                    map.insert(self.redact(&k).into_owned(), v);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_shape_is_removed() {
        let r = Redactor::new();
        for secret in [
            "sk-proj-abcdefghijklmnop0123",
            "sk-ant-api03-ABCDEFGHIJKLMNOPQRST",
            "ghp_0123456789abcdefghijABCDEFGHIJ",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
            "AKIAIOSFODNN7EXAMPLE",
            "xoxb-123456789012-abcdefghijkl",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
        ] {
            let text = format!("before {secret} after");
            let clean = r.redact(&text);
            assert_eq!(clean, format!("before {MARK} after"), "{secret}");
        }
        assert_eq!(r.redact("Authorization: Bearer abcdefghijklmnop.qrstuv"), format!("Authorization: {MARK}"));
        assert_eq!(
            r.redact("clone https://alice:hunter2pass@git.example.com/x.git"),
            format!("clone https://alice:{MARK}@git.example.com/x.git")
        );
        // Assignments whose name says they hold a secret, as .env and credentials files have.
        assert_eq!(
            r.redact("HOST=db.local\nDB_PASSWORD=hunter2xyz\nexport API_KEY=\"abc\""),
            format!("HOST=db.local\nDB_PASSWORD={MARK}\nexport API_KEY={MARK}")
        );
        assert_eq!(
            r.redact("[default]\naws_secret_access_key = wJalrXUtnFEMI\nregion = eu-west-1"),
            format!("[default]\naws_secret_access_key = {MARK}\nregion = eu-west-1")
        );
        assert_eq!(r.redact("  github_token: abc123"), format!("  github_token: {MARK}"));
        // A private key cut off before its end line still goes.
        assert_eq!(r.redact("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg"), MARK);
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        let r = Redactor::new();
        for text in [
            "ask-me anything",
            "the sk- prefix",
            "https://example.com/path?a=b",
            "user@example.com",
            "bearer of news",
            "author: Jane",
            "keyboard: US",
            "The password policy: twelve characters.",
            "max_tokens: 256",
        ] {
            assert_eq!(r.redact(text), text);
            assert!(matches!(r.redact(text), Cow::Borrowed(_)));
        }
    }

    #[test]
    fn values_of_secret_named_variables_are_removed() {
        let vars = [
            ("MY_SERVICE_TOKEN", "plain-value-123"),
            ("DB_PASSWORD", "short"),
            ("HOME", "/home/someone-long-path"),
            ("my_secret", "value-long-enough"),
        ];
        let r = Redactor::new().with_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        assert_eq!(r.redact("a plain-value-123 b"), format!("a {MARK} b"));
        assert_eq!(r.redact("x value-long-enough"), format!("x {MARK}"));
        assert_eq!(r.redact("short /home/someone-long-path"), "short /home/someone-long-path");
        assert!(!format!("{r:?}").contains("plain-value"), "Debug never shows values");
    }

    #[test]
    fn json_strings_and_keys_are_redacted() {
        let r = Redactor::new().with_values(["secret-value-9".to_string()]);
        let mut v = serde_json::json!({"task": "use secret-value-9", "args": {"secret-value-9": ["sk-abcdefghijklmnopqrst"]}, "n": 3});
        r.redact_json(&mut v);
        assert_eq!(v, serde_json::json!({"task": format!("use {MARK}"), "args": {MARK: [MARK]}, "n": 3}));
    }
}
