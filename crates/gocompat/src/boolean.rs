//! Go's `strconv.ParseBool` and pflag's bool flags (`--x` alone is true, `--x=v` parses `v`;
//! `--x v` leaves `v` an argument).

/// A bool Go would not parse: `strconv.ParseBool: parsing "v": invalid syntax`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("strconv.ParseBool: parsing {0:?}: invalid syntax")]
pub struct BoolError(pub String);

/// Go's `strconv.ParseBool`: 1, t, T, TRUE, true, True and 0, f, F, FALSE, false, False.
pub fn parse_bool(s: &str) -> Result<bool, BoolError> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(BoolError(s.to_string())),
    }
}

/// A pflag bool flag's value: `inline` is what followed `=`, `None` for the bare `--x`.
pub fn flag_bool(inline: Option<&str>) -> Result<bool, BoolError> {
    inline.map_or(Ok(true), parse_bool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gos_documented_forms() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in ["", "yes", "tRUE", "2", " true", "on"] {
            assert!(parse_bool(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_bool("yes").unwrap_err().to_string(), r#"strconv.ParseBool: parsing "yes": invalid syntax"#);
    }

    #[test]
    fn pflag_bool_forms() {
        assert_eq!(flag_bool(None), Ok(true));
        assert_eq!(flag_bool(Some("false")), Ok(false));
        assert_eq!(flag_bool(Some("T")), Ok(true));
        assert!(flag_bool(Some("")).is_err(), "--x= is an empty value, not true");
    }
}
