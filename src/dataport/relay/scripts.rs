//! The relay's programs, run on the SSH server by perl or python3: connect
//! to the FTP server with SO_REUSEADDR, print `FTPSSH-RELAY <local-addr>
//! <local-port> <peer-addr>` (or `FTPSSH-RELAY-ERROR <why>`), then copy
//! bytes both ways until either side ends.
//!
//! Both acknowledge what the server sends at once (TCP_QUICKACK again after
//! each read: Linux clears it): a server that writes its 150 and 226 back to
//! back holds the 226 (Nagle) until the 150 is acknowledged, and a delayed
//! ACK would make that 40 ms per transfer (docs/benchmarks.md#measured-effects).
//! TCP_NODELAY sends our commands at once too.

// No single quotes inside: the scripts travel inside '...' on a shell line.
// perl: Socket only (IO::Socket::IP and IO::Select take measurably longer to load, on every
// control connection); the select loop watches the FTP server always and our stdin until its end.
//
// The perl relay also holds (HOLD below): a line `FTPSSH-HOLD LA LP RA RP STRICT` from us is not
// passed on; what follows it waits until (1) every command passed before it has its final reply
// from the server (it counts lines each way: one final reply per command, after the greeting),
// and (2) the data 4-tuple LA:LP <-> RA:RP has no socket on this host but TIME_WAIT ones (none at
// all at RA:RP's end when STRICT: TCP timestamps off, where that entry refuses the server's next
// connect; unless both ends hold one: they closed at once, nothing frees the tuple for a minute,
// and the server's 425 had better come now), or one second has passed since (1), or a line
// `FTPSSH-RELEASE` came (an ABOR follows: it must not wait behind a transfer that hangs). So the
// next file's commands can go out before this file's 226, and the server still connects only once
// the last connection has closed here: its SYN can overtake that connection's last ACK on
// loopback, and meet sshd's end in LAST_ACK.
// Where sshd's end holds the TIME_WAIT (we closed first) and timestamps are on (not STRICT), (2)
// also waits for the next millisecond of CLOCK_MONOTONIC, the clock of TCP's timestamps: a SYN in
// the same millisecond as the last segment carries no newer timestamp, and where its sequence
// number is behind too (after a connection that reused a TIME_WAIT) that entry refuses it, the
// server resets it and sends the SYN again 10 ms later (docs/real-systems.md#time_wait-and-incarnations;
// how often: docs/benchmarks.md#measured-effects). Waiting costs at most 1 ms, and only then.
// An FTP server on another host stamps by its own clock: there the relay waits 1 ms instead, which
// moves any clock on by a tick since that server's last segment (sent before we saw the TIME_WAIT).
//
// A line `FTPSSH-AFTER` holds what follows on (1) alone, with no second limit: commands must not
// reach a server while it transfers, where it reads them then (ProFTPD answers a SIZE before the
// transfer's 226 and refuses a RETR with 450). A RELEASE line is taken out as it comes, never
// passed on, and drops every HOLD and AFTER line then pending.
//
// It also proves (WATCH below): after a line `FTPSSH-WATCH LA LP RA RP` from us (not passed on; LA:LP
// the FTP server's data socket, RA:RP the forwarded port), each preliminary (1xx) reply from the server
// has it look that socket up: the FTP servers connect before they send it. Once the server's end is
// held by a process, sshd's end accepted (an inode: sshd sends a forwarded channel's open as it
// accepts it, so that open is on the SSH connection before anything we write later), and the server's
// end still the same socket, it writes `FTPSSH-PROOF LA LP RA RP UID` on stderr, which only the relay
// writes (the FTP server's bytes go to stdout). sshd's end not yet accepted: it looks again every
// 0.2 ms for up to 50 ms; anything else: no proof, and the gate's own lookup decides
// ([`crate::dataport::gate`]). A line `FTPSSH-UNWATCH` ends the watch (the source port varies).
pub(super) const PERL: &str = concat!(
    r#"use strict; use Socket qw(:addrinfo SOCK_STREAM SOL_SOCKET SO_REUSEADDR IPPROTO_TCP TCP_NODELAY AF_INET6 inet_aton inet_pton);
my ($h, $p) = @ARGV; $| = 1; binmode STDIN; binmode STDOUT;
my $now = eval { require Time::HiRes; \&Time::HiRes::time } || sub { time };
my $mono = eval { my $c = Time::HiRes::CLOCK_MONOTONIC(); Time::HiRes::clock_gettime($c) > 0 && sub { Time::HiRes::clock_gettime($c) } };
my ($err, @ai) = getaddrinfo($h, $p, {socktype => SOCK_STREAM}); my ($s, $why) = (undef, $err || "no address");
for my $a (@ai) { socket($s, $a->{family}, $a->{socktype}, $a->{protocol}) or do { $why = $!; next };
  setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1); last if connect($s, $a->{addr}); $why = $!; close $s; undef $s }
