"""The Python package outworx-hooks 1.5 against `outworx serve`.

    python interop.py /path/to/outworx

Run by `tests/python_interop.rs` with the virtualenv `venv.sh` makes. It shows that:

1. the package's FastAPI middleware reports its deliveries to `outworx serve` and dedupes
   retries through its idempotency endpoints (a retried event runs the handler once and gets
   the first response back);
2. the package's `outworx forward` CLI tunnels a public request through `outworx serve` to a
   local app and carries the response back, and closes its session on Ctrl+C;
3. a Stripe event signed by our `outworx trigger` passes the package's own verifier.

Every process is real: `outworx serve` on SQLite, uvicorn on loopback, the package's CLI.
Exits non-zero with the reason on the first thing that does not hold.
"""

import hashlib
import hmac
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import uvicorn
from fastapi import FastAPI, Request

import outworx_hooks
from outworx_hooks import TrackOptions
from outworx_hooks.integrations.fastapi import OutworxHooksMiddleware

SECRET = "whsec_interop_secret"
API_KEY = "ohk_" + secrets.token_hex(16)
TIMEOUT_S = 20.0


def ok(cond, what):
    if not cond:
        raise SystemExit(f"FAIL: {what}")
    print(f"ok: {what}", flush=True)


def stripe_request(event_id, secret=SECRET):
    body = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "payment_intent.succeeded",
            "data": {"object": {"id": "pi_" + event_id, "amount": 2000}},
        }
    ).encode()
    t = str(int(time.time()))
    sig = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return body, {"stripe-signature": f"t={t},v1={sig}", "content-type": "application/json"}


class Proc:
    """A child process whose output is read line by line on a thread (and echoed, indented)."""

    def __init__(self, name, argv, env=None):
        self.name = name
        self.lines = queue.Queue()
        self.seen = []
        self.p = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            line = line.rstrip("\n")
            print(f"    [{self.name}] {line}", flush=True)
            self.lines.put(line)

    def wait_for(self, needle):
        deadline = time.time() + TIMEOUT_S
        while time.time() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.p.poll() is not None:
                    raise SystemExit(f"FAIL: {self.name} exited ({self.p.returncode}) before {needle!r}")
                continue
            self.seen.append(line)
            if needle in line:
                return line
        raise SystemExit(f"FAIL: {self.name} did not print {needle!r} within {TIMEOUT_S}s")

    def interrupt(self, timeout):
        """Ctrl+C, then the exit code (killed after `timeout` seconds)."""
        self.p.send_signal(signal.SIGINT)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise SystemExit(f"FAIL: {self.name} did not exit within {timeout}s of Ctrl+C")

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def fastapi_app(runs):
    app = FastAPI()

    @app.post("/webhooks/stripe")
    async def stripe(request: Request):
        event = await request.json()
        runs[event["id"]] = runs.get(event["id"], 0) + 1
        request.state.outworx_track.processed()
        return {"received": event["id"], "run": runs[event["id"]]}

    def key(_request, body, _headers):
        return body.get("id") if isinstance(body, dict) else None

    app.add_middleware(
        OutworxHooksMiddleware,
        options=TrackOptions(
            provider="stripe",
            signature_secret=SECRET,
            event_type_field="type",
            idempotency_key=key,
            require_processing_mark=True,
        ),
    )
    return app


