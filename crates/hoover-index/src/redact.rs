//! Secret redaction for everything the index holds and the server shows.
//!
//! Transcripts are full of pasted keys. The store keeps every byte; the index text, snippets and
//! pages get [`redact`]ed copies in which well-known secret shapes are replaced by
//! `[REDACTED:<kind>]`. Each rule is a regular expression whose whole match (or its `secret`
//! group, so `password=` stays readable) is replaced. The table of what is and is not redacted
//! lives in this module's tests.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;

struct Rule {
    kind: &'static str,
    re: Regex,
}

/// `(kind, pattern)`: a `secret` group, when present, is what gets replaced.
const RULES: &[(&str, &str)] = &[
    (
        "private-key",
        r"(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\z)",
    ),
    // A bare AWS secret access key (40 characters of base64) written within a few lines after
    // its access key id; before "aws-key", which removes the id it is recognised by.
    (
        "aws-secret",
        r"(?s)(?-u:\b)(?:AKIA|ASIA)[0-9A-Z]{16}(?-u:\b).{0,200}?(?-u:\b)(?P<secret>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|\z)",
    ),
    (
        "aws-key",
        r"(?-u:\b)(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}(?-u:\b)",
    ),
    ("google-key", r"(?-u:\b)AIza[0-9A-Za-z_\-]{35}"),
    (
        "api-key",
        r"(?-u:\b)sk-(?:ant-|proj-|live-|test-)?[A-Za-z0-9_\-]{20,}",
    ),
    (
        "github-token",
        r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})",
    ),
    ("gitlab-token", r"(?-u:\b)glpat-[A-Za-z0-9_\-]{20,}"),
    ("huggingface-token", r"(?-u:\b)hf_[A-Za-z0-9]{30,}"),
    ("npm-token", r"(?-u:\b)npm_[A-Za-z0-9]{36}"),
    ("slack-token", r"(?-u:\b)xox[abposr]-[A-Za-z0-9\-]{10,}"),
    (
        "stripe-key",
        r"(?-u:\b)[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",
    ),
    (
        "jwt",
        r"(?-u:\b)eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    ),
    // `NAME = value`, `"name": "value"` (also JSON inside a JSON string, `\"name\":\"value\"`),
    // `X-API-Key: value`, `GITHUB_TOKEN=value`.
    (
        "password",
        r#"(?i)(?-u:\b)[a-z0-9_]*?(?:password|passphrase|passwd|pwd|secret|private_?key|api[_-]?key|access_?key|secret_?key|access_?token|auth_?token|_token|token)(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?(?P<secret>[^\s"'`,;&\\]{4,})"#,
    ),
    (
        "basic-auth",
        r"(?i)(?-u:\b)authorization:\s*basic\s+(?P<secret>[A-Za-z0-9+/]{8,}=*)",
    ),
    (
        "url-password",
        r"(?-u:\b)[a-z][a-z0-9+.\-]*://[^\s:/@\[\]]+:(?P<secret>[^\s@/\[\]]{3,})@",
    ),
    (
        "bearer",
        r"(?i)(?-u:\b)bearer\s+(?P<secret>[A-Za-z0-9._~+/\-]{20,}=*)",
    ),
];

/// Whether a structured field of this name holds a secret as its whole value (`password`,
/// `api_key`, `clientSecret`, `X-API-Key`, `auth_token`, ...).
pub fn is_secret_field(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    const EXACT: [&str; 4] = ["token", "secret", "pwd", "passwd"];
    const PARTS: [&str; 8] = [
        "password",
        "passphrase",
        "apikey",
        "secret",
        "accesskey",
        "accesstoken",
        "authtoken",
        "privatekey",
    ];
    EXACT.contains(&n.as_str())
        || PARTS.iter().any(|p| n.contains(p))
        || (n.ends_with("token") && !n.ends_with("maxtoken") && !n.contains("tokens"))
}

fn rules() -> &'static [Rule] {
    static RULES_COMPILED: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES_COMPILED.get_or_init(|| {
        RULES
            .iter()
            .map(|(kind, pattern)| Rule {
                kind,
                re: Regex::new(pattern).expect("redaction patterns are valid"),
            })
            .collect()
    })
}

/// Every rule at once: one pass over a text says which rules can match at all.
fn rule_set() -> &'static regex::RegexSet {
    static SET: OnceLock<regex::RegexSet> = OnceLock::new();
    SET.get_or_init(|| {
        regex::RegexSet::new(RULES.iter().map(|(_, p)| p)).expect("redaction patterns are valid")
    })
}

/// A cheap pre-check: text without any of these bytes sequences has nothing to redact.
fn may_hold_secret(text: &str) -> bool {
    // Every rule needs a run of at least 16 token characters, or a `:`/`=` assignment.
    let mut run = 0;
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            run += 1;
            if run >= 16 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    text.contains("PRIVATE KEY") || text.contains(':') || text.contains('=')
}

