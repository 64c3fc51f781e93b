#!/usr/bin/env python3
"""A discarding OTLP/HTTP trace receiver for `bench` runs with traces on: answers every
`POST /v1/traces` with 200 and an empty ExportTraceServiceResponse, and prints how many requests
and bytes it took when stopped (Ctrl-C). Usage: scripts/otlp-sink.py [PORT] (default 4318)."""

import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

requests = 0
received = 0


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global requests, received
        n = int(self.headers.get("Content-Length", 0))
        self.rfile.read(n)
        requests += 1
        received += n
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 4318
    server = ThreadingHTTPServer(("127.0.0.1", port), Sink)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    print(f"otlp-sink: {requests} requests, {received} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
