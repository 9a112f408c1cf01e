//! A throwaway PostgreSQL server.

use std::process::{Command, Stdio};

use crate::process::Kill;

/// A throwaway PostgreSQL server on a free port (as the `postgres` user when run as root).
pub struct Postgres {
    server: Kill,
    dir: std::path::PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// The directory of PostgreSQL's `initdb` and `postgres`, if it is installed.
fn bin_dir() -> Option<std::path::PathBuf> {
    [
        "/usr/lib/postgresql/17/bin",
        "/usr/lib/postgresql/16/bin",
        "/usr/lib/postgresql/15/bin",
        "/usr/local/bin",
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|d| d.join("initdb").exists())
}

impl Postgres {
    /// Whether PostgreSQL is installed here ([`Postgres::start`] needs it).
    pub fn installed() -> bool {
        bin_dir().is_some()
    }

    /// Starts one (initdb, then postgres), as the `postgres` user when run as root.
    pub fn start() -> Postgres {
        let bin = bin_dir().expect("PostgreSQL is not installed (.ci/run installs it)");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir = std::env::temp_dir().join(format!("outworx-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        let as_user = |program: std::path::PathBuf| {
            if root {
                let _ = Command::new("chown")
                    .args(["-R", "postgres"])
                    .arg(&dir)
                    .status();
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            }
        };
        let data = dir.join("data");
        let ok = as_user(bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "initdb failed");
        let server = Kill(
            as_user(bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-p",
                    &port.to_string(),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-k",
                ])
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        Postgres { server, dir, port }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.server.0.kill();
        let _ = self.server.0.wait();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

impl Postgres {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}
