#!/usr/bin/env python3
"""A scripted FTP server that misbehaves on cue, for tests/hostile.rs.

    hostile_ftpd.py PORT CONTENT_FILE ELSEWHERE_ADDR    (password in $FTP_PASSWORD)

In the spirit of curl's test FTP server: one server for every case, the case picked by the
client. The greeting's cases by the address the client dialled (all of 127/8 reaches lo, and the
greeting comes before any command), session-level cases by the USER name, transfer-level ones by
the path, so that a batch or an mget can put a good transfer right after a bad one on the same
login:

  127.0.26.1             `120 Service ready in 1 minutes` twice a second, forever: no 220
  127.0.26.2             a greeting dribbled a byte at a time, its lines never closing it
  127.0.26.3             terminal escapes (ESC below) in the greeting; with USER escapes, in the
                         replies and the listings' names too

  USER 421-login         421 and close, instead of asking for the password
  USER pasv-elsewhere    EPSV refused; PASV announces ELSEWHERE_ADDR (the client host!)
  USER epsv-odd          229 with `!` delimiters, after a decoy parenthesis
  USER epsv-bad          229 with port 99999
  USER one-session       while another session of this user is open, USER is answered only
                         after SILENCE (a server that greets one login at a time: --jobs)
  USER escapes           ESC in the listings' names, and in the 550 every RETR gets
  USER slow-hash         FEAT offers HASH (SHA-256), which answers after SLOW_HASH: a big file's
                         hash, asked before its RETR; big.bin is one (BIG bytes of zeros)
  any other USER         a normal login (PASS must be $FTP_PASSWORD)

  RETR CASE/bad.bin      misbehaves as CASE says (see TRANSFER below); CASE/good.bin and
                         good.bin are served normally. Every file holds CONTENT_FILE's bytes.
                         huge-150: the 150 announces 2^64-1 bytes (SIZE is right).
  NLST CASE              CASE/bad.bin, CASE/good.bin (bad first, for mget)

Data connections: EPSV/PASV, or with neither, RFC 959's default data port: the server connects
from an ephemeral port to the control connection's peer address and port U (the greeting does
not say ProFTPD, so the client expects U, not U-1). Uploads are kept in memory (SIZE answers).
"""
import hashlib
import os
import socket
import sys
import threading
import time

PORT, CONTENT, ELSEWHERE = int(sys.argv[1]), open(sys.argv[2], "rb").read(), sys.argv[3]
PASSWORD = os.environ["FTP_PASSWORD"]
SILENCE = 10  # seconds of silence before the late reply of `silence`
SLOW_HASH = 6  # seconds a slow-hash HASH takes: longer than the client waits for a data connection
BIG = 160 << 20  # big.bin's size: at 16 MiB/s, a hash the client waits 10 s for beyond --timeout
HALF = len(CONTENT) // 2
TRANSFER = {
    "421-mid", "426-mid", "early-close", "no-data", "slow", "long-line", "multiline-mismatch", "silence", "huge-150",
}
GREETING = {"127.0.26.1": "120-forever", "127.0.26.2": "dribble", "127.0.26.3": "escapes"}
# Sets the terminal's title, clears the screen (7-bit ESC and the C1 CSI), and a bidi override.
ESC = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202e"
uploads, uploads_lock = {}, threading.Lock()
open_sessions, sessions_lock = {}, threading.Lock()  # user name -> sessions that sent USER


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


