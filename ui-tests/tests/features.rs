//! The default build verifies every provider that signs with a shared secret; Discord (Ed25519)
//! and SendGrid (ECDSA) need a feature, and a route for one without it is a compile error that
//! names the feature. trybuild builds its cases with this package's features (both on), so
//! this test checks a crate of its own, with outworx-hooks' defaults, as a user's would be.

use std::path::Path;
use std::process::Command;

const MAIN: &str = r#"
use outworx_hooks::webhook;

#[webhook(provider = "stripe", secret = env("STRIPE_WEBHOOK_SECRET"))]
async fn stripe() -> &'static str { "ok" }

#[webhook(provider = "discord", secret = env("DISCORD_PUBLIC_KEY"))]
async fn discord() -> &'static str { "ok" }

#[webhook(provider = "sendgrid", secret = env("SENDGRID_VERIFICATION_KEY"))]
async fn sendgrid() -> &'static str { "ok" }

fn main() {
    let _ = axum::Router::<()>::new()
        .route("/stripe", axum::routing::post(stripe))
        .route("/discord", axum::routing::post(discord))
        .route("/sendgrid", axum::routing::post(sendgrid));
}
"#;

#[test]
fn a_provider_behind_a_feature_that_is_off_does_not_compile_and_names_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.canonicalize().expect("the workspace");
    // Beside the README's fresh crates (examples/tests/readme.rs), sharing their target.
    let dir = root.join("target/fresh-crates/feature-check");
    std::fs::create_dir_all(dir.join("src")).expect("mkdir");
    let hooks = root.join("outworx-hooks");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"feature-check\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\
             publish = false\n\n[workspace]\n\n[dependencies]\n\
             outworx-hooks = {{ path = {hooks:?} }}\naxum = \"0.8\"\n"
        ),
    )
    .expect("write Cargo.toml");
    std::fs::write(dir.join("src/main.rs"), MAIN).expect("write main.rs");
    // The workspace's lock: the same versions, and no index lookups to resolve them.
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).expect("copy Cargo.lock");
    let out = Command::new(env!("CARGO"))
        .args(["check", "--quiet", "--message-format", "short"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", root.join("target/fresh-crates/target"))
        .output()
        .expect("run cargo check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it compiled:\n{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("error[") || l.contains(": error"))
        .collect();
    // The two routes that need a feature, and nothing else (Stripe needs none).
    assert_eq!(errors.len(), 2, "{stderr}");
    assert!(
        stderr.contains(
            "#[webhook(provider = \"discord\")] needs the `ed25519` feature of outworx-hooks: features = [\"ed25519\"]"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "#[webhook(provider = \"sendgrid\")] needs the `ecdsa` feature of outworx-hooks: features = [\"ecdsa\"]"
        ),
        "{stderr}"
    );
    assert!(
        errors.iter().all(|l| l.contains("needs the `")),
        "only the features' errors: {errors:?}"
    );
}
