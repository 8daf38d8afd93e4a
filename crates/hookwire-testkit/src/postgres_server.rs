//! A real PostgreSQL server for tests: `initdb` in a temporary directory, `postgres` on a free
//! 127.0.0.1 port, stopped when dropped (or, for [`PostgresServer::shared`], when the test
//! process exits).
//!
//! PostgreSQL refuses to run as root. When the tests run as root (CI does), `initdb` and
//! `postgres` run as the `postgres` system user created by the Debian package, through `runuser`,
//! and the data directory is handed to that user.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A `postgres` on 127.0.0.1 with trust authentication for user `postgres`, tuned for tests
/// (`fsync=off`, `synchronous_commit=off`, `full_page_writes=off`): data does not survive a crash.
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// The watchdog shell: it runs `postgres` and stops it (immediate shutdown) when its stdin
    /// closes, so a test process that dies without dropping the server still stops it.
    child: Option<Child>,
    stdin: Option<ChildStdin>,
}

const PACKAGE_HINT: &str = "install the Debian package `postgresql` (apt-get install postgresql) \
                            or set HOOKWIRE_PG_BIN to the directory holding initdb and postgres";

/// The directory holding `initdb`, `postgres`, `pg_isready` and `psql`: `$HOOKWIRE_PG_BIN`, else
/// the newest `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("HOOKWIRE_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .map_err(|e| {
            format!(
                "no PostgreSQL under {} ({e}); {PACKAGE_HINT}",
                root.display()
            )
        })?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e
                .file_name()
                .to_str()?
                .split('.')
                .next()?
                .parse::<u32>()
                .ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).ok_or_else(|| {
        format!(
            "no postgres binary under {}; {PACKAGE_HINT}",
            root.display()
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command that runs `program` as the `postgres` user when we are root, else as ourselves.
fn as_db_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl PostgresServer {
    /// Starts a fresh server (initdb + postgres), waiting until it accepts connections.
    pub fn start() -> Result<Self, String> {
        let bin = bin_dir()?;
        let dir = crate::temp_dir("postgres");
        let data = dir.join("data");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !status.success() {
                return Err(format!(
                    "cannot hand {} to the `postgres` user (does it exist? {PACKAGE_HINT})",
                    dir.display()
                ));
            }
        }
        let out = as_db_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run initdb ({e}); {PACKAGE_HINT}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let port = crate::free_port();
        // sh: start postgres, wait for stdin to close, then stop postgres at once (SIGQUIT is
        // the immediate shutdown) and remove the data directory.
        let script = r#"postgres="$1"; shift; "$postgres" "$@" & pid=$!; cat >/dev/null; kill -QUIT "$pid" 2>/dev/null; wait "$pid"; rm -rf "$HW_DIR""#;
        // `env` passes the directory to the script: runuser does not keep our environment.
        let mut cmd = as_db_user(Path::new("/usr/bin/env"));
        cmd.arg(format!("HW_DIR={}", dir.display()))
            .args(["/bin/sh", "-c", script, "sh"])
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start postgres ({e}); {PACKAGE_HINT}"))?;
        let stdin = child.stdin.take();
        let mut server = PostgresServer {
            port,
            dir,
            bin,
            child: Some(child),
            stdin,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// One server for the whole test process, started on first use. It is stopped when the
    /// process exits (its watchdog sees the closed pipe); give each test its own database with
    /// [`create_database`](Self::create_database).
    pub fn shared() -> Result<&'static PostgresServer, String> {
        static SHARED: OnceLock<Result<PostgresServer, String>> = OnceLock::new();
        SHARED
            .get_or_init(PostgresServer::start)
            .as_ref()
            .map_err(Clone::clone)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(format!("postgres exited at start-up ({status})"));
            }
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "postgres on port {} was not ready within 30 s",
            self.port
        ))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of database `name` on this server.
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs SQL through `psql` as user `postgres` and returns its output.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-qAtc",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run psql ({e}); {PACKAGE_HINT}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "psql failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Creates a fresh, uniquely named database and returns its URL.
    pub fn create_database(&self) -> Result<String, String> {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "t_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            hookwire_core::id::random_u64() % 1_000_000
        );
        self.psql(&format!("CREATE DATABASE {name}"))?;
        Ok(self.database_url(&name))
    }

    /// Stops the server (immediate shutdown) and removes its data directory.
    pub fn stop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}
