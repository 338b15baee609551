//! The teaching demo against the lab: what it narrates is what the socket
//! tables (read here with `ss`) show, incarnations rise, the countdown falls,
//! collisions and their remedies happen for real, and the timeline is a real
//! picture (XML that a headless Chromium renders, not blank).
//!
//! Needs root, chromium, `scripts/lab up`; run under the lab's lock with `--test-threads=1`.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::lab::{Lab, ServerSysctl};
use common::sockets::{Poller, Row};
use common::tool::{run, stderr, Tool};

/// One demo run: its narration (stdout), its timeline files, and the rows `ss` saw during it.
struct DemoRun {
    text: String,
    svg: PathBuf,
    html: PathBuf,
    baseline: (BTreeSet<Row>, BTreeSet<Row>),
    seen: (BTreeSet<Row>, BTreeSet<Row>),
}

/// Run `demo small.bin ARGS` on ProFTPD with a fixed data source port, timestamps as given.
fn demo(name: &str, timestamps: bool, args: &[&str]) -> DemoRun {
    let _ts = ServerSysctl::set(&Lab::get(), "net.ipv4.tcp_timestamps", if timestamps { "1" } else { "0" }, Some("1"));
    let tool = Tool::new();
    let lab = &tool.lab;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("demo-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("timeline.svg");
    let (cns, sns) = (lab.var("CLIENT_NS"), lab.var("SERVER_NS"));
    let baseline = (common::sockets::read(cns).into_iter().collect(), common::sockets::read(sns).into_iter().collect());
    let poller = Poller::start(cns, sns);
    let mut cmd = tool.cmd(lab.port("PROFTPD_FIXED_PORT"));
    cmd.args(["demo", "small.bin", "--timeline", svg.to_str().unwrap()]).args(args);
    let out = run(&mut cmd);
    let seen = poller.stop();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("--- narration:\n{text}");
    assert!(out.status.success(), "demo failed: {}", stderr(&out));
    DemoRun { text, svg, html: dir.join("timeline.html"), baseline, seen }
}

/// Timestamps on: three transfers reuse one 4-tuple. `--step` without a terminal: straight through.
fn plain_run() -> &'static DemoRun {
    static RUN: OnceLock<DemoRun> = OnceLock::new();
    RUN.get_or_init(|| demo("plain", true, &["--transfers", "3", "--watch", "3", "--step"]))
}

