//! W3C Trace Context Level 1 and W3C Baggage rules, as tables of vectors
//! written from the specs' examples and rules, plus proptests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use nexus_trace::baggage::{self, Baggage, BaggageLimits, Scope};
use nexus_trace::propagation::{
    format_traceparent, parse_traceparent, Carrier, Propagator, TraceContext, TraceparentError,
};
use nexus_trace::tracestate::{TraceState, TraceStateError};
use nexus_trace::{SpanContext, SpanId, TraceFlags, TraceId};

/// Members, as (key, value).
type Pairs<'a> = Vec<(&'a str, &'a str)>;

const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const S: &str = "00f067aa0ba902b7";

fn ctx(flags: u8) -> SpanContext {
    SpanContext::new(
        TraceId::from_hex(T).unwrap(),
        SpanId::from_hex(S).unwrap(),
        TraceFlags::new(flags),
    )
}

#[test]
fn traceparent_vectors() {
    use TraceparentError::*;
    let zeros32 = "0".repeat(32);
    let cases: Vec<(String, Result<SpanContext, TraceparentError>)> = vec![
        // The spec's examples.
        (format!("00-{T}-{S}-01"), Ok(ctx(1))),
        (format!("00-{T}-{S}-00"), Ok(ctx(0))),
        (
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            Ok(SpanContext::new(
                TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
                SpanId::from_hex("b7ad6b7169203331").unwrap(),
                TraceFlags::SAMPLED,
            )),
        ),
        // Version 00 keeps unknown flag bits.
        (format!("00-{T}-{S}-09"), Ok(ctx(9))),
        // Surrounding OWS is not part of the value.
        (format!(" \t00-{T}-{S}-01 "), Ok(ctx(1))),
        // A higher version: the known part, only the sampled bit.
        (format!("cc-{T}-{S}-01"), Ok(ctx(1))),
        (
            format!("cc-{T}-{S}-09-what-the-future-will-be-like"),
            Ok(ctx(1)),
        ),
        (format!("01-{T}-{S}-02-"), Ok(ctx(0))),
        (format!("cc-{T}-{S}-01.what"), Err(Separator)),
        (format!("cc-{T}-{S}-01what-the-future"), Err(Separator)),
        // Version ff is invalid; versions are two lower-case hex digits.
        (format!("ff-{T}-{S}-01"), Err(Version)),
        (format!("FF-{T}-{S}-01"), Err(Version)),
        (format!("0g-{T}-{S}-01"), Err(Version)),
        (format!(".0-{T}-{S}-01"), Err(Version)),
        (format!("0A-{T}-{S}-01"), Err(Version)),
        // Version 00 is exactly 55 characters.
        (format!("00-{T}-{S}-01-"), Err(Length)),
        (
            format!("00-{T}-{S}-01-what-the-future-will-be-like"),
            Err(Length),
        ),
        (format!("00-{T}-{S}-1"), Err(Length)),
        (format!("00-{T}-{S}"), Err(Length)),
        (String::new(), Err(Length)),
        (format!("00_{T}-{S}-01"), Err(Separator)),
        (format!("00-{T}_{S}-01"), Err(Separator)),
        (format!("00-{T}-{S}_01"), Err(Separator)),
        // Lower-case hex only.
        (format!("00-{}-{S}-01", T.to_uppercase()), Err(Hex)),
        (format!("00-{T}-{}-01", S.to_uppercase()), Err(Hex)),
        (format!("00-{T}-{S}-0A"), Err(Hex)),
        (format!("00-{T}-{S}-0g"), Err(Hex)),
        (
            format!("00-4bf92f3577b34da6a3ce929d0e0e473g-{S}-01"),
            Err(Hex),
        ),
        (format!("00-{T}-00f067aa0ba9 2b7-01"), Err(Hex)),
        // All-zero ids.
        (format!("00-{zeros32}-{S}-01"), Err(ZeroTraceId)),
        (format!("00-{T}-0000000000000000-01"), Err(ZeroSpanId)),
        (format!("cc-{zeros32}-{S}-01-x"), Err(ZeroTraceId)),
    ];
    for (input, want) in cases {
        assert_eq!(parse_traceparent(&input), want, "{input:?}");
    }
}

