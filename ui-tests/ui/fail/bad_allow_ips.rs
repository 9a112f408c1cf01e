use outworx_hooks::webhook;

#[webhook(provider = "github", secret = "s", allow_ips = ["192.0.2.0/24", "10.0.0.0/33", "example.com"])]
async fn listed() {}

#[webhook(provider = "github", secret = "s", allow_ips = "10.0.0.0/8")]
async fn not_a_list() {}

fn main() {}
