//! A handler stays a function: a `let` of the same name elsewhere in the module is fine,
//! as it is for any function (a unit struct could not be shadowed).

use axum::{Router, routing::post};
use outworx_hooks::webhook;

#[webhook(provider = "stripe", secret = "whsec_x", idempotency)]
async fn stripe() -> &'static str {
    "ok"
}

fn client() -> u32 {
    let stripe = 42; // e.g. a Stripe API client
    stripe
}

fn main() {
    let _ = client();
    let _app: Router = Router::new().route("/stripe", post(stripe));
}
