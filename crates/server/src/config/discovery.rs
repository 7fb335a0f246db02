//! etcd's DNS SRV bootstrap (`--discovery-srv`, `--discovery-srv-name`): a new member finds its
//! initial cluster in the SRV records `_etcd-server-ssl._tcp.<domain>` (https peers) and
//! `_etcd-server._tcp.<domain>` (http peers) instead of `--initial-cluster`; the record at its
//! own advertised peer address takes its name. Only a member without data bootstraps this way,
//! as in etcd. The DNS lookup itself is rustcd-client's ([`rustcd_client::srv`]).

use rustcd_client::srv;

use crate::config::parse::Note;
use crate::error::StartError;

/// The `--initial-cluster` the SRV records of `domain` give member `name`.
pub fn initial_cluster(
    name: &str,
    domain: &str,
    suffix: &str,
    advertised: &[String],
    notes: &mut Vec<Note>,
) -> Result<String, StartError> {
    let suffix = if suffix.is_empty() { String::new() } else { format!("-{suffix}") };
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for (scheme, service) in [("https", format!("etcd-server-ssl{suffix}")), ("http", format!("etcd-server{suffix}"))] {
        let r = srv::get_cluster(scheme, &service, name, domain, advertised);
        if let Ok(parts) = &r {
            found.extend(parts.iter().cloned());
        }
        let mut fields = vec![
            ("service-scheme", scheme.to_string()),
            ("service-name", service.clone()),
            ("server-name", name.to_string()),
            ("discovery-srv", domain.to_string()),
            ("advertise-peer-urls", format!("{advertised:?}")),
            ("found-cluster", format!("{found:?}")),
        ];
        if let Err(e) = r {
            fields.push(("error", e.clone()));
            errors.push(e);
        }
        notes.push(Note::info(format!("get cluster for {service} SRV"), fields));
    }
    if found.is_empty() {
        notes.push(Note::warn("failed to resolve during SRV discovery", vec![("error", errors.join("; "))]));
        return Err(StartError::Config(errors.join("; ")));
    }
    for node in &found {
        notes.push(Note::info("got bootstrap from DNS for etcd-server", vec![("node", node.clone())]));
    }
    if !found.iter().any(|p| p.split_once('=').is_some_and(|(n, _)| n == name)) {
        return Err(StartError::Config(format!("cannot find local etcd member {name:?} in SRV records")));
    }
    Ok(found.join(","))
}