#[test]
fn traceparent_is_written_as_version_00_lower_case() {
    let mut s = String::new();
    format_traceparent(&ctx(0x81), &mut s).unwrap();
    assert_eq!(s, format!("00-{T}-{S}-81"));
    assert_eq!(parse_traceparent(&s), Ok(ctx(0x81)));
}

#[test]
fn tracestate_vectors() {
    use TraceStateError::*;
    let long = |c: char, n: usize| c.to_string().repeat(n);
    let members = |n: usize| {
        (0..n)
            .map(|i| format!("k{i}=v{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let cases: Vec<(String, Result<Pairs, TraceStateError>)> = vec![
        // The spec's examples.
        (
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".into(),
            Ok(vec![("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")]),
        ),
        (
            "congo=t61rcWkgMzE".into(),
            Ok(vec![("congo", "t61rcWkgMzE")]),
        ),
        (
            "fw529a3039@dt=ZTdjY2YxMWRkOTY1OTA5MQ".into(),
            Ok(vec![("fw529a3039@dt", "ZTdjY2YxMWRkOTY1OTA5MQ")]),
        ),
        // OWS around members, empty members.
        (
            "foo=1 ,\tbar=2".into(),
            Ok(vec![("foo", "1"), ("bar", "2")]),
        ),
        ("foo=1,,bar=2,".into(), Ok(vec![("foo", "1"), ("bar", "2")])),
        (" , ,".into(), Ok(vec![])),
        ("".into(), Ok(vec![])),
        // Value: spaces inside, not at the end; 256 characters at most.
        ("foo=a b".into(), Ok(vec![("foo", "a b")])),
        ("foo=!\"#+-<>~".into(), Ok(vec![("foo", "!\"#+-<>~")])),
        (format!("foo={}", long('v', 256)), Ok(vec![])),
        (format!("foo={}", long('v', 257)), Err(Value)),
        ("foo=".into(), Err(Value)),
        ("foo= ".into(), Err(Value)),
        ("foo=a=b".into(), Err(Value)),
        ("foo=caf\u{e9}".into(), Err(Value)),
        ("foo=a\x7f".into(), Err(Value)),
        // Keys: simple (lower-case letter first) or tenant@system.
        ("a_-*/9=x".into(), Ok(vec![("a_-*/9", "x")])),
        ("1tenant@sys=x".into(), Ok(vec![("1tenant@sys", "x")])),
        (format!("{}=x", long('k', 256)), Ok(vec![])),
        (format!("{}=x", long('k', 257)), Err(Key)),
        (format!("{}@s=x", long('t', 241)), Ok(vec![])),
        (format!("{}@s=x", long('t', 242)), Err(Key)),
        (format!("t@{}=x", long('s', 14)), Ok(vec![])),
        (format!("t@{}=x", long('s', 15)), Err(Key)),
        ("1foo=x".into(), Err(Key)),
        ("Foo=x".into(), Err(Key)),
        ("t@1sys=x".into(), Err(Key)),
        ("@sys=x".into(), Err(Key)),
        ("t@=x".into(), Err(Key)),
        ("t@s@x=x".into(), Err(Key)),
        ("fo o=x".into(), Err(Key)),
        ("=x".into(), Err(Key)),
        ("foo".into(), Err(Member)),
        // Duplicates and more than 32 members.
        ("foo=1,bar=2,foo=3".into(), Err(Duplicate)),
        (members(32), Ok(vec![])),
        (members(33), Err(TooMany)),
        (format!("{},,,", members(32)), Ok(vec![])),
    ];
    for (input, want) in cases {
        let got = TraceState::parse(&input);
        match (&got, &want) {
            (Ok(ts), Ok(w)) if !w.is_empty() => {
                assert_eq!(ts.iter().collect::<Vec<_>>(), *w, "{input:?}")
            }
            (Ok(_), Ok(_)) => {}
            _ => assert_eq!(got.map(|_| ()), want.map(|_| ()), "{input:?}"),
        }
    }
}

#[test]
fn tracestate_update_moves_to_front_and_delete_removes() {
    let mut ts = TraceState::parse("congo=congosFirstPosition,rojo=00f067aa0ba902b7").unwrap();
    ts.insert("rojo", "00f067aa0ba902b8").unwrap();
    assert_eq!(
        ts.to_string(),
        "rojo=00f067aa0ba902b8,congo=congosFirstPosition"
    );
    ts.insert("fw529a3039@dt", "x").unwrap();
    assert_eq!(ts.iter().next(), Some(("fw529a3039@dt", "x")));
    assert_eq!(ts.remove("congo").as_deref(), Some("congosFirstPosition"));
    assert_eq!(ts.remove("congo"), None);
    assert_eq!(ts.to_string(), "fw529a3039@dt=x,rojo=00f067aa0ba902b8");
    assert_eq!(ts.insert("Bad", "x"), Err(TraceStateError::Key));
    assert_eq!(ts.insert("ok", "a,b"), Err(TraceStateError::Value));
    // A 33rd member pushes the rightmost out.
    let mut full = TraceState::parse(
        &(0..32)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(","),
    )
    .unwrap();
    let out = full.insert("new", "v").unwrap();
    assert_eq!(out, Some(("k31".into(), "v".into())));
    assert_eq!(full.len(), 32);
    assert_eq!(full.header_len(), full.to_string().len());
}

#[test]
fn baggage_vectors() {
    let l = BaggageLimits::default();
    let cases: Vec<(&str, Pairs, u32)> = vec![
        // The spec's examples.
        ("key1=value1,key2=value2", vec![("key1", "value1"), ("key2", "value2")], 0),
        ("key1 = value1, key2 = value2", vec![("key1", "value1"), ("key2", "value2")], 0),
        (
            "key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue",
            vec![("key1", "value1"), ("key2", "value2"), ("key3", "value3")],
            0,
        ),
        (
            "userId=alice,serverNode=DF%2028,isProduction=false",
            vec![("userId", "alice"), ("serverNode", "DF 28"), ("isProduction", "false")],
            0,
        ),
        // Percent-decoding to UTF-8; non-UTF-8 becomes U+FFFD; a stray % stays.
        ("euro=%E2%82%AC,bad=%FF,pct=100%,lit=%2", vec![("euro", "\u{20ac}"), ("bad", "\u{fffd}"), ("pct", "100%"), ("lit", "%2")], 0),
        // Empty value, empty members.
        ("k=,,x=1", vec![("k", ""), ("x", "1")], 0),
        // Bad members are skipped alone.
        ("a=1,bad key=2,c=3", vec![("a", "1"), ("c", "3")], 1),
        ("=v,k=\"q\",k2=a\\b,k3=a b,k4", vec![], 5),
        ("a=1;=x,b=2", vec![("b", "2")], 1),
        // A repeated key keeps its place and takes the last value.
        ("a=1,b=2,a=3", vec![("a", "3"), ("b", "2")], 0),
        // private: keys are accepted locally.
        ("private:user=alice,k=v", vec![("private:user", "alice"), ("k", "v")], 0),
        ("private:=x", vec![], 1),
    ];
    for (input, want, invalid) in cases {
        let (b, r) = Baggage::parse(input, l);
        let got: Vec<(&str, &str)> = b.iter().map(|e| (e.key(), e.value())).collect();
        assert_eq!(got, want, "{input:?}");
        assert_eq!(r.invalid, invalid, "{input:?}");
    }
    let (b, _) = Baggage::parse("key1=value1;property1;p2 = v2", l);
    let props: Vec<_> = b.entry("key1").unwrap().properties().collect();
    assert_eq!(props, vec![("property1", None), ("p2", Some("v2"))]);
    assert_eq!(b.to_string(), "key1=value1;property1;p2=v2");
}

#[test]
fn baggage_values_are_percent_encoded_on_output() {
    let mut b = Baggage::default();
    b.insert("k", "a b,c;d\\e\"f%g=h\u{20ac}").unwrap();
    assert_eq!(b.to_string(), "k=a%20b%2Cc%3Bd%5Ce%22f%25g=h%E2%82%AC");
    let (back, r) = Baggage::parse(&b.to_string(), BaggageLimits::default());
    assert_eq!(back.get("k"), b.get("k"));
    assert_eq!(r, Default::default());
    assert_eq!(b.header_len(), b.to_string().len());
    assert_eq!(b.insert("bad key", "v"), Err(baggage::BaggageError::Key));
    assert_eq!(
        b.insert_with_properties("k", "v", &[("p p", None)]),
        Err(baggage::BaggageError::Property)
    );
}

#[test]
fn baggage_supports_the_w3c_minimums_and_drops_past_the_config() {
    let l = BaggageLimits::default();
    assert_eq!((l.max_members, l.max_bytes), (64, 8192));
    // 64 members are kept.
    let h64 = (0..64)
        .map(|i| format!("k{i}=v"))
        .collect::<Vec<_>>()
        .join(",");
    let (b, r) = Baggage::parse(&h64, l);
    assert_eq!((b.len(), r.dropped), (64, 0));
    // 8192 bytes are kept.
    let big = format!("a={},b={}", "x".repeat(4000), "y".repeat(4187));
    assert_eq!(big.len(), 8192);
    let (b, r) = Baggage::parse(&big, l);
    assert_eq!((b.len(), r.dropped, b.header_len()), (2, 0, 8192));
    // Past the configured limits members are dropped whole and counted.
    let small = BaggageLimits {
        max_members: 3,
        max_bytes: 20,
    };
    let (b, r) = Baggage::parse("a=1,b=2,c=3,d=4", small);
    assert_eq!((b.len(), r.dropped), (3, 1));
    let (b, r) = Baggage::parse("a=1,long=xxxxxxxxxxxxxxxxxxxx,c=3", small);
    assert_eq!(b.to_string(), "a=1,c=3");
    assert_eq!(r.dropped, 1);
    let mut b = Baggage::new(small);
    b.insert("a", "1").unwrap();
    assert_eq!(
        b.insert("z", &"v".repeat(30)),
        Err(baggage::BaggageError::OverLimit)
    );
    // Via the propagator: counted.
    let p = Propagator::new(small);
    let hdrs: Vec<(String, String)> = vec![("baggage".into(), "a=1,b=2,c=3,d=4,e=5,f g=1".into())];
    let x = p.extract(&hdrs);
    assert_eq!(x.baggage.len(), 3);
    assert_eq!(
        (p.stats().baggage_dropped, p.stats().baggage_invalid),
        (2, 1)
    );
}

fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn extraction_rules() {
    let p = Propagator::default();
    let tp = format!("00-{T}-{S}-01");
    // Valid: parent with tracestate; header names are case-insensitive.
    let x = p.extract(&headers(&[
        ("TraceParent", &tp),
        ("TRACESTATE", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
        ("Baggage", "k=v"),
    ]));
    let parent = x.parent.unwrap();
    assert_eq!(parent.span, ctx(1));
    assert_eq!(parent.tracestate.get("congo"), Some("t61rcWkgMzE"));
    assert_eq!(x.baggage.get("k"), Some("v"));

    // Invalid traceparent: new trace, tracestate not even read; baggage kept.
    let x = p.extract(&headers(&[
        ("traceparent", &format!("ff-{T}-{S}-01")),
        ("tracestate", "foo=1,foo=2"),
        ("baggage", "k=v"),
    ]));
    assert_eq!(x.parent, None);
    assert_eq!(x.report.traceparent, Some(TraceparentError::Version));
    assert_eq!(x.report.tracestate, None);
    assert_eq!(x.baggage.get("k"), Some("v"));

    // Two traceparent headers: invalid.
    let x = p.extract(&headers(&[("traceparent", &tp), ("traceparent", &tp)]));
    assert_eq!(
        (x.parent, x.report.traceparent),
        (None, Some(TraceparentError::Multiple))
    );

    // Several tracestate headers are one list, joined in order.
    let x = p.extract(&headers(&[
        ("traceparent", &tp),
        ("tracestate", "a=1, b=2"),
        ("tracestate", ""),
        ("tracestate", "c=3"),
    ]));
    assert_eq!(x.parent.unwrap().tracestate.to_string(), "a=1,b=2,c=3");

    // Duplicates across headers, or 33 members in all: tracestate dropped, parent kept.
    let x = p.extract(&headers(&[
        ("traceparent", &tp),
        ("tracestate", "a=1"),
        ("tracestate", "a=2"),
    ]));
    let parent = x.parent.unwrap();
    assert!(parent.tracestate.is_empty());
    assert_eq!(x.report.tracestate, Some(TraceStateError::Duplicate));
    let h1 = (0..20)
        .map(|i| format!("a{i}=v"))
        .collect::<Vec<_>>()
        .join(",");
    let h2 = (0..13)
        .map(|i| format!("b{i}=v"))
        .collect::<Vec<_>>()
        .join(",");
    let x = p.extract(&headers(&[
        ("traceparent", &tp),
        ("tracestate", &h1),
        ("tracestate", &h2),
    ]));
    assert_eq!(x.report.tracestate, Some(TraceStateError::TooMany));
    assert!(x.parent.unwrap().tracestate.is_empty());

    // Several baggage headers are one list.
    let x = p.extract(&headers(&[("baggage", "a=1"), ("baggage", "b=2")]));
    assert_eq!(x.baggage.to_string(), "a=1,b=2");
    assert_eq!(x.parent, None);
    assert_eq!(x.report.traceparent, None, "absent is not invalid");

    let s = p.stats();
    assert_eq!((s.traceparent_invalid, s.tracestate_dropped), (2, 2));
}

#[test]
fn private_baggage_never_leaves_the_node() {
    let p = Propagator::default();
    let mut b = Baggage::default();
    b.insert("private:user", "alice").unwrap();
    b.insert("tenant", "acme").unwrap();
    b.insert("private:session", "s1").unwrap();
    let mut ts = TraceState::new();
    ts.insert("rojo", "1").unwrap();
    let tc = TraceContext {
        span: ctx(1),
        tracestate: ts,
    };

    let mut local: Vec<(String, String)> = Vec::new();
    assert_eq!(p.inject(&tc, &b, &mut local).private_dropped, 0);
    assert_eq!(
        Carrier::get(&local, "baggage"),
        Some("private:user=alice,tenant=acme,private:session=s1")
    );
    assert_eq!(Carrier::get(&local, "tracestate"), Some("rojo=1"));
    assert_eq!(
        Carrier::get(&local, "traceparent"),
        Some(format!("00-{T}-{S}-01").as_str())
    );
    let back = p.extract(&local);
    assert_eq!(back.baggage, b);
    assert_eq!(back.parent, Some(tc.clone()));

    let mut remote: Vec<(String, String)> = Vec::new();
    assert_eq!(p.inject_cross_node(&tc, &b, &mut remote).private_dropped, 2);
    assert_eq!(Carrier::get(&remote, "baggage"), Some("tenant=acme"));
    assert_eq!(p.stats().private_dropped, 2);

    // Only private baggage: no baggage header at all.
    let mut only = Baggage::default();
    only.insert("private:x", "1").unwrap();
    let mut remote: Vec<(String, String)> = Vec::new();
    p.inject_cross_node(&tc, &only, &mut remote);
    assert_eq!(Carrier::get(&remote, "baggage"), None);

    // Arriving from another node, private members are refused and counted.
    let x = p.extract_cross_node(&local);
    assert_eq!(x.baggage.to_string(), "tenant=acme");
    assert_eq!(x.report.baggage.private_dropped, 2);
    assert_eq!(p.stats().private_dropped, 5);
    let _ = Scope::Local;
}

#[test]
fn btreemap_carrier_is_case_insensitive() {
    let mut m = std::collections::BTreeMap::<String, String>::new();
    m.insert("TraceParent".into(), format!("00-{T}-{S}-00"));
    let p = Propagator::default();
    let x = p.extract(&m);
    assert_eq!(x.parent.unwrap().span, ctx(0));
    p.inject(&TraceContext::new(ctx(1)), &Baggage::default(), &mut m);
    assert_eq!(m.len(), 1);
    assert_eq!(
        Carrier::get(&m, "TRACEPARENT"),
        Some(format!("00-{T}-{S}-01").as_str())
    );
}

#[cfg(feature = "std")]
#[test]
fn http_header_map_carrier() {
    let mut h = http::HeaderMap::new();
    h.append("Traceparent", format!("00-{T}-{S}-01").parse().unwrap());
    h.append("tracestate", "a=1".parse().unwrap());
    h.append("TraceState", "b=2".parse().unwrap());
    h.append("baggage", "k=v".parse().unwrap());
    let p = Propagator::default();
    let x = p.extract(&h);
    assert_eq!(x.parent.as_ref().unwrap().tracestate.to_string(), "a=1,b=2");
    assert_eq!(x.baggage.get("k"), Some("v"));
    let mut out = http::HeaderMap::new();
    p.inject_cross_node(x.parent.as_ref().unwrap(), &x.baggage, &mut out);
    assert_eq!(out.get("traceparent").unwrap(), &format!("00-{T}-{S}-01"));
    assert_eq!(Carrier::get(&out, "TraceState"), Some("a=1,b=2"));
    assert_eq!(Carrier::get(&out, "BAGGAGE"), Some("k=v"));
}

proptest::proptest! {
    #[test]
    fn text_round_trip(t in 1u128.., s in 1u64.., f in proptest::num::u8::ANY,
                       ts in proptest::collection::vec(("[a-z][a-z0-9_*/-]{0,10}", "[!-+--<>-~]{1,20}"), 0..8),
                       bg in proptest::collection::vec(("[A-Za-z0-9!#$&'*+.^_`|~-]{1,10}", "\\PC{0,20}"), 0..8)) {
        let mut state = TraceState::new();
        for (k, v) in &ts { state.insert(k, v).unwrap(); }
        let mut bag = Baggage::default();
        for (k, v) in &bg { bag.insert(k, v).unwrap(); }
        let tc = TraceContext { span: SpanContext::new(TraceId::new(t).unwrap(), SpanId::new(s).unwrap(), TraceFlags::new(f)), tracestate: state };
        let p = Propagator::default();
        let mut h: Vec<(String, String)> = Vec::new();
        p.inject(&tc, &bag, &mut h);
        let x = p.extract(&h);
        proptest::prop_assert_eq!(x.parent, Some(tc));
        proptest::prop_assert_eq!(x.baggage, bag);
    }

    #[test]
    fn arbitrary_headers_never_panic(tp in "\\PC{0,80}", ts in "\\PC{0,200}", bg in "\\PC{0,200}") {
        let _ = parse_traceparent(&tp);
        let _ = TraceState::parse(&ts);
        let _ = Baggage::parse(&bg, BaggageLimits { max_members: 4, max_bytes: 64 });
        let p = Propagator::default();
        let _ = p.extract_cross_node(&headers(&[("traceparent", &tp), ("tracestate", &ts), ("baggage", &bg)]));
    }

    #[test]
    fn near_valid_traceparents_never_panic(prefix in "[0-9a-fA-F-]{0,60}", tail in "[ -~]{0,10}") {
        let _ = parse_traceparent(&format!("{prefix}{tail}"));
    }
}

/// A carrier that cannot list its headers: extraction looks each name up.
struct Lookups(Vec<(String, String)>);

impl nexus_trace::Carrier for Lookups {
    fn get(&self, name: &str) -> Option<&str> {
        nexus_trace::Carrier::get(&self.0, name)
    }
    fn set(&mut self, name: &str, value: &str) {
        nexus_trace::Carrier::set(&mut self.0, name, value);
    }
    fn for_each<'a>(&'a self, name: &str, f: &mut dyn FnMut(&'a str)) {
        nexus_trace::Carrier::for_each(&self.0, name, f);
    }
}

proptest::proptest! {
    /// One pass over a listing carrier and a lookup per name give the same
    /// extraction, repeated and mixed-case headers included.
    #[test]
    fn listing_and_lookups_extract_the_same(
        hs in proptest::collection::vec(
            (proptest::sample::select(vec!["traceparent", "TraceParent", "tracestate", "TRACESTATE", "baggage", "Baggage", "other"]),
             proptest::sample::select(vec![
                 "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
                 "rojo=00f067aa0ba902b7".to_string(),
                 "congo=t61rcWkgMzE,rojo=1".to_string(),
                 "k=v,private:x=1".to_string(),
                 "bad value".to_string(),
             ])),
            0..6)
    ) {
        let list: Vec<(String, String)> = hs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let p = Propagator::default();
        for scope in [Scope::Local, Scope::CrossNode] {
            let a = p.extract_scoped(&list, scope);
            let b = p.extract_scoped(&Lookups(list.clone()), scope);
            proptest::prop_assert_eq!(a, b);
        }
    }
}
