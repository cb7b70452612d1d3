# SPDX-License-Identifier: MIT
# A blocking reader while another thread writes on the same socket (a WebSocket
# client, a Java program with reader and writer threads): echo 3 MB over loopback.
# Prints "ok" or the error the reader got; a blocking recv() must never say EAGAIN.
import os, socket, threading

ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen()

def echo():
    c, _ = ls.accept()
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.close()

threading.Thread(target=echo, daemon=True).start()
s = socket.create_connection(ls.getsockname())  # blocking: no timeout
data = os.urandom(3_000_000)

def send():
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)

threading.Thread(target=send, daemon=True).start()
got = bytearray()
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        got += d
    print("ok" if got == data else "corrupted")
except OSError as e:
    print(f"{type(e).__name__}: {e}")