def start_uvicorn(app):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    deadline = time.time() + TIMEOUT_S
    while not server.started:
        if time.time() > deadline:
            raise SystemExit("FAIL: uvicorn did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def events(http, base, want):
    """The project's stored events once at least `want` are there (the SDK reports in batches)."""
    deadline = time.time() + TIMEOUT_S
    while True:
        r = http.get(f"{base}/api/events", params={"provider": "stripe"})
        if r.status_code != 200:
            raise SystemExit(f"FAIL: GET /api/events answered {r.status_code}: {r.text}")
        found = [e["event"] for e in r.json()["events"]]
        if len(found) >= want or time.time() > deadline:
            return found
        time.sleep(0.2)


def main():
    outworx = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="outworx-interop-")
    procs = []
    try:
        serve = Proc(
            "outworx serve",
            [outworx, "serve", "--listen", "127.0.0.1:0", "--db", os.path.join(tmp, "o.db"), "--api-key", API_KEY],
        )
        procs.append(serve)
        base = serve.wait_for("listening on").split("listening on ")[1].split()[0]
        auth = {"Authorization": f"Bearer {API_KEY}"}
        http = httpx.Client(headers=auth, timeout=TIMEOUT_S)

        runs = {}
        local = start_uvicorn(fastapi_app(runs))
        outworx_hooks.init(api_key=API_KEY, endpoint=f"{base}/api/ingest")
        hook = f"{local}/webhooks/stripe"

        # 1. The SDK reports to and dedupes through `outworx serve`.
        body, headers = stripe_request("evt_py_1")
        first = httpx.post(hook, content=body, headers=headers)
        ok(first.status_code == 200 and first.json() == {"received": "evt_py_1", "run": 1}, "first delivery runs the handler")
        body, headers = stripe_request("evt_py_1")
        again = httpx.post(hook, content=body, headers=headers)
        ok(again.status_code == 200 and again.text == first.text, "a retry gets the first response back")
        ok(runs["evt_py_1"] == 1, "a retry does not run the handler again")
        body, headers = stripe_request("evt_py_bad", secret="whsec_wrong")
        bad = httpx.post(hook, content=body, headers=headers)
        ok(bad.status_code == 401 and "evt_py_bad" not in runs, "a bad signature gets 401 and no handler run")

        check = http.post(f"{base}/api/sdk/idempotency/check", json={"key": "evt_py_1"}).json()
        ok(
            check.get("status") == "duplicate"
            and check.get("cached_status_code") == 200
            and check.get("cached_body") == first.text,
            f"`outworx serve` holds the completed key and its response: {check}",
        )

        found = events(http, base, 3)
        ok(len(found) == 3, f"three deliveries were reported (got {len(found)})")
        handled = [e for e in found if e["status_code"] == 200 and not (e.get("metadata") or {}).get("duplicate")]
        dup = [e for e in found if (e.get("metadata") or {}).get("duplicate") is True]
        rejected = [e for e in found if e["status_code"] == 401]
        ok(
            len(handled) == 1
            and handled[0]["signature_valid"] is True
            and handled[0]["event_type"] == "payment_intent.succeeded"
            and handled[0]["success"] is True,
            "the handled delivery is stored with its verdict and event type",
        )
        ok(len(dup) == 1 and dup[0]["status_code"] == 200, "the retry is stored as a duplicate")
        ok(
            len(rejected) == 1
            and rejected[0]["signature_valid"] is False
            and rejected[0]["error_message"].startswith("Invalid webhook signature"),
            "the rejected delivery is stored with signature_valid false",
        )
        ok(
            all(e["request_headers"].get("authorization") in (None, "[REDACTED]") for e in found),
            "stored headers carry no credentials",
        )

        # 2. The package's `outworx forward` tunnels through `outworx serve` to the same app.
        forward = Proc(
            "python outworx forward",
            [sys.executable, "-m", "outworx_hooks.cli", "forward", local, f"--api-key={API_KEY}", f"--endpoint={base}"],
            env={"PYTHONUNBUFFERED": "1", "NO_COLOR": "1"},
        )
        procs.append(forward)
        public = forward.wait_for("Public URL:").split("Public URL:")[1].strip()
        ok(public.startswith(f"{base}/t/"), f"the session's public URL is served by `outworx serve`: {public}")

        body, headers = stripe_request("evt_py_tunnel")
        res = httpx.post(f"{public}/webhooks/stripe?via=tunnel", content=body, headers=headers, timeout=TIMEOUT_S)
        ok(
            res.status_code == 200
            and res.json() == {"received": "evt_py_tunnel", "run": 1}
            and res.headers["content-type"] == "application/json",
            f"a public request reaches the local app through the tunnel and its response returns ({res.status_code} {res.text})",
        )
        forward.wait_for("POST /webhooks/stripe")
        body, headers = stripe_request("evt_py_tunnel")
        res2 = httpx.post(f"{public}/webhooks/stripe", content=body, headers=headers, timeout=TIMEOUT_S)
        ok(res2.status_code == 200 and res2.text == res.text and runs["evt_py_tunnel"] == 1, "a retry through the tunnel is deduped too")

        found = events(http, base, 5)
        tunneled = [e for e in found if "via=tunnel" in (e.get("source_url") or "")]
        ok(len(found) == 5 and len(tunneled) == 1, "the tunneled deliveries were reported, query string intact")

        # The CLI ends its long poll (up to 25 s) before it closes the session.
        code = forward.interrupt(timeout=40)
        ok(code == 0, f"the CLI exits cleanly on Ctrl+C ({code})")
        gone = httpx.post(f"{public}/webhooks/stripe", content=body, headers=headers)
        ok(gone.status_code == 404, f"its session is closed: the public URL answers {gone.status_code}")

        # 3. Our signer against the package's verifier.
        trig = subprocess.run(
            [outworx, "trigger", "stripe", "charge.succeeded", "--to", hook, "--secret", SECRET],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        ok(trig.returncode == 0 and "→ 200" in trig.stdout, f"`outworx trigger` passes the package's verifier: {trig.stdout.strip()}")

        code = serve.interrupt(timeout=TIMEOUT_S)
        ok(code == 0, f"`outworx serve` shuts down cleanly on Ctrl+C ({code})")
        print("interop: all checks passed", flush=True)
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
