//! Device identity and Noise XK sessions: handshake outcomes, record
//! framing under arbitrary chunking, tampering, replay, size limits, and
//! hostile bytes that must never panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use dsoftbus::identity::{DeviceId, DeviceKey};
use dsoftbus::session::{
    CloseReason, Handshake, Session, SessionConfig, MAX_RECORD, RECORD_HEADER_LEN, TAG_LEN,
};
use proptest::prelude::*;

fn key(n: u8) -> DeviceKey {
    DeviceKey::from_secret([n; 32])
}

fn allow(_: DeviceId, _: &[u8; 32]) -> bool {
    true
}

/// Splits `bytes` into pieces whose sizes cycle through `sizes` (each ≥ 1).
fn chunks<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        let (now, later) = rest.split_at(n);
        out.push(now);
        rest = later;
        i += 1;
    }
    out
}

/// Feeds `bytes` to `hs` in pieces; returns the session if one completed.
fn feed(
    hs: &mut Handshake,
    bytes: &[u8],
    sizes: &[usize],
    authorize: &mut dyn FnMut(DeviceId, &[u8; 32]) -> bool,
) -> Result<Option<Session>, CloseReason> {
    let mut done = None;
    for piece in chunks(bytes, sizes) {
        if let Some(s) = hs.on_bytes(piece, authorize)? {
            assert!(done.is_none(), "two sessions from one handshake");
            done = Some(s);
        }
    }
    Ok(done)
}

/// Runs a whole handshake between two fresh handshakes, chunking every
/// message by `sizes`; returns (initiator session, responder session).
fn pump(
    mut ih: Handshake,
    mut rh: Handshake,
    sizes: &[usize],
) -> Result<(Session, Session), CloseReason> {
    let (mut is, mut rs) = (None, None);
    for _ in 0..3 {
        if let Some(b) = ih.poll_transmit() {
            if let Some(s) = feed(&mut rh, &b, sizes, &mut allow)? {
                rs = Some(s);
            }
        }
        if let Some(b) = rh.poll_transmit() {
            if let Some(s) = feed(&mut ih, &b, sizes, &mut allow)? {
                is = Some(s);
            }
        }
    }
    Ok((is.unwrap(), rs.unwrap()))
}

fn connect_with(icfg: SessionConfig, rcfg: SessionConfig) -> (Session, Session) {
    let (i, r) = (key(1), key(2));
    let ih = Handshake::initiator_with_config(icfg, &i, r.public(), [11; 32]).unwrap();
    let rh = Handshake::responder_with_config(rcfg, &r, [22; 32]).unwrap();
    pump(ih, rh, &[usize::MAX]).unwrap()
}

fn connect() -> (Session, Session) {
    connect_with(SessionConfig::default(), SessionConfig::default())
}

// ---------------------------------------------------------------- identity

#[test]
fn device_key_matches_rfc7748_and_id_is_pinned() {
    // RFC 7748 section 6.1, Alice.
    let secret: [u8; 32] =
        hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    let public = hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    let k = DeviceKey::from_secret(secret);
    assert_eq!(k.public(), public);
    // BLAKE2s-256("nexus-dsoftbus-device-id" || public)[..8], computed apart.
    assert_eq!(DeviceId::of(&public).to_string(), "c650760ded4b7a32");
    assert_eq!(k.id(), DeviceId::of(&public));
}

fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

#[test]
fn device_key_debug_hides_the_secret() {
    let k = DeviceKey::from_secret([0xab; 32]);
    let dbg = format!("{k:?}");
    assert!(!dbg.contains("abab"), "{dbg}");
    assert!(!dbg.contains("171"), "{dbg}"); // 0xab in decimal
    assert!(dbg.contains(&k.id().to_string()), "{dbg}");
}

