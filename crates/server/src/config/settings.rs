//! Settings that more than one room reads, parsed from their flags here: auto-compaction's
//! retention ([`Retention`], run by the compactor) and distributed tracing
//! ([`TracingSettings`], used by the tracing layer). Log rotation's settings are
//! `rustcd_process::log_rotate`'s.

use std::time::Duration;

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
