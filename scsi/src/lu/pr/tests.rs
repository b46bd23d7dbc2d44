//! Unit tests of the reservations module: every service action, the access matrices, the unit
//! attentions, the encodings and the SPC-2 RESERVE/RELEASE semantics.

use proptest::prelude::*;

use super::*;
use crate::sense::{SenseKey, SenseKeySpecific};

// ---- builders ----

/// Initiator `i` through target port 1.
fn init(i: u8) -> ItNexus {
    init_at(i, 1)
}

/// Initiator `i` through target port `port`.
fn init_at(i: u8, port: u16) -> ItNexus {
    ItNexus::iscsi(
        &format!("iqn.2024-01.org.example:host{i}"),
        [0x40, 0, 0, 0, 0, i],
        port,
    )
}

const WE: u8 = 1;
const EA: u8 = 3;
const WERO: u8 = 5;
const EARO: u8 = 6;
const WEAR: u8 = 7;
const EAAR: u8 = 8;
const TYPES: [u8; 6] = [WE, EA, WERO, EARO, WEAR, EAAR];

fn prout_cdb(sa: u8, scope_type: u8, len: u32) -> Vec<u8> {
    let mut c = vec![0x5F, sa, scope_type, 0, 0, 0, 0, 0, 0, 0];
    c[5..9].copy_from_slice(&len.to_be_bytes());
    c
}

fn basic(key: u64, sark: u64, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sark.to_be_bytes());
    p[20] = flags;
    p
}

type Out = Result<Vec<UnitAttention>, Failure>;

fn out(r: &mut Reservations, n: &ItNexus, sa: u8, kind: u8, key: u64, sark: u64) -> Out {
    r.persistent_reserve_out(n, &prout_cdb(sa, kind, 24), &basic(key, sark, 0))
}

fn register(r: &mut Reservations, n: &ItNexus, key: u64) {
    assert_eq!(
        out(r, n, sa_out::REGISTER_AND_IGNORE, 0, 0, key),
        Ok(vec![])
    );
}

fn reserve(r: &mut Reservations, n: &ItNexus, key: u64, kind: u8) {
    assert_eq!(out(r, n, sa_out::RESERVE, kind, key, 0), Ok(vec![]));
}

fn prin(r: &Reservations, sa: u8) -> Result<Vec<u8>, Failure> {
    r.persistent_reserve_in(&init(9), &[0x5E, sa, 0, 0, 0, 0, 0, 0x40, 0, 0])
}

/// (PRgeneration, keys) from READ KEYS.
fn keys(r: &Reservations) -> (u32, Vec<u64>) {
    let d = prin(r, sa_in::READ_KEYS).unwrap();
    let len = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize;
    assert_eq!(len, d.len() - 8);
    let keys = d[8..]
        .chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect();
    (u32::from_be_bytes(d[0..4].try_into().unwrap()), keys)
}

/// (key, scope/type byte) from READ RESERVATION.
fn reservation(r: &Reservations) -> Option<(u64, u8)> {
    let d = prin(r, sa_in::READ_RESERVATION).unwrap();
    match u32::from_be_bytes(d[4..8].try_into().unwrap()) {
        0 => {
            assert_eq!(d.len(), 8);
            None
        }
        16 => {
            assert_eq!(d.len(), 24);
            Some((u64::from_be_bytes(d[8..16].try_into().unwrap()), d[21]))
        }
        other => panic!("additional length {other}"),
    }
}

fn generation(r: &Reservations) -> u32 {
    keys(r).0
}

fn check_failure<T: std::fmt::Debug>(res: Result<T, Failure>) -> Sense {
    match res {
        Err(Failure::Check(s)) => s,
        other => panic!("expected CHECK CONDITION, got {other:?}"),
    }
}

fn asc_of<T: std::fmt::Debug>(res: Result<T, Failure>) -> Asc {
    let s = check_failure(res);
    assert_eq!(s.key, SenseKey::ILLEGAL_REQUEST);
    s.asc
}

fn ua(n: &ItNexus, asc: Asc) -> UnitAttention {
    UnitAttention {
        nexus: n.clone(),
        asc,
    }
}

/// Sorted by initiator port, for order-independent comparison.
fn sorted(mut v: Vec<UnitAttention>) -> Vec<UnitAttention> {
    v.sort_by(|a, b| a.nexus.initiator_port().cmp(b.nexus.initiator_port()));
    v
}