/// `text` with every recognised secret replaced by `[REDACTED:<kind>]`.
pub fn redact(text: &str) -> Cow<'_, str> {
    if !may_hold_secret(text) {
        return Cow::Borrowed(text);
    }
    let matched = rule_set().matches(text);
    if !matched.matched_any() {
        return Cow::Borrowed(text);
    }
    let mut out: Cow<'_, str> = Cow::Borrowed(text);
    for (i, rule) in rules().iter().enumerate() {
        // A rule that matched nothing in the text matches nothing after earlier rules'
        // replacements either (they only put `[REDACTED:kind]` in).
        if !matched.matched(i) || !rule.re.is_match(&out) {
            continue;
        }
        let replaced = rule
            .re
            .replace_all(&out, |caps: &regex::Captures<'_>| {
                let whole = caps.get(0).expect("group 0 always matches");
                match caps.name("secret") {
                    Some(secret) if !is_plausible_secret(rule.kind, secret.as_str()) => {
                        whole.as_str().to_string()
                    }
                    Some(secret) => {
                        let start = secret.start() - whole.start();
                        let end = secret.end() - whole.start();
                        format!(
                            "{}[REDACTED:{}]{}",
                            &whole.as_str()[..start],
                            rule.kind,
                            &whole.as_str()[end..]
                        )
                    }
                    None => format!("[REDACTED:{}]", rule.kind),
                }
            })
            .into_owned();
        out = Cow::Owned(replaced);
    }
    out
}

/// Redaction of a text file read a line at a time, where a private key block spans lines: the
/// lines from `-----BEGIN … PRIVATE KEY-----` to its `-----END` line are redacted whole, and so
/// is any line that looks like key material on its own (40 or more base64 characters with
/// upper- and lower-case letters and digits, nothing else), in case the block began in an
/// earlier version.
#[derive(Debug, Default)]
pub struct LineRedactor {
    in_key: bool,
}

impl LineRedactor {
    pub fn redact<'t>(&mut self, line: &'t str) -> Cow<'t, str> {
        let begins = line.contains("-----BEGIN") && line.contains("PRIVATE KEY");
        let ends = line.contains("-----END") && line.contains("PRIVATE KEY");
        if self.in_key || (begins && !ends) {
            self.in_key = !ends;
            return Cow::Borrowed("[REDACTED:private-key]");
        }
        if looks_like_key_material(line.trim()) {
            return Cow::Borrowed("[REDACTED:key-material]");
        }
        redact(line)
    }
}

fn looks_like_key_material(s: &str) -> bool {
    s.len() >= 40
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        && s.bytes().any(|b| b.is_ascii_uppercase())
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && s.bytes().any(|b| b.is_ascii_digit())
}

/// Assignments and bearer headers are redacted only when the value looks like a secret, so
/// `password: string` in code or `Bearer authentication` in prose stay readable.
fn is_plausible_secret(kind: &str, value: &str) -> bool {
    if value.starts_with("[REDACTED:") {
        return false;
    }
    match kind {
        "bearer" => entropy_bits_per_char(value) >= 3.0,
        "password" => {
            // Code, not a value: a call (`api_key: anthropic_api_key()`), an index, a
            // number (`max_token=4096`).
            if value.contains('(')
                || value.contains('[')
                || value.bytes().all(|b| b.is_ascii_digit())
            {
                return false;
            }
            let placeholder = matches!(
                value.to_ascii_lowercase().as_str(),
                "string" | "str" | "none" | "null" | "true" | "false" | "undefined" | "required"
            ) || value.starts_with('$')
                || value.starts_with('{')
                || value.starts_with('<')
                || value.starts_with('(')
                || value.starts_with('*');
            !placeholder
        }
        _ => true,
    }
}

