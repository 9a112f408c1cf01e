"""Svix's official Python client (PyPI `svix`, pinned in requirements.txt) against a real
`outworx serve --outbox-db DB --deliver`, end to end. Nothing here knows our code: every
call is the package's own, and every delivery is checked with the package's own `Webhook`.

    usage: svix_client.py SERVER_URL KEY_A KEY_B

Prints `svix: all checks passed` when every check held; raises on the first that did not.
"""

import datetime
import http.server
import json
import sys
import threading
import time

from svix.api import (
    AppPortalAccessIn,
    ApplicationIn,
    ApplicationPatch,
    EndpointHeadersIn,
    EndpointIn,
    EndpointPatch,
    EndpointSecretRotateIn,
    EventTypeIn,
    MessageAttemptListByEndpointOptions,
    MessageIn,
    MessageListOptions,
    RecoverIn,
    Svix,
    SvixOptions,
)
from svix.exceptions import HttpError, HTTPValidationError
from svix.webhooks import Webhook, WebhookVerificationError

server, key_a, key_b = sys.argv[1], sys.argv[2], sys.argv[3]
a = Svix(key_a, SvixOptions(server_url=server))
b = Svix(key_b, SvixOptions(server_url=server))


class Receiver(http.server.BaseHTTPRequestHandler):
    """Records every delivery; answers what `answers[path]` says (200 by default)."""

    received = []  # (path, headers, body)
    answers = {}
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with self.lock:
            self.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status = self.answers.get(self.path, 200)
        self.send_response(status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=receiver.serve_forever, daemon=True).start()
base = f"http://127.0.0.1:{receiver.server_address[1]}"


def deliveries(path, msg_id):
    with Receiver.lock:
        return [(h, body) for (p, h, body) in Receiver.received if p == path and h.get("webhook-id") == msg_id]


