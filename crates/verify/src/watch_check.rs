//! Checks of what watchers saw, against the events a fresh watch from revision 1 reports (the
//! canonical list) and the recorded client history: ordered, unique, without gaps across
//! reconnects (resumable), `prev_kv` and the create flag right, progress notifications
//! (bookmarks) never ahead of the events, every acknowledged write present, no write that no
//! client made.

use std::collections::{HashMap, HashSet};

use crate::linearizability::{Action, Op};

/// One event as a watcher received it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Seen {
    pub rev: i64,
    pub key: String,
    pub put: bool,
    pub value: String,
    pub prev: Option<String>,
    /// The event is a key's creation: `create_revision == mod_revision` and `version == 1`.
    pub created: bool,
}

/// What one watcher received: events, and bookmarks (progress notifications) as (how many
/// events had arrived before it, the revision it named).
#[derive(Clone, Debug, Default)]
pub struct WatchLog {
    pub events: Vec<Seen>,
    pub bookmarks: Vec<(usize, i64)>,
    /// (events so far, start revision) at every new stream, for reports.
    pub streams: Vec<(usize, i64)>,
}

/// A bookmark at revision `r` promises every event up to `r` was delivered before it and none
/// after it is older.
pub fn check_bookmarks(log: &WatchLog) -> Result<(), String> {
    for &(count, rev) in &log.bookmarks {
        let count = count.min(log.events.len());
        if let Some(i) = log.events[count..].iter().position(|e| e.rev <= rev) {
            return Err(format!(
                "event {:?} arrived after a progress notification at revision {rev}, which followed \
                 {count} events (the last {:?}); {i} events came in between; streams started at \
                 (events, revision) {:?}",
                log.events[count + i],
                count.checked_sub(1).map(|c| &log.events[c]),
                log.streams.iter().filter(|s| s.0 + 3 >= count && s.0 <= count + i + 3).collect::<Vec<_>>()
            ));
        }
    }
    Ok(())
}

/// What is wrong with one watcher's events, if anything. A watcher started at revision 1 must
/// have seen exactly a prefix of the canonical list.
pub fn check_watcher(seen: &[Seen], canonical: &[Seen]) -> Result<(), String> {
    for w in seen.windows(2) {
        if (w[1].rev, &w[1].key) <= (w[0].rev, &w[0].key) {
            return Err(format!("out of order or duplicated: {:?} then {:?}", w[0], w[1]));
        }
    }
    if seen.len() > canonical.len() {
        return Err(format!("{} events seen, only {} happened", seen.len(), canonical.len()));
    }
    match seen.iter().zip(canonical).position(|(a, b)| a != b) {
        Some(i) => Err(format!("event {i} differs: saw {:?}, history has {:?}", seen[i], canonical[i])),
        None => Ok(()),
    }
}

/// `prev_kv` of every event is the value the previous event on that key left, and a put is a
/// creation exactly when the key did not exist before it.
pub fn check_prev_kv(canonical: &[Seen]) -> Result<(), String> {
    let mut last: HashMap<&str, Option<&str>> = HashMap::new();
    for e in canonical {
        let before = last.get(e.key.as_str()).copied().flatten();
        if e.prev.as_deref() != before {
            return Err(format!("{e:?}: prev_kv should be {before:?}"));
        }
        if e.put && e.created != before.is_none() {
            return Err(format!("{e:?}: the create flag should be {}", before.is_none()));
        }
        last.insert(&e.key, e.put.then_some(e.value.as_str()));
    }
    Ok(())
}

/// The acknowledged writes no event shows: writes the cluster said it made and lost.
pub fn lost_writes<'a>(history: &'a [Op], canonical: &[Seen]) -> Vec<&'a Op> {
    let events: HashSet<(&str, &str)> =
        canonical.iter().filter(|e| e.put).map(|e| (e.key.as_str(), e.value.as_str())).collect();
    let acknowledged = |o: &&Op| {
        o.ret.is_some()
            && matches!(o.action, Action::Put(_) | Action::PutLease(..) | Action::Cas { succeeded: Some(true), .. })
    };
    history
        .iter()
        .filter(acknowledged)
        .filter(|o| o.action.written().is_some_and(|v| !events.contains(&(o.key.as_str(), v))))
        .collect()
}

