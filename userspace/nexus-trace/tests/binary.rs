//! The compact binary context: byte layout, bounds, errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use nexus_trace::baggage::{Baggage, BaggageLimits, Scope};
use nexus_trace::binary::{self, BinaryError, CORE_LEN, MUX_META_MAX};
use nexus_trace::{Propagator, SpanContext, SpanId, TraceContext, TraceFlags, TraceId, TraceState};

fn ctx() -> SpanContext {
    SpanContext::new(
        TraceId::new(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10).unwrap(),
        SpanId::new(0x1122_3344_5566_7788).unwrap(),
        TraceFlags::SAMPLED,
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn layout_is_byte_exact() {
    let p = Propagator::default();
    let mut out = Vec::new();
    p.encode_binary(&TraceContext::new(ctx()), &Baggage::default(), &mut out)
        .unwrap();
    assert_eq!(
        hex(&out),
        "01 0102030405060708090a0b0c0d0e0f10 1122334455667788 01".replace(' ', "")
    );
    assert_eq!(out.len(), CORE_LEN);
    assert_eq!(binary::encode_core(&ctx()).as_slice(), out.as_slice());

    let mut ts = TraceState::new();
    ts.insert("ro", "1").unwrap();
    let mut bag = Baggage::default();
    bag.insert("k", "v w").unwrap();
    out.clear();
    p.encode_binary(
        &TraceContext {
            span: ctx(),
            tracestate: ts.clone(),
        },
        &bag,
        &mut out,
    )
    .unwrap();
    // tracestate "ro=1" (4 bytes), baggage "k=v%20w" (7 bytes)
    assert_eq!(
        hex(&out[CORE_LEN..]),
        "0400726f3d31 0700 6b3d7625323077".replace(' ', "")
    );
    let x = p.decode_binary(&out, Scope::Local).unwrap();
    assert_eq!(
        x.parent,
        Some(TraceContext {
            span: ctx(),
            tracestate: ts
        })
    );
    assert_eq!(x.baggage, bag);

    // Baggage without tracestate: an empty tracestate section.
    out.clear();
    p.encode_binary(&TraceContext::new(ctx()), &bag, &mut out)
        .unwrap();
    assert_eq!(
        hex(&out[CORE_LEN..]),
        "0000 0700 6b3d7625323077".replace(' ', "")
    );
}

#[test]
fn decoding_refuses_with_errors() {
    let l = BaggageLimits::default();
    let good = binary::encode_core(&ctx());
    let mut bad = good;
    bad[0] = 0;
    assert_eq!(
        binary::decode(&bad, l, Scope::Local).err(),
        Some(BinaryError::Version)
    );
    bad[0] = 0xff;
    assert_eq!(
        binary::decode(&bad, l, Scope::Local).err(),
        Some(BinaryError::Version)
    );
    let mut z = good;
    z[1..17].fill(0);
    assert_eq!(
        binary::decode(&z, l, Scope::Local).err(),
        Some(BinaryError::ZeroTraceId)
    );
    let mut z = good;
    z[17..25].fill(0);
    assert_eq!(
        binary::decode(&z, l, Scope::Local).err(),
        Some(BinaryError::ZeroSpanId)
    );
    for n in 0..CORE_LEN {
        assert_eq!(
            binary::decode(&good[..n], l, Scope::Local).err(),
            Some(BinaryError::Short)
        );
    }
    let with = |tail: &[u8]| {
        let mut v = good.to_vec();
        v.extend_from_slice(tail);
        binary::decode(&v, l, Scope::Local)
    };
    assert_eq!(with(&[1]).err(), Some(BinaryError::Short));
    assert_eq!(with(&[5, 0, b'a']).err(), Some(BinaryError::Short));
    assert_eq!(with(&[1, 0, 0xc3]).err(), Some(BinaryError::Text));
    assert_eq!(with(&[0, 0, 0, 0, 9]).err(), Some(BinaryError::Trailing));
    // An invalid tracestate section is dropped, the context kept.
    let x = with(&[3, 0, b'A', b'=', b'1']).unwrap();
    assert!(x.parent.unwrap().tracestate.is_empty());
    assert!(x.report.tracestate.is_some());
    // A higher version is read for its 26-byte core; the rest is ignored.
    let mut v2 = good.to_vec();
    v2[0] = 2;
    v2.extend_from_slice(b"anything at all");
    assert_eq!(
        binary::decode(&v2, l, Scope::Local)
            .unwrap()
            .parent
            .unwrap()
            .span,
        ctx()
    );
    // Flags other than sampled are carried.
    let mut f = good;
    f[25] = 0x82;
    assert_eq!(
        binary::decode(&f, l, Scope::Local)
            .unwrap()
            .parent
            .unwrap()
            .span
            .flags,
        TraceFlags::new(0x82)
    );
    assert!(binary::encode(
        &TraceContext::new(ctx()),
        &Baggage::default(),
        Scope::Local,
        Some(25),
        &mut Vec::new()
    )
    .is_err());
}

#[test]
fn mux_meta_fits_64_bytes_dropping_baggage_then_tracestate_from_the_end() {
    let p = Propagator::default();
    let mut ts = TraceState::new();
    ts.insert("zz", "3").unwrap();
    ts.insert("yy", "2").unwrap();
    ts.insert("xx", "1").unwrap(); // header "xx=1,yy=2,zz=3" (14 bytes)
    let mut bag = Baggage::default();
    bag.insert("private:user", "alice").unwrap();
    bag.insert("a", "1234567").unwrap(); // 9 bytes
    bag.insert("b", "12345").unwrap(); // 7 bytes
    let tc = TraceContext {
        span: ctx(),
        tracestate: ts,
    };
    let mut out = Vec::new();
    // 26 + 2 + 14 + 2 + (9 + 1 + 7 = 17) = 61: fits once private is gone.
    let r = p.encode_mux_meta(&tc, &bag, &mut out).unwrap();
    assert_eq!(
        (
            out.len(),
            r.private_dropped,
            r.baggage_dropped,
            r.tracestate_dropped
        ),
        (61, 1, 0, 0)
    );
    // Longer baggage: the last member goes first.
    bag.insert("c", "12").unwrap(); // +5 → 66
    out.clear();
    let r = p.encode_mux_meta(&tc, &bag, &mut out).unwrap();
    assert_eq!((r.baggage_dropped, r.tracestate_dropped), (1, 0));
    let x = p.decode_binary(&out, Scope::CrossNode).unwrap();
    assert_eq!(x.baggage.to_string(), "a=1234567,b=12345");
    // A bound that only the core fits: everything else goes, tracestate last.
    out.clear();
    let r = binary::encode(
        &tc,
        &bag,
        Scope::CrossNode,
        Some(CORE_LEN + 2 + 4),
        &mut out,
    )
    .unwrap();
    assert_eq!((r.baggage_dropped, r.tracestate_dropped), (3, 2));
    let x = binary::decode(&out, BaggageLimits::default(), Scope::Local).unwrap();
    assert_eq!(x.parent.unwrap().tracestate.to_string(), "xx=1");
    assert!(out.len() <= MUX_META_MAX);
    let s = p.stats();
    assert_eq!(
        (s.private_dropped, s.baggage_dropped, s.tracestate_dropped),
        (2, 1, 0)
    );
}

#[test]
fn private_baggage_travels_locally_in_ipc_frames() {
    let p = Propagator::default();
    let mut bag = Baggage::default();
    bag.insert("private:user", "alice").unwrap();
    let mut out = Vec::new();
    p.encode_binary(&TraceContext::new(ctx()), &bag, &mut out)
        .unwrap();
    assert_eq!(p.decode_binary(&out, Scope::Local).unwrap().baggage, bag);
    let x = p.decode_binary(&out, Scope::CrossNode).unwrap();
    assert!(x.baggage.is_empty());
    assert_eq!(x.report.baggage.private_dropped, 1);
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..120)) {
        let _ = binary::decode(&b, BaggageLimits { max_members: 2, max_bytes: 16 }, Scope::CrossNode);
        let mut v = binary::encode_core(&ctx()).to_vec();
        v.extend_from_slice(&b);
        let _ = binary::decode(&v, BaggageLimits::default(), Scope::Local);
    }

    #[test]
    fn round_trip(t in 1u128.., s in 1u64.., f in proptest::num::u8::ANY,
                  ts in proptest::collection::vec(("[a-z][a-z0-9]{0,6}", "[!-+--<>-~]{1,12}"), 0..6),
                  bg in proptest::collection::vec(("[a-zA-Z0-9]{1,8}", "\\PC{0,12}"), 0..6),
                  max in 26usize..200) {
        let mut state = TraceState::new();
        for (k, v) in &ts { state.insert(k, v).unwrap(); }
        let mut bag = Baggage::default();
        for (k, v) in &bg { bag.insert(k, v).unwrap(); }
        let tc = TraceContext { span: SpanContext::new(TraceId::new(t).unwrap(), SpanId::new(s).unwrap(), TraceFlags::new(f)), tracestate: state };
        let mut out = Vec::new();
        binary::encode(&tc, &bag, Scope::Local, None, &mut out).unwrap();
        let x = binary::decode(&out, BaggageLimits::default(), Scope::Local).unwrap();
        proptest::prop_assert_eq!(x.parent, Some(tc.clone()));
        proptest::prop_assert_eq!(x.baggage, bag.clone());
        // Bounded: always fits, always decodes to the same span context.
        out.clear();
        binary::encode(&tc, &bag, Scope::CrossNode, Some(max), &mut out).unwrap();
        proptest::prop_assert!(out.len() <= max);
        let x = binary::decode(&out, BaggageLimits::default(), Scope::Local).unwrap();
        proptest::prop_assert_eq!(x.parent.unwrap().span, tc.span);
    }
}
