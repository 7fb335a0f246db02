//! The smallest part of a key's history that still shows its violation, for a person to read.
//!
//! First the shortest prefix (by call time) that has no linearization: prefixes start from the
//! true initial state, so the failure is the history's own, not an artefact of a cut. Its last
//! operation is the culprit: everything before it is linearizable, and it cannot be placed.
//! Then each earlier operation is dropped when the rest stays linearizable without the culprit
//! and not with it, and no kept operation observed the value it wrote (dropping the write a
//! read saw would leave a read of a value nobody wrote: a different, made-up violation).

use crate::linearizability::{Action, Op, check_key_fast};

/// At most this many linearizability checks are spent on the shrinking pass; what is left
/// then is still a failing history, only not the smallest.
const MAX_CHECKS: usize = 4000;

/// The smallest failing sub-history of `ops` (all on one key), in call order; `ops` itself,
/// sorted, if it is linearizable (nothing to shrink).
pub fn smallest_failing(ops: &[Op]) -> Vec<Op> {
    let mut ops = ops.to_vec();
    ops.sort_by_key(|o| (o.call, o.ret));
    let fails = |h: &[Op]| !check_key_fast(h);
    if !fails(&ops) {
        return ops;
    }
    // The shortest failing prefix: lo passes (or is empty), hi fails.
    let (mut lo, mut hi) = (0, ops.len());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fails(&ops[..mid]) { hi = mid } else { lo = mid }
    }
    ops.truncate(hi);
    let Some(culprit) = ops.pop() else { return ops };
    let mut checks = 0;
    let mut i = ops.len();
    while i > 0 && checks < MAX_CHECKS {
        i -= 1;
        if observed(&ops[i], &ops, &culprit) {
            continue;
        }
        let mut without: Vec<Op> = ops.clone();
        without.remove(i);
        checks += 2;
        let mut with = without.clone();
        with.push(culprit.clone());
        if !fails(&without) && fails(&with) {
            ops = without;
        }
    }
    ops.push(culprit);
    ops.sort_by_key(|o| (o.call, o.ret));
    ops
}

/// Whether another kept operation (or the culprit) saw the value `op` wrote.
fn observed(op: &Op, kept: &[Op], culprit: &Op) -> bool {
    let Some(written) = op.action.written() else { return false };
    kept.iter().chain(std::iter::once(culprit)).filter(|o| !std::ptr::eq(*o, op)).any(|o| match &o.action {
        Action::Get(Some(v)) | Action::Cas { expect: Some(v), .. } => v == written,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linearizability::check_key;
    use crate::linearizability::tests::{op, put};

    /// The lost-write shape `ack-before-commit` makes: acknowledged puts, then a read of an
    /// older value. Everything but the write the read saw, the first acknowledged write after
    /// it and the read is dropped.
    #[test]
    fn a_stale_read_shrinks_to_the_write_it_saw_a_later_write_and_the_read() {
        let mut h = vec![op(0, put("v0"), 0, Some(1)), op(1, Action::Get(Some("v0".into())), 2, Some(3))];
        for i in 1..=5u64 {
            h.push(op(0, put(&format!("v{i}")), 10 * i, Some(10 * i + 1)));
            h.push(op(2, Action::Get(Some(format!("v{i}"))), 10 * i + 2, Some(10 * i + 3)));
        }
        h.pop(); // the read of v5 did not happen: v5 is the lost write
        h.push(op(1, Action::Get(Some("v0".into())), 100, Some(101)));
        h.push(op(0, put("late"), 200, Some(201)));
        assert!(!check_key(&h));
        let small = smallest_failing(&h);
        assert!(!check_key(&small));
        let actions: Vec<&Action> = small.iter().map(|o| &o.action).collect();
        assert_eq!(actions, [&put("v0"), &put("v1"), &Action::Get(Some("v0".into()))], "{small:?}");
    }

    #[test]
    fn a_read_of_a_value_never_written_is_its_own_smallest_history() {
        let h = vec![op(0, put("a"), 0, Some(1)), op(1, Action::Get(Some("ghost".into())), 5, Some(6))];
        let small = smallest_failing(&h);
        assert_eq!(small.len(), 1);
        assert_eq!(small[0].action, Action::Get(Some("ghost".into())));
    }

    #[test]
    fn a_linearizable_history_is_returned_whole() {
        let h = vec![op(0, put("a"), 0, Some(1)), op(1, Action::Get(Some("a".into())), 2, Some(3))];
        assert_eq!(smallest_failing(&h).len(), 2);
    }
}
