//! The Python package `outworx-hooks` 1.5 against `outworx serve`: its FastAPI middleware
//! reports to and dedupes through our backend, its `outworx forward` CLI tunnels through it,
//! and our `outworx trigger` passes its verifier. The checks live in `python/interop.py`; this
//! test makes the virtualenv (`python/venv.sh`, pinned in `python/requirements.txt`, built once
//! under the target directory) and runs the script against the `outworx` binary of this build.
//!
//! It needs `python3` with `venv` and network access to PyPI on its first run; `.ci/run`
//! installs `python3-venv` when it is missing. Without them the test fails with the reason:
//! an interop claim nobody checked is not one we make.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The virtualenv's python (made once, rebuilt when `requirements.txt` changes).
pub(crate) fn python() -> String {
    let outworx = Path::new(env!("CARGO_BIN_EXE_outworx"));
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    // target/<profile>/outworx → target/python-1.5, shared with the load bench.
    let venv: PathBuf = outworx
        .parent()
        .and_then(Path::parent)
        .expect("the binary lives in target/<profile>")
        .join("python-1.5");

    let made = Command::new("bash")
        .arg(here.join("venv.sh"))
        .arg(&venv)
        .output()
        .expect("bash runs");
    assert!(
        made.status.success(),
        "could not make the Python virtualenv (python3 with venv and PyPI access are needed):\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
    String::from_utf8_lossy(&made.stdout).trim().to_owned()
}

#[test]
fn the_python_package_reports_dedupes_and_tunnels_through_outworx_serve() {
    let outworx = Path::new(env!("CARGO_BIN_EXE_outworx"));
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let run = Command::new(python())
        .arg(here.join("interop.py"))
        .arg(outworx)
        .env_remove("OUTWORX_API_KEY")
        .env_remove("OUTWORX_ENDPOINT")
        .env_remove("OUTWORX_HOOKS_API_KEY")
        .env_remove("OUTWORX_HOOKS_ENDPOINT")
        .env("NO_COLOR", "1")
        .output()
        .expect("the venv's python runs");
    let out = String::from_utf8_lossy(&run.stdout);
    println!("{out}");
    assert!(
        run.status.success() && out.contains("interop: all checks passed"),
        "interop.py failed ({}):\n{out}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
}

/// Our messages pass the Python libraries' own verification: `standardwebhooks` (v1),
/// Ed25519 per the Standard Webhooks spec (v1a), and fastapihooks' documented check.
#[test]
fn our_messages_verify_with_the_python_libraries() {
    let outworx = Path::new(env!("CARGO_BIN_EXE_outworx"));
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let run = Command::new(python())
        .arg(here.join("sending.py"))
        .arg(outworx)
        .env_remove("OUTWORX_ALLOW_TARGETS")
        .output()
        .expect("the venv's python runs");
    let out = String::from_utf8_lossy(&run.stdout);
    println!("{out}");
    assert!(
        run.status.success() && out.contains("sending interop: all checks passed"),
        "sending.py failed ({}):\n{out}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
}