#[test]
fn device_id_parse_accepts_only_its_display_form() {
    let id = key(7).id();
    let text = id.to_string();
    assert_eq!(text.len(), 16);
    assert!(text
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    assert_eq!(DeviceId::parse(&text), Some(id));
    assert_eq!(format!("{id:?}"), format!("DeviceId({text})"));
    assert_eq!(DeviceId::parse("0123456789ABCDEF"), None);
    assert_eq!(DeviceId::parse("0123456789abcde"), None);
    assert_eq!(DeviceId::parse("0123456789abcdef0"), None);
    assert_eq!(DeviceId::parse("0123456789abcdeg"), None);
    assert_eq!(DeviceId::parse("+123456789abcdef"), None);
    assert_eq!(DeviceId::parse(""), None);
    assert_eq!(DeviceId::parse("ééééééééé"), None);
    assert_eq!(
        DeviceId::parse("00112233445566ff").map(DeviceId::to_bytes),
        Some([0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0xff])
    );
}

proptest! {
    #[test]
    fn device_id_round_trips(bytes in any::<[u8; 8]>()) {
        let id = DeviceId::from_bytes(bytes);
        prop_assert_eq!(DeviceId::parse(&id.to_string()), Some(id));
    }

    #[test]
    fn device_id_parse_never_panics(s in ".{0,40}") {
        if let Some(id) = DeviceId::parse(&s) {
            prop_assert_eq!(id.to_string(), s);
        }
    }
}

// --------------------------------------------------------------- handshake

#[test]
fn handshake_completes_and_both_sides_know_the_authenticated_peer() {
    let (i, r) = (key(1), key(2));
    let (mut a, mut b) = connect();
    assert!(a.is_initiator() && !b.is_initiator());
    assert_eq!(a.peer(), r.id());
    assert_eq!(b.peer(), i.id());
    assert_eq!(a.peer_static(), r.public());
    assert_eq!(b.peer_static(), i.public());
    assert_eq!(a.handshake_hash(), b.handshake_hash());

    let rec = a.seal(b"hello responder").unwrap();
    assert_eq!(b.on_bytes(&rec).unwrap(), vec![b"hello responder".to_vec()]);
    let rec = b.seal(b"hello initiator").unwrap();
    assert_eq!(a.on_bytes(&rec).unwrap(), vec![b"hello initiator".to_vec()]);
    assert_eq!(a.stats().records_sealed, 1);
    assert_eq!(a.stats().records_opened, 1);
    assert_eq!(b.stats().bytes_opened, 15);
    assert_eq!(a.stats().closed, None);
}

#[test]
fn handshakes_and_sessions_can_move_between_threads() {
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Handshake>();
    send_and_sync::<Session>();
    send_and_sync::<DeviceKey>();
}

#[test]
fn handshake_wire_sizes_are_fixed() {
    let (i, r) = (key(1), key(2));
    let mut ih = Handshake::initiator(&i, r.public(), [1; 32]).unwrap();
    let mut rh = Handshake::responder(&r, [2; 32]).unwrap();
    assert_eq!(rh.poll_transmit(), None);
    let m1 = ih.poll_transmit().unwrap();
    assert_eq!(ih.poll_transmit(), None);
    assert_eq!(m1.len(), 2 + 48);
    assert_eq!(&m1[..2], &48u16.to_le_bytes());
    assert!(rh.on_bytes(&m1, &mut allow).unwrap().is_none());
    let m2 = rh.poll_transmit().unwrap();
    assert_eq!(m2.len(), 2 + 50);
    let a = ih.on_bytes(&m2, &mut allow).unwrap().unwrap();
    let m3 = ih.poll_transmit().unwrap();
    assert_eq!(m3.len(), 2 + 66);
    let b = rh.on_bytes(&m3, &mut allow).unwrap().unwrap();
    assert_eq!(a.handshake_hash(), b.handshake_hash());
    // Both handshakes are spent now.
    assert_eq!(rh.poll_transmit(), None);
    assert_eq!(
        rh.on_bytes(&m3, &mut allow).unwrap_err(),
        CloseReason::Handshake
    );
    assert_eq!(
        ih.on_bytes(&m2, &mut allow).unwrap_err(),
        CloseReason::Handshake
    );
}

#[test]
fn fixed_seeds_are_deterministic_and_different_seeds_differ() {
    let (i, r) = (key(1), key(2));
    let m1 = |seed| {
        Handshake::initiator(&i, r.public(), seed)
            .unwrap()
            .poll_transmit()
            .unwrap()
    };
    assert_eq!(m1([5; 32]), m1([5; 32]));
    assert_ne!(m1([5; 32]), m1([6; 32]));
    // The same seed under another static key gives another ephemeral.
    let other = Handshake::initiator(&key(3), r.public(), [5; 32])
        .unwrap()
        .poll_transmit()
        .unwrap();
    assert_ne!(m1([5; 32]), other);

    let run = |iseed, rseed| {
        let ih = Handshake::initiator(&i, r.public(), iseed).unwrap();
        let rh = Handshake::responder(&r, rseed).unwrap();
        pump(ih, rh, &[usize::MAX]).unwrap().0.handshake_hash()
    };
    assert_eq!(run([1; 32], [2; 32]), run([1; 32], [2; 32]));
    assert_ne!(run([1; 32], [2; 32]), run([1; 32], [3; 32]));
}

#[test]
fn initiator_pinned_to_the_wrong_key_fails_before_authorize() {
    let (i, r, c) = (key(1), key(2), key(3));
    // The initiator believes the responder's key is C's.
    let mut ih = Handshake::initiator(&i, c.public(), [1; 32]).unwrap();
    let mut rh = Handshake::responder(&r, [2; 32]).unwrap();
    let mut called = false;
    let mut hook = |_: DeviceId, _: &[u8; 32]| {
        called = true;
        true
    };
    let m1 = ih.poll_transmit().unwrap();
    assert_eq!(
        rh.on_bytes(&m1, &mut hook).unwrap_err(),
        CloseReason::WrongKey
    );
    assert_eq!(rh.poll_transmit(), None);
    assert_eq!(
        rh.on_bytes(&[], &mut hook).unwrap_err(),
        CloseReason::WrongKey
    );
    assert!(!called);
}

#[test]
fn initiator_rejects_a_responder_that_lacks_the_pinned_key() {
    let (i, r, c) = (key(1), key(2), key(3));
    let mut ih = Handshake::initiator(&i, r.public(), [1; 32]).unwrap();
    let m1 = ih.poll_transmit().unwrap();
    // An impostor holding C's key answers a handshake meant for R: it
    // cannot read message 1 ...
    let mut impostor = Handshake::responder(&c, [2; 32]).unwrap();
    assert_eq!(
        impostor.on_bytes(&m1, &mut allow).unwrap_err(),
        CloseReason::WrongKey
    );
    // ... and message 2 from a real exchange between C and someone else
    // does not fool the initiator either.
    let mut other = Handshake::initiator(&key(4), c.public(), [3; 32]).unwrap();
    let mut c_resp = Handshake::responder(&c, [4; 32]).unwrap();
    assert!(c_resp
        .on_bytes(&other.poll_transmit().unwrap(), &mut allow)
        .unwrap()
        .is_none());
    let foreign_m2 = c_resp.poll_transmit().unwrap();
    assert_eq!(
        ih.on_bytes(&foreign_m2, &mut allow).unwrap_err(),
        CloseReason::WrongKey
    );
    assert_eq!(ih.poll_transmit(), None);
}

#[test]
fn a_low_order_pinned_key_is_refused() {
    assert_eq!(
        Handshake::initiator(&key(1), [0; 32], [1; 32]).unwrap_err(),
        CloseReason::Handshake
    );
}

#[test]
fn authorize_refusal_fails_before_any_record() {
    let (i, r) = (key(1), key(2));
    let mut ih = Handshake::initiator(&i, r.public(), [1; 32]).unwrap();
    let mut rh = Handshake::responder(&r, [2; 32]).unwrap();
    let mut seen = Vec::new();
    let mut hook = |id: DeviceId, pk: &[u8; 32]| {
        seen.push((id, *pk));
        false
    };
    assert!(rh
        .on_bytes(&ih.poll_transmit().unwrap(), &mut hook)
        .unwrap()
        .is_none());
    let mut a = ih
        .on_bytes(&rh.poll_transmit().unwrap(), &mut allow)
        .unwrap()
        .unwrap();
    // The initiator sends its last message and a record in one write.
    let mut wire = ih.poll_transmit().unwrap();
    wire.extend(a.seal(b"secret payload").unwrap());
    assert_eq!(
        rh.on_bytes(&wire, &mut hook).unwrap_err(),
        CloseReason::UnknownPeer
    );
    assert_eq!(
        rh.on_bytes(&wire, &mut hook).unwrap_err(),
        CloseReason::UnknownPeer
    );
    assert_eq!(rh.poll_transmit(), None);
    assert_eq!(seen, vec![(i.id(), i.public())]);
}

#[test]
fn authorize_sees_the_proven_initiator_and_can_allow_it() {
    let (i, r) = (key(1), key(2));
    let allowed = i.id();
    let mut ih = Handshake::initiator(&i, r.public(), [1; 32]).unwrap();
    let mut rh = Handshake::responder(&r, [2; 32]).unwrap();
    let mut hook = |id: DeviceId, pk: &[u8; 32]| id == allowed && DeviceId::of(pk) == id;
    rh.on_bytes(&ih.poll_transmit().unwrap(), &mut hook)
        .unwrap();
    ih.on_bytes(&rh.poll_transmit().unwrap(), &mut allow)
        .unwrap()
        .unwrap();
    let b = rh
        .on_bytes(&ih.poll_transmit().unwrap(), &mut hook)
        .unwrap()
        .unwrap();
    assert_eq!(b.peer(), allowed);
}

#[test]
fn records_behind_the_last_handshake_message_are_kept() {
    let (i, r) = (key(1), key(2));
    let mut ih = Handshake::initiator(&i, r.public(), [1; 32]).unwrap();
    let mut rh = Handshake::responder(&r, [2; 32]).unwrap();
    rh.on_bytes(&ih.poll_transmit().unwrap(), &mut allow)
        .unwrap();
    let mut a = ih
        .on_bytes(&rh.poll_transmit().unwrap(), &mut allow)
        .unwrap()
        .unwrap();
    let mut wire = ih.poll_transmit().unwrap();
    wire.extend(a.seal(b"one").unwrap());
    let two = a.seal(b"two").unwrap();
    wire.extend(&two[..5]);
    let mut b = rh.on_bytes(&wire, &mut allow).unwrap().unwrap();
    assert_eq!(b.on_bytes(&[]).unwrap(), vec![b"one".to_vec()]);
    assert_eq!(b.on_bytes(&two[5..]).unwrap(), vec![b"two".to_vec()]);
}

#[test]
fn handshake_frames_of_the_wrong_length_are_malformed() {
    let r = key(2);
    let mut rh = Handshake::responder(&r, [2; 32]).unwrap();
    // 49 announced where message 1 is 48: refused on the prefix alone.
    assert_eq!(
        rh.on_bytes(&49u16.to_le_bytes(), &mut allow).unwrap_err(),
        CloseReason::Malformed
    );
    let mut rh = Handshake::responder(&r, [2; 32]).unwrap();
    assert_eq!(
        rh.on_bytes(&[0xff, 0xff, 1, 2, 3], &mut allow).unwrap_err(),
        CloseReason::Malformed
    );
}

#[test]
fn max_record_above_the_noise_limit_is_refused() {
    let (i, r) = (key(1), key(2));
    let big = SessionConfig {
        max_record: MAX_RECORD + 1,
    };
    assert_eq!(
        Handshake::responder_with_config(big, &r, [0; 32]).unwrap_err(),
        CloseReason::TooLarge
    );
    assert_eq!(
        Handshake::initiator_with_config(big, &i, r.public(), [0; 32]).unwrap_err(),
        CloseReason::TooLarge
    );
}

// ----------------------------------------------------------------- records

#[test]
fn empty_and_largest_records_round_trip() {
    let max = SessionConfig {
        max_record: MAX_RECORD,
    };
    let (mut a, mut b) = connect_with(max, max);
    assert_eq!(a.max_send(), MAX_RECORD);
    let big: Vec<u8> = (0..MAX_RECORD).map(|n| n as u8).collect();
    let rec = a.seal(&big).unwrap();
    assert_eq!(rec.len(), RECORD_HEADER_LEN + MAX_RECORD + TAG_LEN);
    let empty = a.seal(&[]).unwrap();
    assert_eq!(empty.len(), RECORD_HEADER_LEN + TAG_LEN);
    let mut wire = rec;
    wire.extend(empty);
    assert_eq!(b.on_bytes(&wire).unwrap(), vec![big, Vec::new()]);
}

#[test]
fn oversized_plaintext_is_refused_and_the_session_stays_open() {
    let (mut a, mut b) = connect_with(
        SessionConfig { max_record: 1000 },
        SessionConfig { max_record: 100 },
    );
    // Each side seals at most the smaller limit, and accepts its own.
    assert_eq!((a.max_send(), a.max_recv()), (100, 1000));
    assert_eq!((b.max_send(), b.max_recv()), (100, 100));
    assert_eq!(a.seal(&[0; 101]).unwrap_err(), CloseReason::TooLarge);
    assert_eq!(a.stats().seal_refused, 1);
    assert_eq!(a.stats().closed, None);
    let rec = a.seal(&[7; 100]).unwrap();
    assert_eq!(b.on_bytes(&rec).unwrap(), vec![vec![7; 100]]);
}

#[test]
fn an_oversized_record_header_closes_before_its_body() {
    let (_, mut b) = connect_with(SessionConfig::default(), SessionConfig { max_record: 100 });
    let mut header = Vec::new();
    header.extend(((100 + TAG_LEN + 1) as u16).to_le_bytes());
    header.extend(0u64.to_le_bytes());
    assert_eq!(b.on_bytes(&header).unwrap_err(), CloseReason::TooLarge);
    assert_eq!(b.stats().closed, Some(CloseReason::TooLarge));
    assert_eq!(b.on_bytes(&[]).unwrap_err(), CloseReason::TooLarge);
}

#[test]
fn a_record_shorter_than_its_tag_is_malformed() {
    let (_, mut b) = connect();
    let mut header = Vec::new();
    header.extend(((TAG_LEN - 1) as u16).to_le_bytes());
    header.extend(0u64.to_le_bytes());
    assert_eq!(b.on_bytes(&header).unwrap_err(), CloseReason::Malformed);
}

#[test]
fn corrupted_ciphertext_closes_with_auth_failed() {
    let (mut a, mut b) = connect();
    let mut rec = a.seal(b"payload").unwrap();
    let last = rec.len() - 1;
    rec[last] ^= 0x01;
    assert_eq!(b.on_bytes(&rec).unwrap_err(), CloseReason::AuthFailed);
    // Closed for good, even for a genuine record.
    let good = a.seal(b"next").unwrap();
    assert_eq!(b.on_bytes(&good).unwrap_err(), CloseReason::AuthFailed);
    assert_eq!(b.stats().closed, Some(CloseReason::AuthFailed));
    assert_eq!(b.stats().records_opened, 0);
}

#[test]
fn replayed_reordered_and_dropped_records_close_with_replay() {
    // Replayed.
    let (mut a, mut b) = connect();
    let r0 = a.seal(b"zero").unwrap();
    assert_eq!(b.on_bytes(&r0).unwrap(), vec![b"zero".to_vec()]);
    assert_eq!(b.on_bytes(&r0).unwrap_err(), CloseReason::Replay);
    assert_eq!(b.seal(b"x").unwrap_err(), CloseReason::Replay);

    // Reordered.
    let (mut a, mut b) = connect();
    let r0 = a.seal(b"zero").unwrap();
    let r1 = a.seal(b"one").unwrap();
    assert_eq!(b.on_bytes(&r1).unwrap_err(), CloseReason::Replay);
    assert_eq!(b.on_bytes(&r0).unwrap_err(), CloseReason::Replay);

    // Dropped.
    let (mut a, mut b) = connect();
    let _r0 = a.seal(b"zero").unwrap();
    let r1 = a.seal(b"one").unwrap();
    assert_eq!(b.on_bytes(&r1).unwrap_err(), CloseReason::Replay);

    // A record reflected back to its sender is not authentic there.
    let (mut a, _) = connect();
    let r0 = a.seal(b"zero").unwrap();
    assert_eq!(a.on_bytes(&r0).unwrap_err(), CloseReason::AuthFailed);
}

#[test]
fn records_from_another_session_do_not_open() {
    let (mut a1, _) = connect();
    let (i, r) = (key(1), key(2));
    let ih = Handshake::initiator(&i, r.public(), [99; 32]).unwrap();
    let rh = Handshake::responder(&r, [98; 32]).unwrap();
    let (_, mut b2) = pump(ih, rh, &[usize::MAX]).unwrap();
    let rec = a1.seal(b"cross").unwrap();
    assert_eq!(b2.on_bytes(&rec).unwrap_err(), CloseReason::AuthFailed);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn records_round_trip_under_any_chunking(
        msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..12),
        sizes in prop::collection::vec(1usize..80, 1..16),
        back in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..4),
    ) {
        let (i, r) = (key(1), key(2));
        let ih = Handshake::initiator(&i, r.public(), [1; 32]).unwrap();
        let rh = Handshake::responder(&r, [2; 32]).unwrap();
        let (mut a, mut b) = pump(ih, rh, &sizes).unwrap();

        let mut wire = Vec::new();
        for m in &msgs {
            wire.extend(a.seal(m).unwrap());
        }
        let mut got = Vec::new();
        for piece in chunks(&wire, &sizes) {
            got.extend(b.on_bytes(piece).unwrap());
        }
        prop_assert_eq!(&got, &msgs);
        prop_assert_eq!(b.stats().records_opened, msgs.len() as u64);

        let mut wire = Vec::new();
        for m in &back {
            wire.extend(b.seal(m).unwrap());
        }
        let mut got = Vec::new();
        for piece in chunks(&wire, &sizes) {
            got.extend(a.on_bytes(piece).unwrap());
        }
        prop_assert_eq!(&got, &back);
    }

    #[test]
    fn any_flipped_bit_after_the_length_fails_authentication(
        msg in prop::collection::vec(any::<u8>(), 0..64),
        pos in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let (mut a, mut b) = connect();
        let mut rec = a.seal(&msg).unwrap();
        // Sequence number or ciphertext (the length is judged separately).
        let at = 2 + pos.index(rec.len() - 2);
        rec[at] ^= 1 << bit;
        prop_assert_eq!(b.on_bytes(&rec).unwrap_err(), CloseReason::AuthFailed);
        prop_assert_eq!(b.on_bytes(&[]).unwrap_err(), CloseReason::AuthFailed);
    }
}

