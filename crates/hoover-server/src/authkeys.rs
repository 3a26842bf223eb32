//! The authorized_keys file: OpenSSH's format, read so that it fails closed.
//!
//! A line is a key with optional options. hoover understands these options:
//! - `hoover-allow="push"`: the key may push versions and deletions but not read anything.
//! - `hoover-source="NAME[,NAME…]"`: the key may push only under these sources (the first
//!   component of a key). A push-only key must have it.
//! - `from="PATTERN[,PATTERN…]"`: the peer's address must match, as OpenSSH matches it: `*` and
//!   `?` wildcards, `addr/len` CIDR blocks, and `!pattern` to refuse. hoover does no DNS, so
//!   host-name patterns never match.
//! - `restrict`, `no-pty`, `no-port-forwarding`, `no-agent-forwarding`, `no-X11-forwarding`,
//!   `no-user-rc`: restrictions hoover always applies (it offers no shell, pty, forwarding or
//!   rc file), so they change nothing.
//!
//! Any other option (`command=`, `permitopen=`, `environment=`, `expiry-time=`, `cert-authority`,
//! …) refuses its line: a key that was meant to be limited in a way hoover does not implement
//! must not get in unlimited. A malformed line is refused alone; the other keys still work.
//! Option names are matched without regard to case, as sshd does; values exactly.

use std::net::IpAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use hoover_proto::Access;
use russh::keys::ssh_key::{self, PublicKey};

/// One authorized key and what it may do.
#[derive(Clone, Debug)]
pub struct AuthorizedKey {
    pub key: PublicKey,
    pub access: Access,
    /// The sources this key may push under; `None`: any.
    pub sources: Option<Vec<String>>,
    /// `from=` patterns the peer address must match; `None`: any address.
    pub from: Option<Vec<String>>,
    pub comment: String,
    /// 1-based line number in the file, for logs.
    pub line: usize,
}

impl AuthorizedKey {
    /// Whether a peer at `ip` may use this key.
    pub fn allows_address(&self, ip: IpAddr) -> bool {
        match &self.from {
            None => true,
            Some(patterns) => match_address_list(ip, patterns),
        }
    }
}

/// A line that was refused, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedLine {
    pub line: usize,
    pub why: String,
}

/// What a file held: the usable keys and the refused lines.
#[derive(Clone, Debug, Default)]
pub struct KeyFile {
    pub keys: Vec<AuthorizedKey>,
    pub refused: Vec<RefusedLine>,
}

/// Reads an authorized_keys file, refusing it whole when others could write it (as sshd's
/// StrictModes does): a group- or world-writable file, or one in such a directory.
pub fn read_authorized_keys(path: &Path) -> Result<KeyFile> {
    Ok(parse(&read_checked(path)?))
}

