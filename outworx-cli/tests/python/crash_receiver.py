"""A slow webhook receiver that verifies every delivery with `standardwebhooks` 1.1 (the
Standard Webhooks reference library) and appends the id of each verified one to a file.

usage: crash_receiver.py PORT SECRET DELAY_MS OUT_FILE

Answers 204 to a verified delivery after DELAY_MS, 401 to one that does not verify (and
records nothing). Prints "ready" once it listens. Used by the SIGKILL re-delivery test:
the repeats are the ids the file holds twice.
"""

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

PORT = int(sys.argv[1])
WEBHOOK = Webhook(sys.argv[2])
DELAY = int(sys.argv[3]) / 1000.0
OUT = open(sys.argv[4], "a", buffering=1)
LOCK = threading.Lock()


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            WEBHOOK.verify(body, headers)
        except Exception:
            self.send_response(401)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        time.sleep(DELAY)
        with LOCK:
            OUT.write(headers["webhook-id"] + "\n")
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Receiver)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
