#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Test servers for the fake internet (run inside the test's own network namespace).

  upstream.py https PORT CERT KEY LOGDIR   HTTPS/1.1 test server (endpoints below)
  upstream.py http  PORT LOGDIR            the same over plain HTTP
  upstream.py tcpcount PORT LOGDIR         accepts, logs, sends "hello\\n", closes
  upstream.py udpcount PORT LOGDIR         logs every datagram, echoes it

Every accepted TCP connection appends a line to LOGDIR/conn.PORT.log; every request a JSON
line to LOGDIR/req.PORT.log; every datagram a line to LOGDIR/udp.PORT.log. Tests count them.

Endpoints: /hello, /echo (JSON: method, path, headers, body), /bytes?n=N (Content-Length),
/chunked?n=N&size=S, /status/NNN, /redirect, /early (103 then 200), /reflect?v=TEXT (TEXT back in body and X-Reflect),
/ws (WebSocket echo; X-Ws-Greet: V makes V its first message, in two fragments), /slow?ms=N, /sink (JSON: len and sha256 of the body, which is not logged).
"""
import base64, hashlib, json, os, socket, socketserver, ssl, struct, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs

LOGDIR = "."
_lock = threading.Lock()


def log(name, line):
    with _lock:
        with open(os.path.join(LOGDIR, name), "a") as f:
            f.write(line + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sluice-test-upstream"

    def log_message(self, fmt, *args):
        pass

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            out = b""
            while True:
                line = self.rfile.readline()
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(n)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, code, body, ctype="text/plain", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        if self.headers.get("Expect", "").lower() == "100-continue":
            pass  # BaseHTTPRequestHandler answers 100 itself (handle_expect_100)
        body = self.read_body()
        u = urlsplit(self.path)
        q = parse_qs(u.query)
        port = self.server.server_address[1]
        p = u.path
        log("req.%d.log" % port, json.dumps({
            "method": self.command, "path": self.path, "host": self.headers.get("Host"),
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": "" if p == "/sink" else body.decode("latin-1"), "body_len": len(body)}))
        if p == "/sink":
            js = json.dumps({"len": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode()
            return self.send(200, js, "application/json")
        if p == "/hello":
            return self.send(200, ("hello from %s\n" % self.headers.get("Host")).encode())
        if p == "/echo":
            js = json.dumps({"method": self.command, "path": self.path,
                             "headers": [[k, v] for k, v in self.headers.items()],
                             "body": body.decode("latin-1")}).encode()
            return self.send(200, js, "application/json")
        if p == "/bytes":
            n = int(q.get("n", ["1024"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            if self.command != "HEAD":
                blk = b"x" * 65536
                while n > 0:
                    k = min(n, len(blk))
                    self.wfile.write(blk[:k])
                    n -= k
            return
        if p == "/chunked":
            n = int(q.get("n", ["1024"])[0]); size = int(q.get("size", ["100"])[0])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while n > 0:
                k = min(n, size)
                self.wfile.write(b"%x\r\n%s\r\n" % (k, b"y" * k))
                n -= k
            self.wfile.write(b"0\r\n\r\n")
            return
        if p.startswith("/status/"):
            return self.send(int(p[8:]), b"status\n")
        if p == "/early":
            # an informational response first (RFC 8297), then the final one
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            return self.send(200, b"after the hints\n")
        if p == "/redirect":
            return self.send(302, b"moved\n", extra=[("Location", "https://elsewhere.test/")])
        if p == "/reflect":
            v = q.get("v", [""])[0]
            return self.send(200, v.encode(), extra=[("X-Reflect", v)])
        if p == "/slow":
            time.sleep(int(q.get("ms", ["1000"])[0]) / 1000.0)
            return self.send(200, b"slow\n")
        if p == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        return self.send(404, b"not found\n")

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        acc = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", acc.decode())
        self.end_headers()
        self.wfile.flush()
        port = self.server.server_address[1]
        greet = self.headers.get("X-Ws-Greet", "").encode()
        if greet:
            # the header's value (after the broker's substitution) as a first message, split
            # in two fragments: a secret's value echoed over WebSocket must come back scrubbed
            half = len(greet) // 2
            self.wfile.write(bytes([0x01, half]) + greet[:half] + bytes([0x80, len(greet) - half]) + greet[half:])
            self.wfile.flush()
        while True:
            hdr = self.rfile.read(2)
            if len(hdr) < 2:
                break
            op = hdr[0] & 0x0F; masked = hdr[1] & 0x80; n = hdr[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", self.rfile.read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if masked else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
            log("ws.%d.log" % port, data.decode("latin-1"))
            if op == 8:
                self.wfile.write(b"\x88\x00"); self.wfile.flush()
                break
            out = bytes([0x80 | op])
            out += bytes([n]) if n < 126 else (b"\x7e" + struct.pack("!H", n) if n < 65536 else b"\x7f" + struct.pack("!Q", n))
            self.wfile.write(out + data); self.wfile.flush()
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    address_family = socket.AF_INET6

    def __init__(self, port, ctx=None):
        self.ctx = ctx
        super().__init__(("::", port), Handler)

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def get_request(self):
        sock, addr = self.socket.accept()
        log("conn.%d.log" % self.server_address[1], str(addr[0]))
        if self.ctx:
            sock.settimeout(10)
            try:
                sock = self.ctx.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError) as e:
                log("tlserr.%d.log" % self.server_address[1], str(e))
                sock.close()
                raise OSError("handshake failed")
            sock.settimeout(None)
        return sock, addr

    def handle_error(self, request, client_address):
        pass


def tcpcount(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port)); s.listen(64)
    while True:
        c, a = s.accept()
        log("conn.%d.log" % port, str(a[0]))
        try:
            c.sendall(b"hello\n")
        except OSError:
            pass
        c.close()


def udpcount(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    while True:
        d, a = s.recvfrom(65535)
        log("udp.%d.log" % port, "%s %d" % (a[0], len(d)))
        s.sendto(d, a)


def main():
    global LOGDIR
    mode, port = sys.argv[1], int(sys.argv[2])
    LOGDIR = sys.argv[-1]
    if mode == "https":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        ctx.set_alpn_protocols(["http/1.1"])
        Server(port, ctx).serve_forever()
    elif mode == "http":
        Server(port).serve_forever()
    elif mode == "tcpcount":
        tcpcount(port)
    elif mode == "udpcount":
        udpcount(port)
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
