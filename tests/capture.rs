//! Tests of the capture helper (`tests/common/capture/`) itself. A check that cannot fail is
//! worthless, so the lab tests show that it does fail on plaintext and passes on SSH; the unit
//! tests check the pcap parser and the reassembly on hand-made files.
//!
//! The lab tests need root and the lab (`scripts/lab up`), and share its veth:
//! `cargo test --test capture -- --test-threads=1`.

#[path = "common/capture/mod.rs"]
mod capture;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::{Command, Stdio};

use capture::{assert_encrypted, file_samples, in_netns, read_pcap, Capture, Captured, Protocol};

const LAB_ENV: &str = "/run/ftpssh-lab/lab.env";

/// The lab's `KEY=VALUE` file. Lab tests never skip: without the lab they fail.
struct Lab(HashMap<String, String>);

impl Lab {
    fn read() -> Lab {
        let text =
            std::fs::read_to_string(LAB_ENV).unwrap_or_else(|_| panic!("lab is not up: run `scripts/lab up` as root"));
        let pairs = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches(['"', '\'']).to_owned()));
        Lab(pairs.collect())
    }

    fn get(&self, key: &str) -> &str {
        self.0.get(key).unwrap_or_else(|| panic!("{LAB_ENV} has no {key}"))
    }
}

/// The panic message of `f`, which must panic.
fn panic_message(what: &str, f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err(&format!("{what} should have failed on this capture"));
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Positive control: a secret sent in plaintext, split over two TCP segments, on a port other
/// than SSH's. Both checks must fail, and the secret must be found only by reassembly.
#[test]
fn plaintext_split_across_segments_is_caught() {
    let lab = Lab::read();
    let server: IpAddr = lab.get("SERVER_ADDR").parse().expect("SERVER_ADDR is an address");
    let ssh_port: u16 = lab.get("SSH_PORT").parse().expect("SSH_PORT is a port");
    let secret = b"positive-control-secret-5be1d0c7";
    let (first, second) = secret.split_at(14);

    let capture = Capture::start(lab.get("CLIENT_NS"), lab.get("CLIENT_IF"));
    // Sockets keep the namespace they were made in: bind in the server's, connect from the
    // client's (the kernel completes the handshake from the backlog), accept here.
    let listener = in_netns(lab.get("SERVER_NS"), move || TcpListener::bind((server, 0)))
        .join()
        .unwrap()
        .expect("could not listen in the server namespace");
    let addr = listener.local_addr().unwrap();
    let mut client = in_netns(lab.get("CLIENT_NS"), move || TcpStream::connect(addr))
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("could not connect to {addr} from the client namespace: {e}"));
    let (mut server_side, _) = listener.accept().unwrap();
    client.set_nodelay(true).unwrap();
    // The second half is written only once the first has arrived: two segments, no sleep.
    let mut got = vec![0; secret.len()];
    client.write_all(first).unwrap();
    server_side.read_exact(&mut got[..first.len()]).unwrap();
    client.write_all(second).unwrap();
    server_side.read_exact(&mut got[first.len()..]).unwrap();
    assert_eq!(&got, secret);
    drop((client, server_side));
    let captured = capture.stop();

    assert!(
        captured.tcp_payload_bytes() >= secret.len() as u64,
        "the capture missed the plaintext: {}",
        captured.summary()
    );
    assert!(
        !captured.packets.iter().any(|p| capture::contains(&p.frame, secret)),
        "the secret went out in one frame, so this test does not exercise reassembly"
    );
    let msg = panic_message("assert_absent", || captured.assert_absent(secret, "the secret"));
    assert!(msg.contains("split across TCP segments"), "unexpected message: {msg}");
    let msg = panic_message("assert_only_tcp_port", || captured.assert_only_tcp_port(ssh_port));
    assert!(msg.contains(&format!(":{}", addr.port())), "the flow is not listed: {msg}");
}

