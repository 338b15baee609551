#!/usr/bin/env python3
"""An ftplib client in passive mode that waits between the 227 and its connection (a busy
machine's FileZilla): the window in which another local user can race it to the port.

usage: slow_pasv.py HOST PORT USER N REMOTE LOCAL-PREFIX UPLOAD-SOURCE UPLOAD-REMOTE
(the password in FTP_PASSWORD): N downloads of REMOTE and N uploads of UPLOAD-SOURCE."""
import ftplib
import os
import sys
import time

host, port, user, n, remote, prefix, source, target = sys.argv[1:]


class Slow(ftplib.FTP):
    def makepasv(self):
        answer = super().makepasv()
        time.sleep(0.3)
        return answer

    def ntransfercmd(self, cmd, rest=None):
        conn, size = super().ntransfercmd(cmd, rest)
        print(f"{cmd}: data connection from port {conn.getsockname()[1]}", flush=True)
        return conn, size


ftp = Slow()
ftp.connect(host, int(port))
ftp.login(user, os.environ["FTP_PASSWORD"])
for i in range(int(n)):
    with open(f"{prefix}{i}", "wb") as f:
        ftp.retrbinary(f"RETR {remote}", f.write)
    with open(source, "rb") as f:
        ftp.storbinary(f"STOR {target}", f)
    print(f"round {i} done", flush=True)
ftp.quit()
