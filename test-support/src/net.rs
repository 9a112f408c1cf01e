//! Ports and directories a test can have to itself.

use std::path::PathBuf;

/// A free loopback port (one of the high ones if the system gives none).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(38_000)
}

/// An empty directory of this process's own, `outworx-<tag>-<pid>` under the system's
/// temporary directory (emptied if a previous run left it).
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("outworx-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    dir
}
