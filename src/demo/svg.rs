//! The timeline as a self-contained SVG (plain SVG written here: a few rects,
//! lines and texts need no crate), and an HTML page holding it for a projector.

use std::fmt::Write;
use std::time::Duration;

use crate::demo::run_facts::ordinal;
use crate::demo::timeline::{Bar, End, MarkKind, Timeline};

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 290.0; // lane labels
const RIGHT: f64 = 30.0;
const TOP: f64 = 80.0;
const LANE: f64 = 92.0; // per lane: labels, the bar, the wait, then the 425 and remedy labels
const BOTTOM: f64 = 90.0; // axis and legend

const TRANSFER: &str = "#1f4e9c";
const TIME_WAIT: &str = "#f2a541";
const COLLISION: &str = "#c62828";
const REMEDY: &str = "#2e7d32";

/// Escape text for XML content and attributes.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

struct Scale {
    per_sec: f64,
}

impl Scale {
    fn x(&self, t: Duration) -> f64 {
        LEFT + t.as_secs_f64() * self.per_sec
    }
}

/// The picture. `title` names the run (the servers, the date).
pub fn svg(t: &Timeline, title: &str) -> String {
    let horizon = t.horizon().as_secs_f64().max(1.0);
    let scale = Scale { per_sec: (WIDTH - LEFT - RIGHT) / horizon };
    let height = TOP + LANE * t.lanes.len().max(1) as f64 + BOTTOM;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="13">"#
    );
    let _ = write!(out, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = write!(out, r#"<text x="20" y="30" font-size="20" font-weight="bold">{}</text>"#, escape(title));
    let _ = write!(
        out,
        r##"<text x="20" y="55" fill="#555">one lane per data 4-tuple (FTP server's S -&gt; forwarded port); each incarnation from its SYN to the end of its TIME_WAIT</text>"##
    );
    if t.lanes.is_empty() {
        let _ =
            write!(out, r#"<text x="{LEFT}" y="{}">no default-port data connection in this run</text>"#, TOP + 35.0);
    }
    for (i, lane) in t.lanes.iter().enumerate() {
        let y = TOP + LANE * i as f64;
        let _ = write!(out, r#"<g class="lane" data-tuple="{}">"#, escape(&lane.tuple.to_string()));
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="#ddd"/>"##,
            y + 86.0,
            WIDTH - RIGHT,
            y + 86.0
        );
        let _ = write!(out, r#"<text x="20" y="{}" font-weight="bold">S {} -&gt;</text>"#, y + 30.0, lane.tuple.from);
        let _ = write!(out, r#"<text x="40" y="{}">{}</text>"#, y + 48.0, lane.tuple.to);
        for bar in &lane.bars {
            draw_bar(&mut out, &scale, y, bar);
        }
        out.push_str("</g>");
    }
    for m in &t.marks {
        draw_mark(&mut out, &scale, TOP + LANE * m.lane as f64, &m.kind, m.at);
    }
    axis(&mut out, &scale, t, horizon, height);
    out.push_str("</svg>\n");
    out
}

fn draw_bar(out: &mut String, s: &Scale, y: f64, b: &Bar) {
    let (x0, x1, x2) = (s.x(b.syn), s.x(b.done), s.x(b.end));
    let how = match b.how {
        End::Expired => "expired",
        End::Reclaimed => "reclaimed",
        End::Reused => "reused",
        End::Assumed => "assumed 60 s",
    };
    let _ = write!(
        out,
        r#"<g class="incarnation" data-n="{}" data-end="{how}"><title>{} incarnation: SYN at {:.2} s, 226 at {:.2} s, TIME_WAIT until {:.2} s ({how})</title>"#,
        b.n,
        ordinal(b.n),
        b.syn.as_secs_f64(),
        b.done.as_secs_f64(),
        b.end.as_secs_f64()
    );
    let dash = if b.how == End::Assumed { r#" stroke-dasharray="4 3""# } else { "" };
    let _ = write!(
        out,
        r##"<rect x="{x1:.1}" y="{}" width="{:.1}" height="22" fill="{TIME_WAIT}" fill-opacity="0.55" stroke="{TIME_WAIT}"{dash}/>"##,
        y + 18.0,
        (x2 - x1).max(1.0)
    );
    let _ = write!(
        out,
        r##"<rect x="{x0:.1}" y="{}" width="{:.1}" height="22" fill="{TRANSFER}"/>"##,
        y + 18.0,
        (x1 - x0).max(3.0)
    );
    let _ = write!(
        out,
        r#"<text x="{x0:.1}" y="{}" font-size="12">{}</text>"#,
        y + if b.n % 2 == 1 { 14.0 } else { 4.0 },
        ordinal(b.n)
    );
    if b.how == End::Reclaimed {
        let _ = write!(
            out,
            r##"<line x1="{x2:.1}" y1="{}" x2="{x2:.1}" y2="{}" stroke="{REMEDY}" stroke-width="3"/>"##,
            y + 12.0,
            y + 46.0
        );
    }
    out.push_str("</g>");
}

fn draw_mark(out: &mut String, s: &Scale, y: f64, kind: &MarkKind, at: Duration) {
    let x = s.x(at);
    match kind {
        MarkKind::Collision => {
            let _ = write!(
                out,
                r##"<g class="collision"><polygon points="{x:.1},{} {:.1},{} {x:.1},{} {:.1},{}" fill="{COLLISION}"/><text x="{:.1}" y="{}" fill="{COLLISION}" font-weight="bold" text-anchor="end">425</text></g>"##,
                y + 19.0,
                x + 10.0,
                y + 29.0,
                y + 39.0,
                x - 10.0,
                y + 29.0,
                x - 6.0,
                y + 62.0
            );
        }
        MarkKind::Wait(until) => {
            let x2 = s.x(*until);
            let _ = write!(
                out,
                r##"<g class="remedy" data-remedy="wait"><line x1="{x:.1}" y1="{}" x2="{x2:.1}" y2="{}" stroke="{REMEDY}" stroke-width="2"/><text x="{:.1}" y="{}" fill="{REMEDY}">wait {:.1} s</text></g>"##,
                y + 48.0,
                y + 48.0,
                x + 4.0,
                y + 62.0,
                (*until - at).as_secs_f64()
            );
        }
        MarkKind::Rotate => remedy(out, x, y, "rotate", "rotate: new P"),
        MarkKind::Reclaim => remedy(out, x, y, "reclaim", "reclaim"),
    }
}

fn remedy(out: &mut String, x: f64, y: f64, name: &str, text: &str) {
    let _ = write!(
        out,
        r##"<g class="remedy" data-remedy="{name}"><circle cx="{x:.1}" cy="{}" r="5" fill="{REMEDY}"/><text x="{:.1}" y="{}" fill="{REMEDY}">{text}</text></g>"##,
        y + 74.0,
        x + 8.0,
        y + 78.0
    );
}

fn axis(out: &mut String, s: &Scale, t: &Timeline, horizon: f64, height: f64) {
    let y = height - BOTTOM + 10.0;
    let step = [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0].into_iter().find(|st| horizon / st <= 12.0).unwrap_or(120.0);
    let _ = write!(out, r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#333"/>"##, WIDTH - RIGHT);
    let mut tick = 0.0;
    while tick <= horizon + 1e-9 {
        let x = s.x(Duration::from_secs_f64(tick));
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{y}" x2="{x:.1}" y2="{}" stroke="#333"/><text x="{x:.1}" y="{}" text-anchor="middle">{tick} s</text>"##,
            y + 6.0,
            y + 20.0
        );
        tick += step;
    }
    let end = s.x(t.run_end);
    let _ = write!(
        out,
        r##"<line x1="{end:.1}" y1="{TOP}" x2="{end:.1}" y2="{y}" stroke="#666" stroke-dasharray="6 4"/><text x="{end:.1}" y="{}" fill="#666" text-anchor="end">end of run</text>"##,
        y - 4.0
    );
    let ly = y + 45.0;
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{}" width="24" height="12" fill="{TRANSFER}"/><text x="{}" y="{ly}">transfer (SYN to 226)</text><rect x="{}" y="{}" width="24" height="12" fill="{TIME_WAIT}" fill-opacity="0.55"/><text x="{}" y="{ly}">TIME_WAIT on the FTP server's host (dashed: 60 s assumed)</text><text x="{}" y="{ly}" fill="{COLLISION}">&#9670; 425 collision</text><text x="{}" y="{ly}" fill="{REMEDY}">&#9679; remedy</text>"##,
        ly - 10.0,
        LEFT + 30.0,
        LEFT + 200.0,
        ly - 10.0,
        LEFT + 230.0,
        LEFT + 650.0,
        LEFT + 780.0
    );
}

/// An HTML page that holds the SVG, for a browser on a projector.
pub fn html(svg: &str, title: &str, narration: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n<style>\
         body {{ font-family: DejaVu Sans, Arial, sans-serif; margin: 24px; background: #fff; color: #111; }}\
         svg {{ max-width: 100%; height: auto; }} pre {{ white-space: pre-wrap; font-size: 13px; }}\
         </style>\n</head>\n<body>\n<h1>The run, in time</h1>\n{svg}\n<h2>What happened</h2>\n<pre>{n}</pre>\n</body>\n</html>\n",
        t = escape(title),
        n = escape(narration)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::run_facts::Tuple;
    use crate::demo::timeline::{Lane, Mark};

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn one_group_per_lane_and_per_incarnation() {
        let bar = |n, syn: f64, how| Bar { n, syn: s(syn), done: s(syn + 0.1), end: s(syn + 60.0), how };
        let tuple =
            |p| Tuple { from: "127.0.0.1:2020".parse().unwrap(), to: format!("127.0.0.1:{p}").parse().unwrap() };
        let t = Timeline {
            lanes: vec![
                Lane { tuple: tuple(39999), bars: vec![bar(1, 1.0, End::Expired), bar(2, 62.0, End::Assumed)] },
                Lane { tuple: tuple(41999), bars: vec![bar(1, 63.0, End::Reclaimed)] },
            ],
            marks: vec![
                Mark { at: s(2.0), lane: 0, kind: MarkKind::Collision },
                Mark { at: s(2.1), lane: 0, kind: MarkKind::Wait(s(61.0)) },
            ],
            run_end: s(64.0),
        };
        let text = svg(&t, "a <run> & more");
        assert_eq!(text.matches(r#"<g class="lane""#).count(), 2);
        assert_eq!(text.matches(r#"<g class="incarnation""#).count(), 3);
        assert_eq!(text.matches(r#"<g class="collision""#).count(), 1);
        assert!(text.contains("a &lt;run&gt; &amp; more"));
        assert!(text.contains("S 127.0.0.1:2020 -&gt;"));
        let page = html(&text, "t", "x < y");
        assert!(page.starts_with("<!DOCTYPE html>") && page.contains("<svg ") && page.contains("x &lt; y"));
    }
}
