//! Authentication failures per source address, against CHAP secret guessing: after
//! [`AuthThrottle::free_failures`] failed authentications from one address within
//! [`AuthThrottle::window`], that address's next connections are closed at once (no login is
//! answered) for a time that doubles with each further failure, up to
//! [`AuthThrottle::max_block`]. A successful login from the address clears its record.
//!
//! Keyed by IP address (the port is ignored): initiators behind one NAT address share their
//! fate, the price of not answering an attacker. The table holds at most
//! [`MAX_ADDRESSES`] addresses; when full, the record that has been quiet longest goes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// Addresses remembered at most.
pub const MAX_ADDRESSES: usize = 4096;

/// The policy (see the module documentation); part of
/// [`TargetConfig`](super::TargetConfig).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthThrottle {
    /// Failed authentications from one address allowed within `window` before its
    /// connections are refused (0 turns the throttle off).
    pub free_failures: u32,
    /// How long failures are remembered.
    pub window: Duration,
    /// The first block; it doubles with each later failure.
    pub first_block: Duration,
    /// The longest block.
    pub max_block: Duration,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        AuthThrottle {
            free_failures: 5,
            window: Duration::from_secs(60),
            first_block: Duration::from_secs(1),
            max_block: Duration::from_secs(60),
        }
    }
}

#[derive(Debug)]
struct Record {
    failures: u32,
    /// When the current window started.
    since: Instant,
    last: Instant,
    blocked_until: Option<Instant>,
}

/// The failure table.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    records: HashMap<IpAddr, Record>,
}

impl Throttle {
    /// Whether a new connection from `ip` is refused now.
    pub fn blocked(&self, policy: &AuthThrottle, ip: IpAddr, now: Instant) -> bool {
        if policy.free_failures == 0 {
            return false;
        }
        match self.records.get(&ip) {
            Some(r) => r.blocked_until.is_some_and(|until| now < until),
            None => false,
        }
    }

    /// A failed authentication from `ip`.
    pub fn failed(&mut self, policy: &AuthThrottle, ip: IpAddr, now: Instant) {
        if policy.free_failures == 0 {
            return;
        }
        if !self.records.contains_key(&ip)
            && self.records.len() >= MAX_ADDRESSES
            && let Some(quiet) = self
                .records
                .iter()
                .min_by_key(|(_, r)| r.last)
                .map(|(a, _)| *a)
        {
            self.records.remove(&quiet);
        }
        let r = self.records.entry(ip).or_insert(Record {
            failures: 0,
            since: now,
            last: now,
            blocked_until: None,
        });
        let blocked = r.blocked_until.is_some_and(|until| now < until);
        if !blocked && now.duration_since(r.since) > policy.window {
            // A new window; an address that was blocked keeps its count until it has been
            // quiet for a whole window.
            r.failures = 0;
            r.since = now;
        }
        r.failures = r.failures.saturating_add(1);
        r.last = now;
        if r.failures > policy.free_failures {
            let over = (r.failures - policy.free_failures - 1).min(16);
            let block = policy
                .first_block
                .saturating_mul(1 << over)
                .min(policy.max_block)
                // (so that a huge `max_block` cannot overflow the clock: 34 years at most)
                .min(Duration::from_secs(1 << 30));
            r.blocked_until = Some(now + block);
            r.since = now;
        }
    }

    /// A successful login from `ip`: its record goes.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.records.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AuthThrottle {
        AuthThrottle {
            free_failures: 3,
            window: Duration::from_secs(10),
            first_block: Duration::from_secs(1),
            max_block: Duration::from_secs(8),
        }
    }

    #[test]
    fn blocks_after_the_free_failures_and_doubles_up_to_the_max() {
        let p = policy();
        let mut t = Throttle::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..3 {
            t.failed(&p, ip, t0);
            assert!(!t.blocked(&p, ip, t0), "failure {i} is free");
        }
        let mut now = t0;
        for want in [1u64, 2, 4, 8, 8, 8] {
            t.failed(&p, ip, now);
            assert!(t.blocked(&p, ip, now));
            assert!(t.blocked(&p, ip, now + Duration::from_millis(want * 1000 - 1)));
            now += Duration::from_secs(want);
            assert!(!t.blocked(&p, ip, now), "the block of {want} s ended");
        }
        // Another address is not affected; a success clears the record.
        assert!(!t.blocked(&p, "192.0.2.8".parse().unwrap(), now));
        t.succeeded(ip);
        t.failed(&p, ip, now);
        assert!(!t.blocked(&p, ip, now));
    }

    #[test]
    fn failures_spread_over_more_than_the_window_stay_free() {
        let p = policy();
        let mut t = Throttle::default();
        let ip: IpAddr = "::1".parse().unwrap();
        let mut now = Instant::now();
        for _ in 0..20 {
            t.failed(&p, ip, now);
            assert!(!t.blocked(&p, ip, now));
            now += Duration::from_secs(4);
        }
    }

    #[test]
    fn the_table_is_bounded_and_off_means_off() {
        let p = policy();
        let mut t = Throttle::default();
        let now = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            t.failed(&p, IpAddr::from(i.to_be_bytes()), now);
        }
        assert_eq!(t.records.len(), MAX_ADDRESSES);
        let off = AuthThrottle {
            free_failures: 0,
            ..p
        };
        let mut t = Throttle::default();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        for _ in 0..100 {
            t.failed(&off, ip, now);
        }
        assert!(!t.blocked(&off, ip, now));
    }
}
