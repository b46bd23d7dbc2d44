//! The deadlines of an initiator connection's commands and requests, earliest first.
//!
//! Nearly every deadline is "now + a fixed timeout", so each one is later than all before
//! it: those go to the back of a queue (no search, no allocation per command). One that is
//! earlier than the queue's last goes to an ordered set instead. Removing an entry from the
//! middle of the queue would cost a search, so it is left in place and dropped when it
//! reaches the front; the owner says which entries are still live. The queue is compacted
//! when it holds more than twice the live entries (plus some slack), which bounds its memory
//! by the number of tasks even when one long command at the front holds the others back.

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use crate::serial::Itt;

/// Entries the queue may hold beyond twice the live ones before it is compacted.
const SLACK: usize = 64;

/// Deadlines keyed by task tag (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    /// In non-decreasing order of deadline; may hold entries no longer live.
    queue: VecDeque<(Instant, Itt)>,
    /// Deadlines earlier than the queue's last when they were added; only live entries.
    sorted: BTreeSet<(Instant, Itt)>,
}

impl Deadlines {
    /// Adds the deadline `at` of `itt`.
    pub fn insert(&mut self, at: Instant, itt: Itt) {
        match self.queue.back() {
            Some(&(last, _)) if at < last => {
                self.sorted.insert((at, itt));
            }
            _ => self.queue.push_back((at, itt)),
        }
    }

    /// Removes the deadline `at` of `itt`, whose owner no longer counts it as live.
    /// `live` tells which other entries still count; `owners` is how many entries at most
    /// can be live (the owner's tasks and requests).
    pub fn remove(
        &mut self,
        at: Instant,
        itt: Itt,
        owners: usize,
        live: impl Fn(Instant, Itt) -> bool,
    ) {
        if !self.sorted.remove(&(at, itt)) {
            // In the queue: dropped now if it is at the front (the common case: commands
            // end in about the order they started), otherwise when it gets there or by a
            // compaction.
            if self.queue.front() == Some(&(at, itt)) {
                self.queue.pop_front();
            }
            self.clean_front(&live);
            if self.queue.len() > 2 * owners + SLACK {
                self.queue.retain(|&(d, i)| live(d, i));
            }
        }
    }

    /// Drops entries at the front that are no longer live.
    fn clean_front(&mut self, live: &impl Fn(Instant, Itt) -> bool) {
        while let Some(&(d, i)) = self.queue.front() {
            if live(d, i) {
                break;
            }
            self.queue.pop_front();
        }
    }

