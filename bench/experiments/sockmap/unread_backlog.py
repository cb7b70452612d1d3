# SPDX-License-Identifier: MIT
# How much one end can queue toward a peer that never reads (TCP: about the
# two socket buffers, then EAGAIN). Prints bytes queued and the reader's skmem.
import socket, subprocess

ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen()
port = ls.getsockname()[1]
reader = socket.create_connection(("127.0.0.1", port))
writer, _ = ls.accept()
writer.setblocking(False)
queued = 0
try:
    while queued < 64 << 20:  # stop at 64 MiB
        queued += writer.send(b"x" * 65536)
except BlockingIOError:
    pass
ss = subprocess.run(["ss", "-tmnH", "src", "127.0.0.1:%d" % reader.getsockname()[1]],
                    capture_output=True, text=True).stdout
print("queued %d bytes toward a reader that never reads; reader: %s" %
      (queued, " ".join(ss.split()[-1:])))