/// The numbers after each `key` in the narration (line breaks from wrapping ignored).
fn numbers_after(text: &str, key: &str) -> Vec<u32> {
    let flat = text.replace('\n', " ");
    flat.match_indices(key)
        .filter_map(|(i, _)| {
            let digits: String = flat[i + key.len()..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// Ports of rows seen during the run but not before it, that match `keep`.
fn new_ports(seen: &BTreeSet<Row>, before: &BTreeSet<Row>, keep: impl Fn(&Row) -> bool) -> BTreeSet<u16> {
    seen.iter().filter(|r| !before.contains(r) && keep(r)).map(Row::local_port).collect()
}

#[test]
fn narration_names_the_runs_own_c_p_and_u_minus_1() {
    let run = plain_run();
    let lab = Lab::get();
    let ssh = format!("{}:{}", lab.var("SERVER_ADDR"), lab.var("SSH_PORT"));
    let ftp_port = lab.port("PROFTPD_FIXED_PORT");
    let cs = new_ports(&run.seen.0, &run.baseline.0, |r| r.state == "ESTAB" && r.peer == ssh);
    let ps = new_ports(&run.seen.1, &run.baseline.1, |r| {
        r.state == "ESTAB" && r.peer_port() == ftp_port && r.local.contains("127.0.0.1")
    });
    let listeners = new_ports(&run.seen.1, &run.baseline.1, |r| r.state == "LISTEN");
    let (c, p, u1) =
        (numbers_after(&run.text, "C = "), numbers_after(&run.text, "P = "), numbers_after(&run.text, "U-1 = "));
    assert!(!c.is_empty() && !p.is_empty() && !u1.is_empty(), "C, P or U-1 not named:\n{}", run.text);
    for port in &c {
        assert!(cs.contains(&(*port as u16)), "C = {port} but ss saw the client's SSH connections from {cs:?}");
    }
    for port in &p {
        assert!(ps.contains(&(*port as u16)), "P = {port} but ss saw control connections from {ps:?}");
    }
    for port in &u1 {
        assert!(listeners.contains(&(*port as u16)), "U-1 = {port} but ss saw new listeners {listeners:?}");
        assert!(p.contains(&(port + 1)), "U-1 = {port} is not P-1 for any P named ({p:?})");
    }
    // The tables show the same rows, labelled, in their states.
    for want in [format!("C   ESTAB      {}", lab.var("CLIENT_ADDR")), "U-1 LISTEN".into(), "S   TIME-WAIT".into()] {
        assert!(run.text.contains(&want), "no row {want:?} in the tables:\n{}", run.text);
    }
    assert!(!run.text.contains('\x1b'), "colours off a terminal");
}

/// `(4-tuple, incarnation)` for each data connection told, in order.
fn incarnations(text: &str) -> Vec<(String, u32)> {
    let flat = text.replace('\n', " ");
    let mut out = Vec::new();
    for (i, _) in flat.match_indices("Its 4-tuple is (") {
        let rest = &flat[i + "Its 4-tuple is (".len()..];
        let tuple = rest[..rest.find(')').unwrap()].to_string();
        let n = numbers_after(rest, "This is the ")[0];
        out.push((tuple, n));
    }
    out
}

#[test]
fn incarnations_rise_on_one_4_tuple() {
    let told = incarnations(&plain_run().text);
    assert_eq!(told.len(), 3, "{told:?}");
    assert!(told.iter().all(|(t, _)| *t == told[0].0), "one 4-tuple: {told:?}");
    assert_eq!(told.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [1, 2, 3]);
}

/// The countdown lines, in runs of consecutive readings: `(tuple, seconds left)`.
fn countdowns(text: &str) -> Vec<Vec<f64>> {
    let mut runs: Vec<Vec<f64>> = vec![vec![]];
    for line in text.lines() {
        match line.strip_prefix("    TIME_WAIT ").and_then(|l| l.strip_suffix(" s left")) {
            Some(rest) => runs.last_mut().unwrap().push(rest.rsplit(": ").next().unwrap().parse().unwrap()),
            None if !runs.last().unwrap().is_empty() => runs.push(vec![]),
            None => {}
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

#[test]
fn the_countdown_falls() {
    let runs = countdowns(&plain_run().text);
    assert_eq!(runs.len(), 3, "a countdown after each transfer: {runs:?}");
    for r in runs {
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(r.windows(2).all(|w| w[1] < w[0] - 0.5), "falls by about a second a reading: {r:?}");
        assert!(r[0] <= 60.0 && r[0] > 50.0, "read just after the transfer: {r:?}");
    }
}

/// The SVG's lane and incarnation groups, and the other classes drawn.
fn svg_groups(path: &PathBuf) -> (Vec<String>, usize, usize, usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("the SVG parses as XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let class = |c: &str| doc.descendants().filter(|n| n.attribute("class") == Some(c)).count();
    let lanes = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("lane"))
        .map(|n| n.attribute("data-tuple").unwrap().to_string())
        .collect();
    (lanes, class("incarnation"), class("collision"), class("remedy"))
}

#[test]
fn the_timeline_has_a_lane_per_tuple_and_a_bar_per_incarnation() {
    let run = plain_run();
    let (lanes, bars, collisions, _) = svg_groups(&run.svg);
    assert_eq!((lanes.len(), bars, collisions), (1, 3, 0), "{lanes:?}");
    let (tuple, _) = &incarnations(&run.text)[0];
    let ports: Vec<&str> = tuple.split(", ").collect();
    assert_eq!(lanes[0], format!("{}:{} -> {}:{}", ports[0], ports[1], ports[2], ports[3]));
}

#[test]
fn chromium_renders_the_page() {
    let run = plain_run();
    let shot = run.html.with_extension("png");
    let _ = std::fs::remove_file(&shot);
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,900"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", run.html.display()))
        .output()
        .expect("chromium is not installed (scripts/build-env installs it)");
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let near = |p: &[u8], c: [u8; 3]| p.iter().zip(c).all(|(a, b)| a.abs_diff(b) < 24);
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let count = |c| pixels.iter().filter(|p| near(p, c)).count();
    let (white, transfer, time_wait) = (count([255, 255, 255]), count([0x1f, 0x4e, 0x9c]), count([248, 206, 150]));
    assert!(white < pixels.len() * 98 / 100, "the screenshot is blank ({white} of {} white)", pixels.len());
    assert!(transfer > 30 && time_wait > 300, "bars not drawn: {transfer} transfer, {time_wait} TIME_WAIT pixels");
}

#[test]
fn collisions_and_the_three_remedies() {
    let run = demo("collide", false, &["--transfers", "4", "--watch", "2"]);
    let text = run.text.replace('\n', " ");
    assert_eq!(text.matches("COLLISION. The server replied `425").count(), 3, "{}", run.text);
    for remedy in ["Remedy: wait", "Remedy: rotate", "Remedy: reclaim"] {
        assert!(text.contains(remedy), "{remedy} not told:\n{}", run.text);
    }
    let cost = |what: &str| -> f64 {
        let key = format!("Cost of {what}: ");
        let at = text.find(&key).unwrap_or_else(|| panic!("no {key}")) + key.len();
        text[at..].split(' ').next().unwrap().parse().unwrap()
    };
    let (wait, rotate, reclaim) = (cost("waiting"), cost("rotating"), cost("reclaiming"));
    assert!(wait > 20.0 && wait < 70.0, "waiting the countdown out took {wait} s");
    assert!(rotate < wait && reclaim < rotate, "reclaim {reclaim} < rotate {rotate} < wait {wait}");
    // The wait's countdown, read live, falls to the end.
    let longest = countdowns(&run.text).into_iter().max_by_key(Vec::len).unwrap();
    assert!(longest.len() > 10 && longest.windows(2).all(|w| w[1] <= w[0]), "{longest:?}");
    assert!(longest[0] - longest[longest.len() - 1] > 30.0, "counted down: {longest:?}");
    // Two 4-tuples (a rotation made the second), two incarnations each.
    let told = incarnations(&run.text);
    let ns: Vec<u32> = told.iter().map(|(_, n)| *n).collect();
    assert_eq!(ns, [1, 2, 1, 2], "{told:?}");
    assert!(told[0].0 == told[1].0 && told[2].0 == told[3].0 && told[0].0 != told[2].0, "{told:?}");
    let (lanes, bars, collisions, remedies) = svg_groups(&run.svg);
    assert_eq!((lanes.len(), bars, collisions, remedies), (2, 4, 3, 3));
}
