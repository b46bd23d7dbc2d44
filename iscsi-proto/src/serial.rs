//! Sequence numbers with RFC 1982 serial arithmetic, and the task tags with their reserved values.
//!
//! iSCSI sequence numbers are 32-bit counters that wrap (RFC 7143 §4.2.2.1 refers to RFC 1982 with
//! `SERIAL_BITS = 32`). Two numbers compare by the sign of their wrapping difference; numbers exactly
//! 2^31 apart are *not comparable*, which is why these types do not implement [`PartialOrd`] (its
//! contract requires transitivity that serial arithmetic does not have). Use
//! [`CmdSn::serial_cmp`], [`CmdSn::is_before`] and friends instead.

use core::cmp::Ordering;
use core::fmt;

macro_rules! serial_number {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(pub u32);

        impl $name {
            /// Wraps a raw wire value.
            #[inline]
            pub const fn new(v: u32) -> Self {
                Self(v)
            }

            /// The raw wire value.
            #[inline]
            pub const fn get(self) -> u32 {
                self.0
            }

            /// The next number (wrapping at 2^32).
            #[inline]
            #[must_use]
            pub const fn next(self) -> Self {
                Self(self.0.wrapping_add(1))
            }

            /// This number plus `n` (wrapping). RFC 1982 only defines additions below 2^31.
            #[inline]
            #[must_use]
            pub const fn add(self, n: u32) -> Self {
                Self(self.0.wrapping_add(n))
            }

            /// This number minus `n` (wrapping).
            #[inline]
            #[must_use]
            pub const fn sub(self, n: u32) -> Self {
                Self(self.0.wrapping_sub(n))
            }

            /// RFC 1982 comparison: `None` when the two are exactly 2^31 apart (undefined).
            #[inline]
            pub const fn serial_cmp(self, other: Self) -> Option<Ordering> {
                let d = self.0.wrapping_sub(other.0);
                if d == 0 {
                    Some(Ordering::Equal)
                } else if d == 0x8000_0000 {
                    None
                } else if (d as i32) < 0 {
                    Some(Ordering::Less)
                } else {
                    Some(Ordering::Greater)
                }
            }

            /// `self < other` in serial arithmetic (false when undefined).
            #[inline]
            pub const fn is_before(self, other: Self) -> bool {
                matches!(self.serial_cmp(other), Some(Ordering::Less))
            }

            /// `self > other` in serial arithmetic (false when undefined).
            #[inline]
            pub const fn is_after(self, other: Self) -> bool {
                matches!(self.serial_cmp(other), Some(Ordering::Greater))
            }

            /// `self <= other` in serial arithmetic (false when undefined).
            #[inline]
            pub const fn is_at_or_before(self, other: Self) -> bool {
                matches!(self.serial_cmp(other), Some(Ordering::Less | Ordering::Equal))
            }

            /// `self >= other` in serial arithmetic (false when undefined).
            #[inline]
            pub const fn is_at_or_after(self, other: Self) -> bool {
                matches!(self.serial_cmp(other), Some(Ordering::Greater | Ordering::Equal))
            }

            /// `lo <= self <= hi` in serial arithmetic: the window test of RFC 7143 §4.2.2.1.
            #[inline]
            pub const fn is_within(self, lo: Self, hi: Self) -> bool {
                self.is_at_or_after(lo) && self.is_at_or_before(hi)
            }

            /// How far `self` is ahead of `earlier`, as a wrapping distance.
            #[inline]
            pub const fn distance_from(self, earlier: Self) -> u32 {
                self.0.wrapping_sub(earlier.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<u32> for $name {
            fn from(v: u32) -> Self {
                Self(v)
            }
        }

        impl From<$name> for u32 {
            fn from(v: $name) -> u32 {
                v.0
            }
        }
    };
}

serial_number!(
    /// Command sequence number; also used for ExpCmdSN and MaxCmdSN (session wide).
    CmdSn
);
serial_number!(
    /// Status sequence number; also used for ExpStatSN (per connection).
    StatSn
);
serial_number!(
    /// Data sequence number of Data-In / Data-Out PDUs within a task (and ExpDataSN, BegRun).
    DataSn
);
serial_number!(
    /// Ready-to-transfer sequence number of R2Ts within a task.
    R2tSn
);

/// A hasher for the maps keyed by task tags, transfer tags and sequence numbers of one
/// connection: one multiplication per key instead of SipHash. The keys we insert are tags we
/// allocate ourselves (consecutive numbers, which the multiplication spreads over the table);
/// a peer only looks them up, so it cannot fill a table with colliding keys.
#[derive(Clone, Copy, Debug, Default)]
pub struct TagHasher(u64);

impl core::hash::Hasher for TagHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A `HashMap` with [`TagHasher`].
pub type TagMap<K, V> = std::collections::HashMap<K, V, core::hash::BuildHasherDefault<TagHasher>>;

macro_rules! tag {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
        pub struct $name(pub u32);

        impl $name {
            /// The reserved value 0xffffffff.
            pub const RESERVED: Self = Self(0xffff_ffff);

            /// Whether this is the reserved value 0xffffffff.
            #[inline]
            pub const fn is_reserved(self) -> bool {
                self.0 == 0xffff_ffff
            }

            /// The raw wire value.
            #[inline]
            pub const fn get(self) -> u32 {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.is_reserved() {
                    f.write_str(concat!(stringify!($name), "(RESERVED)"))
                } else {
                    write!(f, concat!(stringify!($name), "({:#x})"), self.0)
                }
            }
        }

        impl From<u32> for $name {
            fn from(v: u32) -> Self {
                Self(v)
            }
        }
    };
}

tag!(
    /// Initiator Task Tag. [`Itt::RESERVED`] (0xffffffff) appears only on NOPs: a NOP-Out that wants
    /// no answer, and a target's unsolicited NOP-In (RFC 7143 §11.18, §11.19).
    Itt
);
tag!(
    /// Target Transfer Tag. [`Ttt::RESERVED`] (0xffffffff) marks unsolicited Data-Out and a NOP that
    /// answers nothing, and ends a text or login exchange.
    Ttt
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_compare_wraps() {
        assert!(CmdSn(0xffff_ffff).is_before(CmdSn(0)));
        assert!(CmdSn(0).is_after(CmdSn(0xffff_ffff)));
        assert!(CmdSn(5).is_before(CmdSn(6)));
        assert_eq!(CmdSn(7).serial_cmp(CmdSn(7)), Some(Ordering::Equal));
        assert_eq!(CmdSn(0).serial_cmp(CmdSn(0x8000_0000)), None);
        assert!(!CmdSn(0).is_before(CmdSn(0x8000_0000)));
        assert!(!CmdSn(0).is_after(CmdSn(0x8000_0000)));
        assert_eq!(CmdSn(0xffff_fffe).add(3), CmdSn(1));
        assert_eq!(CmdSn(1).distance_from(CmdSn(0xffff_ffff)), 2);
    }

    #[test]
    fn window_across_wrap() {
        let exp = CmdSn(0xffff_fff0);
        let max = CmdSn(0x0000_0010);
        assert!(CmdSn(0xffff_fff0).is_within(exp, max));
        assert!(CmdSn(0).is_within(exp, max));
        assert!(CmdSn(0x10).is_within(exp, max));
        assert!(!CmdSn(0x11).is_within(exp, max));
        assert!(!CmdSn(0xffff_ffef).is_within(exp, max));
        // MaxCmdSN = ExpCmdSN - 1: the window is closed.
        assert!(!exp.is_within(exp, exp.sub(1)));
    }

    #[test]
    fn reserved_tags() {
        assert!(Itt::RESERVED.is_reserved());
        assert!(!Itt(0).is_reserved());
        assert_eq!(format!("{:?}", Ttt::RESERVED), "Ttt(RESERVED)");
    }
}
