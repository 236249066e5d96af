#!/usr/bin/env python3
"""A loopback HTTPS server for the bundle tests and the fleet benchmark.

Listens on 127.0.0.1 only (an ephemeral port, written to --port-file), with
the certificate and key the caller made, and exits by itself after --lifetime
seconds whatever happens. Routes:
  /files/NAME           the file NAME of --dir
  /status/CODE          an empty answer with that status
  /flaky/NAME           500 for the first two requests, then the file
  /hits                 how many requests each path had, as JSON
  /slow/SECONDS         answers after that long
  /truncated            announces 100000 bytes, sends 10, closes
  /huge                 announces 2 GiB, sends 10 bytes, closes
  /redirect-http/NAME   302 to the same file over plain http
  POST /report          appends the body as one line to --dir/reports.jsonl; 201
  POST /status/CODE     an empty answer with that status
"""
import argparse, collections, http.server, json, os, ssl, threading, time

p = argparse.ArgumentParser()
p.add_argument("--dir", required=True)
p.add_argument("--cert", required=True)
p.add_argument("--key", required=True)
p.add_argument("--port-file", required=True)
p.add_argument("--lifetime", type=float, default=120)
p.add_argument("--hits-file", help="rewritten after each request: how many each path had, as JSON")
args = p.parse_args()
hits = collections.Counter()
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send_body(self, code, body, length=None):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with lock:
            hits[self.path] += 1
            count = hits[self.path]
            if args.hits_file:
                with open(args.hits_file + ".tmp", "w") as f:
                    json.dump(hits, f)
                os.rename(args.hits_file + ".tmp", args.hits_file)
        parts = self.path.strip("/").split("/", 1)
        route, rest = parts[0], (parts[1] if len(parts) > 1 else "")
        if route == "files" or (route == "flaky" and count > 2):
            path = os.path.join(args.dir, os.path.basename(rest))
            if not os.path.isfile(path):
                return self.send_body(404, b"")
            with open(path, "rb") as f:
                return self.send_body(200, f.read())
        if route == "flaky":
            return self.send_body(500, b"")
        if route == "status":
            return self.send_body(int(rest), b"")
        if route == "hits":
            with lock:
                return self.send_body(200, json.dumps(hits).encode())
        if route == "slow":
            time.sleep(float(rest))
            return self.send_body(200, b"late")
        if route == "truncated":
            self.send_body(200, b"0123456789", length=100000)
            self.close_connection = True
            return
        if route == "huge":
            self.send_body(200, b"0123456789", length=1 << 31)
            self.close_connection = True
            return
        if route == "redirect-http":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:%d/files/%s" % (self.server.server_port, rest))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_body(404, b"")


def do_POST(self):
    with lock:
        hits["POST " + self.path] += 1
        if args.hits_file:
            with open(args.hits_file + ".tmp", "w") as f:
                json.dump(hits, f)
            os.rename(args.hits_file + ".tmp", args.hits_file)
    body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
    parts = self.path.strip("/").split("/", 1)
    if parts[0] == "report":
        with lock, open(os.path.join(args.dir, "reports.jsonl"), "ab") as f:
            f.write(body + b"\n")
        return self.send_body(201, b"")
    if parts[0] == "status":
        return self.send_body(int(parts[1]), b"")
    self.send_body(404, b"")


Handler.do_POST = do_POST
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(args.cert, args.key)
server.socket = context.wrap_socket(server.socket, server_side=True)
threading.Timer(args.lifetime, lambda: os._exit(0)).start()
tmp = args.port_file + ".tmp"
with open(tmp, "w") as f:
    f.write(str(server.server_port))
os.rename(tmp, args.port_file)
server.serve_forever()
