//! A small FTP server that lies about its hash, for `--verify`'s failure
//! path: it serves one content under any name, announces `HASH SHA-256` in
//! FEAT, and answers HASH with the SHA-256 of other bytes. It listens on
//! 127.0.0.1 in the lab's server namespace, where the lab's sshd reaches it;
//! data goes passive (EPSV), so run the tool with `--data-mode passive`.
#![allow(dead_code)]

use std::io::Read;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use sha2::Digest;

use super::lab::{in_netns, Lab};

/// The running fake server (its threads end with the test process).
pub struct FakeFtp {
    /// Its control port on 127.0.0.1 in the server namespace.
    pub port: u16,
    /// What uploads did: `STOR name N` (N bytes received), `DELE name`.
    pub log: Arc<Mutex<Vec<String>>>,
}

struct Files {
    content: Vec<u8>,
    claimed: String,
    data: TcpListener,
    log: Arc<Mutex<Vec<String>>>,
}

impl FakeFtp {
    /// Serve `content`; HASH answers the SHA-256 of `claimed`.
    pub fn start(lab: &Lab, content: &[u8], claimed: &[u8]) -> FakeFtp {
        let (control, data) = in_netns(lab.var("SERVER_NS"), || {
            (TcpListener::bind("127.0.0.1:0").unwrap(), TcpListener::bind("127.0.0.1:0").unwrap())
        });
        let port = control.local_addr().unwrap().port();
        let claimed = sha2::Sha256::digest(claimed).iter().map(|b| format!("{b:02x}")).collect();
        let log = Arc::new(Mutex::new(Vec::new()));
        let files = Arc::new(Files { content: content.to_vec(), claimed, data, log: log.clone() });
        std::thread::spawn(move || {
            for stream in control.incoming().map_while(Result::ok) {
                let files = files.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &files);
                });
            }
        });
        FakeFtp { port, log }
    }
}

/// One control connection, command by command, until QUIT or EOF.
fn serve(stream: TcpStream, files: &Files) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let size = files.content.len();
    let data_port = files.data.local_addr()?.port();
    out.write_all(b"220 fake FTP server that lies about hashes\r\n")?;
    for line in BufReader::new(stream).lines() {
        let line = line?;
        let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
        let reply = match verb.to_ascii_uppercase().as_str() {
            "USER" => "331 password please".to_string(),
            "PASS" => "230 logged in".into(),
            "TYPE" | "OPTS" => "200 ok".into(),
            "FEAT" => "211-Features:\r\n EPSV\r\n HASH SHA-256*;\r\n SIZE\r\n211 End".into(),
            "SIZE" => format!("213 {size}"),
            "EPSV" => format!("229 Entering Extended Passive Mode (|||{data_port}|)"),
            "HASH" => format!("213 SHA-256 0-{size} {} {arg}", files.claimed),
            "RETR" => send(&mut out, files, &format!("{arg} ({size} bytes)"), &files.content)?,
            // mget's listing: the one file, whatever the directory.
            "NLST" => send(&mut out, files, "file list", b"file.txt\r\n")?,
            // An upload is taken whole and forgotten: SIZE and HASH go on answering as above.
            "STOR" => {
                out.write_all(b"150 Ok to send data\r\n")?;
                let (mut data, _) = files.data.accept()?;
                let mut got = Vec::new();
                data.read_to_end(&mut got)?;
                files.log.lock().unwrap().push(format!("STOR {arg} {}", got.len()));
                "226 Transfer complete".into()
            }
            "DELE" => {
                files.log.lock().unwrap().push(format!("DELE {arg}"));
                "250 deleted".into()
            }
            "QUIT" => {
                out.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => "502 not implemented here".into(),
        };
        out.write_all(format!("{reply}\r\n").as_bytes())?;
    }
    Ok(())
}

/// 150, `bytes` on the next passive data connection, then the 226 to send.
fn send(out: &mut TcpStream, files: &Files, what: &str, bytes: &[u8]) -> std::io::Result<String> {
    out.write_all(format!("150 Opening BINARY mode data connection for {what}\r\n").as_bytes())?;
    let (mut data, _) = files.data.accept()?;
    data.write_all(bytes)?;
    drop(data);
    Ok("226 Transfer complete".into())
}
