//! Round trips, exact layouts and arbitrary bytes for the codec.

use nexus_wire::{byte_enum, Header, Reader, Rejects, Status, WireError, Writer, HEADER_LEN};
use proptest::prelude::*;

byte_enum! {
    /// A test enum with gaps.
    pub enum Kind {
        /// A.
        A = 0 => "a",
        /// B.
        B = 5 => "b_two" | "b2" | "bee",
    }
}

byte_enum! {
    /// Variant names that collide with associated items (`TryFrom::Error`).
    pub enum Outcome {
        /// Fine.
        Ok = 0 => "ok",
        /// Not fine.
        Error = 1 => "error",
    }
}

#[test]
fn variants_may_be_named_like_associated_items() {
    assert_eq!(Outcome::try_from(1), Ok(Outcome::Error));
    assert_eq!(Outcome::try_from(2), Err(WireError::BadValue));
    assert_eq!(Outcome::Ok.as_str(), "ok");
}

#[test]
fn header_layout_is_exact() {
    let h = Header::request(*b"LG", 1, 2, 0x0102_0304_0506_0708);
    let mut v = Vec::new();
    h.emit(&mut v);
    assert_eq!(v, [b'L', b'G', 1, 2, 8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(v.len(), HEADER_LEN);
    v.push(0xAA);
    let (back, body) = Header::parse(&v, *b"LG").unwrap();
    assert_eq!(back, h);
    assert_eq!(body, [0xAA]);
    assert!(back.reply().is_reply());
    assert_eq!(back.reply().nonce, h.nonce);
    assert_eq!(Header::parse(&v, *b"MX"), Err(WireError::BadMagic));
    assert_eq!(Header::parse(&v[..11], *b"LG"), Err(WireError::Truncated));
}

#[test]
fn replies_and_one_way_requests_are_never_answered() {
    let req = Header::request(*b"LG", 1, 1, 9);
    assert!(req.wants_reply(4));
    assert!(!Header { op: 4, ..req }.wants_reply(4), "one-way op");
    assert!(!req.reply().wants_reply(4), "a reply");
}

#[test]
fn byte_enums_decode_only_their_bytes() {
    assert_eq!(Kind::from_u8(5), Some(Kind::B));
    assert_eq!(Kind::from_u8(1), None);
    assert_eq!(Kind::try_from(9), Err(WireError::BadValue));
    assert_eq!(Kind::parse("b_two"), Some(Kind::B));
    assert_eq!(Kind::B.to_string(), "b_two");
    assert_eq!(Kind::parse("b2"), Some(Kind::B), "an alias");
    assert_eq!(Kind::parse("bee"), Some(Kind::B), "another alias");
    assert_eq!(Kind::parse("B"), None);
    assert!(Kind::A < Kind::B, "ordered by declaration");
    for b in 0..=u8::MAX {
        if let Some(k) = Kind::from_u8(b) {
            assert_eq!(k.as_u8(), b);
        }
    }
    // Status keeps its version-1 bytes; `unavailable` was added after them.
    let bytes: Vec<u8> = Status::ALL.iter().map(|s| s.as_u8()).collect();
    assert_eq!(bytes, [0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(Status::from_u8(8), None);
    assert_eq!(Status::InvalidArgs.as_str(), "invalid_args");
}

#[test]
fn reader_rejects_short_and_bad_input() {
    let mut r = Reader::new(&[3, b'a', b'b']);
    assert_eq!(r.bytes_u8(), Err(WireError::Truncated));
    let mut r = Reader::new(&[2, 0xff, 0xfe]);
    assert_eq!(r.str_u8(), Err(WireError::BadValue));
    assert_eq!(Reader::new(&[1]).finish(), Err(WireError::TrailingBytes));
    assert_eq!(Reader::new(&[2]).bool(), Err(WireError::BadValue));
    assert_eq!(
        Reader::new(&[1]).enum_u8(Kind::from_u8),
        Err(WireError::BadValue)
    );
    assert_eq!(
        Reader::new(&[0xff, 0xff, 0xff, 0xff]).bytes_u32(),
        Err(WireError::Truncated)
    );
}

#[test]
fn writer_latches_the_first_error() {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    w.u8(1).bytes_u8(&[0; 256]).u8(2);
    assert_eq!(w.finish(), Err(WireError::BadValue));
    assert_eq!(out, [1], "nothing written after the failure");

    let mut out = Vec::new();
    let mut w = Writer::bounded(&mut out, 4);
    w.u16(7).u16(8);
    assert_eq!(w.room(), 0);
    w.u8(9);
    assert_eq!(w.finish(), Err(WireError::TooLarge));
    assert_eq!(
        out,
        [7, 0, 8, 0],
        "never past the bound, never a partial field"
    );

    let mut out = vec![0u8; 3];
    let mut w = Writer::new(&mut out);
    w.patch_u16(1, 0x0201);
    w.patch_u16(2, 1);
    assert_eq!(w.finish(), Err(WireError::BadValue));
    assert_eq!(out, [0, 1, 2]);
}

#[test]
fn counts_must_fit_their_prefix() {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    w.count_u8(255).count_u16(65_535);
    assert_eq!(w.finish(), Ok(3));
    w.count_u8(256).u8(1);
    assert_eq!(w.finish(), Err(WireError::BadValue));
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    w.count_u16(65_536);
    assert_eq!(w.finish(), Err(WireError::BadValue));
    assert!(out.is_empty());
}

#[test]
fn append_is_all_or_nothing() {
    let mut out = vec![0xEE];
    assert_eq!(
        Writer::append(&mut out, usize::MAX, |w| {
            w.u8(1).u16(2);
        }),
        Ok(4)
    );
    assert_eq!(out, [0xEE, 1, 2, 0]);
    // A prefix written before the bound is hit is taken back too.
    assert_eq!(
        Writer::append(&mut out, 6, |w| {
            w.str_u8("abc");
        }),
        Err(WireError::TooLarge)
    );
    assert_eq!(out, [0xEE, 1, 2, 0]);
    assert_eq!(
        Writer::append(&mut out, usize::MAX, |w| {
            w.u8(7).bytes_u8(&[0; 256]);
        }),
        Err(WireError::BadValue)
    );
    assert_eq!(out, [0xEE, 1, 2, 0]);
}

#[test]
fn to_array_wants_exactly_n_bytes() {
    assert_eq!(
        Writer::to_array::<4>(|w| {
            w.u32(0x0403_0201);
        }),
        Ok([1, 2, 3, 4])
    );
    assert_eq!(
        Writer::to_array::<4>(|w| {
            w.u16(1);
        }),
        Err(WireError::Truncated)
    );
    assert_eq!(
        Writer::to_array::<4>(|w| {
            w.u64(1);
        }),
        Err(WireError::TooLarge)
    );
}

#[test]
fn rejects_count_by_status_and_round_trip() {
    let mut r = Rejects::default();
    for s in Status::ALL {
        r.count(*s);
    }
    r.count(Status::Denied);
    assert_eq!(r.get(Status::Ok), 0);
    assert_eq!(r.get(Status::Denied), 2);
    assert_eq!(r.get(Status::Unavailable), 1);
    assert_eq!(r.total(), 8);
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    r.emit(&mut w);
    assert_eq!(w.finish(), Ok(Rejects::WIRE_LEN));
    let mut rd = Reader::new(&out);
    // The six-counter wire form does not carry `unavailable`.
    assert_eq!(
        Rejects::parse(&mut rd),
        Ok(Rejects {
            unavailable: 0,
            ..r
        })
    );
    assert!(rd.finish().is_ok());
    assert_eq!(
        Rejects::parse(&mut Reader::new(&out[..47])),
        Err(WireError::Truncated)
    );
}

proptest! {
    #[test]
    fn fields_round_trip(a in any::<u8>(), b in any::<u16>(), c in any::<u32>(), d in any::<u64>(),
                         e in any::<u128>(), f in any::<i64>(), g in any::<bool>(),
                         s in ".{0,40}", bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.u8(a).u16(b).u32(c).u64(d).u128(e).i64(f).bool(g).str_u8(&s).str_u16(&s).str_u32(&s)
            .bytes_u16(&bytes).bytes_u32(&bytes);
        prop_assert!(w.finish().is_ok());
        let mut r = Reader::new(&out);
        prop_assert_eq!(r.u8(), Ok(a));
        prop_assert_eq!(r.u16(), Ok(b));
        prop_assert_eq!(r.u32(), Ok(c));
        prop_assert_eq!(r.u64(), Ok(d));
        prop_assert_eq!(r.u128(), Ok(e));
        prop_assert_eq!(r.i64(), Ok(f));
        prop_assert_eq!(r.bool(), Ok(g));
        prop_assert_eq!(r.str_u8(), Ok(s.as_str()));
        prop_assert_eq!(r.str_u16(), Ok(s.as_str()));
        prop_assert_eq!(r.str_u32(), Ok(s.as_str()));
        prop_assert_eq!(r.bytes_u16(), Ok(bytes.as_slice()));
        prop_assert_eq!(r.bytes_u32(), Ok(bytes.as_slice()));
        prop_assert!(r.finish().is_ok());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = Header::parse(&bytes, *b"LG");
        let mut r = Reader::new(&bytes);
        while r.bytes_u16().is_ok() {}
        let mut r = Reader::new(&bytes);
        while r.str_u32().is_ok() || r.u8().is_ok() {}
        let _ = Rejects::parse(&mut Reader::new(&bytes));
        let mut r = Reader::new(&bytes);
        while r.enum_u8(Status::from_u8).is_ok() {}
    }

    #[test]
    fn bounded_writer_never_passes_its_bound(max in 0usize..40, parts in proptest::collection::vec(".{0,20}", 0..6)) {
        let mut out = Vec::new();
        let mut w = Writer::bounded(&mut out, max);
        for p in &parts {
            w.str_u8(p);
        }
        let res = w.finish();
        prop_assert!(out.len() <= max);
        if res.is_ok() {
            prop_assert_eq!(out.len(), parts.iter().map(|p| p.len() + 1).sum::<usize>());
        }
    }
}

struct Body(Status);
impl nexus_wire::ReplyBody for Body {
    fn status(&self) -> Status {
        self.0
    }
    fn encode(&self, req: &Header) -> Vec<u8> {
        let mut out = Vec::new();
        Writer::new(&mut out)
            .header(&req.reply())
            .u8(self.0.as_u8());
        out
    }
}

#[test]
fn answer_counts_and_replies_only_when_wanted() {
    let mut rejects = Rejects::default();
    let req = Header::request(*b"LG", 1, 2, 7);
    let a = nexus_wire::answer(&mut rejects, &req, 4, &Body(Status::Ok));
    assert_eq!(a.status, Status::Ok);
    assert_eq!(a.frame.unwrap()[3], 2 | nexus_wire::REPLY_BIT);
    let a = nexus_wire::answer(&mut rejects, &req, 4, &Body(Status::Denied));
    assert!(a.frame.is_some());
    let oneway = Header { op: 4, ..req };
    let a = nexus_wire::answer(&mut rejects, &oneway, 4, &Body(Status::RateLimited));
    assert_eq!((a.status, a.frame), (Status::RateLimited, None));
    let a = nexus_wire::answer(&mut rejects, &req.reply(), 4, &Body(Status::Malformed));
    assert_eq!(a.frame, None, "a reply is never answered");
    assert_eq!(
        rejects.total(),
        3,
        "refusals are counted even when unanswered"
    );
    assert_eq!(rejects.get(Status::Denied), 1);
}