unless ($s) { print "FTPSSH-RELAY-ERROR $why\n"; exit 1 }
setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1); my $quick = eval { Socket::TCP_QUICKACK() };
my (undef, $lh, $lp) = getnameinfo(getsockname($s), NI_NUMERICHOST | NI_NUMERICSERV);
my (undef, $ph) = getnameinfo(getpeername($s), NI_NUMERICHOST | NI_NUMERICSERV);
print "FTPSSH-RELAY $lh $lp $ph\n";
sub put { my ($fh, $b) = @_; while (length $b) { my $w = syswrite($fh, $b); exit 1 unless defined $w; substr($b, 0, $w) = "" } }
my ($in, $pend, $sb, $fin, $multi, $cmds, $hold, $nap, $watch, $proving) = (1, "", "", -1, undef, 0, undef, 0, undef, undef);
sub finals { $sb .= $_[0];
  while ($sb =~ s/^([^\n]*)\n//) { my $l = $1;
    if (defined $multi) { if (substr($l, 0, 4) eq "$multi ") { undef $multi; $fin++ } }
    elsif ($l =~ /^([2-5]\d\d)-/) { $multi = $1 } elsif ($l =~ /^[2-5]\d\d( |\r|$)/) { $fin++ }
    elsif ($watch && $l =~ /^1\d\d( |\r|$)/) { $proving = $now->() + 0.05 } }
  $sb = substr($sb, 0, 8) }
"#,
    crate::tcp::tuple_state::perl_tuple_state!(),
    r#"sub clear { my ($la, $lp, $ra, $rp, $strict) = @_; my ($ours, $theirs) = (tuple_state($la, $lp, $ra, $rp), tuple_state($ra, $rp, $la, $lp));
  ($ours == 0 || $ours == 6) && ($theirs == 0 || (($ours == 6 || !$strict) && $theirs == 6)) ? ($ours == 6 && !$strict ? 2 : 1) : 0 }
sub due { my $h = $_[0]; return 0 if !defined $h->[1] || $now->() >= $h->[6];
  unless ($h->[7]) { my $c = clear(@$h[1 .. 5]); return undef unless $c; return 0 if $c == 1 || !$mono; $h->[7] = $h->[3] =~ /^(?:127\.|::1$|::ffff:127\.)/ ? (int($mono->() * 1000) + 1) / 1000 : $mono->() + 0.001 }
  my $left = $h->[7] - $mono->(); $left > 0 ? $left : 0 }
sub prove { my ($la, $lp, $ra, $rp) = @$watch; my ($st, $id, $uid, $ino) = tuple_sock(@$watch); return 1 unless $st && $ino;
  my (undef, undef, $su, $si) = tuple_sock($ra, $rp, $la, $lp); return 0 unless $si; return 1 unless $su == $< || $su == 0;
  return 1 unless (tuple_sock(@$watch))[1] eq $id; print STDERR "FTPSSH-PROOF $la $lp $ra $rp $uid\n"; 1 }
sub pump { while (!$hold && $pend =~ s/^([^\n]*\n)//) { my $l = $1;
    if ($l =~ /^FTPSSH-HOLD (\S+) (\d+) (\S+) (\d+) ([01])\r?\n$/) { $hold = [$cmds, $1, $2, $3, $4, $5, undef]; $nap = 0.0002 }
    elsif ($l =~ /^FTPSSH-AFTER\r?\n$/) { $hold = [$cmds] }
    elsif ($l =~ /^FTPSSH-WATCH (\S+) (\d+) (\S+) (\d+)\r?\n$/) { $watch = [$1, $2, $3, $4] }
    elsif ($l =~ /^FTPSSH-UNWATCH\r?\n$/) { undef $watch; undef $proving }
    else { put($s, $l); $cmds++ } }
  if (!$in && !$hold && defined $pend) { put($s, $pend); undef $pend; shutdown($s, 1) } }
