#!/usr/bin/env python3
"""A passive ftplib client that starts a download and stops reading its data connection
(a hung program), to see the tunnel's stall detector end the transfer.

usage: stops_reading.py HOST PORT USER REMOTE (the password in FTP_PASSWORD)
Prints the final reply of the transfer, and how long it took to come."""
import ftplib
import os
import sys
import time

host, port, user, remote = sys.argv[1:]
ftp = ftplib.FTP()
ftp.connect(host, int(port))
ftp.login(user, os.environ["FTP_PASSWORD"])
ftp.voidcmd("TYPE I")
start = time.monotonic()
conn = ftp.transfercmd(f"RETR {remote}")
conn.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
try:
    reply = ftp.getresp()
except ftplib.Error as e:
    reply = str(e)
print(f"FINAL {reply} after {time.monotonic() - start:.1f} s", flush=True)
conn.close()
ftp.quit()
