//! Logs as JSON lines shaped like etcd 3.5's zap output:
//! `{"level":"info","ts":"...","caller":"file:line","msg":"...", fields...}`.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
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
        if field.name() == "message" {
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
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
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
        let mut out = Map::new();
        out.insert("level".into(), Value::String(meta.level().as_str().to_ascii_lowercase()));
        out.insert("ts".into(), Value::String(timestamp(SystemTime::now())));
        let file = meta.file().unwrap_or("?");
        let short = file.rsplit("/src/").next().unwrap_or(file);
        let caller =
            format!("{}/{}:{}", meta.target().split("::").next().unwrap_or(""), short, meta.line().unwrap_or(0));
        out.insert("caller".into(), Value::String(caller));
        out.insert("msg".into(), Value::String(fields.msg));
        out.extend(fields.map);
        writeln!(w, "{}", Value::Object(out))
    }
}

/// Installs the JSON logger at `level` (etcd's names: debug, info, warn, error, panic, fatal).
pub fn init(level: &str) {
    let level = match level {
        "debug" => "debug",
        "warn" => "warn",
        "error" | "panic" | "fatal" | "dpanic" => "error",
        _ => "info",
    };
    // RUSTCD_LOG (an EnvFilter directive) overrides the level, for debugging.
    let directives = std::env::var("RUSTCD_LOG")
        .unwrap_or_else(|_| format!("{level},raft=warn,raft_engine=warn,h2=warn,hyper=warn,tower=warn"));
    let filter = tracing_subscriber::EnvFilter::new(directives);
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).event_format(ZapJson).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::from_micros(1_711_022_540_355_409);
        assert_eq!(timestamp(t), "2024-03-21T12:02:20.355409Z");
    }
}
