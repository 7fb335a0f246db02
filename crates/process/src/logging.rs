//! Logs as JSON lines shaped like etcd 3.5's zap output:
//! `{"level":"info","ts":"...","caller":"file:line","msg":"...", fields...}`.

use std::fmt;
use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::log_rotate::{RotatingFile, RotationConfig};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

struct ZapJson;

#[derive(Default)]
struct Fields {
    msg: String,
    map: Map<String, Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, v: Value) {
        if field.name() == "zap_fields" {
            // fields whose names are only known at run time, as a JSON object (see `notes`)
            if let Value::String(text) = &v
                && let Ok(Value::Object(m)) = serde_json::from_str::<Value>(text)
            {
                self.map.extend(m);
            }
        } else if field.name() == "message" {
            self.msg = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
        } else {
            self.map.insert(field.name().replace('_', "-"), v);
        }
    }
}

/// RFC 3339 UTC time with microseconds, as zap's ISO8601 encoder prints it.
pub fn timestamp(t: SystemTime) -> String {
    rustcd_gocompat::rfc3339_micros(t)
}

impl<S, N> FormatEvent<S, N> for ZapJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let file = meta.file().unwrap_or("?");
        let short = file.rsplit("/src/").next().unwrap_or(file);
        let caller =
            format!("{}/{}:{}", meta.target().split("::").next().unwrap_or(""), short, meta.line().unwrap_or(0));
        // zap's order: level, ts, caller, msg, then the fields
        let head = [
            ("level", meta.level().as_str().to_ascii_lowercase()),
            ("ts", timestamp(SystemTime::now())),
            ("caller", caller),
            ("msg", fields.msg),
        ];
        let mut line = String::from("{");
        for (i, (k, v)) in head.into_iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&format!("{}:{}", Value::from(k), Value::String(v)));
        }
        for (k, v) in fields.map {
            line.push_str(&format!(",{}:{}", Value::String(k), v));
        }
        line.push('}');
        writeln!(w, "{line}")
    }
}

/// Where log lines go: etcd's `--log-outputs` (`default`, `stderr`, `stdout`, `journal` or
/// file paths, several at once).
#[derive(Clone)]
struct Outputs(std::sync::Arc<Vec<Target>>);

enum Target {
    Stderr,
    Stdout,
    File(std::sync::Mutex<std::fs::File>),
    Rotating(std::sync::Mutex<crate::log_rotate::RotatingFile>),
}

impl std::io::Write for &Outputs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for t in self.0.iter() {
            // A log line that cannot be written is dropped: logging never stops the member.
            let _ = match t {
                Target::Stderr => std::io::stderr().write_all(buf),
                Target::Stdout => std::io::stdout().write_all(buf),
                Target::File(f) => f.lock().map_or(Ok(()), |mut f| f.write_all(buf)),
                Target::Rotating(f) => f.lock().map_or(Ok(()), |mut f| f.write_all(buf)),
            };
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Outputs {
    type Writer = &'a Outputs;
    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

fn outputs(names: &[String], rotation: Option<&RotationConfig>) -> Result<Outputs, String> {
    let mut targets = Vec::new();
    for n in names {
        targets.push(match n.as_str() {
            // journald reads a service's stderr
            "default" | "stderr" | "journal" => Target::Stderr,
            "stdout" => Target::Stdout,
            path => match rotation {
                Some(cfg) => Target::Rotating(std::sync::Mutex::new(
                    RotatingFile::open(std::path::Path::new(path), cfg.clone())
                        .map_err(|e| format!("cannot open log output {path}: {e}"))?,
                )),
                None => Target::File(std::sync::Mutex::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| format!("cannot open log output {path}: {e}"))?,
                )),
            },
        });
    }
    if targets.is_empty() {
        targets.push(Target::Stderr);
    }
    Ok(Outputs(std::sync::Arc::new(targets)))
}

/// Installs the JSON logger at `level` (etcd's names: debug, info, warn, error, panic, fatal),
/// writing to `outputs` (etcd's `--log-outputs`), the one file among them rotated when
/// `rotation` is given (`--enable-log-rotation`).
pub fn init(level: &str, outputs_: &[String], rotation: Option<&RotationConfig>) -> Result<(), String> {
    let level = match level {
        "debug" => "debug",
        "warn" => "warn",
        "error" | "panic" | "fatal" | "dpanic" => "error",
        _ => "info",
    };
    let writer = outputs(outputs_, rotation)?;
    // RUSTCD_LOG (an EnvFilter directive) overrides the level, for debugging.
    let directives = std::env::var("RUSTCD_LOG")
        .unwrap_or_else(|_| format!("{level},raft=info,raft_engine=warn,h2=warn,hyper=warn,tower=warn"));
    let filter = tracing_subscriber::EnvFilter::new(directives);
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).event_format(ZapJson).try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::from_micros(1_711_022_540_355_409);
        assert_eq!(timestamp(t), "2024-03-21T12:02:20.355409Z");
    }
}