    /// The earliest deadline (live, as long as every removal went through
    /// [`Deadlines::remove`]).
    pub fn first(&self) -> Option<Instant> {
        let q = self.queue.front().map(|e| e.0);
        let s = self.sorted.first().map(|e| e.0);
        match (q, s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes the earliest entry if it is due at `now` (then drops entries no longer `live`
    /// that it uncovers).
    pub fn pop_due(
        &mut self,
        now: Instant,
        live: impl Fn(Instant, Itt) -> bool,
    ) -> Option<(Instant, Itt)> {
        let q = self.queue.front().copied();
        let s = self.sorted.first().copied();
        let take_sorted = match (q, s) {
            (Some(a), Some(b)) => b < a,
            (None, Some(_)) => true,
            _ => false,
        };
        let next = if take_sorted { s } else { q }?;
        if next.0 > now {
            return None;
        }
        if take_sorted {
            self.sorted.pop_first();
        } else {
            self.queue.pop_front();
            self.clean_front(&live);
        }
        Some(next)
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.sorted.clear();
    }

    /// Entries held (live or waiting to be dropped).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.queue.len() + self.sorted.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// A model owner: the live entries.
    struct Owner {
        live: BTreeMap<Itt, Instant>,
        d: Deadlines,
    }

    impl Owner {
        fn new() -> Self {
            Owner {
                live: BTreeMap::new(),
                d: Deadlines::default(),
            }
        }
        fn add(&mut self, t: Instant, itt: u32) {
            self.live.insert(Itt(itt), t);
            self.d.insert(t, Itt(itt));
        }
        fn done(&mut self, itt: u32) {
            let t = self.live.remove(&Itt(itt)).expect("live");
            let live = &self.live;
            self.d
                .remove(t, Itt(itt), live.len(), |d, i| live.get(&i) == Some(&d));
        }
        fn earliest_live(&self) -> Option<Instant> {
            self.live.values().min().copied()
        }
    }

    #[test]
    fn in_order_and_out_of_order_come_out_earliest_first() {
        let t0 = Instant::now();
        let mut o = Owner::new();
        o.add(at(t0, 10), 1);
        o.add(at(t0, 30), 2);
        o.add(at(t0, 20), 3); // earlier than the last: the ordered set
        o.add(at(t0, 30), 4);
        o.add(at(t0, 5), 5);
        assert_eq!(o.d.first(), Some(at(t0, 5)));
        let mut out = Vec::new();
        while let Some((_, i)) = o.d.pop_due(at(t0, 100), |_, _| true) {
            out.push(i.0);
        }
        assert_eq!(out, [5, 1, 3, 2, 4]);
        assert_eq!(o.d.first(), None);
    }

    #[test]
    fn nothing_due_before_its_time() {
        let t0 = Instant::now();
        let mut o = Owner::new();
        o.add(at(t0, 10), 1);
        assert_eq!(o.d.pop_due(at(t0, 9), |_, _| true), None);
        assert_eq!(
            o.d.pop_due(at(t0, 10), |_, _| true),
            Some((at(t0, 10), Itt(1)))
        );
    }

    #[test]
    fn removed_entries_never_come_out_and_first_stays_live() {
        let t0 = Instant::now();
        let mut o = Owner::new();
        for i in 0..10 {
            o.add(at(t0, 10 + i), i as u32);
        }
        o.add(at(t0, 1), 100);
        for i in [0, 3, 4, 9, 100] {
            o.done(i);
            assert_eq!(o.d.first(), o.earliest_live(), "after removing {i}");
        }
        // Entries removed from the middle of the queue wait there; the front is live.
        let mut out = Vec::new();
        loop {
            let live = &o.live;
            let Some((d, i)) = o.d.pop_due(at(t0, 100), |d, i| live.get(&i) == Some(&d)) else {
                break;
            };
            assert_eq!(o.live.get(&i), Some(&d), "a removed entry came out");
            out.push(i.0);
        }
        assert_eq!(out, [1, 2, 5, 6, 7, 8]);
    }

    #[test]
    fn a_long_command_at_the_front_does_not_let_the_queue_grow_without_bound() {
        let t0 = Instant::now();
        let mut o = Owner::new();
        o.add(at(t0, 0), 0); // never completes
        let mut max_held = 0;
        for i in 1..100_000u32 {
            o.add(at(t0, u64::from(i)), i);
            if i > 32 {
                o.done(i - 32);
            }
            max_held = max_held.max(o.d.held());
        }
        assert!(o.live.len() <= 33);
        assert!(
            max_held <= 2 * 34 + SLACK + 1,
            "held {max_held} entries for {} live ones",
            o.live.len()
        );
        assert_eq!(o.d.first(), Some(at(t0, 0)));
    }

    #[test]
    fn random_operations_agree_with_a_model() {
        let t0 = Instant::now();
        let mut o = Owner::new();
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next_itt = 0u32;
        let mut now_ms = 0u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 4 {
                0 | 1 => {
                    // Mostly later deadlines, sometimes earlier ones.
                    let t = if x % 16 < 14 {
                        now_ms + 1000 + (x >> 40) % 3
                    } else {
                        now_ms + (x >> 40) % 1000
                    };
                    o.add(at(t0, t), next_itt);
                    next_itt += 1;
                }
                2 => {
                    if let Some(&i) = o.live.keys().nth((x >> 32) as usize % o.live.len().max(1)) {
                        o.done(i.0);
                    }
                }
                _ => {
                    now_ms += (x >> 50) % 50;
                    loop {
                        let live = &o.live;
                        let Some((d, i)) =
                            o.d.pop_due(at(t0, now_ms), |d, i| live.get(&i) == Some(&d))
                        else {
                            break;
                        };
                        assert_eq!(o.live.remove(&i), Some(d), "a removed entry came out");
                    }
                    assert!(o.live.values().all(|&d| d > at(t0, now_ms)));
                }
            }
            assert_eq!(o.d.first(), o.earliest_live());
            assert!(o.d.held() <= 2 * o.live.len() + SLACK + 1 + o.d.sorted.len());
        }
    }
}
