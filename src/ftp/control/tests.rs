//! The control connection against scripted servers on in-memory streams.

use super::*;
use crate::ftp::command::TransferType;

#[tokio::test]
async fn login_hides_the_password_and_sets_binary() {
    let (client, mut server) = tokio::io::duplex(4096);
    let mut control = Control::new(client, REPLY_TIMEOUT);
    let script = tokio::spawn(async move {
        let mut seen = String::new();
        server.write_all(b"220 ProFTPD Server (Debian) [127.0.0.1]\r\n").await.unwrap();
        for answer in ["331 Password required for u\r\n", "230 User u logged in\r\n", "200 Type set to I\r\n"] {
            let mut buf = [0u8; 256];
            let n = server.read(&mut buf).await.unwrap();
            seen.push_str(std::str::from_utf8(&buf[..n]).unwrap());
            server.write_all(answer.as_bytes()).await.unwrap();
        }
        seen
    });
    control.greeting().await.unwrap();
    control.login("u", "s3cret", TransferType::Binary, async { Ok(()) }).await.unwrap();
    assert_eq!(script.await.unwrap(), "USER u\r\nPASS s3cret\r\nTYPE I\r\n");
}

/// A worker of `--jobs N` opens its link while the first still logs in: USER
/// goes out at once, PASS only once the gate opens, and never if it will not.
#[tokio::test]
async fn a_held_password_waits_for_its_gate_and_is_never_sent_if_it_stays_shut() {
    let (mut control, mut server) = greeted().await;
    server.write_all(b"331 Password required\r\n").await.unwrap();
    let (open, gate) = crate::credentials::PasswordGate::new();
    let login = control.login("u", "s3cret", TransferType::Binary, gate.opened());
    let script = async {
        let mut buf = [0u8; 256];
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"USER u\r\n");
        tokio::time::sleep(Duration::from_millis(50)).await;
        open.send_replace(true);
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"PASS s3cret\r\n", "after the gate opened, not before");
        server.write_all(b"230 in\r\n").await.unwrap();
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"TYPE I\r\n");
        server.write_all(b"200 binary\r\n").await.unwrap();
    };
    let (logged_in, ()) = tokio::join!(login, script);
    logged_in.unwrap();

    let (mut control, mut server) = greeted().await;
    server.write_all(b"331 Password required\r\n").await.unwrap();
    let (open, gate) = crate::credentials::PasswordGate::new();
    drop(open); // the first login failed
    let err = control.login("u", "s3cret", TransferType::Binary, gate.opened()).await.unwrap_err();
    assert!(err.to_string().contains("first login did not succeed"), "{err:#}");
    drop(control);
    let mut sent = String::new();
    server.read_to_string(&mut sent).await.unwrap();
    assert_eq!(sent, "USER u\r\n", "no PASS");
}

#[tokio::test]
async fn two_commands_in_one_write_then_the_second_is_owed() {
    let (mut control, mut server) = greeted().await;
    let (size, retr) = (Command::Size("a".into()), Command::Retr("a".into()));
    let script = tokio::spawn(async move {
        let mut buf = [0u8; 256];
        let n = server.read(&mut buf).await.unwrap();
        server.write_all(b"213 5\r\n150 Opening (5 bytes)\r\n226 Done\r\n").await.unwrap();
        (String::from_utf8_lossy(&buf[..n]).into_owned(), server)
    });
    control.pipeline(&[&size, &retr]).await.unwrap();
    assert_eq!(control.owed(), 2);
    assert_eq!(control.read_reply().await.unwrap().code, 213);
    assert!(!control.in_step(), "RETR is owed");
    let refused = control.send(&Command::Pasv).await.unwrap_err();
    assert!(matches!(crate::error::find::<OutOfStep>(&refused), Some(OutOfStep::Owed(c)) if c == "RETR a"));
    assert_eq!(control.read_reply().await.unwrap().code, 150);
    assert_eq!(control.read_reply().await.unwrap().code, 226);
    assert!(control.in_step());
    let (sent, _server) = script.await.unwrap();
    assert_eq!(sent, "SIZE a\r\nRETR a\r\n", "one write");
}

