//! The initial cluster a data dir is made from (`--initial-cluster`): `name=url,name=url2,...`.

use crate::url::Url;

/// One member of the initial cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub peer_urls: Vec<String>,
}

/// Parses `name=url,name=url2,...`; a name may appear with several URLs. The error is the
/// text etcd's users see after the flag's name.
pub fn parse_initial_cluster(s: &str) -> Result<Vec<InitialMember>, String> {
    let mut out: Vec<InitialMember> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, url)) = part.split_once('=') else {
            return Err(format!("invalid initial-cluster entry {part:?}"));
        };
        Url::parse(url).map_err(|e| format!("invalid initial-cluster URL {url:?}: {e}"))?;
        match out.iter_mut().find(|m| m.name == name) {
            Some(m) => m.peer_urls.push(url.to_string()),
            None => out.push(InitialMember { name: name.to_string(), peer_urls: vec![url.to_string()] }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_may_repeat_with_more_urls() {
        let m =
            parse_initial_cluster("a=http://127.0.0.1:1, b=http://127.0.0.1:2,a=http://127.0.0.1:3").expect("parse");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].peer_urls, ["http://127.0.0.1:1", "http://127.0.0.1:3"]);
        assert!(parse_initial_cluster("a").is_err());
        assert!(parse_initial_cluster("a=localhost:1").is_err());
    }
}
