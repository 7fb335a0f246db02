//! A linearizability checker for key-value histories, in the style of porcupine: the history is
//! split by key (P-compositionality) and each key's operations are searched for a legal order
//! against a register model (Lowe's refinement of the Wing & Gong algorithm, with a cache of
//! visited (linearized set, state) pairs). An operation whose outcome is unknown (a write that
//! timed out) is open to the end of time: it may have taken effect at any point, or never.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

/// What a client did to one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Put a value.
    Put(String),
    /// Read the key and saw this value (None: no such key).
    Get(Option<String>),
    /// Deleted the key; the server said whether one existed (None: outcome unknown).
    Delete(Option<bool>),
    /// A txn: if the value is `expect` (None: no key), put `new`; the server said whether the
    /// compare held (None: outcome unknown).
    Cas { expect: Option<String>, new: String, succeeded: Option<bool> },
    /// Put a value attached to a lease (each lease is used for one key only).
    PutLease(String, i64),
    /// Revoked a lease: deletes the key if it is still attached to it.
    Revoke(i64),
}

impl Action {
    /// The value the action writes, if it writes one (a put, a put on a lease, a
    /// compare-and-swap's new value).
    pub fn written(&self) -> Option<&str> {
        match self {
            Action::Put(v) | Action::PutLease(v, _) | Action::Cas { new: v, .. } => Some(v.as_str()),
            _ => None,
        }
    }
}

/// One operation: invoked at `call`, answered at `ret` (None: no answer, may have happened).
/// Times are nanoseconds from the start of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Op {
    pub client: usize,
    pub key: String,
    pub action: Action,
    pub call: u64,
    pub ret: Option<u64>,
}

/// The register a key is: its value and the lease it is attached to (0: none), or absent.
type State = Option<(String, i64)>;

/// Applies `a` to `s`; None when the observed result is impossible in `s`.
fn step(s: &State, a: &Action) -> Option<State> {
    let value = s.as_ref().map(|(v, _)| v);
    match a {
        Action::Put(v) => Some(Some((v.clone(), 0))),
        Action::PutLease(v, lease) => Some(Some((v.clone(), *lease))),
        Action::Get(seen) => (seen.as_ref() == value).then(|| s.clone()),
        Action::Delete(None) => Some(None),
        Action::Delete(Some(existed)) => (*existed == s.is_some()).then_some(None),
        Action::Cas { expect, new, succeeded } => {
            let holds = expect.as_ref() == value;
            match succeeded {
                Some(said) if *said != holds => None,
                _ if holds => Some(Some((new.clone(), 0))),
                _ => Some(s.clone()),
            }
        }
        Action::Revoke(lease) => match s {
            Some((_, l)) if l == lease => Some(None),
            _ => Some(s.clone()),
        },
    }
}

/// An event in time order: an operation's call or its return.
#[derive(Clone, Copy, Debug)]
struct Event {
    op: usize,
    is_call: bool,
}

