//! Settings that more than one room reads, parsed from their flags here: auto-compaction's
//! retention ([`Retention`], run by the compactor), log rotation ([`RotationConfig`], applied
//! by the logger) and distributed tracing ([`TracingSettings`], used by the tracing layer).

use std::time::Duration;

use serde::Deserialize;

/// Auto-compaction's retention: what to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Period(Duration),
    Revisions(i64),
}

impl Retention {
    /// Reads etcd's two flags; `None` when auto-compaction is off (retention 0).
    pub fn parse(mode: &str, retention: &str) -> Result<Option<Retention>, String> {
        let bad = || format!("invalid auto compaction retention {retention:?} for mode {mode:?}");
        let r = match mode {
            "revision" => Retention::Revisions(retention.trim().parse::<i64>().map_err(|_| bad())?),
            "periodic" => Retention::Period(match retention.trim().parse::<u64>() {
                Ok(hours) => Duration::from_secs(hours.saturating_mul(3600)),
                Err(_) => rustcd_gocompat::parse_std_duration(retention).map_err(|_| bad())?,
            }),
            _ => return Err(format!("unknown auto-compaction-mode {mode:?}")),
        };
        Ok(match r {
            Retention::Revisions(n) if n <= 0 => None,
            Retention::Period(d) if d.is_zero() => None,
            r => Some(r),
        })
    }
}

/// etcd's tracing settings.
#[derive(Debug, Clone)]
pub struct TracingSettings {
    pub address: String,
    pub service_name: String,
    pub instance_id: String,
    /// Samples per million requests without a sampled parent.
    pub sampling_rate: i64,
}

impl TracingSettings {
    /// etcd's check of the sampling rate.
    pub fn validate(&self) -> Result<(), String> {
        if self.sampling_rate < 0 {
            return Err("tracing sampling rate must be positive".into());
        }
        if self.sampling_rate > 1_000_000 {
            return Err("tracing sampling rate must be less than 1000000".into());
        }
        Ok(())
    }
}

/// `--log-rotation-config-json`, lumberjack's fields (Go's JSON names match case-insensitively;
/// unknown fields are ignored, as Go's decoder ignores them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationConfig {
    /// Megabytes; 0 means lumberjack's default of 100.
    pub max_size_mb: u64,
    /// Days; 0 keeps backups whatever their age.
    pub max_age_days: u64,
    /// 0 keeps every backup.
    pub max_backups: u64,
    /// Backups are named in local time in etcd; rustcd names them in UTC (logged once).
    pub local_time: bool,
    pub compress: bool,
}

#[derive(Deserialize)]
struct Json {
    #[serde(default)]
    maxsize: u64,
    #[serde(default)]
    maxage: u64,
    #[serde(default)]
    maxbackups: u64,
    #[serde(default)]
    localtime: bool,
    #[serde(default)]
    compress: bool,
}

impl RotationConfig {
    /// Parses the JSON as etcd does, with etcd's error texts.
    pub fn parse(json: &str) -> Result<RotationConfig, String> {
        // Go matches field names case-insensitively.
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("improperly formatted log rotation config: {e}"))?;
        let lowered = match value {
            serde_json::Value::Object(m) => {
                serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect())
            }
            other => other,
        };
        let j: Json = serde_json::from_value(lowered).map_err(|e| format!("invalid log rotation config: {e}"))?;
        Ok(RotationConfig {
            max_size_mb: j.maxsize,
            max_age_days: j.maxage,
            max_backups: j.maxbackups,
            local_time: j.localtime,
            compress: j.compress,
        })
    }

    /// The size a file may reach before it is rotated.
    pub fn max_bytes(&self) -> u64 {
        let mb = if self.max_size_mb == 0 { 100 } else { self.max_size_mb };
        mb.saturating_mul(1024 * 1024)
    }
}

/// etcd's check: rotation needs exactly one file among the outputs./// etcd's check: rotation needs exactly one file among the outputs.
pub fn check_outputs(outputs: &[String]) -> Result<(), String> {
    let files = outputs.iter().filter(|o| !matches!(o.as_str(), "default" | "stderr" | "stdout")).count();
    if (outputs.len() == 1 && files == 0) || files > 1 {
        return Err("--log-outputs requires a single file path when --log-rotate-config-json is defined".into());
    }
    Ok(())
}
