#!/usr/bin/env python3
"""Signature vectors for providers that publish none, computed by a second implementation.

Each scheme is written here from the provider's documentation with Python's `hmac` and
`cryptography` packages, independently of the Rust code; the printed Rust constants live in
`outworx-hooks/tests/vectors.rs`. Rerun: `python3 outworx-hooks/tests/vectors/independent.py`
(needs `pip install cryptography`).
"""
import base64, hashlib, hmac, json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

TS = 1700000000
BODY = b'{"id":"evt_1","object":"event","type":"payment_intent.succeeded","data":{"amount":2000,"currency":"eur"}}'
NON_UTF8 = b'\xff\xfe{"id":"evt_bin"}\x80'

def h(key, msg, algo=hashlib.sha256):
    return hmac.new(key, msg, algo).digest()

def hx(b): return b.hex()
def b64(b): return base64.b64encode(b).decode()

out = {}
out["stripe"] = f"t={TS},v1=" + hx(h(b"whsec_test_secret", f"{TS}.".encode() + BODY))
out["stripe_non_utf8"] = f"t={TS},v1=" + hx(h(b"whsec_test_secret", f"{TS}.".encode() + NON_UTF8))
out["github_non_utf8"] = "sha256=" + hx(h(b"gh_secret", NON_UTF8))
out["shopify"] = b64(h(b"shpss_test_secret", BODY))
out["paddle"] = f"ts={TS};h1=" + hx(h(b"pdl_ntfset_test", f"{TS}:".encode() + BODY))
out["calendly"] = f"t={TS},v1=" + hx(h(b"calendly_signing_key", f"{TS}.".encode() + BODY))
out["zoom"] = "v0=" + hx(h(b"zoom_secret_token", f"v0:{TS}:".encode() + BODY))
out["bitbucket"] = "sha256=" + hx(h(b"bb_secret", BODY))
out["intercom"] = "sha1=" + hx(h(b"intercom_client_secret", BODY, hashlib.sha1))
out["vercel"] = hx(h(b"vercel_secret", BODY, hashlib.sha1))
out["typeform"] = "sha256=" + b64(h(b"typeform_secret", BODY))
LINEAR_BODY = json.dumps({"action": "create", "type": "Issue", "webhookTimestamp": TS * 1000}, separators=(",", ":")).encode()
out["linear_body"] = LINEAR_BODY.decode()
out["linear"] = hx(h(b"lin_wh_secret", LINEAR_BODY))
out["lemonsqueezy"] = hx(h(b"lemon_secret", BODY))
out["razorpay"] = hx(h(b"razorpay_secret", BODY))
out["meta"] = "sha256=" + hx(h(b"meta_app_secret", BODY))
TW_ID, TW_TS = "e76c6bd4-55c9-4987-8304-da1588d8988b", "2023-11-14T22:13:20.123456789Z"
out["twitch"] = "sha256=" + hx(h(b"twitch_secret_1234", TW_ID.encode() + TW_TS.encode() + BODY))
MG_TOKEN = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
MG_SIG = hx(h(b"key-mailgun-test", f"{TS}{MG_TOKEN}".encode()))
out["mailgun_body"] = json.dumps({"signature": {"timestamp": str(TS), "token": MG_TOKEN, "signature": MG_SIG},
                                  "event-data": {"event": "delivered", "id": "CPgfbmQMTCKtHW6uIWtuVe"}}, separators=(",", ":"))
seed = bytes(range(32))
sk = Ed25519PrivateKey.from_private_bytes(seed)
pk = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
DISCORD_BODY = b'{"type":1,"id":"1","application_id":"2","token":"t","version":1}'
out["discord_public_key"] = hx(pk)
out["discord_body"] = DISCORD_BODY.decode()
out["discord"] = hx(sk.sign(f"{TS}".encode() + DISCORD_BODY))
sseed = bytes([9] * 32)
ssk = Ed25519PrivateKey.from_private_bytes(sseed)
spk = ssk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
out["standard_v1a_public"] = "whpk_" + b64(spk)
out["standard_v1a"] = "v1a," + b64(ssk.sign(b"msg_v1a." + f"{TS}".encode() + b"." + BODY))

for k, v in out.items():
    print(f'const {k.upper()}: &str = {json.dumps(v)};')