/// Whether one key's operations (all on the same key) have a linearization.
pub fn check_key(ops: &[Op]) -> bool {
    let n = ops.len();
    if n == 0 {
        return true;
    }
    // Events sorted by time; at equal times calls come first (the more permissive order).
    let mut events: Vec<(u64, u8, Event)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, 0, Event { op: i, is_call: true }));
        events.push((op.ret.unwrap_or(u64::MAX), 1, Event { op: i, is_call: false }));
    }
    events.sort_by_key(|(t, kind, e)| (*t, *kind, e.op));
    let events: Vec<Event> = events.into_iter().map(|(_, _, e)| e).collect();
    // A doubly linked list over the events, with a head sentinel at index `len`.
    let len = events.len();
    let mut next: Vec<usize> = (1..=len).collect();
    next.push(0);
    let mut prev: Vec<usize> = (0..=len).map(|i| if i == 0 { len } else { i - 1 }).collect();
    next[len] = 0;
    prev[0] = len;
    let end = len + 1; // "no next" marker
    next[len - 1] = end;
    let mut ret_of = vec![0usize; n];
    for (i, e) in events.iter().enumerate() {
        if !e.is_call {
            ret_of[e.op] = i;
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = nx;
        if nx != end {
            prev[nx] = p;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = i;
        if nx != end {
            prev[nx] = i;
        }
    };
    let mut linearized = vec![false; n];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new(); // (call event index, state before)
    let mut state: State = None;
    let mut cur = next[len];
    let bits = |lin: &Vec<bool>| -> Vec<u64> {
        let mut b = vec![0u64; n.div_ceil(64)];
        for (i, l) in lin.iter().enumerate() {
            if *l {
                b[i / 64] |= 1 << (i % 64);
            }
        }
        b
    };
    loop {
        if next[len] == end {
            return true;
        }
        if cur == end {
            // Only reachable past the last return: nothing left to try here.
            let Some((call, before)) = stack.pop() else { return false };
            let op = events[call].op;
            linearized[op] = false;
            relink(&mut next, &mut prev, ret_of[op]);
            relink(&mut next, &mut prev, call);
            state = before;
            cur = next[call];
            continue;
        }
        let e = events[cur];
        if e.is_call {
            if let Some(after) = step(&state, &ops[e.op].action) {
                linearized[e.op] = true;
                let key = (bits(&linearized), after.clone());
                if cache.insert(key) {
                    stack.push((cur, state.clone()));
                    state = after;
                    // Lifted call first, then its return; put back in the reverse order.
                    unlink(&mut next, &mut prev, cur);
                    unlink(&mut next, &mut prev, ret_of[e.op]);
                    cur = next[len];
                    continue;
                }
                linearized[e.op] = false;
            }
            cur = next[cur];
        } else {
            // A return whose call is not linearized yet: undo the last choice.
            let Some((call, before)) = stack.pop() else { return false };
            let op = events[call].op;
            linearized[op] = false;
            relink(&mut next, &mut prev, ret_of[op]);
            relink(&mut next, &mut prev, call);
            state = before;
            cur = next[call];
        }
    }
}

/// `ops` with every unanswered write that never took effect left out: one whose value no event
/// of the keyspace shows (`written`: the (key, value) of every put event, from a watch of the
/// whole run). Values are unique per write, so a write with no event never happened, and
/// "never" is a legal place for it; without this, each unanswered write is open to the end of
/// time and the search grows with every one of them (as etcd's robustness suite, the history
/// is patched with what the watch saw).
pub fn patch(ops: &[Op], written: &HashSet<(&str, &str)>) -> Vec<Op> {
    let never = |o: &Op| o.ret.is_none() && o.action.written().is_some_and(|v| !written.contains(&(o.key.as_str(), v)));
    ops.iter().filter(|o| !never(o)).cloned().collect()
}

/// The keys whose histories have no linearization.
pub fn check(ops: &[Op]) -> Vec<String> {
    let mut by_key: BTreeMap<&str, Vec<Op>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.key.as_str()).or_default().push(op.clone());
    }
    by_key.into_iter().filter(|(_, ops)| !check_key_fast(ops)).map(|(k, _)| k.to_string()).collect()
}

