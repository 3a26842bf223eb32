//! Test and benchmark helpers, used only as a dev-dependency (and by the bench binary):
//! client keys, a real `hoover serve` process on port 0 with its own home, the `hoover`
//! command run with that home, and a seeded generator of Claude Code-like transcripts.
//!
//! Nothing here mocks a hoover component: the server is the real binary over real SSH.

pub mod corpus;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use russh::keys::ssh_key::rand_core::OsRng;
use russh::keys::{Algorithm, PrivateKey};

/// Writes a new ed25519 key pair: `path` (private, 0600) and `path.pub`. Returns the public
/// key line.
pub fn make_key(path: &Path) -> String {
    let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).expect("generate ed25519 key");
    hoover_server::write_private_key(&key, path).expect("write private key");
    let public = key.public_key().to_openssh().expect("encode public key");
    std::fs::write(path.with_extension("pub"), format!("{public}\n")).expect("write public key");
    public
}

/// Copies the directory `from` to `to`, recursively (a store fixture, a client's state).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Every file under `dir`, recursively, sorted (an unreadable directory counts as empty).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Records what a reliability test did (counts of kills, cuts, refusals...) as
/// `<tmpdir>/reliability/<name>.json`, for `scripts/reliability.sh` to put in
/// `docs/reliability.md`: the figures there come from test output, not from hand.
pub fn report(tmpdir: &str, name: &str, value: serde_json::Value) {
    let dir = Path::new(tmpdir).join("reliability");
    std::fs::create_dir_all(&dir).expect("create the reliability report dir");
    std::fs::write(dir.join(format!("{name}.json")), value.to_string())
        .expect("write a reliability report");
}

/// Polls `cond` until it holds (true) or `timeout` has passed (false).
fn polled(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Waits until `cond` holds, polling, or panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    if !polled(timeout, cond) {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// Waits until `get` returns `want`, polling, or panics after `timeout` saying what it last
/// returned (short of `want`, or past it: a count that overshoots never comes back).
pub fn wait_for_count(what: &str, timeout: Duration, want: u64, mut get: impl FnMut() -> u64) {
    let mut got = 0;
    if !polled(timeout, || {
        got = get();
        got == want
    }) {
        panic!("timed out after {timeout:?} waiting for {what}: {got}, not {want}");
    }
}

/// A home directory for one side (client or server), with XDG dirs inside it, so that no test
/// touches the real user's files.
pub struct Home {
    pub dir: PathBuf,
}

impl Home {
    pub fn new(parent: &Path, name: &str) -> Home {
        let dir = parent.join(name);
        std::fs::create_dir_all(dir.join(".ssh")).expect("create home");
        Home { dir }
    }

    pub fn apply(&self, cmd: &mut Command) {
        cmd.env("HOME", &self.dir)
            .env("XDG_CONFIG_HOME", self.dir.join(".config"))
            .env("XDG_DATA_HOME", self.dir.join(".local/share"))
            .env_remove("HOOVER_CONFIG")
            .env_remove("HOOVER_SERVER")
            .env_remove("CLAUDE_CONFIG_DIR")
            .env_remove("RUST_LOG");
    }
}

/// A running `hoover serve`, killed on drop.
pub struct ServerProcess {
    pub child: Child,
    pub ssh_port: u16,
    pub http_port: u16,
    pub store: PathBuf,
    pub log: PathBuf,
}

/// How to start a server.
pub struct ServerOptions {
    pub bin: PathBuf,
    pub home: PathBuf,
    pub store: PathBuf,
    pub authorized_keys: PathBuf,
    pub host_key: PathBuf,
    /// 0 picks a free port.
    pub ssh_port: u16,
    /// More `hoover serve` arguments.
    pub extra_args: Vec<String>,
    /// More environment variables for it. The server logs at `RUST_LOG=info` unless this sets
    /// `RUST_LOG`; an empty `RUST_LOG` here starts it with hoover's default logging.
    pub env: Vec<(String, String)>,
}

impl ServerOptions {
    /// The arguments of `hoover serve` for these options (HTTP on a free loopback port).
    pub fn serve_args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "serve".into(),
            "--store".into(),
            self.store.clone().into(),
            "--ssh-listen".into(),
            format!("127.0.0.1:{}", self.ssh_port).into(),
            "--http-listen".into(),
            "127.0.0.1:0".into(),
            "--authorized-keys".into(),
            self.authorized_keys.clone().into(),
            "--host-key".into(),
            self.host_key.clone().into(),
        ];
        args.extend(self.extra_args.iter().map(Into::into));
        args
    }
}