class Session:
    def __init__(self, conn, peer):
        self.conn, self.peer, self.rfile = conn, peer, conn.makefile("rb")
        self.user, self.listener, self.rest = None, None, 0

    def reply(self, line):
        log(self.peer, "<---", line[:80])
        self.conn.sendall(line.encode() + b"\r\n")

    def data_connection(self):
        """The passive listener's connection, else a connection to the default data port."""
        if self.listener:
            listener, self.listener = self.listener, None
            listener.settimeout(10)
            with listener:
                return listener.accept()[0]
        return socket.create_connection(self.peer, timeout=10)  # port U, from an ephemeral port

    def passive(self):
        self.listener = socket.create_server(("0.0.0.0", 0))
        return self.listener.getsockname()[1]

    def run(self):
        case = GREETING.get(self.conn.getsockname()[0])
        while case == "120-forever":  # until the client hangs up (sendall fails)
            self.reply("120 Service ready in 1 minutes")
            time.sleep(0.5)
        while case == "dribble":
            for byte in b"220-hostile-ftpd is still greeting you\r\n":
                self.conn.sendall(bytes([byte]))
                time.sleep(0.05)
        # No "ProFTPD": the RFC 959 dialect.
        self.reply("220 hostile-ftpd ready" + (f" {ESC}" if case == "escapes" else ""))
        for raw in self.rfile:
            verb, _, arg = raw.decode("utf-8", "replace").rstrip("\r\n").partition(" ")
            log(self.peer, "--->", verb, "****" if verb.upper() == "PASS" else arg)
            if not self.command(verb.upper(), arg):
                break

    def command(self, verb, arg):
        if verb == "USER":
            with sessions_lock:
                if self.user is not None:  # a second USER: the session counts for the new name only
                    open_sessions[self.user] -= 1
                others = open_sessions.get(arg, 0)
                open_sessions[arg] = others + 1
            self.user = arg
            if arg == "one-session" and others:
                time.sleep(SILENCE)
            if arg == "421-login":
                self.reply("421 Too many users, closing control connection")
                return False
            self.reply(f"331 Password required for {arg}")
        elif verb == "PASS":
            self.reply("230 Logged in" if arg == PASSWORD else "530 Login incorrect")
        elif verb == "QUIT":
            self.reply("221 Bye")
            return False
        elif verb in ("TYPE", "NOOP"):
            self.reply("200 OK")
        elif verb == "FEAT" and self.user == "slow-hash":
            for line in ("211-Features:", " SIZE", " HASH SHA-256*", "211 End"):
                self.reply(line)
        elif verb == "HASH" and self.user == "slow-hash":
            body = self.body(arg) if arg in uploads or self.exists(arg) else None
            time.sleep(SLOW_HASH)
            digest = hashlib.sha256(body).hexdigest() if body is not None else None
            self.reply(f"213 SHA-256 0-{len(body)} {digest} {arg}" if body is not None else "550 No such file")
        elif verb == "ABOR":
            self.reply("226 Nothing to abort")
        elif verb == "REST":
            self.rest = int(arg)
            self.reply(f"350 Restarting at {arg}")
        elif verb == "SIZE":
            size = len(self.body(arg)) if arg in uploads or self.exists(arg) else None
            self.reply(f"213 {size}" if size is not None else "550 No such file")
        elif verb == "EPSV" and self.user == "pasv-elsewhere":
            self.reply("500 EPSV not understood")
        elif verb == "EPSV":
            port = self.passive()
            if self.user == "epsv-odd":
                self.reply(f"229 Extended (passive) mode (!!!{port}!)")
            elif self.user == "epsv-bad":
                self.reply("229 Entering Extended Passive Mode (|||99999|)")
            else:
                self.reply(f"229 Entering Extended Passive Mode (|||{port}|)")
        elif verb == "PASV":
            port = self.passive()
            host = ELSEWHERE if self.user == "pasv-elsewhere" else "127.0.0.1"
            self.reply(f"227 Entering Passive Mode ({host.replace('.', ',')},{port >> 8},{port & 255})")
        elif verb == "NLST" and self.user == "escapes":
            self.send_listing(f"esc{ESC}.bin\r\nplain.bin\r\n".encode())
        elif verb == "LIST" and self.user == "escapes":
            self.send_listing(f"-rw-r--r-- 1 ftp ftp 5 Jan 1 00:00 esc{ESC}.bin\r\n".encode())
        elif verb == "RETR" and self.user == "escapes":
            self.reply(f"550 {ESC}{arg}: no such file{ESC}")
        elif verb == "NLST":
            case = arg.strip("/")
            names = f"{case}/bad.bin\r\n{case}/good.bin\r\n" if case in TRANSFER else "good.bin\r\n"
            self.send_listing(names.encode())
        elif verb == "LIST":
            self.send_listing(b"-rw-r--r-- 1 ftp ftp %d Jan 1 00:00 good.bin\r\n" % len(CONTENT))
        elif verb == "RETR":
            return self.retr(arg)
        elif verb == "STOR":
            self.stor(arg)
        else:
            self.reply(f"502 {verb} not implemented")
        return True

    @staticmethod
    def exists(path):
        case, _, name = path.rpartition("/")
        return path in ("good.bin", "big.bin") or (case in TRANSFER and name in ("bad.bin", "good.bin"))

    @staticmethod
    def body(path):
        return uploads[path] if path in uploads else bytes(BIG) if path == "big.bin" else CONTENT

    def send_listing(self, body):
        self.reply("150 Here comes the listing")
        with self.data_connection() as data:
            data.sendall(body)
        self.reply("226 Listing sent")

    def retr(self, path):
        """Returns False when the control connection is to be closed."""
        if not self.exists(path):
            self.reply("550 No such file")
            return True
        body, self.rest = (bytes(BIG) if path == "big.bin" else CONTENT)[self.rest :], 0
        case = path.rpartition("/")[0] if path.endswith("/bad.bin") else "good"
        if case == "421-mid":
            self.reply("421 Service not available, closing control connection")
            return False
        if case == "silence":
            time.sleep(SILENCE)  # then carry on as if nothing happened: a late reply
        if case == "long-line":
            self.reply("150 " + "x" * (1 << 20))
            return True  # and no data connection: the client must give up on the reply
        if case == "multiline-mismatch":
            self.reply("150-Opening data connection")
            self.reply("226 Transfer complete")  # not `150 `, nor padded as RFC 959 asks
        elif case == "huge-150":  # what remains after REST, as 2^64-1: added to REST, it overflows
            self.reply(f"150 Opening BINARY mode data connection for {path} (18446744073709551615 bytes)")
        else:
            self.reply(f"150 Opening BINARY mode data connection for {path} ({len(body)} bytes)")
        try:
            with self.data_connection() as data:
                if case == "slow":
                    for i in range(len(body)):
                        data.sendall(body[i : i + 1])
                        time.sleep(1)
                elif case == "no-data":
                    pass
                elif case in ("426-mid", "early-close"):
                    data.sendall(body[:HALF])
                else:
                    data.sendall(body)
        except OSError as e:
            self.reply(f"426 Connection closed; transfer aborted ({e})")
            return True
        if case == "426-mid":
            self.reply("426 Connection closed; transfer aborted")
        elif case != "multiline-mismatch":  # that one never ends its reply
            self.reply("226 Transfer complete")
        return True

    def stor(self, path):
        self.reply("150 Ok to send data")
        chunks = []
        with self.data_connection() as data:
            while chunk := data.recv(65536):
                chunks.append(chunk)
                if path.startswith("426-mid/") and sum(map(len, chunks)) >= HALF:
                    self.reply("426 Connection closed; transfer aborted")
                    return
        with uploads_lock:
            uploads[path] = b"".join(chunks)
        self.reply("226 Transfer complete")


def serve(conn, peer):
    session = Session(conn, peer)
    try:
        with conn:
            session.run()
    except OSError as e:
        log(peer, "ended:", e)
    finally:
        if session.user is not None:
            with sessions_lock:
                open_sessions[session.user] -= 1


server = socket.create_server(("0.0.0.0", PORT))
log("listening on", PORT)
while True:
    conn, peer = server.accept()
    threading.Thread(target=serve, args=(conn, peer), daemon=True).start()