/// Negative control: the same kind of secret through the lab's sshd passes every check, and the
/// capture saw at least as many payload bytes as were sent.
#[test]
fn data_through_ssh_passes() {
    let lab = Lab::read();
    let ssh_port: u16 = lab.get("SSH_PORT").parse().expect("SSH_PORT is a port");
    let secret = b"negative-control-secret-9a41f2e6";
    let data: Vec<u8> =
        (0..8192u32).flat_map(|i| format!("{i:08x} {}\n", String::from_utf8_lossy(secret)).into_bytes()).collect();

    let capture = Capture::start(lab.get("CLIENT_NS"), lab.get("CLIENT_IF"));
    let mut ssh = Command::new("ip")
        .args(["netns", "exec", lab.get("CLIENT_NS"), "ssh", "-F", "/dev/null"])
        .args(["-i", lab.get("SSH_KEY"), "-p", lab.get("SSH_PORT")])
        .arg(format!("-oUserKnownHostsFile={}", lab.get("KNOWN_HOSTS")))
        .args(["-oBatchMode=yes", "-oStrictHostKeyChecking=yes", "-oCompression=no"])
        .arg(format!("{}@{}", lab.get("SSH_USER"), lab.get("SERVER_ADDR")))
        .arg("wc -c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("could not run ssh");
    ssh.stdin.take().unwrap().write_all(&data).unwrap();
    let out = ssh.wait_with_output().unwrap();
    let captured = capture.stop();

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ssh failed ({}): {stderr}", out.status);
    let counted = String::from_utf8_lossy(&out.stdout);
    assert_eq!(counted.trim(), data.len().to_string(), "sshd did not receive all the data");
    let samples = file_samples(&data);
    let mut secrets: Vec<(&[u8], &str)> = vec![(secret, "the secret")];
    secrets.extend(samples.iter().map(|s| (&s[..], "a sample of the data")));
    assert_encrypted(&captured, ssh_port, &secrets, data.len() as u64);
}

// ---------------------------------------------------------------------------------------------
// Unit tests on hand-made pcap files: no lab needed.

const CLIENT: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [10, 0, 0, 2];

fn ethernet(ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(body);
    f.resize(f.len().max(60), 0); // Ethernet pads short frames: padding is not payload
    f
}

fn tcp4(src: [u8; 4], dst: [u8; 4], ports: (u16, u16), seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(40 + payload.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(&ports.0.to_be_bytes());
    ip.extend_from_slice(&ports.1.to_be_bytes());
    ip.extend_from_slice(&seq.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    ip.extend_from_slice(payload);
    ethernet(0x0800, &ip)
}

fn udp6(src: Ipv6Addr, dst: Ipv6Addr, ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len() as u16;
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&len.to_be_bytes());
    ip.extend_from_slice(&[17, 64]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(&ports.0.to_be_bytes());
    ip.extend_from_slice(&ports.1.to_be_bytes());
    ip.extend_from_slice(&len.to_be_bytes());
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(payload);
    ethernet(0x86dd, &ip)
}

fn arp() -> Vec<u8> {
    ethernet(0x0806, &[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 1])
}

/// A classic pcap file: `nano` picks the nanosecond magic.
fn pcap(big_endian: bool, nano: bool, frames: &[Vec<u8>]) -> Vec<u8> {
    let word = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let half = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut file = Vec::new();
    file.extend_from_slice(&word(if nano { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    file.extend_from_slice(&half(2));
    file.extend_from_slice(&half(4));
    for v in [0, 0, 262_144, 1] {
        file.extend_from_slice(&word(v));
    }
    for (i, frame) in frames.iter().enumerate() {
        for v in [1_700_000_000 + i as u32, 500, frame.len() as u32, frame.len() as u32] {
            file.extend_from_slice(&word(v));
        }
        file.extend_from_slice(frame);
    }
    file
}

#[test]
fn parses_both_byte_orders_and_both_magics() {
    let v6 = (Ipv6Addr::LOCALHOST, "fe80::1".parse::<Ipv6Addr>().unwrap());
    let frames = [arp(), tcp4(CLIENT, SERVER, (40000, 22), 7, b"hi"), udp6(v6.0, v6.1, (5353, 53), b"query")];
    for (big_endian, nano) in [(false, false), (true, false), (false, true), (true, true)] {
        let packets = read_pcap(&pcap(big_endian, nano, &frames)[..]).unwrap();
        assert_eq!(packets.len(), 3, "big endian {big_endian}, nano {nano}");
        assert_eq!(packets[0].protocol, Protocol::NotIp(0x0806));
        assert_eq!(packets[0].payload(), b"");
        assert_eq!(packets[0].frame, frames[0]);

        let tcp = &packets[1];
        assert_eq!(tcp.protocol, Protocol::Tcp);
        assert_eq!((tcp.src, tcp.dst), (Some(IpAddr::from(CLIENT)), Some(IpAddr::from(SERVER))));
        assert_eq!((tcp.src_port, tcp.dst_port), (Some(40000), Some(22)));
        assert_eq!(tcp.payload(), b"hi", "Ethernet padding is not payload");

        let udp = &packets[2];
        assert_eq!(udp.protocol, Protocol::Udp);
        assert_eq!((udp.src, udp.dst), (Some(IpAddr::from(v6.0)), Some(IpAddr::from(v6.1))));
        assert_eq!((udp.src_port, udp.dst_port), (Some(5353), Some(53)));
        assert_eq!(udp.payload(), b"query");
    }
}

#[test]
fn rejects_what_is_not_an_ethernet_pcap() {
    assert!(read_pcap(&b"not a pcap file at all, sorry"[..]).is_err());
    let mut linux_cooked = pcap(false, false, &[]);
    linux_cooked[20] = 113;
    assert!(read_pcap(&linux_cooked[..]).is_err());
    let full = pcap(false, false, &[arp()]);
    assert!(read_pcap(&full[..full.len() - 1]).is_err(), "a truncated frame is an error");
    assert!(read_pcap(&full[..full.len() - arp().len() - 3]).is_err(), "so is a truncated header");
}

#[test]
fn reassembly_finds_a_needle_split_across_segments() {
    let ports = (40000, 2121);
    let at = |seq: u32, data: &[u8]| tcp4(CLIENT, SERVER, ports, seq, data);
    // "PASS hunter2\r\n" in three segments around a sequence wrap, arriving out of order,
    // with a retransmission overlapping the first two.
    let base = u32::MAX - 3;
    let frames = [
        at(base, b"PASS h"),
        at(base.wrapping_add(9), b"er2\r\n"),
        at(base, b"PASS hunt"),
        at(base.wrapping_add(6), b"unt"),
        tcp4(SERVER, CLIENT, (ports.1, ports.0), 99, b"230 ok\r\n"),
    ];
    let captured = Captured::new(read_pcap(&pcap(false, false, &frames)[..]).unwrap(), 0, String::new());
    assert_eq!(captured.tcp_payload_bytes(), 14 + 8, "retransmitted bytes count once");

    captured.assert_absent(b"hunter3", "an absent word");
    captured.assert_absent(b"230 ok\r\nPASS", "bytes of two different streams");
    for needle in [&b"hunter2"[..], b"PASS hunter2\r\n", b"ok"] {
        let failed = catch_unwind(AssertUnwindSafe(|| captured.assert_absent(needle, "secret")));
        assert!(failed.is_err(), "{:?} was not found", String::from_utf8_lossy(needle));
    }
    captured.assert_only_tcp_port(2121);
    assert!(catch_unwind(AssertUnwindSafe(|| captured.assert_only_tcp_port(22))).is_err());
}

#[test]
fn assert_encrypted_wants_traffic() {
    let frames = [tcp4(CLIENT, SERVER, (40000, 22), 1, &[0xa5; 100])];
    let captured = Captured::new(read_pcap(&pcap(true, false, &frames)[..]).unwrap(), 0, String::new());
    assert_encrypted(&captured, 22, &[(b"secret", "secret")], 100);
    let failed = catch_unwind(AssertUnwindSafe(|| assert_encrypted(&captured, 22, &[], 101)));
    assert!(failed.is_err(), "101 bytes expected, 100 seen");
    let dropped = Captured::new(captured.packets.clone(), 3, String::new());
    let failed = catch_unwind(AssertUnwindSafe(|| assert_encrypted(&dropped, 22, &[], 0)));
    assert!(failed.is_err(), "a capture with kernel drops proves nothing");
}

#[test]
fn file_samples_are_distinctive_windows_from_start_to_end() {
    let mut state = 0x2545_f491_u32;
    let mut content: Vec<u8> = (0..1_000_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    content[..1000].fill(0); // a dull start: the first sample must skip it
    let samples = file_samples(&content);
    assert_eq!(samples.len(), 5);
    assert!(samples.iter().all(|s| s.len() == capture::SAMPLE_LEN));
    assert!(samples[0] != vec![0; 64] && capture::contains(&content[..8192], &samples[0]));
    assert!(capture::contains(&content[content.len() - 64..], &samples[4]));
    assert_eq!(file_samples(b"tiny"), vec![b"tiny".to_vec()]);
}