impl ServerProcess {
    pub fn start(opts: &ServerOptions) -> ServerProcess {
        let log = opts.home.join(format!("serve-{}.log", std::process::id()));
        let mut cmd = Command::new(&opts.bin);
        Home {
            dir: opts.home.clone(),
        }
        .apply(&mut cmd);
        cmd.args(opts.serve_args())
            .env("RUST_LOG", "info")
            .envs(opts.env.iter().map(|(k, v)| (k, v)));
        if opts
            .env
            .iter()
            .any(|(k, v)| k == "RUST_LOG" && v.is_empty())
        {
            cmd.env_remove("RUST_LOG");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn hoover serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log_path = log.clone();
        std::thread::spawn(move || {
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .expect("open server log");
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                use std::io::Write;
                let _ = writeln!(log, "{line}");
                if !sent {
                    if let Some(rest) = line.strip_prefix("hoover: listening ") {
                        let _ = tx.send(Ok(rest.to_string()));
                        sent = true;
                    }
                }
            }
            if !sent {
                let _ = tx.send(Err(()));
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(line)) => line,
            _ => {
                let _ = child.kill();
                panic!(
                    "hoover serve did not start; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let port = |name: &str| -> u16 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no {name} port in {line:?}"))
        };
        ServerProcess {
            ssh_port: port("ssh="),
            http_port: port("http="),
            child,
            store: opts.store.clone(),
            log,
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (a minute at most) until the server's log holds `needle`. The server writes its
    /// log to a pipe that a thread copies into the file, so a line can land a moment after the
    /// client saw what it says; a test reads it through this, never with a bare `log()`.
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !self.log().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "{needle:?} never reached the server log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client and a server on loopback, each with its own home, and one authorized client key.
pub struct World {
    pub bin: PathBuf,
    pub client_home: Home,
    pub server_home: Home,
    pub identity: PathBuf,
    pub server: ServerProcess,
    /// Last, because fields drop in order: the server is stopped before its directory is
    /// removed (removing it under a running server left half-deleted trees in `/tmp`).
    pub tmp: tempfile::TempDir,
}

impl World {
    pub fn new(bin: impl Into<PathBuf>) -> World {
        let bin = bin.into();
        let tmp = tempfile::tempdir().expect("tempdir");
        let client_home = Home::new(tmp.path(), "client");
        let server_home = Home::new(tmp.path(), "server");
        let identity = client_home.dir.join(".ssh/id_ed25519");
        let public = make_key(&identity);
        let authorized = server_home.dir.join("authorized_keys");
        std::fs::write(&authorized, format!("{public}\n")).expect("write authorized_keys");
        let server = ServerProcess::start(&ServerOptions {
            bin: bin.clone(),
            home: server_home.dir.clone(),
            store: server_home.dir.join("store"),
            authorized_keys: authorized,
            host_key: server_home.dir.join("host_key"),
            ssh_port: 0,
            extra_args: Vec::new(),
            env: Vec::new(),
        });
        World {
            tmp,
            bin,
            client_home,
            server_home,
            identity,
            server,
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn server_options(&self, ssh_port: u16) -> ServerOptions {
        ServerOptions {
            bin: self.bin.clone(),
            home: self.server_home.dir.clone(),
            store: self.server_home.dir.join("store"),
            authorized_keys: self.server_home.dir.join("authorized_keys"),
            host_key: self.server_home.dir.join("host_key"),
            ssh_port,
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Restarts the server on the same port and store.
    pub fn restart_server(&mut self) {
        self.restart_server_with(|_| {});
    }

    /// Restarts the server on the same port and store, with its options changed by
    /// `configure` (extra arguments, a fault seam's environment variable).
    pub fn restart_server_with(&mut self, configure: impl FnOnce(&mut ServerOptions)) {
        let mut opts = self.server_options(self.server.ssh_port);
        configure(&mut opts);
        self.server.kill();
        self.server = ServerProcess::start(&opts);
    }

    pub fn server_addr(&self) -> String {
        format!("127.0.0.1:{}", self.server.ssh_port)
    }

    /// A `hoover` command with the client's home and `--server` set for client commands.
    pub fn hoover(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        self.client_home.apply(&mut cmd);
        cmd.args(args);
        let client_command = matches!(
            args.first().copied(),
            Some("sync" | "watch" | "ls" | "versions" | "restore" | "search")
        );
        if client_command {
            cmd.arg("--server").arg(self.server_addr());
        }
        cmd
    }

    /// Runs `hoover ARGS` and returns its output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.hoover(args).output().expect("run hoover")
    }

    /// Runs `hoover ARGS`, panics unless it succeeds, and returns stdout.
    pub fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "hoover {args:?} failed ({}):\n{}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.server.log()
        );
        out.stdout
    }

    /// `hoover sync --source SOURCE --root c=DIR`, which must succeed; returns stdout.
    pub fn sync_dir(&self, source: &str, dir: &Path) -> Vec<u8> {
        self.ok(&[
            "sync",
            "--source",
            source,
            "--root",
            &format!("c={}", dir.display()),
        ])
    }

    /// `hoover verify` of the server's store: panics unless it is clean; returns the report.
    pub fn verify(&self) -> serde_json::Value {
        let store = self.server.store.display().to_string();
        let report = self.json(&["verify", "--store", &store]);
        assert_eq!(report["clean"], true, "{report}");
        report
    }

    /// Verifies the store, then restores every file under `root` from `<prefix>/<path>` and
    /// compares it byte for byte.
    pub fn check_restores(&self, root: &Path, prefix: &str) {
        self.verify();
        for path in files_under(root) {
            let rel = path.strip_prefix(root).expect("under root").display();
            let key = format!("{prefix}/{rel}");
            let restored = self.ok(&["restore", &key, "-o", "-"]);
            assert!(
                restored == std::fs::read(&path).expect("read the original"),
                "{key} restores byte for byte"
            );
        }
    }

    /// Restores the whole tree `prefix` in one `hoover restore --to` and compares every file
    /// under `root` with its copy, byte for byte. Returns how many files were compared.
    pub fn check_restored_tree(&self, root: &Path, prefix: &str) -> usize {
        let tree = self.path().join("restored");
        let _ = std::fs::remove_dir_all(&tree);
        self.ok(&[
            "restore",
            prefix,
            "--to",
            tree.to_str().expect("UTF-8 temp path"),
        ]);
        let files = files_under(root);
        for f in &files {
            let rel = f.strip_prefix(root).expect("under root");
            assert!(
                std::fs::read(tree.join(rel)).expect("restored file")
                    == std::fs::read(f).expect("original file"),
                "{prefix}/{} restores byte for byte",
                rel.display()
            );
        }
        files.len()
    }

    /// Runs `hoover ARGS --json` and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.ok(&args);
        serde_json::from_slice(&out).unwrap_or_else(|e| {
            panic!(
                "hoover {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out)
            )
        })
    }
}

/// Non-empty lines in every file under `root`: the messages the index should hold.
pub fn count_lines(root: &Path) -> u64 {
    files_under(root)
        .iter()
        .map(|f| {
            std::fs::read(f)
                .expect("read a transcript")
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count() as u64
        })
        .sum()
}

/// A plain HTTP/1.1 GET on loopback: returns the status code and the body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