while (1) { my $r = ""; vec($r, fileno(STDIN), 1) = 1 if $in; vec($r, fileno($s), 1) = 1; my $wait;
  if ($hold && $fin >= $hold->[0]) { $hold->[6] //= $now->() + 1; my $due = due($hold);
    if (defined $due && $due <= 0) { undef $hold; pump() }
    elsif (defined $due) { $wait = $due }
    else { $wait = $nap; $nap = $nap >= 0.013 ? 0.02 : $nap * 1.5 } }
  if ($proving) { if (prove() || $now->() >= $proving) { undef $proving } elsif (!defined $wait || $wait > 0.0002) { $wait = 0.0002 } }
  next unless select($r, undef, undef, $wait) > 0;
  if (vec($r, fileno($s), 1)) { my $n = sysread($s, my $b, 65536); exit 0 unless $n;
    setsockopt($s, IPPROTO_TCP, $quick, 1) if defined $quick; put(\*STDOUT, $b); finals($b) }
  if ($in && vec($r, fileno(STDIN), 1)) { my $n = sysread(STDIN, my $b, 65536);
    if ($n) { $pend .= $b } else { $in = 0 }
    if ($pend =~ s/^FTPSSH-RELEASE\r?\n//m) { undef $hold; $pend =~ s/^FTPSSH-(?:HOLD|AFTER)\b[^\n]*\n//mg }
    pump() } }"#
);