/// Shannon entropy of the characters of `s`, in bits per character.
fn entropy_bits_per_char(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is redacted: (input, the secret that must disappear, the kind that replaces it).
    const REDACTED: &[(&str, &str, &str)] = &[
        (
            "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE now",
            "AKIAIOSFODNN7EXAMPLE",
            "aws-key",
        ),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "password",
        ),
        (
            "key AIzaSyA1234567890abcdefghijklmnopqrstuv used",
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            "google-key",
        ),
        (
            "ANTHROPIC_API_KEY=sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345",
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345",
            "api-key",
        ),
        (
            "use sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123 for openai",
            "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123",
            "api-key",
        ),
        (
            "git clone https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/x/y",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "github-token",
        ),
        (
            "token github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
            "github-token",
        ),
        (
            "GITLAB=glpat-abcdefghij0123456789",
            "glpat-abcdefghij0123456789",
            "gitlab-token",
        ),
        (
            "slack xoxb-123456789012-abcdefghijkl",
            "xoxb-123456789012-abcdefghijkl",
            "slack-token",
        ),
        (
            "stripe sk_live_abcdefghijklmnop1234",
            "sk_live_abcdefghijklmnop1234",
            "stripe-key",
        ),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "jwt",
        ),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----",
            "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
            "private-key",
        ),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA75 (cut off",
            "MIIEpAIBAAKCAQEA75",
            "private-key",
        ),
        ("password=hunter2xyz", "hunter2xyz", "password"),
        ("DB_PASSWORD: \"s3cr3t-Pa55\"", "s3cr3t-Pa55", "password"),
        ("{\"api_key\": \"abcd1234efgh\"}", "abcd1234efgh", "password"),
        (
            "postgres://app:tops3cret@127.0.0.1:5432/db",
            "tops3cret",
            "url-password",
        ),
        (
            "Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0ZZyyXX",
            "9f8e7d6c5b4a39281706f5e4d3c2b1a0ZZyyXX",
            "bearer",
        ),
        (
            "curl -H 'Authorization: Basic dXNlcjpzM2NyZXQtcGFzcw==' https://api.example.org",
            "dXNlcjpzM2NyZXQtcGFzcw==",
            "basic-auth",
        ),
        (
            "HF_TOKEN is hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
            "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
            "huggingface-token",
        ),
        (
            "//registry.npmjs.org/:_authToken npm_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
            "npm_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
            "npm-token",
        ),
        (
            "curl -H \"X-API-Key: 3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c\" https://api.example.org",
            "3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c",
            "password",
        ),
        (
            "export GITHUB_TOKEN=gho_notquitelongenough123",
            "gho_notquitelongenough123",
            "password",
        ),
        (
            "AWS_ACCESS_KEY_ID AKIAIOSFODNN7EXAMPLE\nwJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws-secret",
        ),
        (
            "mcp__db__connect host: db.internal passphrase: correct-horse-battery",
            "correct-horse-battery",
            "password",
        ),
        (
            r#"echo "{\"password\":\"hunter2xyz\"}" > creds.json"#,
            "hunter2xyz",
            "password",
        ),
    ];

    /// What stays: ordinary text that merely resembles a secret.
    const KEPT: &[&str] = &[
        "the password: string field is required",
        "password = None",
        "password=${DB_PASSWORD}",
        "Bearer authentication is described in RFC 6750",
        "Bearer aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "fn parse_snake_case_identifier_names() {}",
        "commit 3f08459a1b2c3d4e5f60718293a4b5c6d7e8f901",
        "sk-learn is a library; risk-free",
        "-----BEGIN PUBLIC KEY----- is not secret",
        "https://example.org/path:with:colons@nothing",
        "cargo test --workspace --all-targets",
        "api_key: anthropic_api_key(),",
        "let token = tokens[0];",
        "max_token=4096 and max_tokens: 8192",
        "the tokenizer: word pieces",
        "Authorization: Basic realm",
        "a 40-character hash alone: 3f08459a1b2c3d4e5f60718293a4b5c6d7e8f901/x",
    ];

    #[test]
    fn known_secret_shapes_are_redacted() {
        for (input, secret, kind) in REDACTED {
            let out = redact(input);
            assert!(
                !out.contains(secret),
                "{input:?} -> {out:?} still holds the secret"
            );
            assert!(
                out.contains(&format!("[REDACTED:{kind}]")),
                "{input:?} -> {out:?} lacks [REDACTED:{kind}]"
            );
        }
    }

    #[test]
    fn ordinary_text_is_kept() {
        for input in KEPT {
            assert_eq!(redact(input), *input, "{input:?} was changed");
        }
    }

    #[test]
    fn a_key_block_read_line_by_line_is_redacted_whole() {
        let mut r = LineRedactor::default();
        let lines = [
            "notes",
            "-----BEGIN RSA PRIVATE KEY-----",
            "MIIEpAIBAAKCAQEA",
            "short",
            "-----END RSA PRIVATE KEY-----",
            "after",
            "3f08459a1b2c3d4e5f60718293a4b5c6d7e8f901",
            "QmFzZTY0IGtleSBtYXRlcmlhbCBsb29rcyBsaWtlIHRoaXMx",
        ];
        let out: Vec<String> = lines.iter().map(|l| r.redact(l).into_owned()).collect();
        assert_eq!(out[0], "notes");
        assert!(
            out[1..5].iter().all(|l| l == "[REDACTED:private-key]"),
            "{out:?}"
        );
        assert_eq!(out[5], "after");
        assert_eq!(out[6], lines[6], "a hex hash is not key material");
        assert_eq!(out[7], "[REDACTED:key-material]");
    }

    #[test]
    fn secret_field_names() {
        for name in [
            "password",
            "PASSWORD",
            "db_password",
            "passphrase",
            "api_key",
            "apiKey",
            "X-API-Key",
            "secret",
            "clientSecret",
            "client_secret",
            "token",
            "auth_token",
            "accessToken",
            "refresh_token",
            "private_key",
            "pwd",
        ] {
            assert!(is_secret_field(name), "{name} should be secret");
        }
        for name in [
            "command",
            "file_path",
            "description",
            "max_tokens",
            "input_tokens",
            "tokens",
            "keyboard",
            "passed",
            "author",
            "content",
        ] {
            assert!(!is_secret_field(name), "{name} should be kept");
        }
    }

    #[test]
    fn context_around_a_secret_survives() {
        assert_eq!(
            redact("password=hunter2xyz and more"),
            "password=[REDACTED:password] and more"
        );
    }
}