/// Every acknowledged put is an event, and every put event is a put some client made.
pub fn check_writes(history: &[Op], canonical: &[Seen]) -> Result<(), String> {
    let made: HashSet<(&str, &str)> =
        history.iter().filter_map(|o| Some((o.key.as_str(), o.action.written()?))).collect();
    if let Some(lost) = lost_writes(history, canonical).first() {
        return Err(format!("acknowledged write lost: {lost:?}"));
    }
    if let Some(phantom) = canonical.iter().find(|e| e.put && !made.contains(&(e.key.as_str(), e.value.as_str()))) {
        return Err(format!("a write no client made: {phantom:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(rev: i64, key: &str, value: &str, prev: Option<&str>) -> Seen {
        let put = !value.is_empty();
        Seen {
            rev,
            key: key.into(),
            put,
            value: value.into(),
            prev: prev.map(str::to_string),
            created: put && prev.is_none(),
        }
    }

    #[test]
    fn watchers_must_see_a_gapless_ordered_prefix() {
        let canonical = [ev(2, "a", "1", None), ev(3, "a", "2", Some("1")), ev(4, "b", "x", None)];
        assert!(check_watcher(&canonical[..2], &canonical).is_ok());
        assert!(check_watcher(&[canonical[0].clone(), canonical[2].clone()], &canonical).is_err(), "gap");
        assert!(check_watcher(&[canonical[0].clone(), canonical[0].clone()], &canonical).is_err(), "duplicate");
        assert!(check_watcher(&[canonical[1].clone(), canonical[0].clone()], &canonical).is_err(), "order");
        assert!(check_prev_kv(&canonical).is_ok());
        assert!(check_prev_kv(&[ev(2, "a", "1", None), ev(3, "a", "", Some("9"))]).is_err());
        assert!(check_prev_kv(&[ev(2, "a", "1", None), ev(3, "a", "", Some("1")), ev(4, "a", "2", None)]).is_ok());
        let mut not_created = ev(2, "a", "1", None);
        not_created.created = false;
        assert!(check_prev_kv(&[not_created]).is_err(), "a first put is a creation");
        let mut recreated = ev(3, "a", "2", Some("1"));
        recreated.created = true;
        assert!(check_prev_kv(&[ev(2, "a", "1", None), recreated]).is_err(), "an update is not");
    }

    #[test]
    fn bookmarks_must_not_run_ahead_of_events() {
        let events = vec![ev(2, "a", "1", None), ev(3, "a", "2", Some("1")), ev(5, "b", "x", None)];
        let ok = WatchLog { events: events.clone(), bookmarks: vec![(0, 1), (2, 3), (2, 4), (3, 9)], streams: vec![] };
        assert!(check_bookmarks(&ok).is_ok());
        let early = WatchLog { events, bookmarks: vec![(1, 3)], streams: vec![] };
        assert!(check_bookmarks(&early).is_err(), "revision 3 came after a bookmark at 3");
    }

    #[test]
    fn writes_must_match_the_history() {
        let put =
            |v: &str, ret: Option<u64>| Op { client: 0, key: "a".into(), action: Action::Put(v.into()), call: 0, ret };
        let canonical = [ev(2, "a", "1", None)];
        assert!(check_writes(&[put("1", Some(1)), put("2", None)], &canonical).is_ok(), "unanswered may be lost");
        assert!(check_writes(&[put("1", Some(1)), put("2", Some(2))], &canonical).is_err(), "acked write lost");
        assert!(check_writes(&[], &canonical).is_err(), "phantom write");
    }
}
