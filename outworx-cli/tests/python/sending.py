"""Our sending side against the Python libraries' own verification code.

usage: sending.py OUTWORX_BINARY

- `standardwebhooks` 1.1 (the Standard Webhooks reference library) verifies a `v1` message;
- a `v1a` (Ed25519) message is verified per the Standard Webhooks spec with `cryptography`
  (no released Python library verifies `v1a`);
- the `fastapihooks` format is verified with the verification code from fastapihooks'
  README, character for character.

Endpoints are added, a message sent and delivered with the `outworx` CLI (endpoints add,
send, worker) against a SQLite outbox; the receiver is a real HTTP server on loopback.
"""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook

OUTWORX = sys.argv[1]
SECRETS = {}
RESULTS = {}


# From fastapihooks' README ("Verifying signatures"), unchanged.
def verify_signature(payload: bytes, secret: str, header: str) -> bool:
    algorithm, _, received = header.partition("=")
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received)


def verify_v1a(public_key: str, headers, body: bytes) -> bool:
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key[len("whpk_"):]))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    for entry in headers["webhook-signature"].split(" "):
        version, _, sig = entry.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(sig), signed)
            return True
        except Exception:
            pass
    return False


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        name = self.path.strip("/")
        try:
            if name == "std":
                Webhook(SECRETS[name]).verify(body, headers)
                ok = json.loads(body)["type"] == "order.created"
            elif name == "v1a":
                ok = verify_v1a(SECRETS[name], headers, body)
            else:
                ok = verify_signature(body, SECRETS[name], headers["x-fastapihooks-signature"])
                ok = ok and headers["x-fastapihooks-event"] == "order.created"
                ok = ok and json.loads(body) == {"id": 1, "name": "é"}
        except Exception as e:  # a verification failure is a result, not a crash
            print(f"{name}: {e!r}")
            ok = False
        RESULTS[name] = ok
        self.send_response(200 if ok else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


def outworx(*args):
    out = subprocess.run([OUTWORX, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"outworx {' '.join(args)} failed: {out.stderr}")
    return out.stdout


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "outbox.db")
        allow = ["--allow-target", "127.0.0.1/32"]
        added = json.loads(outworx("endpoints", "add", "--db", db, "--url", f"{base}/std", "--json", *allow))
        SECRETS["std"] = added["secret"]
        seed = base64.b64encode(os.urandom(32)).decode()
        added = json.loads(outworx("endpoints", "add", "--db", db, "--url", f"{base}/v1a",
                                   "--secret", f"whsk_{seed}", "--json", *allow))
        assert added["secret"].startswith("whpk_"), added
        SECRETS["v1a"] = added["secret"]
        SECRETS["fh"] = "fastapihooks-shared-secret"
        outworx("endpoints", "add", "--db", db, "--url", f"{base}/fh", "--format", "fastapihooks",
                "--secret", SECRETS["fh"], *allow)
        outworx("send", "--db", db, "order.created", "--data", '{"id":1,"name":"é"}')
        worker = subprocess.Popen([OUTWORX, "worker", "--db", db, "--allow-target", "127.0.0.0/8"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 30
            while len(RESULTS) < 3 and time.time() < deadline:
                time.sleep(0.05)
        finally:
            worker.kill()
            worker.wait()
    server.shutdown()
    for name in ("std", "v1a", "fh"):
        verdict = RESULTS.get(name)
        print(f"{name}: {'verified' if verdict else 'FAILED' if verdict is False else 'never arrived'}")
    if all(RESULTS.get(n) for n in ("std", "v1a", "fh")):
        print("sending interop: all checks passed")
    else:
        sys.exit(1)


main()
