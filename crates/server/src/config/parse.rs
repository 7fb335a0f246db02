//! Reading settings as etcd reads them: Go-style flags (`-name`, `--name`, `--name=value`,
//! `--bool` or `--bool=false`; the last of a repeated flag wins), then `ETCD_*` variables for the
//! flags not given, or else only the YAML `--config-file`. The result is a [`Values`]: each
//! setting given, checked against its kind and normalized, and the notes etcd would log.

use std::collections::BTreeMap;
use std::ffi::OsString;

use rustcd_gocompat::{parse_bool, parse_duration};

use super::table::{FLAGS, Flag, Kind, flag};

/// Something to log once the logger is set up, as etcd logs it while reading its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warn: bool,
    pub msg: String,
    pub fields: Vec<(&'static str, String)>,
}

/// Logs what reading the settings found (unknown variables, settings with no effect, ...),
/// once logging is up.
pub fn log_notes(notes: &[Note]) {
    for n in notes {
        let fields: serde_json::Map<String, serde_json::Value> =
            n.fields.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone()))).collect();
        let fields = serde_json::Value::Object(fields).to_string();
        if n.warn {
            tracing::warn!(zap_fields = %fields, "{}", n.msg);
        } else {
            tracing::info!(zap_fields = %fields, "{}", n.msg);
        }
    }
}

impl Note {
    pub fn info(msg: impl Into<String>, fields: Vec<(&'static str, String)>) -> Note {
        Note { warn: false, msg: msg.into(), fields }
    }
    pub fn warn(msg: impl Into<String>, fields: Vec<(&'static str, String)>) -> Note {
        Note { warn: true, msg: msg.into(), fields }
    }
}

/// The settings given, by flag name, normalized: booleans `true`/`false`, numbers in decimal,
/// durations in nanoseconds, lists comma-joined without spaces.
#[derive(Debug, Clone, Default)]
pub struct Values {
    set: BTreeMap<&'static str, String>,
    pub notes: Vec<Note>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Values),
    Help,
    Version,
}

/// Why the command line cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// A flag error as Go's flag package reports it: printed with the usage text, exit 2.
    Usage(String),
    /// Anything else: one line, exit 1.
    Invalid(String),
}

impl Values {
    /// The normalized value of `name`: as given, or its default.
    pub fn get(&self, name: &str) -> String {
        match self.set.get(name) {
            Some(v) => v.clone(),
            None => flag(name).and_then(|f| normalize(f, f.default).ok()).unwrap_or_default(),
        }
    }
    pub fn is_set(&self, name: &str) -> bool {
        self.set.contains_key(name)
    }
    /// The settings given whose value is not the default.
    pub fn changed(&self) -> impl Iterator<Item = (&'static Flag, &str)> {
        self.set.iter().filter_map(|(name, v)| {
            let f = flag(name)?;
            (normalize(f, f.default).ok().as_deref() != Some(v.as_str())).then_some((f, v.as_str()))
        })
    }
    pub fn bool(&self, name: &str) -> bool {
        self.get(name) == "true"
    }
    pub fn uint(&self, name: &str) -> u64 {
        self.get(name).parse().unwrap_or(0)
    }
    pub fn int(&self, name: &str) -> i64 {
        self.get(name).parse().unwrap_or(0)
    }
    pub fn duration(&self, name: &str) -> std::time::Duration {
        std::time::Duration::from_nanos(self.get(name).parse::<i64>().unwrap_or(0).max(0) as u64)
    }
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name).split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
    }

    /// Sets `name` to `value` (checked and normalized), as a flag or variable does.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let f = flag(name).ok_or_else(|| format!("flag provided but not defined: -{name}"))?;
        let v = normalize(f, value)?;
        self.set.insert(f.name, v);
        Ok(())
    }
}

