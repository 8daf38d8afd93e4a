//! A real `redis-server` child process for tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` on 127.0.0.1, killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
}

/// Options for [`RedisServer`].
#[derive(Debug, Default, Clone)]
pub struct RedisServerBuilder {
    aof: bool,
    extra: Vec<String>,
    port: Option<u16>,
}

impl RedisServerBuilder {
    /// Turns on append-only persistence (`appendfsync always`), for crash/restart tests.
    #[must_use]
    pub fn aof(mut self) -> Self {
        self.aof = true;
        self
    }
    /// Adds raw `redis-server` arguments.
    #[must_use]
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.extra.push(a.into());
        self
    }
    /// Uses a fixed port instead of a free one.
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    /// Starts the server and waits until it answers `PING`.
    pub fn start(self) -> Result<RedisServer, String> {
        let port = self.port.unwrap_or_else(crate::free_port);
        let dir = crate::temp_dir("redis");
        let mut args = vec![
            "--port".to_owned(),
            port.to_string(),
            "--bind".to_owned(),
            "127.0.0.1".to_owned(),
            "--save".to_owned(),
            String::new(),
            "--dir".to_owned(),
            dir.display().to_string(),
            "--daemonize".to_owned(),
            "no".to_owned(),
        ];
        if self.aof {
            args.extend(
                ["--appendonly", "yes", "--appendfsync", "always"]
                    .iter()
                    .map(|s| (*s).to_owned()),
            );
        } else {
            args.extend(["--appendonly", "no"].iter().map(|s| (*s).to_owned()));
        }
        args.extend(self.extra);
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            args,
        };
        server.spawn()?;
        Ok(server)
    }
}

/// Where `redis-server` is: `$HOOKWIRE_REDIS_SERVER`, else on `PATH`.
pub(crate) fn redis_binary() -> String {
    std::env::var("HOOKWIRE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

impl RedisServer {
    /// A non-persistent server on a free port.
    pub fn start() -> Result<Self, String> {
        RedisServerBuilder::default().start()
    }

    /// Options.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new(redis_binary())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start redis-server ({e}); install it with `apt-get install redis-server` \
                     or set HOOKWIRE_REDIS_SERVER"
                )
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "redis-server on port {} did not answer PING within 10 s",
            self.port
        ))
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server with SIGKILL (data not yet persisted is lost, as in a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and directory (AOF data is reloaded).
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()
    }

    /// Sends one inline command and returns the raw reply (for tests that poke at state).
    pub fn command(&self, line: &str) -> Result<String, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        s.write_all(format!("{line}\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
