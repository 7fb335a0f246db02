//! `--enable-log-rotation`: the one file in `--log-outputs` is rotated as etcd's lumberjack
//! sink rotates it. When a write would take the file past `maxsize` megabytes, the file is
//! renamed to `<name>-<UTC time 2006-01-02T15-04-05.000><ext>` and a new one is started; then
//! backups beyond `maxbackups` or older than `maxage` days are removed and, with `compress`, the
//! others gzipped.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

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

/// A log file that rotates itself.
pub struct RotatingFile {
    path: PathBuf,
    cfg: RotationConfig,
    file: Option<File>,
    size: u64,
}

impl RotatingFile {
    pub fn open(path: &Path, cfg: RotationConfig) -> std::io::Result<RotatingFile> {
        let mut r = RotatingFile { path: path.to_path_buf(), cfg, file: None, size: 0 };
        r.open_existing()?;
        Ok(r)
    }

    fn open_existing(&mut self) -> std::io::Result<()> {
        let file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        if self.path.exists() {
            fs::rename(&self.path, self.backup_name(SystemTime::now()))?;
        }
        self.open_existing()?;
        let (path, cfg) = (self.path.clone(), self.cfg.clone());
        // Removing and compressing old backups may take a while: never on the logging path.
        std::thread::spawn(move || mill(&path, &cfg, SystemTime::now()));
        Ok(())
    }

    fn backup_name(&self, now: SystemTime) -> PathBuf {
        let (prefix, ext) = split_name(&self.path);
        self.path.with_file_name(format!("{prefix}-{}{ext}", stamp(now)))
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let len = buf.len() as u64;
        let max = self.cfg.max_bytes();
        if len > max {
            return Err(std::io::Error::other(format!("write length {len} exceeds maximum file size {max}")));
        }
        if self.file.is_none() || self.size + len > max {
            if self.file.is_none() {
                self.open_existing()?;
            }
            if self.size + len > max {
                self.rotate()?;
            }
        }
        let f = self.file.as_mut().ok_or_else(|| std::io::Error::other("log file is not open"))?;
        f.write_all(buf)?;
        self.size += len;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

/// lumberjack's backup time, `2006-01-02T15-04-05.000` in UTC.
fn stamp(t: SystemTime) -> String {
    // "2024-03-21T12:02:20.355409Z" -> "2024-03-21T12-02-20.355"
    crate::logging::timestamp(t).chars().take(23).map(|c| if c == ':' { '-' } else { c }).collect()
}

/// The file name without and with its extension's dot: `etcd.log` -> (`etcd`, `.log`).
fn split_name(path: &Path) -> (String, String) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.rfind('.') {
        Some(i) => (name[..i].to_string(), name[i..].to_string()),
        None => (name, String::new()),
    }
}

/// The backups of `path`, newest first, with their times (parsed from their names).
fn backups(path: &Path) -> Vec<(PathBuf, String)> {
    let (prefix, ext) = split_name(path);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<(PathBuf, String)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix(&format!("{prefix}-"))?;
            let ts = rest.strip_suffix(&format!("{ext}.gz")).or_else(|| rest.strip_suffix(&ext))?;
            // 2006-01-02T15-04-05.000
            let ok = ts.len() == 23 && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.';
            ok.then(|| (e.path(), ts.to_string()))
        })
        .collect();
    // The timestamps sort as strings.
    found.sort_by(|a, b| b.1.cmp(&a.1));
    found
}

/// lumberjack's `millRunOnce`: drop backups past `maxbackups` and `maxage`, compress the rest.
fn mill(path: &Path, cfg: &RotationConfig, now: SystemTime) {
    let mut keep = Vec::new();
    let mut distinct = Vec::<String>::new();
    for (file, ts) in backups(path) {
        // A backup and its compressed copy count once.
        let new = !distinct.contains(&ts);
        if new {
            distinct.push(ts.clone());
        }
        let too_many = cfg.max_backups > 0 && distinct.len() as u64 > cfg.max_backups;
        let too_old = cfg.max_age_days > 0 && {
            let age = Duration::from_secs(cfg.max_age_days.saturating_mul(86_400));
            ts < stamp(now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH))
        };
        if too_many || too_old {
            let _ = fs::remove_file(&file);
        } else {
            keep.push(file);
        }
    }
    if cfg.compress {
        for file in keep.iter().filter(|f| f.extension().is_none_or(|e| e != "gz")) {
            let _ = compress(file);
        }
    }
}

