//! One key's operations as a page a person opens in a browser: each client a lane, each
//! operation a bar from its call to its return (an unanswered one runs to the right edge,
//! dashed), the culprit (the operation that cannot be placed) in red, and the same operations
//! as a table below. One self-contained HTML file with an inline SVG: no script, no network.

use std::fmt::Write as _;

use crate::linearizability::{Action, Op};

const LANE: f64 = 34.0;
const LEFT: f64 = 90.0;
const WIDTH: f64 = 1100.0;

/// A short text for an operation, as the bar's label and the table's cell.
pub fn describe(a: &Action) -> String {
    match a {
        Action::Put(v) => format!("put {v}"),
        Action::PutLease(v, lease) => format!("put {v} (lease {lease:x})"),
        Action::Get(Some(v)) => format!("get -> {v}"),
        Action::Get(None) => "get -> (none)".into(),
        Action::Delete(Some(existed)) => format!("delete -> {}", if *existed { "1" } else { "0" }),
        Action::Delete(None) => "delete -> ?".into(),
        Action::Cas { expect, new, succeeded } => format!(
            "cas {} -> {new}: {}",
            expect.as_deref().unwrap_or("(none)"),
            match succeeded {
                Some(true) => "ok",
                Some(false) => "failed",
                None => "?",
            }
        ),
        Action::Revoke(lease) => format!("revoke {lease:x}"),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The page for `key`: `ops` (its smallest failing sub-history, or any operations on it) with
/// `culprit` (an index into `ops`) marked, under `title`.
pub fn html(key: &str, title: &str, ops: &[Op], culprit: Option<usize>) -> String {
    let mut clients: Vec<usize> = ops.iter().map(|o| o.client).collect();
    clients.sort_unstable();
    clients.dedup();
    let start = ops.iter().map(|o| o.call).min().unwrap_or(0);
    let end = ops.iter().map(|o| o.ret.unwrap_or(o.call)).chain(ops.iter().map(|o| o.call)).max().unwrap_or(start);
    // A bar of an unanswered operation runs past the last return, to the edge.
    let span = ((end - start) as f64 * 1.1).max(1.0);
    let x = |t: u64| LEFT + (t.saturating_sub(start) as f64 / span) * (WIDTH - LEFT - 10.0);
    let height = 40.0 + LANE * clients.len() as f64 + 30.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="monospace" font-size="11">"#
    );
    for (lane, c) in clients.iter().enumerate() {
        let y = 30.0 + LANE * lane as f64;
        let _ = write!(svg, r#"<text x="4" y="{}">client {c}</text>"#, y + 16.0);
        let _ = write!(svg, r##"<line x1="{LEFT}" x2="{WIDTH}" y1="{0}" y2="{0}" stroke="#ddd"/>"##, y + LANE - 2.0);
    }
    for (i, o) in ops.iter().enumerate() {
        let lane = clients.iter().position(|c| *c == o.client).unwrap_or(0);
        let y = 30.0 + LANE * lane as f64 + 4.0;
        let x0 = x(o.call);
        let x1 = o.ret.map_or(WIDTH - 4.0, x).max(x0 + 3.0);
        let color = if Some(i) == culprit {
            "#e53935"
        } else if o.ret.is_none() {
            "#fbc02d"
        } else {
            "#64b5f6"
        };
        let dash = if o.ret.is_none() { r#" stroke-dasharray="4 3""# } else { "" };
        let label = escape(&describe(&o.action));
        let times = match o.ret {
            Some(r) => format!("{} .. {} us", (o.call - start) / 1000, (r - start) / 1000),
            None => format!("{} us .. no answer", (o.call - start) / 1000),
        };
        let _ = write!(
            svg,
            r##"<g><title>#{i} client {}: {label} ({times})</title><rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{color}" fill-opacity="0.55" stroke="#333"{dash}/><text x="{:.1}" y="{:.1}">{label}</text></g>"##,
            o.client,
            x1 - x0,
            LANE - 10.0,
            x0 + 2.0,
            y + 15.0,
        );
    }
    let axis_y = 30.0 + LANE * clients.len() as f64 + 14.0;
    for k in 0..=5u64 {
        let t = start + (span as u64) * k / 5;
        let _ = write!(svg, r#"<text x="{:.1}" y="{axis_y}">{} ms</text>"#, x(t), (t - start) / 1_000_000);
    }
    svg.push_str("</svg>");
    let mut rows = String::new();
    for (i, o) in ops.iter().enumerate() {
        let mark = if Some(i) == culprit { " class=\"culprit\"" } else { "" };
        let ret = o.ret.map_or("no answer".to_string(), |r| format!("{}", (r - start) / 1000));
        let _ = write!(
            rows,
            "<tr{mark}><td>{i}</td><td>{}</td><td>{}</td><td>{}</td><td>{ret}</td></tr>",
            o.client,
            escape(&describe(&o.action)),
            (o.call - start) / 1000
        );
    }
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>body{{font-family:sans-serif;margin:20px}}\
         table{{border-collapse:collapse;font-family:monospace}}td,th{{border:1px solid #ccc;padding:2px 8px}}\
         tr.culprit{{background:#ffcdd2}}</style></head>\n<body><h1>{t}</h1>\n<p>Key <code>{k}</code>: {n} operations. \
         Each bar runs from the call to the answer; dashed bars got no answer (they may or may not have taken effect). \
         The red one is the culprit: on a key that is not linearizable, the operation no order of the others can \
         explain; for a lost write, the acknowledged write no watch event shows.</p>\n{svg}\n<table><tr><th>#</th><th>client</th>\
         <th>operation</th><th>call (us)</th><th>answer (us)</th></tr>{rows}</table>\n</body></html>\n",
        t = escape(title),
        k = escape(key),
        n = ops.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_a_bar_per_operation_and_marks_the_culprit() {
        let ops = vec![
            Op { client: 0, key: "k".into(), action: Action::Put("<v>".into()), call: 0, ret: Some(1_000_000) },
            Op { client: 1, key: "k".into(), action: Action::Get(None), call: 2_000_000, ret: Some(3_000_000) },
            Op { client: 1, key: "k".into(), action: Action::Delete(None), call: 4_000_000, ret: None },
        ];
        let page = html("k", "not linearizable", &ops, Some(1));
        assert_eq!(page.matches("<rect").count(), 3);
        assert!(page.contains("put &lt;v&gt;"), "values are escaped");
        assert_eq!(page.matches("#e53935").count(), 1, "one culprit bar");
        assert!(page.contains("stroke-dasharray"), "the unanswered delete is dashed");
        assert!(page.contains("<tr class=\"culprit\"><td>1</td>"));
    }
}
