//! etcd's output formats for what the offline tools print.

use std::fmt::Write;

use rustcd_backup::status::SnapshotStatus;
pub use rustcd_gocompat::{format_duration as go_duration, human_bytes};

use crate::UtlError;

/// A table as etcd's tools draw them (olekukonko/tablewriter): centred headers, right-aligned
/// cells.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([headers[i].len()]).max().unwrap_or(0))
        .collect();
    let line = {
        let mut l = String::from("+");
        for w in &widths {
            l.push_str(&"-".repeat(w + 2));
            l.push('+');
        }
        l + "\n"
    };
    let mut out = line.clone();
    out.push('|');
    for (h, w) in headers.iter().zip(&widths) {
        let gap = w - h.len();
        let left = gap / 2;
        let _ = write!(out, " {}{}{} |", " ".repeat(left), h, " ".repeat(gap - left));
    }
    out.push('\n');
    out.push_str(&line);
    for r in rows {
        out.push('|');
        for (c, w) in r.iter().zip(&widths) {
            let _ = write!(out, " {}{c} |", " ".repeat(w - c.chars().count()));
        }
        out.push('\n');
    }
    out.push_str(&line);
    out
}

/// `snapshot status` in `format` (simple, table, json, fields), as etcd prints it.
pub fn snapshot_status(st: &SnapshotStatus, format: &str) -> Result<String, UtlError> {
    let row =
        vec![format!("{:x}", st.hash), st.revision.to_string(), st.total_key.to_string(), human_bytes(st.total_size)];
    Ok(match format {
        "simple" => format!("{}\n", row.join(", ")),
        "table" => table(&["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"], &[row]),
        "json" => format!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}\n",
            st.hash, st.revision, st.total_key, st.total_size
        ),
        "fields" => format!(
            "\"Hash\" : {}\n\"Revision\" : {}\n\"Keys\" : {}\n\"Size\" : {}\n",
            st.hash, st.revision, st.total_key, st.total_size
        ),
        "protobuf" => return Err(UtlError::bad_feature("protobuf not supported as output format")),
        _ => return Err(UtlError::bad_feature("unsupported output format")),
    })
}
