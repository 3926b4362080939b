//! Real servers from Debian packages, started by a test on a free loopback port with their own
//! configuration in a temporary directory: `sshd` (openssh-server) and `tinyproxy`.
//!
//! A test that needs one calls [`Sshd::start`] / [`Tinyproxy::start`], which return `None`
//! (after printing why) when the server is not installed, so a developer without it still runs
//! the rest of the suite. With `SENTRY_REQUIRE_REAL=1` (CI) a missing server fails the test
//! instead. Both touch only 127.0.0.1 and stop when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// True when `SENTRY_REQUIRE_REAL=1`: a test must not skip for want of a server.
pub fn required() -> bool {
    std::env::var("SENTRY_REQUIRE_REAL").is_ok_and(|v| v == "1")
}

/// `None` (and a line saying why) when `program` is missing and skipping is allowed.
fn available(program: &str, package: &str) -> Option<PathBuf> {
    let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file());
    if found.is_none() {
        let why = format!("{program} is not installed (apt-get install -y {package})");
        assert!(!required(), "SENTRY_REQUIRE_REAL=1 but {why}");
        eprintln!("skipped: {why}");
    }
    found
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Waits until `port` accepts connections, or the child exits (its log then says why).
fn wait_listening(child: &mut Child, port: u16, log: &Path, what: &str) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}): {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{what} did not listen on {port} within 15 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ssh-keygen -t ed25519` without a passphrase: writes `path` (0600) and `path.pub`.
pub fn keygen(path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "sentry-test", "-f"])
        .arg(path)
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(path.with_extension("pub")).expect("public key").trim().to_string()
}

/// A real OpenSSH server on loopback, key-only logins for the current user.
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub user: String,
    /// The server's public host key line (`ssh-ed25519 AAAA...`).
    pub host_key: String,
    _dir: tempfile::TempDir,
}

impl Sshd {
    /// Starts sshd accepting the public keys `authorized` (lines `ssh-ed25519 AAAA...`).
    pub fn start(authorized: &[&str]) -> Option<Sshd> {
        let sshd = available("sshd", "openssh-server")?;
        let dir = tempfile::Builder::new().prefix("sentry-sshd-").tempdir().expect("tempdir");
        let d = dir.path();
        let host_key = keygen(&d.join("host_ed25519"));
        std::fs::write(d.join("authorized_keys"), authorized.join("\n") + "\n").expect("authorized_keys");
        let user =
            String::from_utf8_lossy(&Command::new("id").arg("-un").output().expect("id").stdout).trim().to_string();
        // sshd insists on its privilege separation directory, which only a booted system makes.
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = free_port();
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {keys}\n\
                 PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile none\n\
                 LogLevel ERROR\nAllowUsers {user}\n",
                host = d.join("host_ed25519").display(),
                keys = d.join("authorized_keys").display(),
            ),
        )
        .expect("sshd_config");
        let log = d.join("sshd.log");
        let mut child = Command::new(sshd)
            .arg("-D")
            .arg("-f")
            .arg(&config)
            .arg("-E")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        wait_listening(&mut child, port, &log, "sshd");
        Some(Sshd { child, port, user, host_key, _dir: dir })
    }

    /// The known_hosts line of this server.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key)
    }

    /// `ssh://USER@127.0.0.1:PORT/abs/path` of a repository at `path`.
    pub fn url(&self, path: &Path) -> String {
        format!("ssh://{}@127.0.0.1:{}{}", self.user, self.port, path.display())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real tinyproxy on loopback, configured like Debian's default: CONNECT only to the ports
/// given (443 and 563 there), plain http forwarded in absolute form.
pub struct Tinyproxy {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Tinyproxy {
    /// Starts tinyproxy allowing CONNECT to `connect_ports` only.
    pub fn start(connect_ports: &[u16]) -> Option<Tinyproxy> {
        let bin = available("tinyproxy", "tinyproxy")?;
        let dir = tempfile::Builder::new().prefix("sentry-tinyproxy-").tempdir().expect("tempdir");
        let port = free_port();
        let log = dir.path().join("tinyproxy.log");
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 50\nAllow 127.0.0.1\nLogLevel Info\nLogFile \"{}\"\n",
            log.display()
        );
        for p in [443, 563].iter().chain(connect_ports) {
            conf.push_str(&format!("ConnectPort {p}\n"));
        }
        // As root it would switch to a user of its own, who may not exist everywhere.
        if std::env::var("USER").as_deref() == Ok("root") || runs_as_root() {
            conf.push_str("User root\nGroup root\n");
        }
        let path = dir.path().join("tinyproxy.conf");
        std::fs::write(&path, conf).expect("tinyproxy.conf");
        let mut child = Command::new(bin)
            .arg("-d")
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tinyproxy");
        wait_listening(&mut child, port, &log, "tinyproxy");
        Some(Tinyproxy { child, port, dir })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What it logged (each request and CONNECT, with its target).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tinyproxy.log")).unwrap_or_default()
    }
}

/// Whether the tests run as root (`id -u` is 0).
fn runs_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
