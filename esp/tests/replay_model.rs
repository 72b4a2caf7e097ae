//! The anti-replay window against a model: a `BTreeSet` of accepted numbers and the
//! RFC 4303 section 3.4.3 rule (accept if new and within W of the highest accepted).

use esp::replay::{ReplayError, ReplayWindow, SharedWindow};
use proptest::prelude::*;
use std::collections::BTreeSet;

struct Model {
    w: u64,
    seen: BTreeSet<u64>,
}

impl Model {
    fn top(&self) -> u64 {
        self.seen.last().copied().unwrap_or(0)
    }
    fn verdict(&self, seq: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::TooOld);
        }
        if self.w == 0 || seq > self.top() {
            return Ok(());
        }
        if self.top() - seq >= self.w {
            Err(ReplayError::TooOld)
        } else if self.seen.contains(&seq) {
            Err(ReplayError::Duplicate)
        } else {
            Ok(())
        }
    }
}

/// Sequence numbers as a sender with loss, reordering and duplicates would produce:
/// mostly small steps around a moving top, sometimes big jumps or far-back numbers.
fn ops() -> impl Strategy<Value = Vec<i64>> {
    proptest::collection::vec(prop_oneof![8 => -40i64..40, 1 => -5000i64..5000, 1 => Just(0i64)], 1..400)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn window_matches_model(w in prop_oneof![Just(0u32), 1u32..200, Just(1024u32), 1000u32..5000], start in 0u64..3, steps in ops(), commit_mask in any::<u64>()) {
        let mut win = ReplayWindow::new(w);
        let shared = SharedWindow::new(w);
        let mut model = Model { w: u64::from(w), seen: BTreeSet::new() };
        let mut cursor: u64 = start;
        for (i, d) in steps.iter().enumerate() {
            let seq = if *d == 0 { cursor } else { cursor.saturating_add_signed(*d) };
            cursor = cursor.max(seq);
            let want = model.verdict(seq);
            prop_assert_eq!(win.check(seq), want, "check seq {} (top {})", seq, model.top());
            prop_assert_eq!(shared.check(seq), want, "shared check seq {}", seq);
            // Sometimes a packet passes the check but fails its ICV: no commit.
            if want.is_ok() && (commit_mask >> (i % 64)) & 1 == 1 {
                prop_assert_eq!(win.commit(seq), Ok(()));
                prop_assert_eq!(shared.commit(seq), Ok(()));
                prop_assert_eq!(shared.commit(seq), if w == 0 { Ok(()) } else { Err(ReplayError::Duplicate) });
                if w == 0 {
                    // Disabled window: only the top is tracked.
                    if seq > model.top() { model.seen.insert(seq); }
                } else {
                    model.seen.insert(seq);
                }
                prop_assert_eq!(win.top(), model.top());
                prop_assert_eq!(shared.top(), model.top());
            }
        }
    }

    /// Starting near 2^32 (ESN territory) behaves the same.
    #[test]
    fn window_matches_model_across_2_pow_32(steps in ops()) {
        let mut win = ReplayWindow::new(128);
        let mut model = Model { w: 128, seen: BTreeSet::new() };
        let mut cursor: u64 = (1u64 << 32) - 300;
        for d in steps {
            let seq = cursor.saturating_add_signed(d);
            cursor = cursor.max(seq);
            let want = model.verdict(seq);
            prop_assert_eq!(win.check(seq), want);
            if want.is_ok() {
                prop_assert_eq!(win.commit(seq), Ok(()));
                model.seen.insert(seq);
            }
        }
    }

    /// ESN inference recovers the full number for any low half within the window or
    /// ahead of it (by less than 2^31).
    #[test]
    fn esn_inference_recovers_numbers_near_top(top in 1u64..(1u64 << 40), back in 0u64..64, ahead in 1u64..(1u64 << 31), pick_ahead in any::<bool>()) {
        let mut win = ReplayWindow::new(64);
        win.commit(top).unwrap();
        let seq = if pick_ahead { top + ahead } else { top.saturating_sub(back).max(1) };
        prop_assert_eq!(win.infer_esn(seq as u32), seq);
    }
}
