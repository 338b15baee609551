#!/usr/bin/env python3
"""The book's client with `sendport` off, as a script: it listens on its own control
connection's port C for every data connection and sends neither PORT nor PASV.

Linux lets a listener share the port of an established connection only if both sockets set
SO_REUSEADDR, so the control socket sets it before connecting (inetutils ftp and tnftp do not,
and fail with "bind: Address already in use" before any command is sent).

usage: sendport_off.py HOST PORT USER COMMAND...   (the password in FTP_PASSWORD)
COMMAND: `ls`, `get REMOTE LOCAL`, `repeat N get REMOTE LOCALPREFIX`.
Prints every reply; exits 1 at the first reply that is not what the command wants.
"""
import os
import socket
import sys


def main():
    host, port, user, *commands = sys.argv[1:]
    control = socket.socket()
    control.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    control.connect((host, int(port)))
    replies = control.makefile("rb")

    def reply():
        line = replies.readline().decode("utf-8", "replace").rstrip("\r\n")
        code = line[:3]
        text = [line]
        if line[3:4] == "-":
            while True:
                line = replies.readline().decode("utf-8", "replace").rstrip("\r\n")
                text.append(line)
                if line.startswith(code + " "):
                    break
        print("\n".join(text), flush=True)
        return int(code)

    def send(line):
        print("---> " + (line if not line.startswith("PASS") else "PASS ****"), flush=True)
        control.sendall((line + "\r\n").encode())

    def expect(ok):
        code = reply()
        if code not in ok:
            sys.exit(f"unexpected reply {code}")

    def transfer(cmd, local):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(control.getsockname())  # C: the control connection's own port
        listener.listen(1)
        send(cmd)
        expect({125, 150})
        data, _ = listener.accept()
        listener.close()
        chunks = []
        while True:
            chunk = data.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        data.close()
        expect({226, 250})
        content = b"".join(chunks)
        if local is None:
            sys.stdout.write(content.decode("utf-8", "replace"))
        else:
            with open(local, "wb") as f:
                f.write(content)

    expect({220})
    send(f"USER {user}")
    expect({331})
    send("PASS " + os.environ["FTP_PASSWORD"])
    expect({230})
    send("TYPE I")
    expect({200})
    words = list(commands)
    while words:
        word = words.pop(0)
        if word == "ls":
            transfer("LIST", None)
        elif word == "get":
            remote, local = words.pop(0), words.pop(0)
            transfer(f"RETR {remote}", local)
        elif word == "repeat":
            n, _, remote, prefix = int(words.pop(0)), words.pop(0), words.pop(0), words.pop(0)
            for i in range(n):
                transfer(f"RETR {remote}", f"{prefix}{i}")
        else:
            sys.exit(f"unknown command {word}")
    send("QUIT")
    reply()


main()