/// The text of an authorized_keys file, after the permission check.
pub fn read_checked(path: &Path) -> Result<String> {
    check_permissions(path)?;
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the authorized keys file {}", path.display()))
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the authorized keys file {}", path.display()))?;
    if meta.mode() & 0o022 != 0 {
        bail!(
            "the authorized keys file {} is writable by group or others (mode {:o}), so anyone could add a key; refusing every key in it: run `chmod go-w {}`",
            path.display(),
            meta.mode() & 0o7777,
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::metadata(dir) {
            // A sticky directory (like /tmp) lets others create files but not replace this one.
            if d.mode() & 0o022 != 0 && d.mode() & 0o1000 == 0 {
                bail!(
                    "the directory {} of the authorized keys file is writable by group or others (mode {:o}), so anyone could replace the file; refusing every key in it: run `chmod go-w {}`",
                    dir.display(),
                    d.mode() & 0o7777,
                    dir.display()
                );
            }
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path) -> Result<()> {
    Ok(())
}

/// Parses the text of an authorized_keys file.
pub fn parse(text: &str) -> KeyFile {
    let mut out = KeyFile::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line, n + 1) {
            Ok(key) => out.keys.push(key),
            Err(why) => out.refused.push(RefusedLine { line: n + 1, why }),
        }
    }
    out
}

/// The options that only restrict what hoover never offers.
const NO_OP_RESTRICTIONS: &[&str] = &[
    "restrict",
    "no-pty",
    "no-port-forwarding",
    "no-agent-forwarding",
    "no-x11-forwarding",
    "no-user-rc",
];

fn parse_line(line: &str, number: usize) -> Result<AuthorizedKey, String> {
    let parse = |line: &str| {
        ssh_key::authorized_keys::AuthorizedKeys::new(line)
            .next()
            .transpose()
    };
    // ssh-key 0.6 cannot read a line with options and no comment; such a line is read with a
    // placeholder comment, which is then dropped.
    let (entry, placeholder) = match parse(line) {
        Ok(Some(entry)) => (entry, false),
        Ok(None) => return Err("no key on the line".into()),
        Err(first) => match parse(&format!("{line} -")) {
            Ok(Some(entry)) => (entry, true),
            _ => return Err(format!("not an authorized_keys line ({first})")),
        },
    };
    let mut access = Access::Full;
    let mut sources: Option<Vec<String>> = None;
    let mut from: Option<Vec<String>> = None;
    for option in entry.config_opts().iter() {
        let (name, value) = match option.split_once('=') {
            Some((n, v)) => (n.to_ascii_lowercase(), Some(v)),
            None => (option.to_ascii_lowercase(), None),
        };
        let quoted = |v: Option<&str>| -> Result<String, String> {
            match v.and_then(|v| v.strip_prefix('"')?.strip_suffix('"')) {
                Some(inner) if !inner.contains('"') => Ok(inner.to_string()),
                _ => Err(format!(
                    "option {name} needs a value in double quotes, like {name}=\"…\""
                )),
            }
        };
        match name.as_str() {
            "hoover-allow" => {
                let v = quoted(value)?;
                if v != "push" {
                    return Err(format!(
                        "hoover-allow=\"{v}\" is not a hoover right; the only one is hoover-allow=\"push\" (push, no reading); leave the option out for full access"
                    ));
                }
                if access == Access::PushOnly {
                    return Err("hoover-allow appears twice".into());
                }
                access = Access::PushOnly;
            }
            "hoover-source" => {
                if sources.is_some() {
                    return Err("hoover-source appears twice".into());
                }
                let v = quoted(value)?;
                let names: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
                for s in &names {
                    if let Err(e) = check_source_name(s) {
                        return Err(format!("hoover-source: {e}"));
                    }
                }
                sources = Some(names);
            }
            "from" => {
                if from.is_some() {
                    return Err("from appears twice".into());
                }
                let v = quoted(value)?;
                let patterns: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
                if patterns.iter().any(|p| p.is_empty() || p == "!") {
                    return Err(format!("from=\"{v}\" has an empty pattern"));
                }
                from = Some(patterns);
            }
            n if NO_OP_RESTRICTIONS.contains(&n) && value.is_none() => {}
            _ => {
                return Err(format!(
                    "option {option:?} is not one hoover implements (it knows hoover-allow, hoover-source, from, restrict and the no-* restrictions); the line is refused rather than let in without it"
                ))
            }
        }
    }
    if access == Access::PushOnly && sources.is_none() {
        return Err(
            "a push-only key (hoover-allow=\"push\") needs hoover-source=\"NAME\": the sources it may write; without it, it could add versions to every laptop's files".into(),
        );
    }
    Ok(AuthorizedKey {
        key: entry.public_key().clone(),
        access,
        sources,
        from,
        comment: if placeholder {
            String::new()
        } else {
            entry.public_key().comment().to_string()
        },
        line: number,
    })
}

/// A source name is one key component: not empty, no `/`, not `.` or `..`, no control
/// characters or backslashes.
pub fn check_source_name(name: &str) -> Result<(), String> {
    if name.contains('/') {
        return Err(format!("source name {name:?} contains '/'"));
    }
    hoover_types::Key::new(name)
        .map(|_| ())
        .map_err(|e| format!("source name {name:?}: {e}"))
}

/// OpenSSH's `from=` matching: any negated pattern that matches refuses; otherwise any plain
/// pattern that matches admits.
fn match_address_list(ip: IpAddr, patterns: &[String]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    let text = ip.to_string();
    let mut admitted = false;
    for p in patterns {
        let (negated, p) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p.as_str()),
        };
        let hit = match p.split_once('/') {
            Some((net, len)) => cidr_contains(net, len, ip),
            None => wildcard(p.as_bytes(), text.as_bytes()),
        };
        if hit && negated {
            return false;
        }
        admitted |= hit;
    }
    admitted
}

