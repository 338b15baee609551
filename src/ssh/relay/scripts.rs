//! The relay's programs, run on the SSH server by perl or python3: connect
//! to the FTP server with SO_REUSEADDR, print `FTPSSH-RELAY <local-addr>
//! <local-port> <peer-addr>` (or `FTPSSH-RELAY-ERROR <why>`), then copy
//! bytes both ways until either side ends.

// No single quotes inside: the scripts travel inside '...' on a shell line.
// perl: Socket only (IO::Socket::IP and IO::Select cost ~20 ms more to load, on every control
// connection); the select loop watches the FTP server always and our stdin until its end.
pub(super) const PERL: &str = r#"use strict; use Socket qw(:addrinfo SOCK_STREAM SOL_SOCKET SO_REUSEADDR);
my ($h, $p) = @ARGV; $| = 1; binmode STDIN; binmode STDOUT;
my ($err, @ai) = getaddrinfo($h, $p, {socktype => SOCK_STREAM}); my ($s, $why) = (undef, $err || "no address");
for my $a (@ai) { socket($s, $a->{family}, $a->{socktype}, $a->{protocol}) or do { $why = $!; next };
  setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1); last if connect($s, $a->{addr}); $why = $!; close $s; undef $s }
unless ($s) { print "FTPSSH-RELAY-ERROR $why\n"; exit 1 }
my (undef, $lh, $lp) = getnameinfo(getsockname($s), NI_NUMERICHOST | NI_NUMERICSERV);
my (undef, $ph) = getnameinfo(getpeername($s), NI_NUMERICHOST | NI_NUMERICSERV);
print "FTPSSH-RELAY $lh $lp $ph\n";
sub put { my ($fh, $b) = @_; while (length $b) { my $w = syswrite($fh, $b); exit 1 unless defined $w; substr($b, 0, $w) = "" } }
my $in = 1;
while (1) { my $r = ""; vec($r, fileno(STDIN), 1) = 1 if $in; vec($r, fileno($s), 1) = 1;
  next unless select($r, undef, undef, undef) > 0;
  if (vec($r, fileno($s), 1)) { my $n = sysread($s, my $b, 65536); exit 0 unless $n; put(\*STDOUT, $b) }
  if ($in && vec($r, fileno(STDIN), 1)) { my $n = sysread(STDIN, my $b, 65536);
    if ($n) { put($s, $b) } else { shutdown($s, 1); $in = 0 } } }"#;

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