def wait_for(what, check, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def expect_error(status, call, code=None):
    try:
        call()
    except HttpError as e:
        assert e.status_code == status, f"expected {status}, got {e.status_code} {e.code}: {e.detail}"
        if code is not None:
            assert e.code == code, f"expected code {code}, got {e.code}"
        return e
    except HTTPValidationError as e:
        assert status == 422, f"expected {status}, got a 422: {e.detail}"
        return e
    raise AssertionError(f"expected a {status}, the call succeeded")


checks = []


def check(name):
    checks.append(name)
    print(f"ok: {name}", flush=True)


# Event types: created, listed, and a duplicate is a 409 in Svix's shape.
a.event_type.create(EventTypeIn(name="order.created", description="An order was placed"))
a.event_type.create(EventTypeIn(name="order.paid", description="An order was paid"))
expect_error(409, lambda: a.event_type.create(EventTypeIn(name="order.created", description="again")), "event_type_exists")
names = [e.name for e in a.event_type.list().data]
assert names == ["order.created", "order.paid"], names
check("event types, and a 409 on a duplicate")

# Applications: both projects have an `acme`, and never meet.
app_a = a.application.create(ApplicationIn(name="Acme", uid="acme", metadata={"plan": "pro"}))
app_b = b.application.create(ApplicationIn(name="Acme of B", uid="acme"))
assert app_a.id != app_b.id
assert a.application.get("acme").id == app_a.id
assert b.application.get("acme").id == app_b.id
assert a.application.get_or_create(ApplicationIn(name="Acme", uid="acme")).id == app_a.id
expect_error(409, lambda: a.application.create(ApplicationIn(name="Acme", uid="acme")), "conflict")
assert [x.id for x in a.application.list().data] == [app_a.id]
assert a.application.patch("acme", ApplicationPatch(name="Acme Inc")).name == "Acme Inc"
check("applications per project, by id and uid, get_or_create, patch")

# Endpoints with filter types, a uid, a description and custom headers.
ep = a.endpoint.create(
    "acme",
    EndpointIn(
        url=f"{base}/main",
        uid="main",
        description="the main one",
        event_types=["order.created"],
        metadata={"team": "billing"},
        headers={"x-tenant": "acme"},
    ),
)
assert ep.event_types == ["order.created"], ep
assert a.endpoint.get("acme", "main").id == ep.id
assert [e.id for e in a.endpoint.list("acme").data] == [ep.id]
patched = a.endpoint.patch("acme", ep.id, EndpointPatch(description="renamed"))
assert patched.description == "renamed" and patched.url == f"{base}/main"
expect_error(422, lambda: a.endpoint.create("acme", EndpointIn(url=f"{base}/x", event_types=["no.such.type"])))
expect_error(422, lambda: a.endpoint.create("acme", EndpointIn(url="ftp://example.com/x")))
headers = a.endpoint.get_headers("acme", ep.id)
assert headers.headers == {"x-tenant": "acme"}, headers
a.endpoint.set_headers("acme", ep.id, EndpointHeadersIn(headers={"x-tenant": "acme", "authorization": "Bearer s3"}))
headers = a.endpoint.get_headers("acme", ep.id)
assert headers.headers == {"x-tenant": "acme"} and headers.sensitive == ["authorization"], headers
check("endpoint CRUD with filter types, uid, headers; 422 on unknown types and schemes")

# A message, delivered and verified with the package's own Webhook.
secret = a.endpoint.get_secret("acme", ep.id).key
assert secret.startswith("whsec_")
payload = {"type": "order.created", "id": 1, "total": "12.50", "unicode": "snowman \u2603"}
msg = a.message.create("acme", MessageIn(event_type="order.created", payload=payload, event_id="evt-1"))
assert msg.event_id == "evt-1"
got = wait_for("the delivery", lambda: deliveries("/main", msg.id))
h, body = got[0]
Webhook(secret).verify(body, h)  # raises unless the signature holds
assert json.loads(body) == payload, body
assert h.get("x-tenant") == "acme" and h.get("authorization") == "Bearer s3", h
check("message delivered, verified by svix.Webhook, with the endpoint's headers")

expect_error(409, lambda: a.message.create("acme", MessageIn(event_type="order.created", payload=payload, event_id="evt-1")), "conflict")
check("a 409 on a duplicate eventId")

# Filtered out: order.paid does not reach an endpoint of order.created.
paid = a.message.create("acme", MessageIn(event_type="order.paid", payload={"id": 2}))
listed = a.message.list("acme", MessageListOptions(event_types=["order.paid"])).data
assert [m.id for m in listed] == [paid.id], listed
assert a.message.get("acme", "evt-1").id == msg.id
check("messages listed with a filter, read by eventId; filter types respected")

# Attempts, listed by message and by endpoint.
attempts = a.message_attempt.list_by_msg("acme", msg.id).data
assert len(attempts) == 1 and attempts[0].status == 0 and attempts[0].response_status_code == 200, attempts
by_ep = a.message_attempt.list_by_endpoint("acme", ep.id, MessageAttemptListByEndpointOptions(status=0)).data
assert [x.id for x in by_ep] == [attempts[0].id]
assert a.message_attempt.get("acme", msg.id, attempts[0].id).msg_id == msg.id
check("attempts by message and by endpoint")

# Resend: delivered again.
a.message_attempt.resend("acme", msg.id, ep.id)
wait_for("the resend", lambda: len(deliveries("/main", msg.id)) >= 2)
check("resend")

# Recover: a delivery that failed (410 disables the endpoint) is sent again once fixed.
Receiver.answers["/flaky"] = 410
flaky = a.endpoint.create("acme", EndpointIn(url=f"{base}/flaky", event_types=["order.paid"]))
since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
lost = a.message.create("acme", MessageIn(event_type="order.paid", payload={"id": 3}))
wait_for("the failed attempt", lambda: deliveries("/flaky", lost.id))
wait_for("the endpoint disabled", lambda: a.endpoint.get("acme", flaky.id).disabled)
Receiver.answers["/flaky"] = 200
a.endpoint.patch("acme", flaky.id, EndpointPatch(disabled=False))
task = a.endpoint.recover("acme", flaky.id, RecoverIn(since=since))
assert task.status in ("running", "finished"), task
wait_for("the recovered delivery", lambda: len(deliveries("/flaky", lost.id)) >= 2)
check("recover since a time")

# Rotation: the next message verifies with the new secret, and no longer with the old one.
a.endpoint.rotate_secret("acme", ep.id, EndpointSecretRotateIn(grace_period_seconds=0))
new_secret = a.endpoint.get_secret("acme", ep.id).key
assert new_secret != secret
msg2 = a.message.create("acme", MessageIn(event_type="order.created", payload={"id": 4}))
h, body = wait_for("the delivery after rotation", lambda: deliveries("/main", msg2.id))[0]
Webhook(new_secret).verify(body, h)
assert json.loads(body) == {"id": 4}, body
try:
    Webhook(secret).verify(body, h)
    raise AssertionError("the old secret still verifies after a rotation without grace")
except WebhookVerificationError:
    pass
check("secret rotation: the next message verifies with the new secret only")

# Another project's key: 404 on every object of this one, exactly as a missing one.
for call in [
    lambda: b.application.get(app_a.id),
    lambda: b.endpoint.get(app_a.id, ep.id),
    lambda: b.endpoint.get_secret(app_a.id, ep.id),
    lambda: b.message.get(app_a.id, msg.id),
    lambda: b.message_attempt.list_by_msg(app_a.id, msg.id),
    lambda: b.message_attempt.resend(app_a.id, msg.id, ep.id),
    lambda: b.event_type.get("order.created"),
    lambda: b.endpoint.delete(app_a.id, ep.id),
    lambda: b.application.delete(app_a.id),
]:
    expect_error(404, call, "not_found")
# B's own `acme` is its own, with none of A's endpoints.
assert b.endpoint.list("acme").data == []
assert [x.id for x in b.application.list().data] == [app_b.id]
check("another project's key: 404 everywhere")

# The portal's app-scoped token: its own application only, and no namespace-wide call.
access = a.authentication.app_portal_access("acme", AppPortalAccessIn(expiry=600))
assert "/portal/#token=" in access.url and access.token.startswith("opt_"), access
portal = Svix(access.token, SvixOptions(server_url=server))
assert [e.id for e in portal.endpoint.list("acme").data] == [e.id for e in a.endpoint.list("acme").data]
expect_error(403, lambda: portal.message.create("acme", MessageIn(event_type="order.paid", payload={})))
expect_error(403, lambda: portal.application.list())
expect_error(404, lambda: portal.endpoint.list("other-app-that-is-not-its-own"))
check("app portal access: a token for one application")

# Empty-body deletes (204): the client reads no body.
a.endpoint.delete("acme", flaky.id)
expect_error(404, lambda: a.endpoint.get("acme", flaky.id))
b.application.delete("acme")
expect_error(404, lambda: b.application.get("acme"))
assert a.application.get("acme").id == app_a.id
check("deletes")

# Pagination: limit and iterator walk every message once.
for i in range(7):
    a.message.create("acme", MessageIn(event_type="order.paid", payload={"page": i}))
seen, iterator = [], None
while True:
    page = a.message.list("acme", MessageListOptions(limit=3, iterator=iterator))
    seen += [m.id for m in page.data]
    if page.done:
        break
    iterator = page.iterator
everything = [m.id for m in a.message.list("acme", MessageListOptions(limit=250)).data]
assert len(everything) == 11, everything  # 4 above, and these 7
assert seen == everything, (seen, everything)
assert seen == sorted(seen, reverse=True), "newest first"
# And back: the page before the last one's start is the one before it.
last = a.message.list("acme", MessageListOptions(limit=3, iterator=iterator))
before = a.message.list("acme", MessageListOptions(limit=3, iterator=last.prev_iterator))
assert [m.id for m in before.data] == everything[6:9], ([m.id for m in before.data], everything)
check("cursor pagination")

print(f"svix: all checks passed ({len(checks)})")
