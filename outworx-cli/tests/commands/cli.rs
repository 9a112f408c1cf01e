//! `outworx verify` as a user runs it: the real binary, real files, exit codes and output.
//! (It lives in this package because only here does cargo build and locate the binary.)

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use outworx_hooks::security::Provider;
use outworx_hooks::testing::{Signer, TestKeys};

const T: i64 = 1_700_000_000;

fn outworx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outworx"))
        .args(args)
        .output()
        .expect("run outworx")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `--header` arguments for every header of a signed request.
fn header_args(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
        .collect()
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("outworx-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn verify_args<'a>(provider: &'a str, secret: &'a str, headers: &'a [String]) -> Vec<&'a str> {
    let mut args = vec!["verify", "--provider", provider, "--secret", secret];
    for h in headers {
        args.extend(["--header", h.as_str()]);
    }
    args
}

#[test]
fn valid_request_exits_0() {
    let body = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
    let s = Signer::new(Provider::Stripe, "whsec_cli")
        .at(T)
        .sign(&body[..])
        .unwrap();
    let headers = header_args(&s.headers);
    let now = T.to_string();
    let mut args = verify_args("stripe", "whsec_cli", &headers);
    args.extend([
        "--body",
        r#"{"id":"evt_1","type":"charge.succeeded"}"#,
        "--now",
        &now,
    ]);
    let o = outworx(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "valid\n");
}

#[test]
fn tampered_request_exits_1_with_reason_and_hint() {
    let s = Signer::new(Provider::Github, "gh")
        .sign(&b"{\"a\":1}"[..])
        .unwrap();
    let headers = header_args(&s.headers);
    let mut args = verify_args("github", "gh", &headers);
    args.extend(["--body", "{\"a\":2}"]);
    let o = outworx(&args);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.starts_with("invalid: hmac_mismatch\nhint: "), "{out}");
}

#[test]
fn json_output_is_one_object() {
    let s = Signer::new(Provider::Slack, "sl")
        .at(T)
        .sign(&b"a=b"[..])
        .unwrap();
    let headers = header_args(&s.headers);
    let late = (T + 3600).to_string();
    let mut args = verify_args("slack", "sl", &headers);
    args.extend(["--body", "a=b", "--now", &late, "--json"]);
    let o = outworx(&args);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["reason"], "timestamp_drift");
    assert!(v["hint"].as_str().unwrap().contains("3600 s"));
    // A wider window accepts the same captured request.
    let mut args = verify_args("slack", "sl", &headers);
    args.extend([
        "--body",
        "a=b",
        "--now",
        &late,
        "--tolerance",
        "7200",
        "--json",
    ]);
    let o = outworx(&args);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"valid": true, "reason": null, "hint": null})
    );
}

#[test]
fn body_file_keeps_exact_bytes_even_when_not_utf8() {
    let body = b"\xff\x00binary\x80 body";
    let keys = TestKeys::for_provider(Provider::Shopify);
    let s = Signer::new(Provider::Shopify, &keys.signing)
        .sign(&body[..])
        .unwrap();
    let path = temp_file("body.bin", body);
    let headers = header_args(&s.headers);
    let mut args = verify_args("shopify", &keys.verifying, &headers);
    args.extend(["--body-file", path.to_str().unwrap()]);
    let o = outworx(&args);
    std::fs::remove_file(&path).ok();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn body_from_stdin() {
    let body = br#"{"id":"evt_stdin"}"#;
    let s = Signer::new(Provider::Github, "gh").sign(&body[..]).unwrap();
    let headers = header_args(&s.headers);
    let mut args = verify_args("github", "gh", &headers);
    args.extend(["--body-file", "-"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_outworx"))
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn rotation_and_url_signing_providers() {
    let url = "https://example.com/twilio/sms?x=1";
    let form = b"Body=hi&From=%2B15550001111";
    let s = Signer::new(Provider::Twilio, "old-token")
        .url(url)
        .sign(&form[..])
        .unwrap();
    let headers = header_args(&s.headers);
    let mut args = vec![
        "verify",
        "--provider",
        "twilio",
        "--secret",
        "new-token",
        "--secret",
        "old-token",
    ];
    for h in &headers {
        args.extend(["--header", h.as_str()]);
    }
    args.extend(["--body", "Body=hi&From=%2B15550001111", "--url", url]);
    let o = outworx(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // Without --url the hint says what is missing.
    let without: Vec<&str> = args[..args.len() - 2].to_vec();
    let o = outworx(&without);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("--url"), "{}", stdout(&o));
}

#[test]
fn usage_errors_exit_2() {
    let o = outworx(&[
        "verify",
        "--provider",
        "strype",
        "--secret",
        "s",
        "--body",
        "{}",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("did you mean `stripe`"),
        "{}",
        stderr(&o)
    );

    let o = outworx(&["verify", "--provider", "stripe", "--body", "{}"]);
    assert_eq!(o.status.code(), Some(2), "missing --secret");

    let o = outworx(&["verify", "--provider", "stripe", "--secret", "s"]);
    assert_eq!(o.status.code(), Some(2), "missing body");

    let o = outworx(&[
        "verify",
        "--provider",
        "stripe",
        "--secret",
        "s",
        "--body",
        "{}",
        "--header",
        "no colon",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("'Name: value'"));

    let o = outworx(&[
        "verify",
        "--provider",
        "svix",
        "--secret",
        "whsec_***",
        "--body",
        "{}",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not `whsec_`"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("***"), "secrets are never echoed");

    let o = outworx(&[
        "verify",
        "--provider",
        "github",
        "--secret",
        "s",
        "--body-file",
        "/nonexistent/x",
    ]);
    assert_eq!(o.status.code(), Some(2));

    let o = outworx(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}