fn cidr_contains(net: &str, len: &str, ip: IpAddr) -> bool {
    let (Ok(net), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// `*` matches any run, `?` one character; case-insensitive, as OpenSSH's match_pattern.
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p].eq_ignore_ascii_case(&text[t])) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGpXwYq1l4mJp1D6o8I7Yb3n0R0wU9yW5H2mQk8q0Jf5";

    fn one(options: &str) -> Result<AuthorizedKey, String> {
        let file = parse(&format!("{options} {KEY} me@laptop\n"));
        match (file.keys.first(), file.refused.first()) {
            (Some(k), None) => Ok(k.clone()),
            (None, Some(r)) => Err(r.why.clone()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rights_and_sources_are_read() {
        let k = one("hoover-allow=\"push\",hoover-source=\"laptop,mini\"").unwrap();
        assert_eq!(k.access, Access::PushOnly);
        assert_eq!(k.sources, Some(vec!["laptop".into(), "mini".into()]));
        let k = one("").unwrap();
        assert_eq!(
            (k.access, k.sources, k.comment.as_str()),
            (Access::Full, None, "me@laptop")
        );
        // Options with no comment after the key.
        let file = parse(&format!(
            "hoover-allow=\"push\",hoover-source=\"a\" {KEY}\n"
        ));
        assert_eq!(file.keys[0].comment, "");
        assert_eq!(file.keys[0].access, Access::PushOnly);
        // Names without regard to case, as sshd.
        assert_eq!(
            one("HOOVER-ALLOW=\"push\",Hoover-Source=\"a\"")
                .unwrap()
                .access,
            Access::PushOnly
        );
    }

    #[test]
    fn what_is_not_understood_refuses_the_line() {
        for (options, says) in [
            ("hoover-allow=push,hoover-source=\"a\"", "double quotes"),
            (
                "hoover-allow=\"Push\",hoover-source=\"a\"",
                "not a hoover right",
            ),
            (
                "hoover-allow=\"read\",hoover-source=\"a\"",
                "not a hoover right",
            ),
            ("hoover-allow=\"push\"", "needs hoover-source"),
            ("hoover-source=\"a/b\"", "contains '/'"),
            ("hoover-source=\"..\"", "'..'"),
            ("hoover-source=\"\"", "empty"),
            ("command=\"/bin/true\"", "not one hoover implements"),
            ("permitopen=\"localhost:80\"", "not one hoover implements"),
            ("expiry-time=\"20300101\"", "not one hoover implements"),
            ("cert-authority", "not one hoover implements"),
            ("hoover-allow-all", "not one hoover implements"),
            ("from=*", "double quotes"),
        ] {
            let why = one(options).expect_err(options);
            assert!(why.contains(says), "{options}: {why}");
        }
        for fine in [
            "restrict",
            "no-pty,no-port-forwarding",
            "from=\"127.0.0.1\"",
        ] {
            one(fine).unwrap();
        }
    }

    #[test]
    fn one_bad_line_leaves_the_others() {
        let text = format!(
            "garbage here\ncommand=\"x\" {KEY} a\n{KEY} good\n# comment\n\nssh-ed25519 !!!\n"
        );
        let file = parse(&text);
        assert_eq!(file.keys.len(), 1);
        assert_eq!(file.keys[0].line, 3);
        let lines: Vec<usize> = file.refused.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![1, 2, 6]);
    }

    #[test]
    fn from_matches_as_openssh_does() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let m = |patterns: &str, addr: &str| {
            let list: Vec<String> = patterns.split(',').map(String::from).collect();
            match_address_list(ip(addr), &list)
        };
        assert!(m("127.0.0.1", "127.0.0.1"));
        assert!(!m("127.0.0.1", "127.0.0.2"));
        assert!(m("127.0.0.*", "127.0.0.2"));
        assert!(m("127.0.0.?", "127.0.0.2"));
        assert!(!m("127.0.0.?", "127.0.0.22"));
        assert!(m("10.0.0.0/8,127.0.0.0/8", "127.9.9.9"));
        assert!(!m("10.0.0.0/8", "127.9.9.9"));
        assert!(!m("127.0.0.0/8,!127.0.0.5", "127.0.0.5"));
        assert!(m("127.0.0.0/8,!127.0.0.5", "127.0.0.6"));
        assert!(
            !m("!127.0.0.5", "127.0.0.6"),
            "a negation alone admits nobody"
        );
        assert!(m("::1", "::1"));
        assert!(m("::/0", "::1"));
        assert!(
            m("127.0.0.1", "::ffff:127.0.0.1"),
            "mapped addresses match as v4"
        );
        assert!(!m("laptop.lan", "127.0.0.1"), "no DNS: names never match");
        assert!(!m("127.0.0.0/99", "127.0.0.1"));
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authorized_keys");
        std::fs::write(&path, format!("{KEY} a\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_authorized_keys(&path).unwrap().keys.len(), 1);
        for mode in [0o620, 0o602, 0o666] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = read_authorized_keys(&path).unwrap_err().to_string();
            assert!(e.contains("writable by group or others"), "{e}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = read_authorized_keys(&path).unwrap_err().to_string();
        assert!(e.contains("directory"), "{e}");
    }
}