fn compress(file: &Path) -> std::io::Result<()> {
    let mut gz_name = file.as_os_str().to_owned();
    gz_name.push(".gz");
    let data = fs::read(file)?;
    let out = File::create(&gz_name)?;
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    enc.write_all(&data)?;
    enc.finish()?.sync_all()?;
    fs::remove_file(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcd_default_and_rejects_bad_json_with_etcd_words() {
        let d = RotationConfig::parse(
            r#"{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}"#,
        );
        assert_eq!(d, Ok(RotationConfig { max_size_mb: 100, ..Default::default() }));
        assert_eq!(RotationConfig::parse(r#"{"MaxBackups": 3, "other": 1}"#).map(|c| c.max_backups), Ok(3));
        assert!(RotationConfig::parse("{maxsize").unwrap_err().starts_with("improperly formatted log rotation config"));
        assert!(RotationConfig::parse(r#"{"maxsize": "big"}"#).unwrap_err().starts_with("invalid log rotation config"));
    }

    #[test]
    fn outputs_need_one_file() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(check_outputs(&s(&["stderr"])).is_err());
        assert!(check_outputs(&s(&["a.log", "b.log"])).is_err());
        assert!(check_outputs(&s(&["stderr", "a.log"])).is_ok());
        assert!(check_outputs(&s(&["a.log"])).is_ok());
    }

    #[test]
    fn rotates_past_max_size_and_keeps_max_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.log");
        let cfg = RotationConfig { max_size_mb: 1, max_backups: 2, ..Default::default() };
        let mut f = RotatingFile::open(&path, cfg.clone()).unwrap();
        let line = vec![b'x'; 300 * 1024];
        for _ in 0..4 {
            f.write_all(&line).unwrap();
        }
        // 3 lines fit in 1 MiB; the 4th went to a new file.
        assert_eq!(fs::metadata(&path).unwrap().len(), 300 * 1024);
        let b = backups(&path);
        assert_eq!(b.len(), 1);
        assert_eq!(fs::metadata(&b[0].0).unwrap().len(), 900 * 1024);
        assert!(b[0].0.file_name().unwrap().to_string_lossy().starts_with("etcd-"));
        assert!(f.write_all(&vec![b'y'; 2 * 1024 * 1024]).is_err(), "a line over maxsize is refused");
        // Old backups beyond maxbackups go.
        for ts in ["2020-01-01T00-00-00.000", "2020-01-02T00-00-00.000", "2020-01-03T00-00-00.000"] {
            fs::write(dir.path().join(format!("etcd-{ts}.log")), "old").unwrap();
        }
        mill(&path, &cfg, SystemTime::now());
        let names: Vec<String> = backups(&path).into_iter().map(|(_, ts)| ts).collect();
        assert_eq!(names.len(), 2);
        assert_eq!(names[1], "2020-01-03T00-00-00.000");
    }

    #[test]
    fn old_backups_go_and_the_rest_are_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.log");
        let recent = stamp(SystemTime::now());
        fs::write(dir.path().join("etcd-2020-01-01T00-00-00.000.log"), "old").unwrap();
        fs::write(dir.path().join(format!("etcd-{recent}.log")), "new").unwrap();
        let cfg = RotationConfig { max_age_days: 30, compress: true, ..Default::default() };
        mill(&path, &cfg, SystemTime::now());
        let left: Vec<PathBuf> = backups(&path).into_iter().map(|(p, _)| p).collect();
        assert_eq!(left, vec![dir.path().join(format!("etcd-{recent}.log.gz"))]);
    }
}