#[tokio::test]
async fn wrong_password_is_a_typed_refusal() {
    let (client, mut server) = tokio::io::duplex(4096);
    let mut control = Control::new(client, REPLY_TIMEOUT);
    server.write_all(b"220 hi\r\n331 Password required\r\n530 Login incorrect.\r\n").await.unwrap();
    control.greeting().await.unwrap();
    let err = control.login("u", "bad", TransferType::Binary, async { Ok(()) }).await.unwrap_err();
    let ftp = crate::error::find::<FtpError>(&err).unwrap();
    assert_eq!((ftp.reply.code, ftp.kind()), (530, Kind::FtpRefused));
    assert_eq!(ftp.command, "PASS ****");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let (client, _server) = tokio::io::duplex(64);
    let mut control = Control::new(client, REPLY_TIMEOUT);
    control.timeout = Duration::from_millis(50);
    assert!(control.read_reply().await.unwrap_err().to_string().contains("no reply"));
}

/// The failure that kept runs out of step: a transfer given up after its 150 leaves its
/// 226 unread; the next command must not take it for its own answer.
#[tokio::test]
async fn a_stale_final_reply_is_read_before_the_next_command() {
    let (client, mut server) = tokio::io::duplex(4096);
    let mut control = Control::new(client, REPLY_TIMEOUT);
    server.write_all(b"220 hi\r\n150 Opening BINARY mode data connection\r\n").await.unwrap();
    control.greeting().await.unwrap();
    assert!(control.in_step());
    control.send(&Command::Retr("big.bin".into())).await.unwrap();
    assert!(control.read_reply().await.unwrap().is_preliminary());
    let refused = control.send(&Command::Stor("up.bin".into())).await.unwrap_err();
    assert!(matches!(crate::error::find::<OutOfStep>(&refused), Some(OutOfStep::Owed(c)) if c == "RETR big.bin"));
    server.write_all(b"226 Transfer complete\r\n213 10876\r\n").await.unwrap();
    control.resync(Duration::from_secs(1)).await.unwrap();
    assert_eq!(control.command(&Command::Size("small.bin".into())).await.unwrap().code, 213);
    let mut seen = vec![0u8; 64];
    let n = server.read(&mut seen).await.unwrap();
    assert_eq!(&seen[..n], b"RETR big.bin\r\nSIZE small.bin\r\n", "no STOR was sent, no ABOR needed");
}

/// A control connection past the server's greeting, and the server's end of it.
async fn greeted() -> (Control, tokio::io::DuplexStream) {
    let (client, mut server) = tokio::io::duplex(4096);
    let mut control = Control::new(client, REPLY_TIMEOUT);
    server.write_all(b"220 hi\r\n").await.unwrap();
    control.greeting().await.unwrap();
    (control, server)
}

/// A control connection whose RETR has had its 150 and still owes its final reply.
async fn owing_retr() -> (Control, tokio::io::DuplexStream) {
    let (mut control, mut server) = greeted().await;
    server.write_all(b"150 Opening\r\n").await.unwrap();
    control.send(&Command::Retr("big.bin".into())).await.unwrap();
    control.read_reply().await.unwrap();
    (control, server)
}

/// The server's side: read until ABOR comes, then end the transfer and answer it (RFC 959 4.1.3).
async fn answer_abor(mut server: tokio::io::DuplexStream) -> tokio::io::DuplexStream {
    let mut buf = vec![0u8; 64];
    let mut seen = Vec::new();
    while !seen.ends_with(b"ABOR\r\n") {
        let n = server.read(&mut buf).await.unwrap();
        seen.extend_from_slice(&buf[..n]);
    }
    server.write_all(b"426 Transfer aborted\r\n226 Abort successful\r\n").await.unwrap();
    server
}

#[tokio::test]
async fn a_transfer_that_does_not_end_is_aborted_and_read_through() {
    let (mut control, server) = owing_retr().await;
    let script = tokio::spawn(answer_abor(server));
    control.resync(Duration::from_millis(100)).await.unwrap();
    assert!(control.in_step());
    drop(script.await.unwrap());
}

