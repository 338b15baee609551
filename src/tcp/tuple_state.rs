//! A data connection's 4-tuple looked up on the SSH server, in perl, by the scripts there that
//! wait for it to close or reclaim it ([`crate::dataport::reclaim::reclaimer`], [`crate::dataport::relay`]).
//!
//! `tuple_state(LA, LP, RA, RP)` is the TCP state (Linux's numbers: 1 established, 6 TIME_WAIT,
//! ...) of the socket on this host whose local end is LA:LP and whose peer is RA:RP, 0 if there is
//! none (a listener on LA:LP does not count). `tuple_sock` adds which socket it is: the kernel's
//! cookie, kept from a connection's first state to its TIME_WAIT, so a later connection of the same
//! 4-tuple (another incarnation) tells itself apart. The table has no cookie: there it is the
//! inode, empty once the program let go of the socket (closed, TIME_WAIT). Then come the
//! socket's owner (uid) and inode, 0 once no process holds it ([`crate::dataport::origin`] reads them).
//!
//! It asks the kernel for that one socket (netlink sock_diag, an exact lookup, as `ss` does for
//! one socket). Reading `/proc/net/tcp` instead walks the whole established-socket hash, shared by
//! every network namespace and sized by the host's memory (docs/real-systems.md#knowing-the-proxy-port-p),
//! which would make the relay's hold (one lookup a file) cost more CPU than anything else in an
//! `mget` (docs/benchmarks.md#measured-effects). Where netlink is refused (a sandbox), it reads
//! the table.

/// The perl (`sub tuple_state`); needs Socket's inet_aton, inet_pton and AF_INET6. A macro, so
/// that `concat!` takes it into a script. No single quotes: the scripts travel inside '...'.
macro_rules! perl_tuple_state {
    () => {
        r#"my $diag;
sub tuple_state { (tuple_sock(@_))[0] }
sub tuple_sock { my ($la, $lp, $ra, $rp) = @_; my $v6 = $la =~ /:/;
  my $ad = sub { $v6 ? inet_pton(AF_INET6, $_[0]) : inet_aton($_[0]) . "\0" x 12 };
  unless (defined $diag) { my $nl; $diag = socket($nl, 16, 2, 4) ? $nl : 0 }
  if ($diag) { my $req = pack("CCCCL", $v6 ? 10 : 2, 6, 0, 0, 0xFFFF) . pack("nn", $lp, $rp) . $ad->($la) . $ad->($ra) . pack("LLL", 0, 0xFFFFFFFF, 0xFFFFFFFF);
    if (send($diag, pack("LSSLL", 16 + length $req, 20, 1, 0, 0) . $req, 0) && defined recv($diag, my $b, 4096, 0)) { my $type = unpack("x4S", $b);
      return (0, "") if $type == 2 && unpack("x16l", $b) == -2;
      if ($type == 20 && length $b >= 88) { my $st = unpack("x17C", $b); return $st == 10 ? (0, "") : ($st, join(".", unpack("x60LL", $b)), unpack("x80LL", $b)) } }
    $diag = 0 }
  my $key = sub { my ($a, $p) = @_; ($v6 ? join("", map { sprintf "%08X", $_ } unpack("L4", $ad->($a))) : sprintf("%08X", unpack("L", $ad->($a)))) . sprintf(":%04X", $p) };
  my ($l, $r) = ($key->($la, $lp), $key->($ra, $rp));
  open(my $t, "<", $v6 ? "/proc/net/tcp6" : "/proc/net/tcp") or return (0, "");
  while (<$t>) { my @f = split; return (hex $f[3], $f[9] ? $f[9] : "", $f[7], $f[9]) if $f[1] eq $l && $f[2] eq $r } (0, "") }
"#
    };
}
pub(crate) use perl_tuple_state;

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;

    /// `tuple_state` for each tuple, asked by netlink or (`by_table`) from `/proc/net/tcp`.
    fn states(by_table: bool, tuples: &[(SocketAddr, SocketAddr)]) -> Vec<u32> {
        let script = concat!(
            "use strict; use Socket qw(AF_INET6 inet_aton inet_pton);\n",
            perl_tuple_state!(),
            "$diag = 0 if shift; print join(\" \", map { tuple_state(split / /) } @ARGV);"
        );
        let mut args = vec!["-e".to_string(), script.to_string(), u8::from(by_table).to_string()];
        args.extend(tuples.iter().map(|(l, r)| format!("{} {} {} {}", l.ip(), l.port(), r.ip(), r.port())));
        let out = std::process::Command::new("perl").args(&args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().split(' ').map(|s| s.parse().unwrap()).collect()
    }

    /// Both ways of asking agree, through a connection's life on IPv4 and IPv6: established,
    /// half-closed, TIME_WAIT at the end that closed first; no socket, and a listener's port,
    /// count as none.
    #[test]
    fn netlink_and_the_table_agree_on_a_connections_life() {
        for host in ["127.0.0.1", "[::1]"] {
            let listener = TcpListener::bind(format!("{host}:0")).unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            let (c, s) = (client.local_addr().unwrap(), server.local_addr().unwrap());
            let stranger: SocketAddr = format!("{host}:9").parse().unwrap();
            let ask = |want: [u32; 3]| {
                let tuples = [(c, s), (s, c), (s, stranger)];
                assert_eq!(states(false, &tuples), want, "netlink, {host}");
                assert_eq!(states(true, &tuples), want, "the table, {host}");
            };
            ask([1, 1, 0]); // established both ways; the listener's port with another peer: none
            drop(client);
            std::thread::sleep(Duration::from_millis(50));
            ask([5, 8, 0]); // FIN_WAIT2, CLOSE_WAIT
            drop(server);
            std::thread::sleep(Duration::from_millis(50));
            ask([6, 0, 0]); // TIME_WAIT where it closed first, nothing at the other end
        }
    }
}