// Commands, by the class the tables give them.
const TUR: &[u8] = &[0x00, 0, 0, 0, 0, 0];
const REQUEST_SENSE: &[u8] = &[0x03, 0, 0, 0, 18, 0];
const INQUIRY: &[u8] = &[0x12, 0, 0, 0, 0x24, 0];
const REPORT_LUNS: &[u8] = &[0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
const READ_CAPACITY10: &[u8] = &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const READ_CAPACITY16: &[u8] = &[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];
const LOG_SENSE: &[u8] = &[0x4D, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0];
const ALLOW_REMOVAL: &[u8] = &[0x1E, 0, 0, 0, 0, 0];
const PREVENT_REMOVAL: &[u8] = &[0x1E, 0, 0, 0, 1, 0];
const RTPG: &[u8] = &[0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
const START_UNIT: &[u8] = &[0x1B, 0, 0, 0, 1, 0];
const STOP_UNIT: &[u8] = &[0x1B, 0, 0, 0, 0, 0];
const ALWAYS: &[&[u8]] = &[
    TUR,
    REQUEST_SENSE,
    INQUIRY,
    REPORT_LUNS,
    READ_CAPACITY10,
    READ_CAPACITY16,
    LOG_SENSE,
    ALLOW_REMOVAL,
    RTPG,
    START_UNIT,
    &[0x5E, 0, 0, 0, 0, 0, 0, 0, 8, 0],
];

const READ6: &[u8] = &[0x08, 0, 0, 1, 1, 0];
const READ10: &[u8] = &[0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0];
const READ16: &[u8] = &[0x88, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0];
const VERIFY10: &[u8] = &[0x2F, 0, 0, 0, 0, 1, 0, 0, 1, 0];
const PREFETCH10: &[u8] = &[0x34, 0, 0, 0, 0, 1, 0, 0, 1, 0];
const MODE_SENSE6: &[u8] = &[0x1A, 0, 0x3F, 0, 0xFF, 0];
const MODE_SENSE10: &[u8] = &[0x5A, 0, 0x3F, 0, 0, 0, 0, 0, 0xFF, 0];
const GET_LBA_STATUS: &[u8] = &[0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];
const REPORT_OPCODES: &[u8] = &[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0];
const READ32: &[u8] = &[
    0x7F, 0, 0, 0, 0, 0, 0, 0x18, 0x00, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 1,
];
const READS: &[&[u8]] = &[
    READ6,
    READ10,
    READ16,
    VERIFY10,
    PREFETCH10,
    MODE_SENSE6,
    MODE_SENSE10,
    GET_LBA_STATUS,
    REPORT_OPCODES,
    READ32,
];

const WRITE10: &[u8] = &[0x2A, 0, 0, 0, 0, 1, 0, 0, 1, 0];
const WRITE16: &[u8] = &[0x8A, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0];
const WRITE_SAME16: &[u8] = &[0x93, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0];
const UNMAP: &[u8] = &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0];
const SYNC_CACHE10: &[u8] = &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const COMPARE_AND_WRITE: &[u8] = &[0x89, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0];
const MODE_SELECT6: &[u8] = &[0x15, 0x10, 0, 0, 12, 0];
const SANITIZE: &[u8] = &[0x48, 0x02, 0, 0, 0, 0, 0, 0, 0, 0];
const WRITE32: &[u8] = &[
    0x7F, 0, 0, 0, 0, 0, 0, 0x18, 0x00, 0x0B, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 1,
];
const WRITES: &[&[u8]] = &[
    WRITE10,
    WRITE16,
    WRITE_SAME16,
    UNMAP,
    SYNC_CACHE10,
    COMPARE_AND_WRITE,
    MODE_SELECT6,
    SANITIZE,
    WRITE32,
    PREVENT_REMOVAL,
    STOP_UNIT,
    &[0xC0, 0, 0, 0, 0, 0],
    &[],
];

fn allowed(r: &Reservations, n: &ItNexus, cdb: &[u8]) -> bool {
    match r.check(n, cdb) {
        Ok(()) => true,
        Err(Failure::ReservationConflict) => false,
        Err(other) => panic!("check gave {other:?}"),
    }
}

// ---- REGISTER / REGISTER AND IGNORE EXISTING KEY ----

#[test]
fn register_reregister_unregister() {
    let mut r = Reservations::new();
    let a = init(1);
    assert_eq!(keys(&r), (0, vec![]));
    assert_eq!(out(&mut r, &a, sa_out::REGISTER, 0, 0, 0x1111), Ok(vec![]));
    assert_eq!(keys(&r), (1, vec![0x1111]));
    assert!(r.is_registered(&a));
    // Re-register without the right key: conflict, nothing changes (libiscsi ProutRegister).
    assert_eq!(
        out(&mut r, &a, sa_out::REGISTER, 0, 0, 0x1112),
        Err(CONFLICT)
    );
    assert_eq!(
        out(&mut r, &a, sa_out::REGISTER, 0, 0x9999, 0x1112),
        Err(CONFLICT)
    );
    assert_eq!(keys(&r), (1, vec![0x1111]));
    // With the right key: new key.
    assert_eq!(
        out(&mut r, &a, sa_out::REGISTER, 0, 0x1111, 0x2222),
        Ok(vec![])
    );
    assert_eq!(keys(&r), (2, vec![0x2222]));
    // Key zero unregisters.
    assert_eq!(out(&mut r, &a, sa_out::REGISTER, 0, 0x2222, 0), Ok(vec![]));
    assert_eq!(keys(&r), (3, vec![]));
    assert!(!r.is_registered(&a));
}

#[test]
fn register_unregistered_edge_cases() {
    let mut r = Reservations::new();
    let a = init(1);
    // Unregistered with a nonzero RESERVATION KEY: conflict.
    assert_eq!(out(&mut r, &a, sa_out::REGISTER, 0, 5, 6), Err(CONFLICT));
    // Unregistered, key zero: GOOD, nothing happens, PRgeneration unchanged.
    assert_eq!(out(&mut r, &a, sa_out::REGISTER, 0, 0, 0), Ok(vec![]));
    assert_eq!(
        out(&mut r, &a, sa_out::REGISTER_AND_IGNORE, 0, 77, 0),
        Ok(vec![])
    );
    assert_eq!(keys(&r), (0, vec![]));
    // REGISTER AND IGNORE EXISTING KEY ignores the RESERVATION KEY.
    assert_eq!(
        out(&mut r, &a, sa_out::REGISTER_AND_IGNORE, 0, 77, 8),
        Ok(vec![])
    );
    assert_eq!(
        out(&mut r, &a, sa_out::REGISTER_AND_IGNORE, 0, 12345, 9),
        Ok(vec![])
    );
    assert_eq!(keys(&r), (2, vec![9]));
    assert_eq!(
        out(&mut r, &a, sa_out::REGISTER_AND_IGNORE, 0, 0, 0),
        Ok(vec![])
    );
    assert_eq!(keys(&r), (3, vec![]));
}

#[test]
fn registrations_are_per_nexus() {
    let mut r = Reservations::new();
    register(&mut r, &init(1), 1);
    register(&mut r, &init(2), 2);
    // Same initiator port, other target port: another nexus.
    register(&mut r, &init_at(1, 2), 3);
    assert_eq!(keys(&r).1, vec![1, 2, 3]);
    // Two nexuses may share a key.
    register(&mut r, &init(3), 1);
    assert_eq!(keys(&r).1, vec![1, 2, 3, 1]);
    assert!(!r.is_registered(&init(4)));
}

#[test]
fn register_refuses_aptpl_and_misplaced_spec_i_pt() {
    let mut r = Reservations::new();
    let a = init(1);
    for sa in [sa_out::REGISTER, sa_out::REGISTER_AND_IGNORE] {
        let res = r.persistent_reserve_out(&a, &prout_cdb(sa, 0, 24), &basic(0, 1, 0x01));
        let s = check_failure(res);
        assert_eq!(s.asc, Asc::INVALID_FIELD_IN_PARAMETER_LIST);
        assert_eq!(
            s.specific,
            Some(SenseKeySpecific::FieldPointer {
                in_cdb: false,
                bit: Some(0),
                byte: 20
            })
        );
    }
    // SPEC_I_PT is for REGISTER only.
    register(&mut r, &a, 1);
    for sa in [sa_out::REGISTER_AND_IGNORE, sa_out::RESERVE, sa_out::CLEAR] {
        let res = r.persistent_reserve_out(&a, &prout_cdb(sa, WE, 24), &basic(1, 2, 0x08));
        assert_eq!(asc_of(res), Asc::INVALID_FIELD_IN_PARAMETER_LIST);
    }
    // APTPL is ignored by the other service actions.
    let res = r.persistent_reserve_out(&a, &prout_cdb(sa_out::RESERVE, WE, 24), &basic(1, 0, 1));
    assert_eq!(res, Ok(vec![]));
    assert_eq!(keys(&r), (1, vec![1]));
}

#[test]
fn registration_capacity_is_bounded() {
    let mut r = Reservations::new();
    for i in 0..MAX_REGISTRATIONS {
        let n = ItNexus::iscsi(&format!("iqn.2024-01.org.example:h{i}"), [0; 6], 1);
        register(&mut r, &n, i as u64 + 1);
    }
    let extra = ItNexus::iscsi("iqn.2024-01.org.example:extra", [0; 6], 1);
    let res = out(&mut r, &extra, sa_out::REGISTER, 0, 0, 5);
    assert_eq!(asc_of(res), Asc::INSUFFICIENT_REGISTRATION_RESOURCES);
    // Changing an existing key still works.
    let first = ItNexus::iscsi("iqn.2024-01.org.example:h0", [0; 6], 1);
    assert_eq!(out(&mut r, &first, sa_out::REGISTER, 0, 1, 99), Ok(vec![]));
    assert_eq!(keys(&r).1.len(), MAX_REGISTRATIONS);
}

// ---- RESERVE / RELEASE ----

#[test]
fn reserve_and_release_every_type() {
    let mut r = Reservations::new();
    let a = init(1);
    register(&mut r, &a, 0xABCD);
    let g = generation(&r);
    for t in TYPES {
        reserve(&mut r, &a, 0xABCD, t);
        let want = if PrType::from_code(t).unwrap().all_registrants() {
            0
        } else {
            0xABCD
        };
        assert_eq!(reservation(&r), Some((want, t)));
        // Reserving again with the same type is GOOD; another type conflicts.
        reserve(&mut r, &a, 0xABCD, t);
        let other = if t == WE { EA } else { WE };
        assert_eq!(
            out(&mut r, &a, sa_out::RESERVE, other, 0xABCD, 0),
            Err(CONFLICT)
        );
        assert_eq!(out(&mut r, &a, sa_out::RELEASE, t, 0xABCD, 0), Ok(vec![]));
        assert_eq!(reservation(&r), None);
    }
    // RESERVE and RELEASE leave PRgeneration alone.
    assert_eq!(generation(&r), g);
}

#[test]
fn reserve_requires_registration_and_key() {
    let mut r = Reservations::new();
    let (a, b) = (init(1), init(2));
    assert_eq!(out(&mut r, &a, sa_out::RESERVE, WE, 0, 0), Err(CONFLICT));
    register(&mut r, &a, 10);
    assert_eq!(out(&mut r, &a, sa_out::RESERVE, WE, 11, 0), Err(CONFLICT));
    reserve(&mut r, &a, 10, WE);
    // Another registrant cannot take it; an unregistered nexus neither.
    register(&mut r, &b, 20);
    assert_eq!(out(&mut r, &b, sa_out::RESERVE, WE, 20, 0), Err(CONFLICT));
    assert_eq!(
        out(&mut r, &init(3), sa_out::RESERVE, WE, 0, 0),
        Err(CONFLICT)
    );
    // The holder's key change shows in READ RESERVATION.
    assert_eq!(out(&mut r, &a, sa_out::REGISTER, 0, 10, 12), Ok(vec![]));
    assert_eq!(reservation(&r), Some((12, WE)));
}

#[test]
fn all_registrants_reservation_is_held_by_every_registrant() {
    for t in [WEAR, EAAR] {
        let mut r = Reservations::new();
        let (a, b) = (init(1), init(2));
        register(&mut r, &a, 1);
        register(&mut r, &b, 2);
        reserve(&mut r, &a, 1, t);
        // b is a holder too: RESERVE with the same type is GOOD, another type conflicts.
        reserve(&mut r, &b, 2, t);
        assert_eq!(out(&mut r, &b, sa_out::RESERVE, WE, 2, 0), Err(CONFLICT));
        // Every descriptor of READ FULL STATUS has R_HOLDER.
        let d = prin(&r, sa_in::READ_FULL_STATUS).unwrap();
        assert_eq!(d[8 + 12] & 1, 1);
        assert_eq!(d[8 + 13], t);
        // A registrant registering later holds it as well.
        let c = init(3);
        register(&mut r, &c, 3);
        assert!(WRITES.iter().all(|cdb| allowed(&r, &c, cdb)));
        // b releases it for everyone: RESERVATIONS RELEASED to a and c.
        let uas = out(&mut r, &b, sa_out::RELEASE, t, 2, 0).unwrap();
        assert_eq!(
            sorted(uas),
            vec![
                ua(&a, Asc::RESERVATIONS_RELEASED),
                ua(&c, Asc::RESERVATIONS_RELEASED)
            ]
        );
        assert_eq!(reservation(&r), None);
    }
}

#[test]
fn release_rules() {
    let mut r = Reservations::new();
    let (a, b) = (init(1), init(2));
    // Unregistered: conflict. Registered without reservation: GOOD.
    assert_eq!(out(&mut r, &a, sa_out::RELEASE, WE, 0, 0), Err(CONFLICT));
    register(&mut r, &a, 1);
    register(&mut r, &b, 2);
    assert_eq!(out(&mut r, &a, sa_out::RELEASE, WE, 1, 0), Ok(vec![]));
    reserve(&mut r, &a, 1, EA);
    // Wrong key: conflict. Non-holder: GOOD, nothing released.
    assert_eq!(out(&mut r, &a, sa_out::RELEASE, EA, 2, 0), Err(CONFLICT));
    assert_eq!(out(&mut r, &b, sa_out::RELEASE, EA, 2, 0), Ok(vec![]));
    assert_eq!(reservation(&r), Some((1, EA)));
    // Holder with another type: INVALID RELEASE OF PERSISTENT RESERVATION.
    let res = out(&mut r, &a, sa_out::RELEASE, WE, 1, 0);
    assert_eq!(asc_of(res), Asc::new(0x26, 0x04));
    assert_eq!(reservation(&r), Some((1, EA)));
    // Releasing EA (not a registrants type) gives no unit attention.
    assert_eq!(out(&mut r, &a, sa_out::RELEASE, EA, 1, 0), Ok(vec![]));
    // Releasing a registrants-only reservation tells the other registrants.
    reserve(&mut r, &a, 1, WERO);
    let uas = out(&mut r, &a, sa_out::RELEASE, WERO, 1, 0).unwrap();
    assert_eq!(uas, vec![ua(&b, Asc::RESERVATIONS_RELEASED)]);
}

// ---- access matrices (SPC-4 table 66, SBC-3 table 13; libiscsi ProutReserve.Access*) ----

#[test]
fn access_matrix_for_every_type() {
    // (registered non-holder read, write, unregistered read, write)
    let table = [
        (WE, true, false, true, false),
        (EA, false, false, false, false),
        (WERO, true, true, true, false),
        (EARO, true, true, false, false),
        (WEAR, true, true, true, false),
        (EAAR, true, true, false, false),
    ];
    for (t, reg_read, reg_write, unreg_read, unreg_write) in table {
        let mut r = Reservations::new();
        let (holder, registered, stranger) = (init(1), init(2), init(3));
        register(&mut r, &holder, 1);
        register(&mut r, &registered, 2);
        reserve(&mut r, &holder, 1, t);
        let who = [
            (&holder, true, true),
            (&registered, reg_read, reg_write),
            (&stranger, unreg_read, unreg_write),
        ];
        for (n, read, write) in who {
            for cdb in ALWAYS {
                assert!(allowed(&r, n, cdb), "type {t} {n:?} {cdb:02x?}");
            }
            for cdb in READS {
                assert_eq!(allowed(&r, n, cdb), read, "type {t} {n:?} {cdb:02x?}");
            }
            for cdb in WRITES {
                assert_eq!(allowed(&r, n, cdb), write, "type {t} {n:?} {cdb:02x?}");
            }
            // PERSISTENT RESERVE OUT reaches the service-action checks.
            assert!(allowed(&r, n, &prout_cdb(sa_out::PREEMPT, t, 24)));
        }
        // Unregistering the registered one (libiscsi does it) makes it a stranger.
        assert_eq!(
            out(&mut r, &registered, sa_out::REGISTER, 0, 2, 0),
            Ok(vec![])
        );
        assert_eq!(allowed(&r, &registered, READ10), unreg_read, "type {t}");
        assert_eq!(allowed(&r, &registered, WRITE10), unreg_write, "type {t}");
    }
}

#[test]
fn registrations_without_reservation_restrict_nothing() {
    let mut r = Reservations::new();
    register(&mut r, &init(1), 1);
    for cdb in ALWAYS.iter().chain(READS).chain(WRITES) {
        assert!(allowed(&r, &init(2), cdb));
    }
}

// ---- ownership: unregistering the holder (libiscsi ProutReserve.Ownership*) ----

#[test]
fn unregistering_the_holder() {
    for t in TYPES {
        let mut r = Reservations::new();
        let (a, b) = (init(1), init(2));
        register(&mut r, &a, 1);
        register(&mut r, &b, 2);
        reserve(&mut r, &a, 1, t);
        let kind = PrType::from_code(t).unwrap();
        let uas = out(&mut r, &a, sa_out::REGISTER, 0, 1, 0).unwrap();
        if kind.all_registrants() {
            // Shared: still reserved (key 0), b can release it.
            assert!(uas.is_empty());
            assert_eq!(reservation(&r), Some((0, t)));
            let uas = out(&mut r, &b, sa_out::RELEASE, t, 2, 0).unwrap();
            assert!(uas.is_empty(), "no other registrant to tell");
        } else {
            assert_eq!(reservation(&r), None, "type {t}");
            let want = if kind.for_registrants() {
                vec![ua(&b, Asc::RESERVATIONS_RELEASED)]
            } else {
                vec![]
            };
            assert_eq!(uas, want, "type {t}");
        }
        assert_eq!(reservation(&r), None);
        assert_eq!(out(&mut r, &b, sa_out::REGISTER, 0, 2, 0), Ok(vec![]));
        assert_eq!(keys(&r).1, Vec::<u64>::new());
    }
}

#[test]
fn last_registrant_leaving_ends_an_all_registrants_reservation() {
    let mut r = Reservations::new();
    let (a, b) = (init(1), init(2));
    register(&mut r, &a, 1);
    register(&mut r, &b, 2);
    reserve(&mut r, &b, 2, EAAR);
    assert_eq!(out(&mut r, &b, sa_out::REGISTER, 0, 2, 0), Ok(vec![]));
    assert_eq!(reservation(&r), Some((0, EAAR)));
    assert_eq!(
        out(&mut r, &a, sa_out::REGISTER_AND_IGNORE, 0, 0, 0),
        Ok(vec![])
    );
    assert_eq!(reservation(&r), None);
    assert!(WRITES.iter().all(|cdb| allowed(&r, &b, cdb)));
}

// ---- CLEAR ----

#[test]
fn clear_drops_everything_and_tells_the_others() {
    let mut r = Reservations::new();
    let (a, b, c) = (init(1), init(2), init(3));
    register(&mut r, &a, 1);
    register(&mut r, &b, 2);
    register(&mut r, &c, 3);
    reserve(&mut r, &b, 2, EA);
    let g = generation(&r);
    assert_eq!(out(&mut r, &init(4), sa_out::CLEAR, 0, 0, 0), Err(CONFLICT));
    assert_eq!(out(&mut r, &a, sa_out::CLEAR, 0, 2, 0), Err(CONFLICT));
    let uas = out(&mut r, &a, sa_out::CLEAR, 0, 1, 0).unwrap();
    assert_eq!(
        sorted(uas),
        vec![
            ua(&b, Asc::RESERVATIONS_PREEMPTED),
            ua(&c, Asc::RESERVATIONS_PREEMPTED)
        ]
    );
    assert_eq!(keys(&r), (g + 1, vec![]));
    assert_eq!(reservation(&r), None);
}

#[test]
fn clear_by_the_holder_alone() {
    // libiscsi ProutClear.Simple: register, reserve EA, clear; generation +1 for CLEAR only.
    let mut r = Reservations::new();
    let a = init(1);
    register(&mut r, &a, 7);
    let g = generation(&r);
    reserve(&mut r, &a, 7, EA);
    assert_eq!(reservation(&r), Some((7, EA)));
    assert_eq!(out(&mut r, &a, sa_out::CLEAR, 0, 7, 0), Ok(vec![]));
    assert_eq!(reservation(&r), None);
    assert_eq!(keys(&r), (g + 1, vec![]));
}

// ---- PREEMPT / PREEMPT AND ABORT ----

#[test]
fn preempt_without_reservation_removes_registrations() {
    // libiscsi ProutPreempt.RemoveRegistration.
    for sa in [sa_out::PREEMPT, sa_out::PREEMPT_AND_ABORT] {
        let mut r = Reservations::new();
        let (a, b) = (init(1), init(2));
        register(&mut r, &a, 0x11);
        register(&mut r, &b, 0x22);
        let g = generation(&r);
        let uas = out(&mut r, &b, sa, EA, 0x22, 0x11).unwrap();
        assert_eq!(uas, vec![ua(&a, Asc::REGISTRATIONS_PREEMPTED)]);
        assert_eq!(keys(&r), (g + 1, vec![0x22]));
        assert_eq!(reservation(&r), None, "no reservation is created");
        // Nobody has the key: conflict; key zero: invalid field.
        assert_eq!(out(&mut r, &b, sa, EA, 0x22, 0x11), Err(CONFLICT));
        let s = check_failure(out(&mut r, &b, sa, EA, 0x22, 0));
        assert_eq!(s.asc, Asc::INVALID_FIELD_IN_PARAMETER_LIST);
        assert_eq!(generation(&r), g + 1);
        // Unregistered or wrong key: conflict.
        assert_eq!(out(&mut r, &a, sa, EA, 0x11, 0x22), Err(CONFLICT));
        assert_eq!(out(&mut r, &b, sa, EA, 0x23, 0x22), Err(CONFLICT));
    }
}

#[test]
fn preempt_the_holder() {
    let mut r = Reservations::new();
    let (a, b, c, d) = (init(1), init(2), init(3), init(4));
    register(&mut r, &a, 0xA);
    register(&mut r, &b, 0xB);
    register(&mut r, &c, 0xC);
    register(&mut r, &d, 0xA); // shares the holder's key
    reserve(&mut r, &a, 0xA, WE);
    let g = generation(&r);
    // b preempts a's key with another type: a and d lose their registrations, c learns that
    // the reservation changed.
    let uas = out(&mut r, &b, sa_out::PREEMPT, EARO, 0xB, 0xA).unwrap();
    assert_eq!(
        sorted(uas),
        vec![
            ua(&a, Asc::REGISTRATIONS_PREEMPTED),
            ua(&c, Asc::RESERVATIONS_RELEASED),
            ua(&d, Asc::REGISTRATIONS_PREEMPTED),
        ]
    );
    assert_eq!(reservation(&r), Some((0xB, EARO)));
    assert_eq!(keys(&r), (g + 1, vec![0xB, 0xC]));
    // Same type: no RESERVATIONS RELEASED.
    let uas = out(&mut r, &c, sa_out::PREEMPT_AND_ABORT, EARO, 0xC, 0xB).unwrap();
    assert_eq!(uas, vec![ua(&b, Asc::REGISTRATIONS_PREEMPTED)]);
    assert_eq!(reservation(&r), Some((0xC, EARO)));
    // The holder preempting itself changes the type and keeps its registration.
    let uas = out(&mut r, &c, sa_out::PREEMPT, EA, 0xC, 0xC).unwrap();
    assert!(uas.is_empty());
    assert_eq!(reservation(&r), Some((0xC, EA)));
    assert_eq!(keys(&r).1, vec![0xC]);
}

#[test]
fn preempt_a_non_holder_key_leaves_the_reservation() {
    let mut r = Reservations::new();
    let (a, b, c) = (init(1), init(2), init(3));
    register(&mut r, &a, 1);
    register(&mut r, &b, 2);
    register(&mut r, &c, 3);
    reserve(&mut r, &a, 1, WERO);
    let uas = out(&mut r, &b, sa_out::PREEMPT, EA, 2, 3).unwrap();
    assert_eq!(uas, vec![ua(&c, Asc::REGISTRATIONS_PREEMPTED)]);
    assert_eq!(reservation(&r), Some((1, WERO)));
    let s = check_failure(out(&mut r, &b, sa_out::PREEMPT, EA, 2, 0));
    assert_eq!(s.asc, Asc::INVALID_FIELD_IN_PARAMETER_LIST);
    assert_eq!(out(&mut r, &b, sa_out::PREEMPT, EA, 2, 99), Err(CONFLICT));
}

#[test]
fn preempt_an_all_registrants_reservation() {
    let mut r = Reservations::new();
    let (a, b, c) = (init(1), init(2), init(3));
    register(&mut r, &a, 1);
    register(&mut r, &b, 2);
    register(&mut r, &c, 3);
    reserve(&mut r, &a, 1, WEAR);
    // A nonzero key removes registrations only.
    let uas = out(&mut r, &b, sa_out::PREEMPT, EA, 2, 3).unwrap();
    assert_eq!(uas, vec![ua(&c, Asc::REGISTRATIONS_PREEMPTED)]);
    assert_eq!(reservation(&r), Some((0, WEAR)));
    // Key zero: everyone else goes and the preempter holds a new reservation.
    register(&mut r, &c, 3);
    let uas = out(&mut r, &b, sa_out::PREEMPT, EA, 2, 0).unwrap();
    assert_eq!(
        sorted(uas),
        vec![
            ua(&a, Asc::REGISTRATIONS_PREEMPTED),
            ua(&c, Asc::REGISTRATIONS_PREEMPTED)
        ]
    );
    assert_eq!(reservation(&r), Some((2, EA)));
    assert_eq!(keys(&r).1, vec![2]);
}

// ---- REGISTER AND MOVE ----

fn move_params(key: u64, sark: u64, flags: u8, port: u16, tid: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sark.to_be_bytes());
    p[17] = flags;
    p[18..20].copy_from_slice(&port.to_be_bytes());
    p[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
    p.extend_from_slice(tid);
    p
}

fn register_and_move(r: &mut Reservations, n: &ItNexus, params: &[u8]) -> Out {
    let cdb = prout_cdb(sa_out::REGISTER_AND_MOVE, 0, params.len() as u32);
    r.persistent_reserve_out(n, &cdb, params)
}

#[test]
fn register_and_move_hands_over_the_reservation() {
    let mut r = Reservations::new();
    let (a, b) = (init(1), init(2));
    register(&mut r, &a, 1);
    reserve(&mut r, &a, 1, EA);
    let g = generation(&r);
    let p = move_params(1, 0x55, 0, 1, b.transport_id());
    assert_eq!(register_and_move(&mut r, &a, &p), Ok(vec![]));
    assert_eq!(reservation(&r), Some((0x55, EA)));
    assert_eq!(keys(&r), (g + 1, vec![1, 0x55]));
    assert!(allowed(&r, &b, WRITE10));
    assert!(!allowed(&r, &a, READ10));
    // Back to a, which is registered already (its key becomes the new one), with UNREG.
    let p = move_params(0x55, 0x66, 0x01, 1, a.transport_id());
    assert_eq!(register_and_move(&mut r, &b, &p), Ok(vec![]));
    assert_eq!(reservation(&r), Some((0x66, EA)));
    assert_eq!(keys(&r).1, vec![0x66]);
    assert!(!r.is_registered(&b));
    // Through another target port: another nexus.
    let p = move_params(0x66, 0x77, 0, 2, a.transport_id());
    assert_eq!(register_and_move(&mut r, &a, &p), Ok(vec![]));
    assert!(allowed(&r, &init_at(1, 2), WRITE10));
    assert!(!allowed(&r, &a, WRITE10));
}

#[test]
fn register_and_move_errors() {
    let mut r = Reservations::new();
    let (a, b, c) = (init(1), init(2), init(3));
    register(&mut r, &a, 1);
    register(&mut r, &c, 3);
    let to_b = |key, sark, flags| move_params(key, sark, flags, 1, b.transport_id());
    // No reservation, not the holder, unregistered, wrong key: conflict.
    assert_eq!(register_and_move(&mut r, &a, &to_b(1, 5, 0)), Err(CONFLICT));
    reserve(&mut r, &a, 1, WE);
    assert_eq!(register_and_move(&mut r, &c, &to_b(3, 5, 0)), Err(CONFLICT));
    assert_eq!(
        register_and_move(&mut r, &init(4), &to_b(0, 5, 0)),
        Err(CONFLICT)
    );
    assert_eq!(register_and_move(&mut r, &a, &to_b(2, 5, 0)), Err(CONFLICT));
    // Zero key, APTPL, port zero, the sender itself, a bad TransportID: invalid field.
    let bad = |r: &mut Reservations, p: &[u8], byte: u16| {
        let s = check_failure(register_and_move(r, &a, p));
        assert_eq!(s.asc, Asc::INVALID_FIELD_IN_PARAMETER_LIST);
        match s.specific {
            Some(SenseKeySpecific::FieldPointer {
                in_cdb: false,
                byte: at,
                ..
            }) => {
                assert_eq!(at, byte)
            }
            other => panic!("{other:?}"),
        }
    };
    bad(&mut r, &to_b(1, 0, 0), 8);
    bad(&mut r, &to_b(1, 5, 0x02), 17);
    bad(&mut r, &move_params(1, 5, 0, 0, b.transport_id()), 18);
    bad(&mut r, &move_params(1, 5, 0, 1, a.transport_id()), 24);
    bad(
        &mut r,
        &move_params(1, 5, 0, 1, &name_only_tid("iqn.x")),
        24,
    );
    // TRANSPORTID PARAMETER DATA LENGTH inconsistent with the list length.
    let mut p = to_b(1, 5, 0);
    p[23] += 4;
    let res = r.persistent_reserve_out(&a, &prout_cdb(7, 0, p.len() as u32), &p);
    assert_eq!(asc_of(res), Asc::PARAMETER_LIST_LENGTH_ERROR);
    let res = r.persistent_reserve_out(&a, &prout_cdb(7, 0, 20), &p);
    assert_eq!(asc_of(res), Asc::PARAMETER_LIST_LENGTH_ERROR);
    // All-registrants reservations cannot be moved.
    assert_eq!(out(&mut r, &a, sa_out::RELEASE, WE, 1, 0), Ok(vec![]));
    reserve(&mut r, &a, 1, WEAR);
    assert_eq!(register_and_move(&mut r, &a, &to_b(1, 5, 0)), Err(CONFLICT));
    assert_eq!(reservation(&r), Some((0, WEAR)));
}

// ---- SPEC_I_PT and ALL_TG_PT ----

fn name_only_tid(name: &str) -> Vec<u8> {
    let padded = (name.len() + 1).div_ceil(4) * 4;
    let mut v = vec![PROTOCOL_ID_ISCSI, 0];
    v.extend_from_slice(&(padded as u16).to_be_bytes());
    v.extend_from_slice(name.as_bytes());
    v.resize(4 + padded, 0);
    v
}

fn spec_i_pt_params(key: u64, sark: u64, flags: u8, tids: &[&[u8]]) -> Vec<u8> {
    let mut p = basic(key, sark, flags | 0x08);
    let list: Vec<u8> = tids.concat();
    p.extend_from_slice(&(list.len() as u32).to_be_bytes());
    p.extend_from_slice(&list);
    p
}

fn register_list(r: &mut Reservations, n: &ItNexus, p: &[u8]) -> Out {
    r.persistent_reserve_out(n, &prout_cdb(sa_out::REGISTER, 0, p.len() as u32), p)
}

#[test]
fn spec_i_pt_registers_the_listed_ports() {
    let mut r = Reservations::new();
    let (a, b, c) = (init(1), init(2), init(3));
    // Upper-case ISID in the TransportID names the same port.
    let c_upper = iscsi_transport_id(
        &c.initiator_port()
            .to_ascii_uppercase()
            .replace(",I,0X", ",i,0x"),
    );
    let p = spec_i_pt_params(
        0,
        9,
        0,
        &[
            b.transport_id(),
            &c_upper,
            a.transport_id(),
            b.transport_id(),
        ],
    );
    assert_eq!(register_list(&mut r, &a, &p), Ok(vec![]));
    assert_eq!(keys(&r), (1, vec![9, 9, 9]));
    assert!(r.is_registered(&b) && r.is_registered(&c));
    assert!(!r.is_registered(&init_at(2, 2)));
    // Registered sender with SPEC_I_PT: invalid field.
    let p = spec_i_pt_params(9, 9, 0, &[init(4).transport_id()]);
    assert_eq!(
        asc_of(register_list(&mut r, &a, &p)),
        Asc::INVALID_FIELD_IN_PARAMETER_LIST
    );
    // A listed port already registered: invalid field, and nothing is registered.
    let p = spec_i_pt_params(0, 4, 0, &[init(5).transport_id(), b.transport_id()]);
    let s = check_failure(register_list(&mut r, &init(4), &p));
    assert_eq!(s.asc, Asc::INVALID_FIELD_IN_PARAMETER_LIST);
    let second = 28 + init(5).transport_id().len() as u16;
    assert_eq!(
        s.specific,
        Some(SenseKeySpecific::FieldPointer {
            in_cdb: false,
            bit: None,
            byte: second
        })
    );
    assert!(!r.is_registered(&init(4)) && !r.is_registered(&init(5)));
    assert_eq!(generation(&r), 1);
}

#[test]
fn spec_i_pt_refuses_what_it_cannot_name() {
    let mut r = Reservations::new();
    let a = init(1);
    let mut fc = init(2).transport_id().to_vec();
    fc[0] = 0x40; // protocol 0 (Fibre Channel)
    let long = iscsi_transport_id(&format!("iqn.{},i,0x000000000001", "x".repeat(300)));
    let cases: [&[u8]; 5] = [
        &name_only_tid("iqn.2024-01.org.example:host2"),
        &fc,
        &iscsi_transport_id("iqn.2024-01.org.example:host2"),
        &iscsi_transport_id("iqn.2024-01.org.example:host2,i,0x12345"),
        &long,
    ];
    for tid in cases {
        let p = spec_i_pt_params(0, 1, 0, &[tid]);
        assert_eq!(
            asc_of(register_list(&mut r, &a, &p)),
            Asc::INVALID_FIELD_IN_PARAMETER_LIST
        );
    }
    // A TransportID running past the list.
    let tid = init(2).transport_id().to_vec();
    let mut p = spec_i_pt_params(0, 1, 0, &[&tid[..tid.len() - 4]]);
    p[30..32].copy_from_slice(&(tid.len() as u16).to_be_bytes());
    assert_eq!(
        asc_of(register_list(&mut r, &a, &p)),
        Asc::INVALID_FIELD_IN_PARAMETER_LIST
    );
    // TRANSPORTID PARAMETER DATA LENGTH disagrees with the PARAMETER LIST LENGTH.
    let mut p = spec_i_pt_params(0, 1, 0, &[init(2).transport_id()]);
    p[27] ^= 4;
    assert_eq!(
        asc_of(register_list(&mut r, &a, &p)),
        Asc::PARAMETER_LIST_LENGTH_ERROR
    );
    let p = basic(0, 1, 0x08);
    assert_eq!(
        asc_of(register_list(&mut r, &a, &p)),
        Asc::PARAMETER_LIST_LENGTH_ERROR
    );
    assert_eq!(keys(&r), (0, vec![]));
}

#[test]
fn all_tg_pt_covers_every_target_port() {
    let mut r = Reservations::new();
    let a = init(1);
    let p = basic(0, 5, 0x04);
    assert_eq!(register_list(&mut r, &a, &p), Ok(vec![]));
    assert!(r.is_registered(&init_at(1, 7)));
    // Through port 7, the same registration: reserve with its key.
    reserve(&mut r, &init_at(1, 7), 5, EA);
    assert!(allowed(&r, &a, WRITE10) && allowed(&r, &init_at(1, 3), WRITE10));
    assert!(!allowed(&r, &init(2), READ10));
    let d = prin(&r, sa_in::READ_FULL_STATUS).unwrap();
    assert_eq!(d[8 + 12], 0b11, "ALL_TG_PT and R_HOLDER");
    // ALL_TG_PT while the port is registered through one target port: conflict.
    let b = init(2);
    register(&mut r, &init_at(2, 2), 6);
    assert_eq!(register_list(&mut r, &b, &basic(0, 6, 0x04)), Err(CONFLICT));
    // SPEC_I_PT with ALL_TG_PT registers the listed ports everywhere.
    let p = spec_i_pt_params(0, 7, 0x04, &[init(3).transport_id()]);
    assert_eq!(register_list(&mut r, &init(4), &p), Ok(vec![]));
    assert!(r.is_registered(&init_at(3, 9)) && r.is_registered(&init_at(4, 9)));
    // Unregistering through any port removes it for all.
    assert_eq!(
        out(&mut r, &init_at(3, 5), sa_out::REGISTER, 0, 7, 0),
        Ok(vec![])
    );
    assert!(!r.is_registered(&init(3)));
}

// ---- parameter list and CDB checks ----

#[test]
fn parameter_list_length_must_be_24() {
    let mut r = Reservations::new();
    let a = init(1);
    register(&mut r, &a, 1);
    for sa in 0..=6u8 {
        for len in [0u32, 8, 23, 25, 32] {
            let mut p = basic(1, 2, 0);
            p.resize(len as usize, 0);
            let res = r.persistent_reserve_out(&a, &prout_cdb(sa, WE, len), &p);
            assert_eq!(
                asc_of(res),
                Asc::PARAMETER_LIST_LENGTH_ERROR,
                "sa {sa} len {len}"
            );
        }
        // Less data than the CDB announces.
        let res = r.persistent_reserve_out(&a, &prout_cdb(sa, WE, 24), &basic(1, 2, 0)[..20]);
        assert_eq!(asc_of(res), Asc::PARAMETER_LIST_LENGTH_ERROR, "sa {sa}");
    }
    // More data than announced is cut to the announced length.
    let mut p = basic(1, 3, 0);
    p.extend_from_slice(&[0xEE; 8]);
    let res = r.persistent_reserve_out(&a, &prout_cdb(sa_out::REGISTER, 0, 24), &p);
    assert_eq!(res, Ok(vec![]));
    assert_eq!(keys(&r).1, vec![3]);
}

#[test]
fn scope_type_and_service_action_checks() {
    let mut r = Reservations::new();
    let a = init(1);
    register(&mut r, &a, 1);
    for sa in [
        sa_out::RESERVE,
        sa_out::RELEASE,
        sa_out::PREEMPT,
        sa_out::PREEMPT_AND_ABORT,
    ] {
        let s = check_failure(out(&mut r, &a, sa, 0x10 | WE, 1, 1));
        assert_eq!(s.asc, Asc::INVALID_FIELD_IN_CDB);
        assert_eq!(
            s.specific,
            Some(SenseKeySpecific::FieldPointer {
                in_cdb: true,
                bit: Some(7),
                byte: 2
            })
        );
        for bad in [0u8, 2, 4, 9, 0xF] {
            let s = check_failure(out(&mut r, &a, sa, bad, 1, 1));
            assert_eq!(s.asc, Asc::INVALID_FIELD_IN_CDB, "sa {sa} type {bad}");
        }
    }
    // REGISTER and CLEAR ignore SCOPE and TYPE.
    assert_eq!(out(&mut r, &a, sa_out::REGISTER, 0xFF, 1, 2), Ok(vec![]));
    for sa in 8..=0x1F {
        let s = check_failure(out(&mut r, &a, sa, WE, 2, 0));
        assert_eq!(s.asc, Asc::INVALID_FIELD_IN_CDB);
        assert_eq!(
            s.specific,
            Some(SenseKeySpecific::FieldPointer {
                in_cdb: true,
                bit: Some(4),
                byte: 1
            })
        );
    }
    assert_eq!(out(&mut r, &a, sa_out::CLEAR, 0xFF, 2, 0), Ok(vec![]));
}

// ---- PERSISTENT RESERVE IN ----

#[test]
fn prin_service_action_range() {
    // libiscsi PrinServiceactionRange.Range: 0..=3 work, 4..0x20 fail (not as invalid opcode).
    let r = Reservations::new();
    for sa in 0..4 {
        assert!(prin(&r, sa).is_ok());
    }
    for sa in 4..0x20 {
        let s = check_failure(prin(&r, sa));
        assert_eq!(s.key, SenseKey::ILLEGAL_REQUEST);
        assert_eq!(s.asc, Asc::INVALID_FIELD_IN_CDB);
    }
    // The upper bits of byte 1 are not part of the service action.
    assert!(prin(&r, 0xE0).is_ok());
    assert!(r.persistent_reserve_in(&init(1), &[0x5E]).is_ok());
}

#[test]
fn report_capabilities_encoding() {
    let r = Reservations::new();
    let d = prin(&r, sa_in::REPORT_CAPABILITIES).unwrap();
    assert_eq!(d.len(), 8);
    assert_eq!(u16::from_be_bytes([d[0], d[1]]), 8);
    assert_eq!(d[2], 0x1C, "CRH, SIP_C, ATP_C, not PTPL_C");
    assert_eq!(d[3] & 0x80, 0x80, "TMV");
    assert_eq!((d[3] >> 4) & 7, 3, "ALLOW COMMANDS");
    assert_eq!(d[3] & 1, 0, "PTPL_A");
    // libiscsi's mask: WR_EX_AR 1<<15, EX_AC_RO 1<<14, WR_EX_RO 1<<13, EX_AC 1<<11, WR_EX 1<<9,
    // EX_AC_AR 1<<0.
    let mask = u16::from_be_bytes([d[4], d[5]]);
    assert_eq!(
        mask,
        (1 << 15) | (1 << 14) | (1 << 13) | (1 << 11) | (1 << 9) | 1
    );
}

#[test]
fn read_keys_and_reservation_encoding() {
    let mut r = Reservations::new();
    let a = init(1);
    register(&mut r, &a, 0x0102_0304_0506_0708);
    register(&mut r, &init(2), 0x1112_1314_1516_1718);
    let d = prin(&r, sa_in::READ_KEYS).unwrap();
    assert_eq!(&d[..8], &[0, 0, 0, 2, 0, 0, 0, 16]);
    assert_eq!(&d[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(d.len(), 24);
    assert_eq!(
        prin(&r, sa_in::READ_RESERVATION).unwrap(),
        vec![0, 0, 0, 2, 0, 0, 0, 0]
    );
    reserve(&mut r, &a, 0x0102_0304_0506_0708, EARO);
    let d = prin(&r, sa_in::READ_RESERVATION).unwrap();
    let mut want = vec![0, 0, 0, 2, 0, 0, 0, 16, 1, 2, 3, 4, 5, 6, 7, 8];
    want.extend_from_slice(&[0, 0, 0, 0, 0, EARO, 0, 0]);
    assert_eq!(d, want);
}

#[test]
fn read_full_status_encoding() {
    let mut r = Reservations::new();
    let (a, b) = (init(1), init_at(2, 3));
    register(&mut r, &a, 0xA);
    register(&mut r, &b, 0xB);
    reserve(&mut r, &b, 0xB, WERO);
    let d = prin(&r, sa_in::READ_FULL_STATUS).unwrap();
    assert_eq!(&d[..4], &[0, 0, 0, 2]);
    let len = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize;
    assert_eq!(len, d.len() - 8);
    let mut at = 8;
    for (n, key, holder) in [(&a, 0xAu64, false), (&b, 0xB, true)] {
        let desc = &d[at..];
        assert_eq!(u64::from_be_bytes(desc[..8].try_into().unwrap()), key);
        assert_eq!(&desc[8..12], &[0; 4]);
        assert_eq!(desc[12], u8::from(holder), "ALL_TG_PT 0, R_HOLDER");
        assert_eq!(desc[13], if holder { WERO } else { 0 });
        assert_eq!(&desc[14..18], &[0; 4]);
        assert_eq!(
            u16::from_be_bytes([desc[18], desc[19]]),
            n.relative_target_port()
        );
        let tid_len = u32::from_be_bytes(desc[20..24].try_into().unwrap()) as usize;
        assert_eq!(&desc[24..24 + tid_len], n.transport_id());
        at += 24 + tid_len;
    }
    assert_eq!(at, d.len());
}

// ---- SPC-2 RESERVE / RELEASE ----

const RESERVE6: &[u8] = &[0x16, 0, 0, 0, 0, 0];
const RELEASE6: &[u8] = &[0x17, 0, 0, 0, 0, 0];
const RESERVE10: &[u8] = &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const RELEASE10: &[u8] = &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// What the core would do: check, then run RESERVE/RELEASE.
fn legacy(r: &mut Reservations, n: &ItNexus, cdb: &[u8]) -> Result<(), Failure> {
    r.check(n, cdb)?;
    if matches!(cdb[0], 0x16 | 0x56) {
        r.reserve(n, cdb)
    } else {
        r.release(n, cdb)
    }
}

#[test]
fn reserve6_two_initiators() {
    // libiscsi Reserve6.2Initiators.
    let mut r = Reservations::new();
    let (a, b) = (init(1), init(2));
    assert_eq!(legacy(&mut r, &a, RESERVE6), Ok(()));
    assert_eq!(legacy(&mut r, &a, RESERVE6), Ok(()));
    assert_eq!(legacy(&mut r, &b, RESERVE6), Err(CONFLICT));
    assert_eq!(r.reserve(&b, RESERVE6), Err(CONFLICT));
    assert_eq!(
        legacy(&mut r, &b, RELEASE6),
        Ok(()),
        "RELEASE by another is a no-op"
    );
    assert_eq!(r.legacy_holder(), Some(&a));
    assert!(allowed(&r, &a, MODE_SENSE6));
    assert!(!allowed(&r, &b, MODE_SENSE6));
    assert_eq!(legacy(&mut r, &b, RESERVE10), Err(CONFLICT));
    assert_eq!(legacy(&mut r, &a, RELEASE6), Ok(()));
    assert_eq!(legacy(&mut r, &b, RESERVE6), Ok(()));
    assert_eq!(legacy(&mut r, &b, RELEASE10), Ok(()));
    assert_eq!(r.legacy_holder(), None);
}

#[test]
fn reserve6_conflicts_for_others() {
    let mut r = Reservations::new();
    let (a, b) = (init(1), init(2));
    assert_eq!(legacy(&mut r, &a, RESERVE10), Ok(()));
    for cdb in ALWAYS.iter().chain(READS).chain(WRITES) {
        assert!(allowed(&r, &a, cdb) || cdb[0] == 0x5E, "holder {cdb:02x?}");
    }
    let others_may: &[&[u8]] = &[
        INQUIRY,
        REQUEST_SENSE,
        REPORT_LUNS,
        READ_CAPACITY10,
        READ_CAPACITY16,
        LOG_SENSE,
    ];
    for cdb in others_may
        .iter()
        .chain([&ALLOW_REMOVAL, &RTPG, &START_UNIT, &RELEASE6])
    {
        assert!(allowed(&r, &b, cdb), "{cdb:02x?}");
    }
    for cdb in [
        TUR,
        READ10,
        WRITE10,
        MODE_SENSE6,
        PREVENT_REMOVAL,
        SYNC_CACHE10,
        RESERVE6,
    ] {
        assert!(!allowed(&r, &b, cdb), "{cdb:02x?}");
    }
    // The same initiator through another target port is another nexus.
    assert!(!allowed(&r, &init_at(1, 2), READ10));
    // PERSISTENT RESERVE IN/OUT conflict for everyone, the holder included (SPC-2 §5.5.1).
    for n in [&a, &b] {
        assert!(!allowed(&r, n, &[0x5E, 0, 0, 0, 0, 0, 0, 0, 8, 0]));
        assert!(!allowed(&r, n, &prout_cdb(sa_out::REGISTER, 0, 24)));
        assert_eq!(prin(&r, sa_in::READ_KEYS), Err(CONFLICT));
        assert_eq!(
            out(&mut r, n, sa_out::REGISTER_AND_IGNORE, 0, 0, 1),
            Err(CONFLICT)
        );
    }
    assert_eq!(keys_after_release(&mut r, &a), vec![]);
}

fn keys_after_release(r: &mut Reservations, holder: &ItNexus) -> Vec<u64> {
    r.release(holder, RELEASE6).unwrap();
    keys(r).1
}

#[test]
fn reserve6_released_by_reset_and_nexus_loss() {
    // libiscsi Reserve6.LUNReset / TargetWarmReset.
    let mut r = Reservations::new();
    let (a, b) = (init(1), init(2));
    r.reserve(&a, RESERVE6).unwrap();
    r.reset();
    assert_eq!(legacy(&mut r, &b, RESERVE6), Ok(()));
    // Reserve6.ItNexusLoss / Logout: another nexus's loss changes nothing.
    r.nexus_lost(&a);
    assert_eq!(r.legacy_holder(), Some(&b));
    r.nexus_lost(&b);
    assert_eq!(legacy(&mut r, &a, RESERVE6), Ok(()));
    // Reserve6.TargetColdReset: power on drops everything, persistent state too.
    r.power_on();
    assert_eq!(r.legacy_holder(), None);
    register(&mut r, &b, 4);
    reserve(&mut r, &b, 4, EA);
    r.reset();
    r.nexus_lost(&b);
    assert_eq!(
        reservation(&r),
        Some((4, EA)),
        "persistent reservations survive resets"
    );
    r.power_on();
    assert_eq!(keys(&r), (0, vec![]));
    assert_eq!(reservation(&r), None);
}

#[test]
fn reserve6_with_persistent_registrations() {
    let mut r = Reservations::new();
    let (a, b, c) = (init(1), init(2), init(3));
    register(&mut r, &a, 1);
    // Registrations without reservation: RESERVE/RELEASE conflict, even for the registrant.
    for n in [&a, &c] {
        assert_eq!(legacy(&mut r, n, RESERVE6), Err(CONFLICT));
        assert_eq!(r.reserve(n, RESERVE6), Err(CONFLICT));
        assert_eq!(legacy(&mut r, n, RELEASE6), Err(CONFLICT));
    }
    // CRH = 1: the holder's RESERVE/RELEASE are GOOD and change nothing.
    register(&mut r, &b, 2);
    reserve(&mut r, &a, 1, WE);
    assert_eq!(legacy(&mut r, &a, RESERVE6), Ok(()));
    assert_eq!(legacy(&mut r, &a, RELEASE10), Ok(()));
    assert_eq!(r.legacy_holder(), None);
    assert_eq!(reservation(&r), Some((1, WE)));
    // A registered non-holder of a Write Exclusive reservation: conflict.
    assert_eq!(legacy(&mut r, &b, RESERVE6), Err(CONFLICT));
    assert_eq!(legacy(&mut r, &c, RELEASE6), Err(CONFLICT));
    // Registrants of registrants-only reservations get the CRH treatment.
    assert_eq!(out(&mut r, &a, sa_out::RELEASE, WE, 1, 0), Ok(vec![]));
    reserve(&mut r, &a, 1, EARO);
    assert_eq!(legacy(&mut r, &b, RESERVE6), Ok(()));
    assert_eq!(legacy(&mut r, &b, RELEASE6), Ok(()));
    assert_eq!(legacy(&mut r, &c, RESERVE6), Err(CONFLICT));
    assert_eq!(r.legacy_holder(), None);
}

#[test]
fn reserve_release_cdb_fields() {
    let mut r = Reservations::new();
    let a = init(1);
    let cases: [(&[u8], u16); 7] = [
        (&[0x16, 0x10, 0, 0, 0, 0], 1),             // 3RDPTY
        (&[0x16, 0x01, 0, 0, 0, 0], 1),             // EXTENT
        (&[0x16, 0, 0, 0, 8, 0], 3),                // extent list length
        (&[0x56, 0x10, 0, 7, 0, 0, 0, 0, 0, 0], 1), // 3RDPTY
        (&[0x56, 0x02, 0, 0, 0, 0, 0, 0, 0, 0], 1), // LONGID
        (&[0x56, 0, 0, 0, 0, 0, 0, 0, 8, 0], 7),    // parameter list
        (&[0x57, 0x10, 0, 7, 0, 0, 0, 0, 0, 0], 1),
    ];
    for (cdb, byte) in cases {
        let res = if matches!(cdb[0], 0x16 | 0x56) {
            r.reserve(&a, cdb)
        } else {
            r.release(&a, cdb)
        };
        let s = check_failure(res);
        assert_eq!(s.asc, Asc::INVALID_FIELD_IN_CDB);
        assert_eq!(
            s.specific,
            Some(SenseKeySpecific::FieldPointer {
                in_cdb: true,
                bit: None,
                byte
            })
        );
    }
    assert_eq!(r.legacy_holder(), None);
}

// ---- robustness ----

#[test]
fn short_cdbs_do_not_panic() {
    let mut r = Reservations::new();
    let a = init(1);
    for len in 0..10 {
        let cdb = &prout_cdb(sa_out::RESERVE, WE, 24)[..len];
        let _ = r.check(&a, cdb);
        let _ = r.persistent_reserve_in(&a, &[0x5E, 0, 0][..len.min(3)]);
        let _ = r.persistent_reserve_out(&a, cdb, &basic(0, 1, 0));
        let _ = r.reserve(&a, &RESERVE10[..len]);
        let _ = r.release(&a, &RELEASE10[..len]);
    }
    // A CDB without PARAMETER LIST LENGTH announces zero bytes.
    let res = r.persistent_reserve_out(&a, &[0x5F, 0], &basic(0, 1, 0));
    assert_eq!(asc_of(res), Asc::PARAMETER_LIST_LENGTH_ERROR);
    // A huge PARAMETER LIST LENGTH with little data.
    let res = r.persistent_reserve_out(&a, &prout_cdb(0, 0, u32::MAX), &basic(0, 1, 0));
    assert_eq!(asc_of(res), Asc::PARAMETER_LIST_LENGTH_ERROR);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_input_panics(
        steps in proptest::collection::vec(
            (0u8..4, 0u8..6, proptest::collection::vec(any::<u8>(), 0..16),
             proptest::collection::vec(any::<u8>(), 0..96)),
            1..12,
        )
    ) {
        let mut r = Reservations::new();
        register(&mut r, &init(0), 1);
        for (who, op, mut cdb, params) in steps {
            let n = init(who);
            match op {
                0 => { let _ = r.check(&n, &cdb); }
                1 => { let _ = r.persistent_reserve_in(&n, &cdb); }
                2 | 3 => {
                    // Make it likelier to get past the length checks.
                    if cdb.len() >= 9 && op == 3 {
                        cdb[5..9].copy_from_slice(&(params.len() as u32).to_be_bytes());
                    }
                    let _ = r.persistent_reserve_out(&n, &cdb, &params);
                }
                4 => { let _ = r.reserve(&n, &cdb); }
                _ => { let _ = r.release(&n, &cdb); }
            }
            // Invariants: no two registrations cover one nexus; keys are never zero; a
            // reservation implies a registrant, and a non-all-registrants holder exists.
            for (i, x) in r.registrations.iter().enumerate() {
                prop_assert_ne!(x.key, 0);
                for y in &r.registrations[i + 1..] {
                    prop_assert!(!x.covers(&y.nexus) && !y.covers(&x.nexus));
                }
            }
            if let Some(res) = r.reservation {
                prop_assert!(!r.registrations.is_empty());
                if !res.kind.all_registrants() {
                    prop_assert!(r.registrations.iter().any(|x| x.id == res.holder));
                }
            }
            prop_assert!(r.registrations.len() <= MAX_REGISTRATIONS);
            prop_assert!(r.legacy.is_none() || r.registrations.is_empty());
        }
    }
}