/// [`check_key`], first without the unanswered puts whose value nobody read: "never happened"
/// is a legal place for them, so a linearization without them is one of the whole history.
/// Open-ended operations are what makes the search expensive; only when that smaller history
/// fails is the whole one searched.
pub fn check_key_fast(ops: &[Op]) -> bool {
    let read: HashSet<&str> =
        ops.iter().filter_map(|o| if let Action::Get(Some(v)) = &o.action { Some(v.as_str()) } else { None }).collect();
    let unread_unknown = |o: &&Op| o.ret.is_none() && o.action.written().is_some_and(|v| !read.contains(v));
    let reduced: Vec<Op> = ops.iter().filter(|o| !unread_unknown(o)).cloned().collect();
    (reduced.len() < ops.len() && check_key(&reduced)) || check_key(ops)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An operation on key `k` (the other test modules' histories are made of these too).
    pub(crate) fn op(client: usize, action: Action, call: u64, ret: Option<u64>) -> Op {
        Op { client, key: "k".into(), action, call, ret }
    }
    pub(crate) fn put(v: &str) -> Action {
        Action::Put(v.into())
    }
    fn get(v: Option<&str>) -> Action {
        Action::Get(v.map(str::to_string))
    }

    #[test]
    fn sequential_histories() {
        let ok = [op(0, put("a"), 0, Some(1)), op(0, get(Some("a")), 2, Some(3)), op(0, get(Some("a")), 4, Some(5))];
        assert!(check_key(&ok));
        // A read after a write completed must see it.
        let stale = [op(0, put("a"), 0, Some(1)), op(0, put("b"), 2, Some(3)), op(1, get(Some("a")), 4, Some(5))];
        assert!(!check_key(&stale));
        // A value nobody wrote.
        assert!(!check_key(&[op(0, get(Some("z")), 0, Some(1))]));
        // Deletes report whether the key existed.
        let del =
            [op(0, put("a"), 0, Some(1)), op(0, Action::Delete(Some(true)), 2, Some(3)), op(1, get(None), 4, Some(5))];
        assert!(check_key(&del));
        let wrong_del = [op(0, Action::Delete(Some(true)), 0, Some(1))];
        assert!(!check_key(&wrong_del));
    }

    #[test]
    fn compare_and_swap() {
        let cas = |expect: Option<&str>, new: &str, ok: Option<bool>| Action::Cas {
            expect: expect.map(str::to_string),
            new: new.into(),
            succeeded: ok,
        };
        let h = [
            op(0, put("a"), 0, Some(1)),
            op(1, cas(Some("a"), "b", Some(true)), 2, Some(3)),
            op(2, get(Some("b")), 4, Some(5)),
        ];
        assert!(check_key(&h));
        // A compare that held cannot report failure, nor a failed one change the value.
        let h = [op(0, put("a"), 0, Some(1)), op(1, cas(Some("a"), "b", Some(false)), 2, Some(3))];
        assert!(!check_key(&h));
        let h = [
            op(0, put("a"), 0, Some(1)),
            op(1, cas(Some("z"), "b", Some(false)), 2, Some(3)),
            op(2, get(Some("b")), 4, Some(5)),
        ];
        assert!(!check_key(&h));
        // Two swaps from the same value cannot both succeed.
        let h = [
            op(0, put("a"), 0, Some(1)),
            op(1, cas(Some("a"), "b", Some(true)), 2, Some(9)),
            op(2, cas(Some("a"), "c", Some(true)), 3, Some(9)),
        ];
        assert!(!check_key(&h));
    }

    #[test]
    fn revoking_a_lease_deletes_only_keys_still_attached() {
        let h = [
            op(0, Action::PutLease("a".into(), 7), 0, Some(1)),
            op(0, Action::Revoke(7), 2, Some(3)),
            op(1, get(None), 4, Some(5)),
        ];
        assert!(check_key(&h));
        // A put without the lease detaches the key: the revoke leaves it.
        let h = [
            op(0, Action::PutLease("a".into(), 7), 0, Some(1)),
            op(0, put("b"), 2, Some(3)),
            op(0, Action::Revoke(7), 4, Some(5)),
            op(1, get(None), 6, Some(7)),
        ];
        assert!(!check_key(&h));
    }

    #[test]
    fn concurrent_operations_may_take_either_order() {
        // A read overlapping a write may see the old or the new value...
        let h = [op(0, put("a"), 0, Some(1)), op(0, put("b"), 2, Some(10)), op(1, get(Some("a")), 3, Some(4))];
        assert!(check_key(&h));
        let h = [op(0, put("a"), 0, Some(1)), op(0, put("b"), 2, Some(10)), op(1, get(Some("b")), 3, Some(4))];
        assert!(check_key(&h));
        // ...but two reads cannot see it flip back (new, then old).
        let h = [
            op(0, put("a"), 0, Some(1)),
            op(0, put("b"), 2, Some(10)),
            op(1, get(Some("b")), 3, Some(4)),
            op(2, get(Some("a")), 5, Some(6)),
        ];
        assert!(!check_key(&h));
    }

    #[test]
    fn unknown_outcomes_may_apply_late_or_never() {
        // A timed-out write may show up long after it was sent...
        let h = [
            op(0, put("a"), 0, Some(1)),
            op(1, put("b"), 2, None),
            op(2, get(Some("a")), 5, Some(6)),
            op(2, get(Some("b")), 7, Some(8)),
        ];
        assert!(check_key(&h));
        // ...or never, but it cannot be un-applied once seen.
        let h = [
            op(0, put("a"), 0, Some(1)),
            op(1, put("b"), 2, None),
            op(2, get(Some("b")), 5, Some(6)),
            op(2, get(Some("a")), 7, Some(8)),
        ];
        assert!(!check_key(&h));
    }

    #[test]
    fn backtracking_restores_every_operation() {
        // The search first orders put(b) before get(a) and must undo that: both orders of
        // the two overlapping puts have to be tried.
        let h = [
            op(0, put("a"), 0, Some(10)),
            op(1, put("b"), 1, Some(11)),
            op(2, get(Some("a")), 12, Some(13)),
            op(2, get(Some("a")), 14, Some(15)),
        ];
        assert!(check_key(&h));
        let h = [
            op(0, put("a"), 0, Some(10)),
            op(1, put("b"), 1, Some(11)),
            op(2, get(Some("b")), 12, Some(13)),
            op(3, get(Some("a")), 14, Some(15)),
        ];
        assert!(!check_key(&h));
    }

    /// Whether some order of `ops` that respects real time is legal: the definition, by brute force.
    fn brute_force(ops: &[Op]) -> bool {
        fn search(ops: &[Op], done: &mut Vec<bool>, state: &State) -> bool {
            if done.iter().all(|d| *d) {
                return true;
            }
            for i in 0..ops.len() {
                if done[i] {
                    continue;
                }
                // i may go next only if no pending op finished before i was called.
                let blocked = (0..ops.len()).any(|j| !done[j] && j != i && ops[j].ret.is_some_and(|r| r < ops[i].call));
                if blocked {
                    continue;
                }
                if let Some(next) = step(state, &ops[i].action) {
                    done[i] = true;
                    if search(ops, done, &next) {
                        return true;
                    }
                    done[i] = false;
                }
                // An op with no answer may also never have happened.
                if ops[i].ret.is_none() {
                    done[i] = true;
                    if search(ops, done, state) {
                        return true;
                    }
                    done[i] = false;
                }
            }
            false
        }
        search(ops, &mut vec![false; ops.len()], &None)
    }

    #[test]
    fn agrees_with_brute_force_on_random_small_histories() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let values = [None, Some("a"), Some("b")];
        let (mut yes, mut no) = (0, 0);
        for _ in 0..3000 {
            let n = 1 + rnd(6) as usize;
            let ops: Vec<Op> = (0..n)
                .map(|i| {
                    let call = rnd(20);
                    let ret = if rnd(8) == 0 { None } else { Some(call + 1 + rnd(10)) };
                    let action = match rnd(5) {
                        0 => put(values[1 + rnd(2) as usize].unwrap_or("a")),
                        4 => Action::Cas {
                            expect: values[rnd(3) as usize].map(str::to_string),
                            new: values[1 + rnd(2) as usize].unwrap_or("a").to_string(),
                            succeeded: if ret.is_none() { None } else { Some(rnd(2) == 0) },
                        },
                        1 => Action::Delete(if ret.is_none() { None } else { Some(rnd(2) == 0) }),
                        _ => get(values[rnd(3) as usize]),
                    };
                    let action = match (&action, ret) {
                        (Action::Get(_), None) => put("a"),
                        _ => action,
                    };
                    op(i, action, call, ret)
                })
                .collect();
            let expected = brute_force(&ops);
            assert_eq!(check_key(&ops), expected, "{ops:#?}");
            assert_eq!(check_key_fast(&ops), expected, "{ops:#?}");
            if expected { yes += 1 } else { no += 1 }
        }
        assert!(yes > 300 && no > 300, "both outcomes exercised: {yes} linearizable, {no} not");
    }

    #[test]
    fn histories_are_checked_key_by_key() {
        let mut ops = vec![op(0, put("a"), 0, Some(1)), op(1, get(Some("a")), 2, Some(3))];
        ops.push(Op { client: 2, key: "other".into(), action: get(Some("x")), call: 0, ret: Some(1) });
        assert_eq!(check(&ops), vec!["other".to_string()]);
    }

    #[test]
    fn a_long_concurrent_history_is_checked_quickly() {
        // 6 clients, 600 operations on one key, each write unique and each read seeing the
        // latest completed write: linearizable, and found without blowing up.
        let mut ops = Vec::new();
        let mut last = None;
        for i in 0..600u64 {
            let t = i * 10;
            if i % 3 == 0 {
                let v = format!("v{i}");
                ops.push(op((i % 6) as usize, put(&v), t, Some(t + 15)));
                last = Some(v);
            } else {
                ops.push(op((i % 6) as usize, Action::Get(last.clone()), t + 16, Some(t + 18)));
            }
        }
        assert!(check_key(&ops));
    }

    #[test]
    fn patching_drops_only_unanswered_writes_no_event_shows() {
        let ops = vec![
            op(0, put("shown"), 0, None),
            op(0, put("never"), 1, None),
            op(0, put("answered"), 2, Some(3)),
            op(1, Action::Delete(None), 4, None),
        ];
        let written: HashSet<(&str, &str)> = [("k", "shown"), ("k", "answered")].into();
        let kept: Vec<Action> = patch(&ops, &written).into_iter().map(|o| o.action).collect();
        assert_eq!(kept, [put("shown"), put("answered"), Action::Delete(None)]);
    }
}