/// Checks `value` against the flag's kind and returns its normal form; the error is the text
/// Go's flag package puts after `invalid value "v" for flag -name: `.
pub fn normalize(f: &Flag, value: &str) -> Result<String, String> {
    let v = value.trim();
    match f.kind {
        Kind::Str => Ok(value.to_string()),
        Kind::Bool => parse_bool(v).map(|b| b.to_string()).map_err(|_| "parse error".to_string()),
        Kind::Uint => parse_uint(v).map(|n| n.to_string()).ok_or_else(|| "parse error".to_string()),
        Kind::U32 => v.parse::<u32>().map(|n| n.to_string()).map_err(|_| "parse error".to_string()),
        Kind::Int => v.parse::<i64>().map(|n| n.to_string()).map_err(|_| "parse error".to_string()),
        Kind::Duration => parse_duration(v).map(|n| n.to_string()).map_err(|_| "parse error".to_string()),
        Kind::Urls => {
            let urls: Vec<&str> = v.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            for u in &urls {
                crate::config::url::Url::parse(u)?;
            }
            Ok(urls.join(","))
        }
        Kind::List => Ok(v.split(',').map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(",")),
        Kind::Choice(valid) => {
            if valid.contains(&v) {
                Ok(v.to_string())
            } else {
                Err("invalid value".to_string())
            }
        }
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)` for the forms people write: decimal, `0x`, `0o`, `0b`.
fn parse_uint(s: &str) -> Option<u64> {
    let s = s.replace('_', "");
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if let Some(o) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        u64::from_str_radix(o, 8).ok()
    } else if let Some(b) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        u64::from_str_radix(b, 2).ok()
    } else {
        s.parse().ok()
    }
}

/// The environment variable etcd reads for a flag: `ETCD_` and the name in upper case.
pub fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.to_ascii_uppercase().replace(['-', '.'], "_"))
}

/// Reads the command line (without the program name) and the environment.
pub fn parse(args: &[OsString], env: &[(String, String)]) -> Result<Command, ParseError> {
    let mut values = Values::default();
    let mut given: Vec<&'static str> = Vec::new();
    let mut config_file: Option<String> = None;
    let mut version = false;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i]
            .to_str()
            .ok_or_else(|| ParseError::Invalid(format!("invalid argument {:?}: not UTF-8", args[i])))?;
        i += 1;
        if arg == "--" {
            break;
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).filter(|_| arg.len() > 1) else {
            return Err(ParseError::Invalid(format!("'{arg}' is not a valid flag")));
        };
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(ParseError::Usage(format!("bad flag syntax: {arg}")));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        match name {
            "h" | "help" => return Ok(Command::Help),
            "version" => {
                version = match inline {
                    Some(v) => parse_bool(v).map_err(|_| {
                        ParseError::Usage(format!("invalid boolean value {v:?} for -version: parse error"))
                    })?,
                    None => true,
                };
                continue;
            }
            _ => {}
        }
        if name != "config-file" && flag(name).is_none() {
            return Err(ParseError::Usage(format!("flag provided but not defined: -{name}")));
        }
        let is_bool = flag(name).is_some_and(|f| f.kind == Kind::Bool);
        let value = match inline {
            Some(v) => v.to_string(),
            None if is_bool => "true".to_string(),
            None => {
                let v = args.get(i).ok_or_else(|| ParseError::Usage(format!("flag needs an argument: -{name}")))?;
                i += 1;
                v.to_str()
                    .ok_or_else(|| ParseError::Invalid(format!("invalid value {v:?} for -{name}: not UTF-8")))?
                    .to_string()
            }
        };
        if name == "config-file" {
            config_file = Some(value);
            continue;
        }
        let Some(f) = flag(name) else {
            return Err(ParseError::Usage(format!("flag provided but not defined: -{name}")));
        };
        values.set(name, &value).map_err(|e| {
            ParseError::Usage(if f.kind == Kind::Bool {
                format!("invalid boolean value {value:?} for -{name}: {e}")
            } else {
                format!("invalid value {value:?} for flag -{name}: {e}")
            })
        })?;
        if !given.contains(&f.name) {
            given.push(f.name);
        }
    }
    if let Some(rest) = args.get(i) {
        return Err(ParseError::Invalid(format!("'{}' is not a valid flag", rest.to_string_lossy())));
    }
    if version {
        return Ok(Command::Version);
    }
    let env_config = env.iter().find(|(k, v)| k == "ETCD_CONFIG_FILE" && !v.is_empty()).map(|(_, v)| v.clone());
    if let Some(path) = config_file.or(env_config) {
        return from_config_file(&path).map(Command::Run);
    }
    from_env(&mut values, &given, env)?;
    Ok(Command::Run(values))
}

/// A config file replaces every flag and variable, as in etcd, which says so in its log.
fn from_config_file(path: &str) -> Result<Values, ParseError> {
    let mut values = super::file::read(std::path::Path::new(path)).map_err(ParseError::Invalid)?;
    values.notes.insert(
        0,
        Note::info(
            "loaded server configuration, other configuration command line flags and environment variables will be ignored if provided",
            vec![("path", path.to_string())],
        ),
    );
    Ok(values)
}

/// etcd's `SetFlagsFromEnv`: each flag not given on the command line may come from its variable;
/// a variable for a flag that was given is an error, and any other `ETCD_*` is warned about.
fn from_env(values: &mut Values, given: &[&'static str], env: &[(String, String)]) -> Result<(), ParseError> {
    for (key, val) in env {
        if !key.starts_with("ETCD_") || key == "ETCD_CONFIG_FILE" {
            continue;
        }
        if key == "ETCD_VERSION" {
            values.notes.push(Note::warn(
                "cannot set special environment variable",
                vec![("key", key.clone()), ("value", val.clone())],
            ));
            continue;
        }
        let Some(f) = FLAGS.iter().find(|f| env_name(f.name) == *key) else {
            values.notes.push(Note::warn(
                "unrecognized environment variable",
                vec![("environment-variable", format!("{key}={val}"))],
            ));
            continue;
        };
        if given.contains(&f.name) {
            return Err(ParseError::Invalid(format!(
                "conflicting environment variable {key:?} is shadowed by corresponding command-line flag (either unset environment variable or disable flag)"
            )));
        }
        if val.is_empty() {
            continue;
        }
        values.set(f.name, val).map_err(|e| ParseError::Invalid(format!("invalid value {val:?} for {key}: {e}")))?;
        values.notes.push(Note::info(
            "recognized and used environment variable",
            vec![("variable-name", key.clone()), ("variable-value", val.clone())],
        ));
    }
    Ok(())
}

/// `etcd --help`'s standard output: every flag by section, with its default (etcd prints its
/// usage text to standard error first).
pub fn help() -> String {
    let mut out = String::new();
    let mut section = None;
    for f in FLAGS.iter().filter(|f| f.section != super::table::Section::Hidden) {
        if section != Some(f.section) {
            section = Some(f.section);
            out.push_str(&format!("\n{}:\n", f.section.title()));
        }
        let default = match (f.name, f.kind) {
            ("data-dir", _) => "'${name}.etcd'".to_string(),
            ("initial-cluster", _) => "'default=http://localhost:2380'".to_string(),
            (_, Kind::Bool) => f.default.to_string(),
            _ => format!("'{}'", f.default),
        };
        out.push_str(&format!("  --{} {}\n    {}\n", f.name, default, f.help));
    }
    out
}

/// etcd's short usage, printed after a flag error.
pub const USAGE: &str = "Usage:

  etcd [flags]
    Start an etcd server.

  etcd --version
    Show the version of etcd.

  etcd -h | --help
    Show the help information about etcd.

  etcd --config-file
    Path to the server configuration file. Note that if a configuration file is provided, other command line flags and environment variables will be ignored.

  etcd gateway
    Run the stateless pass-through etcd TCP connection forwarding proxy.

  etcd grpc-proxy
    Run the stateless etcd v3 gRPC L7 reverse proxy.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Values, ParseError> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match parse(&args, &env)? {
            Command::Run(v) => Ok(v),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn go_flag_forms_and_last_wins() {
        let v = run(
            &["-name", "a", "--name=b", "--pre-vote=false", "--force-new-cluster", "--snapshot-count", "0x10"],
            &[],
        )
        .unwrap();
        assert_eq!(v.get("name"), "b");
        assert!(!v.bool("pre-vote"));
        assert!(v.bool("force-new-cluster"));
        assert_eq!(v.uint("snapshot-count"), 16);
        assert_eq!(v.duration("grpc-keepalive-interval"), std::time::Duration::from_secs(7200));
        assert_eq!(v.uint("max-concurrent-streams"), u32::MAX as u64);
    }

    #[test]
    fn errors_are_gos() {
        assert_eq!(
            run(&["--snapshot-count", "abc"], &[]).unwrap_err(),
            ParseError::Usage("invalid value \"abc\" for flag -snapshot-count: parse error".into())
        );
        assert_eq!(
            run(&["--initial-cluster-state", "bogus"], &[]).unwrap_err(),
            ParseError::Usage("invalid value \"bogus\" for flag -initial-cluster-state: invalid value".into())
        );
        assert_eq!(run(&["--foo"], &[]).unwrap_err(), ParseError::Usage("flag provided but not defined: -foo".into()));
        assert_eq!(
            run(&["positional"], &[]).unwrap_err(),
            ParseError::Invalid("'positional' is not a valid flag".into())
        );
        assert_eq!(run(&["--name"], &[]).unwrap_err(), ParseError::Usage("flag needs an argument: -name".into()));
        assert!(matches!(run(&["--log-level=bogus"], &[]), Err(ParseError::Usage(_))));
        assert!(matches!(run(&["--listen-client-urls=http://localhost"], &[]), Err(ParseError::Usage(_))));
    }

    #[test]
    fn environment_as_etcd_reads_it() {
        let v = run(&["--name", "x"], &[("ETCD_SNAPSHOT_COUNT", "7"), ("ETCD_BOGUS", "1"), ("PATH", "/bin")]).unwrap();
        assert_eq!(v.uint("snapshot-count"), 7);
        assert!(v.notes.iter().any(|n| n.warn && n.msg == "unrecognized environment variable"));
        assert!(matches!(run(&["--name", "x"], &[("ETCD_NAME", "y")]), Err(ParseError::Invalid(_))));
        assert!(matches!(run(&[], &[("ETCD_SNAPSHOT_COUNT", "x")]), Err(ParseError::Invalid(_))));
    }

    #[test]
    fn every_flag_is_accepted_at_its_default() {
        for f in FLAGS {
            let arg = format!("--{}={}", f.name, f.default);
            let v = run(&[&arg], &[]).unwrap_or_else(|e| panic!("{arg}: {e:?}"));
            assert_eq!(v.changed().count(), 0, "{arg}");
        }
    }
}