// ----------------------------------------------------------- hostile bytes

/// A framed handshake message of the length `step` requires, with
/// arbitrary contents, so the bytes reach the Noise state machine.
fn framed(len: usize, body: &[u8]) -> Vec<u8> {
    let mut out = (len as u16).to_le_bytes().to_vec();
    out.extend(body.iter().cycle().take(len));
    if body.is_empty() {
        out.resize(2 + len, 0);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_bytes_never_panic_a_handshake(
        raw in prop::collection::vec(any::<u8>(), 0..300),
        body in prop::collection::vec(any::<u8>(), 0..70),
        sizes in prop::collection::vec(1usize..40, 1..8),
    ) {
        let (i, r) = (key(1), key(2));
        // Raw bytes at both roles.
        let mut ih = Handshake::initiator(&i, r.public(), [1; 32]).unwrap();
        let mut rh = Handshake::responder(&r, [2; 32]).unwrap();
        for hs in [&mut ih, &mut rh] {
            match feed(hs, &raw, &sizes, &mut allow) {
                Ok(None) => {}
                Ok(Some(_)) => prop_assert!(false, "session from raw bytes"),
                Err(e) => prop_assert_eq!(hs.on_bytes(&[1], &mut allow).unwrap_err(), e),
            }
        }
        // Well-framed garbage as message 1 to a responder and message 2
        // to an initiator: the Noise layer must refuse it cleanly.
        let mut rh = Handshake::responder(&r, [2; 32]).unwrap();
        let m1 = framed(48, &body);
        let out = feed(&mut rh, &m1, &sizes, &mut allow);
        prop_assert!(matches!(out, Err(CloseReason::WrongKey) | Err(CloseReason::Handshake)), "{:?}", out);
        let mut ih = Handshake::initiator(&i, r.public(), [1; 32]).unwrap();
        let m2 = framed(50, &body);
        let out = feed(&mut ih, &m2, &sizes, &mut allow);
        prop_assert!(matches!(out, Err(CloseReason::WrongKey) | Err(CloseReason::Handshake)), "{:?}", out);
        prop_assert_eq!(ih.poll_transmit().map(|m| m.len()), None);
    }

    #[test]
    fn garbage_as_message_3_never_authenticates(body in prop::collection::vec(any::<u8>(), 1..70)) {
        let (i, r) = (key(1), key(2));
        let mut ih = Handshake::initiator(&i, r.public(), [1; 32]).unwrap();
        let mut rh = Handshake::responder(&r, [2; 32]).unwrap();
        rh.on_bytes(&ih.poll_transmit().unwrap(), &mut allow).unwrap();
        let mut called = false;
        let mut hook = |_: DeviceId, _: &[u8; 32]| { called = true; true };
        let out = rh.on_bytes(&framed(66, &body), &mut hook);
        prop_assert!(matches!(out, Err(CloseReason::AuthFailed) | Err(CloseReason::Handshake)), "{:?}", out);
        prop_assert!(!called);
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_session(
        raw in prop::collection::vec(any::<u8>(), 0..400),
        sizes in prop::collection::vec(1usize..64, 1..8),
        lead in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..3),
    ) {
        let (mut a, mut b) = connect();
        // Some genuine records first, then hostile bytes.
        let mut wire = Vec::new();
        for m in &lead {
            wire.extend(a.seal(m).unwrap());
        }
        prop_assert_eq!(b.on_bytes(&wire).unwrap(), lead.clone());
        let mut closed = None;
        for piece in chunks(&raw, &sizes) {
            match b.on_bytes(piece) {
                Ok(recs) => prop_assert!(recs.is_empty(), "forged record opened"),
                Err(e) => {
                    if let Some(first) = closed {
                        prop_assert_eq!(e, first);
                    }
                    closed = Some(e);
                }
            }
        }
        prop_assert_eq!(b.stats().closed, closed);
        if let Some(e) = closed {
            prop_assert!(matches!(
                e,
                CloseReason::Malformed | CloseReason::TooLarge | CloseReason::AuthFailed
            ));
            prop_assert_eq!(b.seal(b"x").unwrap_err(), e);
        }
    }
}