#[tokio::test]
async fn a_raced_transfer_is_aborted_at_once() {
    let (mut control, server) = owing_retr().await;
    let script = tokio::spawn(answer_abor(server));
    control.abort_on_resync();
    let started = std::time::Instant::now();
    control.resync(Duration::from_secs(30)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "ABOR waited for the transfer first");
    assert!(control.in_step());
    drop(script.await.unwrap());
}

#[tokio::test]
async fn a_connection_that_cannot_be_brought_back_is_broken() {
    let (mut control, server) = owing_retr().await;
    // Silent: neither the transfer's end nor ABOR's answer comes.
    assert!(control.resync(Duration::from_millis(50)).await.is_err());
    let refused = control.send(&Command::Pasv).await.unwrap_err();
    assert!(matches!(crate::error::find::<OutOfStep>(&refused), Some(OutOfStep::Broken(_))));
    drop(server);
}

#[tokio::test]
async fn a_421_ends_the_conversation() {
    let (client, mut server) = tokio::io::duplex(4096);
    let mut control = Control::new(client, REPLY_TIMEOUT);
    server.write_all(b"220 hi\r\n421 Service not available, closing control connection\r\n").await.unwrap();
    control.greeting().await.unwrap();
    assert_eq!(control.command(&Command::Retr("x".into())).await.unwrap().code, 421);
    assert!(!control.in_step(), "a 421 connection is not to be reused");
    assert!(control.resync(Duration::from_millis(50)).await.is_err());
}

#[tokio::test]
async fn an_unfinished_reply_is_named() {
    let (client, mut server) = tokio::io::duplex(4096);
    let mut control = Control::new(client, Duration::from_millis(50));
    server.write_all(b"150-Opening data connection\r\nstill opening\r\n").await.unwrap();
    let err = control.read_reply().await.unwrap_err().to_string();
    assert!(err.contains("unfinished for 50ms: \"150-Opening data connection\" and 1 more line,"), "{err}");
    assert!(err.contains("(`150 `)"), "{err}");
    // Where it would end can no longer be told: nothing more goes on this connection.
    assert!(!control.in_step());
}

#[tokio::test]
async fn eof_is_typed_so_the_caller_can_blame_the_transport() {
    let (client, server) = tokio::io::duplex(64);
    let mut control = Control::new(client, REPLY_TIMEOUT);
    drop(server);
    let err = control.greeting().await.unwrap_err();
    assert!(crate::error::find::<crate::error::Closed>(&err).is_some());
    assert!(!control.in_step());
}

/// Three commands pipelined behind a transfer: resync reads every final reply they owe, in
/// order, and the connection is in step again.
#[tokio::test]
async fn resync_reads_through_every_pipelined_command() {
    let (mut control, mut server) = greeted().await;
    let (size, retr, hash) = (Command::Size("a".into()), Command::Retr("a".into()), Command::Hash("a".into()));
    control.pipeline(&[&size, &retr, &hash]).await.unwrap();
    assert_eq!(control.owed(), 3);
    let refused = control.send(&Command::Pasv).await.unwrap_err();
    assert!(matches!(crate::error::find::<OutOfStep>(&refused), Some(OutOfStep::Owed(c)) if c == "SIZE a"));
    server.write_all(b"213 5\r\n150 Opening\r\n226 Done\r\n213-Computing\r\n213 SHA-256 0-5 ab a\r\n").await.unwrap();
    assert_eq!(control.read_reply().await.unwrap().code, 213, "SIZE's");
    control.resync(Duration::from_secs(1)).await.unwrap();
    assert!(control.in_step() && control.owed() == 0);
    control.send(&Command::Pasv).await.unwrap();
}

/// `120` (ready in n minutes) twice a second, forever: each within the timeout, the greeting
/// never. It ends at the timeout, saying what the server kept sending.
#[tokio::test]
async fn a_greeting_of_120_forever_ends_at_the_timeout() {
    let (client, mut server) = tokio::io::duplex(4096);
    let mut control = Control::new(client, Duration::from_millis(400));
    tokio::spawn(async move {
        while server.write_all(b"120 Service ready in 1 minutes\r\n").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(3), control.greeting()).await.expect("no end").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    let why = err.to_string();
    assert!(
        why.contains("kept sending \"120 Service ready in 1 minutes\"") && why.contains("never its greeting"),
        "{why}"
    );
}
