//! The relay's programs, run on the SSH server by perl or python3: connect
//! to the FTP server with SO_REUSEADDR, print `FTPSSH-RELAY <local-addr>
//! <local-port> <peer-addr>` (or `FTPSSH-RELAY-ERROR <why>`), then copy
//! bytes both ways until either side ends.

// No single quotes inside: the scripts travel inside '...' on a shell line.
pub(super) const PERL: &str = r#"use strict; use IO::Socket::IP; use IO::Select;
my ($h, $p) = @ARGV; $| = 1; binmode STDIN; binmode STDOUT;
my $s = IO::Socket::IP->new(PeerHost => $h, PeerPort => $p, Proto => "tcp", ReuseAddr => 1)
  or do { print "FTPSSH-RELAY-ERROR ", ($IO::Socket::errstr || $@ || $!), "\n"; exit 1 };
print "FTPSSH-RELAY ", $s->sockhost, " ", $s->sockport, " ", $s->peerhost, "\n";
sub put { my ($fh, $b) = @_; while (length $b) { my $w = syswrite($fh, $b); exit 1 unless defined $w; substr($b, 0, $w) = "" } }
my $sel = IO::Select->new(\*STDIN, $s);
while (my @ready = $sel->can_read) { for my $fh (@ready) {
  my $n = sysread($fh, my $b, 65536);
  if ($fh == $s) { exit 0 unless $n; put(\*STDOUT, $b) }
  elsif ($n) { put($s, $b) } else { shutdown($s, 1); $sel->remove(\*STDIN) } } }"#;

pub(super) const PYTHON: &str = r#"import os, select, socket, sys
h, p = sys.argv[1], int(sys.argv[2])
try:
    af, kind, proto, _, addr = socket.getaddrinfo(h, p, 0, socket.SOCK_STREAM)[0]
    s = socket.socket(af, kind, proto)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.connect(addr)
except OSError as e:
    print("FTPSSH-RELAY-ERROR", e, flush=True); sys.exit(1)
print("FTPSSH-RELAY", s.getsockname()[0], s.getsockname()[1], s.getpeername()[0], flush=True)
def put(fd, b):
    while b: b = b[os.write(fd, b):]
ins = [0, s]
while True:
    for r in select.select(ins, [], [])[0]:
        b = os.read(r if r == 0 else s.fileno(), 65536)
        if r is s:
            if not b: sys.exit(0)
            put(1, b)
        elif b: put(s.fileno(), b)
        else: s.shutdown(socket.SHUT_WR); ins.remove(0)"#;