pub(super) const PYTHON: &str = r#"import os, select, socket, sys
h, p = sys.argv[1], int(sys.argv[2])
try:
    af, kind, proto, _, addr = socket.getaddrinfo(h, p, 0, socket.SOCK_STREAM)[0]
    s = socket.socket(af, kind, proto)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.connect(addr)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
            if hasattr(socket, "TCP_QUICKACK"): s.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            put(1, b)
        elif b: put(s.fileno(), b)
        else: s.shutdown(socket.SHUT_WR); ins.remove(0)"#;

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    /// The perl relay towards `port` here; its first line read.
    fn relay(port: u16) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
        let mut child = std::process::Command::new("perl")
            .args(["-e", super::PERL, "127.0.0.1", &port.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("FTPSSH-RELAY 127.0.0.1 "), "{line}");
        (child, out)
    }

    /// The perl relay, connected to a server here that has greeted: the relay, its output (kept
    /// open: it writes there), the server's end.
    fn greeted() -> (std::process::Child, BufReader<std::process::ChildStdout>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (child, out) = relay(listener.local_addr().unwrap().port());
        let (mut server, _) = listener.accept().unwrap();
        server.write_all(b"220 hi\r\n").unwrap();
        (child, out, server)
    }

    /// What the server has been sent within `within`.
    fn read_for(server: &mut TcpStream, within: Duration) -> String {
        server.set_read_timeout(Some(within)).unwrap();
        let mut got = vec![0; 4096];
        match server.read(&mut got) {
            Ok(n) => String::from_utf8_lossy(&got[..n]).into_owned(),
            Err(_) => String::new(),
        }
    }

    /// What the server reads until it has `want`'s length or `within` has passed (the relay
    /// writes line by line).
    fn read_until(server: &mut TcpStream, want: &str, within: Duration) -> String {
        let (deadline, mut got) = (Instant::now() + within, String::new());
        while got.len() < want.len() && Instant::now() < deadline {
            got += &read_for(server, deadline - Instant::now());
        }
        got
    }

    /// A connection between two ports of this host, as sshd's end and the FTP server's.
    fn tuple() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (ours, listener.accept().unwrap().0)
    }

    /// What follows a hold waits for the replies owed before it and for the tuple's connection to
    /// close; the hold line itself never reaches the server.
    #[test]
    fn perl_relay_holds_the_next_commands_until_the_last_connection_closed() {
        let (mut child, _out, mut server) = greeted();
        let (sshd_end, ftp_end) = tuple();
        let (l, r) = (sshd_end.local_addr().unwrap(), ftp_end.local_addr().unwrap());
        let stdin = child.stdin.as_mut().unwrap();
        write!(stdin, "RETR a\r\nFTPSSH-HOLD {} {} {} {} 0\r\nRETR b\r\n", l.ip(), l.port(), r.ip(), r.port()).unwrap();
        assert_eq!(read_for(&mut server, Duration::from_millis(500)), "RETR a\r\n");
        server.write_all(b"150 here\r\n226-done\r\n226 done\r\n").unwrap();
        assert_eq!(read_for(&mut server, Duration::from_millis(200)), "", "held while the connection is open");
        drop(ftp_end); // the FTP server's end closes first and holds the TIME_WAIT...
        std::thread::sleep(Duration::from_millis(20));
        let closed = Instant::now();
        drop(sshd_end); // ...and once sshd's end has closed too, RETR b goes
        assert_eq!(read_for(&mut server, Duration::from_secs(2)), "RETR b\r\n");
        assert!(closed.elapsed() < Duration::from_millis(500), "{:?}", closed.elapsed());
        drop(child.stdin.take());
        assert_eq!(read_for(&mut server, Duration::from_secs(2)), "", "our end of input ends it");
        drop(server);
        child.wait().unwrap();
    }

    /// STRICT: the FTP server's end in TIME_WAIT holds it too (timestamps off, where that entry
    /// refuses the server's next connect), for at most a second after the replies.
    #[test]
    fn perl_relay_holds_for_at_most_a_second_after_the_replies() {
        let (mut child, _out, mut server) = greeted();
        let (sshd_end, ftp_end) = tuple();
        let (l, r) = (sshd_end.local_addr().unwrap(), ftp_end.local_addr().unwrap());
        drop(ftp_end);
        std::thread::sleep(Duration::from_millis(20));
        drop(sshd_end);
        let stdin = child.stdin.as_mut().unwrap();
        write!(stdin, "NOOP\r\nFTPSSH-HOLD {} {} {} {} 1\r\nRETR b\r\n", l.ip(), l.port(), r.ip(), r.port()).unwrap();
        assert_eq!(read_for(&mut server, Duration::from_millis(500)), "NOOP\r\n");
        let answered = Instant::now();
        server.write_all(b"200 ok\r\n").unwrap();
        assert_eq!(read_for(&mut server, Duration::from_secs(3)), "RETR b\r\n");
        let held = answered.elapsed();
        assert!(held >= Duration::from_millis(900) && held < Duration::from_millis(1500), "{held:?}");
        drop((child.stdin.take(), server));
        child.wait().unwrap();
    }

    /// The hold's verdict on the tuple from its two ends' states (0 none, 1 established, 6
    /// TIME_WAIT), the relay's own lookups replaced: STRICT waits while the FTP server's end holds
    /// a TIME_WAIT, unless sshd's end holds one too (both closed at once: nothing frees it); with
    /// timestamps on, sshd's end in TIME_WAIT lets go at the next millisecond (2).
    #[test]
    fn perl_relay_judges_the_tuple_from_both_ends() {
        let perl = super::PERL;
        let start = perl.find("sub clear ").unwrap();
        let clear = &perl[start..start + perl[start..].find(" }\n").unwrap() + 2];
        let cases = [
            (0, 0, 1, "1"),
            (6, 0, 1, "1"),
            (0, 6, 1, "0"),
            (0, 6, 0, "1"),
            (6, 6, 1, "1"),
            (1, 0, 0, "0"),
            (6, 0, 0, "2"),
            (6, 6, 0, "2"),
        ];
        for (ours, theirs, strict, want) in cases {
            let script = format!(
                "my %st = (\"a 1\" => {ours}, \"b 2\" => {theirs}); sub tuple_state {{ $st{{\"$_[0] $_[1]\"}} }}\n{clear}\n\
                 print clear(\"a\", 1, \"b\", 2, {strict});"
            );
            let out = std::process::Command::new("perl").args(["-e", &script]).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(String::from_utf8_lossy(&out.stdout), want, "ours {ours}, theirs {theirs}, strict {strict}");
        }
    }

    /// CLOCK_MONOTONIC in whole milliseconds: the tick of Linux's TCP timestamps.
    fn tick() -> i64 {
        let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
        t.tv_sec() * 1000 + t.tv_nsec() / 1_000_000
    }

    /// Timestamps on, sshd's end closed first and holds the TIME_WAIT: what follows the hold
    /// reaches the server only in a later millisecond than the last segment (the server's SYN in
    /// the same one was refused by that entry and sent again 10 ms later).
    #[test]
    fn perl_relay_lets_go_of_sshds_time_wait_in_the_next_millisecond() {
        let (mut child, _out, mut server) = greeted();
        for _ in 0..20 {
            let (sshd_end, ftp_end) = tuple();
            let (l, r) = (sshd_end.local_addr().unwrap(), ftp_end.local_addr().unwrap());
            let stdin = child.stdin.as_mut().unwrap();
            write!(stdin, "NOOP\r\nFTPSSH-HOLD {} {} {} {} 0\r\nRETR b\r\n", l.ip(), l.port(), r.ip(), r.port())
                .unwrap();
            assert_eq!(read_for(&mut server, Duration::from_millis(500)), "NOOP\r\n");
            drop(sshd_end); // sshd's end closes first: its TIME_WAIT...
            drop(ftp_end); // ...begins with the FTP server's FIN, acknowledged at once, on loopback
            let last = tick();
            server.write_all(b"200 ok\r\n").unwrap();
            assert_eq!(read_for(&mut server, Duration::from_secs(2)), "RETR b\r\n");
            let sent = tick();
            assert!(sent > last, "RETR b came in the millisecond of the last segment ({last})");
            assert!(sent <= last + 20, "held {} ms", sent - last);
            server.write_all(b"226 done\r\n").unwrap(); // RETR b's reply: the next hold counts on it
        }
        drop((child.stdin.take(), server));
        child.wait().unwrap();
    }

    /// A watched tuple is looked up at each preliminary reply: its proof comes on stderr once sshd's
    /// end (here: the listener's) is accepted, as soon as it is; the watch line never reaches the
    /// server, and a tuple nobody holds brings no proof, nor one no longer watched.
    #[test]
    fn perl_relay_proves_the_watched_tuple_at_each_preliminary_reply() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut child = std::process::Command::new("perl")
            .args(["-e", super::PERL, "127.0.0.1", &listener.local_addr().unwrap().port().to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut proofs = BufReader::new(child.stderr.take().unwrap());
        let forward = TcpListener::bind("127.0.0.1:0").unwrap(); // sshd's, for the data connection
        let ftp_end = TcpStream::connect(forward.local_addr().unwrap()).unwrap(); // not yet accepted
        let (f, l) = (ftp_end.local_addr().unwrap(), forward.local_addr().unwrap());
        let stdin = child.stdin.as_mut().unwrap();
        write!(stdin, "FTPSSH-WATCH {} {} {} {}\r\nRETR a\r\n", f.ip(), f.port(), l.ip(), l.port()).unwrap();
        assert_eq!(read_for(&mut server, Duration::from_millis(500)), "RETR a\r\n");
        server.write_all(b"150 here\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let accepted = Instant::now();
        let _sshd_end = forward.accept().unwrap();
        let mut line = String::new();
        proofs.read_line(&mut line).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(line, format!("FTPSSH-PROOF {} {} {} {} {me}\n", f.ip(), f.port(), l.ip(), l.port()));
        assert!(accepted.elapsed() < Duration::from_millis(25), "{:?}", accepted.elapsed());
        // Another reply: proven again; the server's end closed: nothing, then the next proof.
        server.write_all(b"226 done\r\n125 again\r\n").unwrap();
        line.clear();
        proofs.read_line(&mut line).unwrap();
        assert!(line.starts_with("FTPSSH-PROOF "), "{line}");
        drop(ftp_end);
        std::thread::sleep(Duration::from_millis(20));
        server.write_all(b"226 done\r\n150 gone\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        // A new tuple watched, a 150: the next proof read is that tuple's.
        let mut watch_new = |child: &mut std::process::Child, server: &mut TcpStream, why: &str| {
            let (ftp_end, sshd_end) = tuple();
            let (f, l) = (ftp_end.local_addr().unwrap(), sshd_end.local_addr().unwrap());
            let stdin = child.stdin.as_mut().unwrap();
            write!(stdin, "FTPSSH-WATCH {} {} {} {}\r\nNOOP\r\n", f.ip(), f.port(), l.ip(), l.port()).unwrap();
            assert_eq!(read_for(server, Duration::from_millis(500)), "NOOP\r\n");
            server.write_all(b"150 here\r\n").unwrap();
            line.clear();
            proofs.read_line(&mut line).unwrap();
            assert_eq!(line, format!("FTPSSH-PROOF {} {} {} {} {me}\n", f.ip(), f.port(), l.ip(), l.port()), "{why}");
            (ftp_end, sshd_end)
        };
        let ftp_end = watch_new(&mut child, &mut server, "only the new one");
        // Told to stop: a reply brings no proof of that tuple, and the next watch is proven alone.
        write!(child.stdin.as_mut().unwrap(), "FTPSSH-UNWATCH\r\nNOOP\r\n").unwrap();
        assert_eq!(read_for(&mut server, Duration::from_millis(500)), "NOOP\r\n");
        server.write_all(b"200 ok\r\n150 unwatched\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let _second = watch_new(&mut child, &mut server, "none for the tuple no longer watched");
        drop((child.stdin.take(), server, ftp_end));
        child.wait().unwrap();
    }

    /// An after line holds what follows until every command before it has its final reply, past
    /// the hold's one second (a transfer may last longer); a 1xx is not final.
    #[test]
    fn perl_relay_holds_after_lines_until_the_final_replies() {
        let (mut child, _out, mut server) = greeted();
        let stdin = child.stdin.as_mut().unwrap();
        write!(stdin, "SIZE a\r\nRETR a\r\nFTPSSH-AFTER\r\nSIZE b\r\nRETR b\r\nFTPSSH-AFTER\r\nHASH b\r\n").unwrap();
        let want = "SIZE a\r\nRETR a\r\n";
        assert_eq!(read_until(&mut server, want, Duration::from_millis(500)), want);
        server.write_all(b"213 5\r\n150 sending\r\n").unwrap();
        assert_eq!(read_for(&mut server, Duration::from_millis(1300)), "", "held past a second: RETR a runs");
        server.write_all(b"226-done\r\n226 really\r\n").unwrap();
        let want = "SIZE b\r\nRETR b\r\n";
        assert_eq!(read_until(&mut server, want, Duration::from_millis(500)), want);
        server.write_all(b"213 5\r\n150 sending\r\n").unwrap();
        assert_eq!(read_for(&mut server, Duration::from_millis(200)), "", "HASH b waits for RETR b");
        // ABOR: the release lets go of everything held, the later after line too.
        write!(stdin, "FTPSSH-RELEASE\r\nABOR\r\n").unwrap();
        let want = "HASH b\r\nABOR\r\n";
        assert_eq!(read_until(&mut server, want, Duration::from_millis(1000)), want);
        drop((child.stdin.take(), server));
        child.wait().unwrap();
    }

    /// A release line lets go of a hold at once (the ABOR behind it must not wait for a transfer
    /// that hangs), and never reaches the server.
    #[test]
    fn perl_relay_lets_go_on_a_release_line() {
        let (mut child, _out, mut server) = greeted();
        let stdin = child.stdin.as_mut().unwrap();
        write!(stdin, "RETR a\r\nFTPSSH-HOLD 127.0.0.1 1 127.0.0.1 2 0\r\nRETR b\r\n").unwrap();
        assert_eq!(read_for(&mut server, Duration::from_millis(500)), "RETR a\r\n");
        assert_eq!(read_for(&mut server, Duration::from_millis(200)), "", "held: RETR a has no reply");
        write!(stdin, "FTPSSH-RELEASE\r\nABOR\r\n").unwrap();
        let want = "RETR b\r\nABOR\r\n";
        assert_eq!(read_until(&mut server, want, Duration::from_millis(1000)), want);
        drop((child.stdin.take(), server));
        child.wait().unwrap();
    }
}
