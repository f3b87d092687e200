//! Hardening: every reject status, with exact counters.
//! Run just these with `cargo test -p logd -- reject`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;

const SEC: u64 = 1_000_000_000;

use logd::Config;
use nexus_log::proto::{self, QueryRequest, Reply, Status};
use nexus_log::{limits, FieldType, Level};

/// The guaranteed minimum record limits (`nexus_log::limits`), with a
/// longer message so that the record bound itself can be passed.
fn guaranteed_cfg() -> Config {
    let mut cfg = unlimited(Config::default());
    cfg.record.max_value_len = limits::GUARANTEED_VALUE_LEN as u32; // 128
    cfg.record.max_key_len = limits::GUARANTEED_KEY_LEN as u32; // 32
    cfg.record.max_fields = limits::GUARANTEED_FIELDS as u32; // 32
    cfg.record.max_fields_bytes = limits::GUARANTEED_FIELDS_BYTES as u32; // 1862
    cfg.record.max_target_len = limits::GUARANTEED_TARGET_LEN as u32; // 32
    cfg.record.max_message_len = 512;
    cfg.record.max_record_bytes = limits::GUARANTEED_RECORD_BYTES as u32; // 2048
    cfg
}

/// `n` fields `fNN=<128 x>`: 133 bytes each.
fn wide_fields(n: usize) -> String {
    (0..n)
        .map(|i| format!("f{i:02}={}\n", "x".repeat(128)))
        .collect()
}

#[test]
fn test_reject_log_append_oversized_fields() {
    let mut l = logd(guaranteed_cfg());
    let me = sid(1);
    let long_value = "v".repeat(129);
    let cases: Vec<(&str, String)> = vec![
        ("value over max_value_len", format!("k={long_value}\n")),
        ("key over max_key_len", format!("{}=1\n", "a".repeat(33))),
        (
            "typed key over max_key_len",
            format!("{}:i=1\n", "a".repeat(33)),
        ),
        (
            "too many fields",
            (0..33).map(|i| format!("f{i:02}=1\n")).collect(),
        ),
        ("fields text over max_fields_bytes", wide_fields(15)),
    ];
    for (what, f) in &cases {
        let frame = append_frame(11, Level::Info.as_u8(), "t", "m", f);
        let (nonce, r) = reply(&mut l, 0, me, &frame);
        assert_eq!(r, Reply::Rejected(Status::OverLimit), "{what}");
        assert_eq!(nonce, 11, "nonce echoed on reject");
    }
    // Message too long, and a record whose parts fit but whose total does not.
    let frame = append_frame(12, 2, "t", &"m".repeat(513), "");
    assert_eq!(
        reply(&mut l, 0, me, &frame).1,
        Reply::Rejected(Status::OverLimit)
    );
    // 26 + 8 + 512 + 1862 = 2408 > 2048
    let frame = append_frame(13, 2, "tttttttt", &"m".repeat(512), &wide_fields(14));
    assert_eq!(
        reply(&mut l, 0, me, &frame).1,
        Reply::Rejected(Status::OverLimit)
    );

    let s = stats(&mut l, 0, me);
    assert_eq!(s.rejects.over_limit, 7);
    assert_eq!(s.records, 0, "nothing was stored, nothing was truncated");
    assert_eq!(s.senders[0].rejected, 7);

    // At the limits exactly: accepted and read back byte for byte.
    let at_limit = wide_fields(14);
    assert_eq!(at_limit.len(), limits::GUARANTEED_FIELDS_BYTES);
    // 26 + 1 + 159 + 1862 = 2048
    let msg = "m".repeat(159);
    let frame = append_frame(14, 2, "t", &msg, &at_limit);
    assert!(matches!(reply(&mut l, 0, me, &frame).1, Reply::Appended(1)));
    let page = query(&mut l, 0, me, &QueryRequest::all(10)).unwrap();
    assert_eq!(page.records.len(), 1);
    assert_eq!(page.records[0].message, msg);
    assert_eq!(page.records[0].fields.as_str(), at_limit);
}

#[test]
fn logd_refuses_record_limits_below_the_guarantee() {
    assert_eq!(Config::default().validate(MAX_FRAME), Ok(()));
    assert_eq!(guaranteed_cfg().validate(MAX_FRAME), Ok(()));
    let mut c = guaranteed_cfg();
    c.record.max_key_len -= 1;
    assert_eq!(
        c.validate(MAX_FRAME),
        Err(logd::config::ConfigError::BelowGuaranteed(
            "record.max_key_len"
        ))
    );
    let mut c = guaranteed_cfg();
    c.record.max_record_bytes -= 1;
    assert_eq!(
        c.validate(MAX_FRAME),
        Err(logd::config::ConfigError::BelowGuaranteed(
            "record.max_record_bytes"
        ))
    );
}

#[test]
fn test_reject_log_append_rate_limited_sender() {
    let mut cfg = Config::default();
    cfg.rate.events_per_sec = 10;
    cfg.rate.events_burst = 5;
    let mut l = logd(cfg);
    let (noisy, quiet) = (sid(1), sid(2));
    for i in 0..5 {
        assert!(append(&mut l, 0, noisy, &format!("m{i}")).is_ok());
    }
    assert_eq!(append(&mut l, 0, noisy, "over"), Err(Status::RateLimited));
    assert_eq!(append(&mut l, 0, noisy, "over"), Err(Status::RateLimited));
    // Another sender has its own bucket.
    assert!(append(&mut l, 0, quiet, "hello").is_ok());
    // 100 ms at 10/s refills exactly one event.
    assert!(append(&mut l, SEC / 10, noisy, "refilled").is_ok());
    assert_eq!(
        append(&mut l, SEC / 10, noisy, "again"),
        Err(Status::RateLimited)
    );
    let s = stats(&mut l, SEC / 10, noisy);
    assert_eq!(s.rejects.rate_limited, 3);
    assert_eq!(s.senders[0].rejected, 3);
    assert_eq!(s.senders[0].records, 6);

    // The byte bucket limits too: 2 KiB burst, frames of ~1 KiB.
    let mut cfg = Config::default();
    cfg.rate.bytes_per_sec = 1024;
    cfg.rate.bytes_burst = 2048;
    cfg.record.max_record_bytes = 2048;
    let mut l = logd(cfg);
    let big = "b".repeat(1000);
    assert!(append(&mut l, 0, noisy, &big).is_ok());
    assert!(append(&mut l, 0, noisy, &big).is_ok());
    assert_eq!(append(&mut l, 0, noisy, &big), Err(Status::RateLimited));
    assert!(append(&mut l, SEC, noisy, &big).is_ok());
}

#[test]
fn test_reject_log_payload_identity_spoof() {
    let mut l = logd(unlimited(Config::default()));
    let me = sid(5);
    for key in ["sender_service_id", "service_id", "sender"] {
        let f = format!("{key}=42\n");
        let frame = append_frame(1, 2, "t", "i am 42", &f);
        assert_eq!(
            reply(&mut l, 0, me, &frame).1,
            Reply::Rejected(Status::InvalidArgs),
            "{key}"
        );
    }
    let s = stats(&mut l, 0, me);
    assert_eq!(s.identity_spoofs, 3);
    assert_eq!(s.rejects.invalid_args, 3);
    assert_eq!(s.records, 0);
    // The only identity a record carries is the transport's.
    let id = append_with(
        &mut l,
        0,
        me,
        Level::Warn,
        "honest",
        &fields(&[("peer", "42")]),
    )
    .unwrap();
    let page = query(&mut l, 0, READER, &QueryRequest::all(10)).unwrap();
    assert_eq!(page.records[0].id, id);
    assert_eq!(page.records[0].sender, me);
}

#[test]
fn reject_invalid_args_for_bad_values() {
    let mut l = logd(unlimited(Config::default()));
    let me = sid(1);
    let bad = [
        append_frame(1, 9, "t", "level 9", ""),
        append_frame(2, 2, "", "empty target", ""),
        append_frame(3, 2, "bad\ttarget", "control char", ""),
        append_frame(4, 2, "t", "unsorted", "b=1\na=2\n"),
        append_frame(5, 2, "t", "bad key", "Key=1\n"),
        append_frame(6, 2, "t", "reserved key", "level=1\n"),
        append_frame(7, 2, "t", "unterminated", "a=1"),
    ];
    for f in &bad {
        assert_eq!(
            reply(&mut l, 0, me, f).1,
            Reply::Rejected(Status::InvalidArgs)
        );
    }
    let mut q = QueryRequest::all(0);
    assert_eq!(
        query(&mut l, 0, me, &q),
        Err(Status::InvalidArgs),
        "max_count 0"
    );
    q.max_count = 1;
    q.min_level = 5;
    assert_eq!(
        query(&mut l, 0, me, &q),
        Err(Status::InvalidArgs),
        "bad level"
    );
    q.min_level = 0;
    q.since_ns = 10;
    q.until_ns = 9;
    assert_eq!(
        query(&mut l, 0, me, &q),
        Err(Status::InvalidArgs),
        "empty window"
    );
    // A cursor from the future (another journal) is refused, not skipped to.
    let mut q = QueryRequest::all(1);
    q.cursor = 1;
    assert!(
        query(&mut l, 0, me, &q).is_ok(),
        "next_id is a valid cursor"
    );
    q.cursor = 5000;
    assert_eq!(
        query(&mut l, 0, me, &q),
        Err(Status::InvalidArgs),
        "future cursor"
    );
    assert_eq!(stats(&mut l, 0, me).rejects.invalid_args, 11);
}

#[test]
fn reject_malformed_and_unsupported_with_nonce_echoed() {
    let mut l = logd(Config::default());
    let me = sid(1);
    let good = append_frame(77, 2, "t", "m", "");
    // Truncated body.
    let (n, r) = reply(&mut l, 0, me, &good[..good.len() - 1]);
    assert_eq!((n, r), (77, Reply::Rejected(Status::Malformed)));
    // Trailing byte.
    let mut long = good.clone();
    long.push(0);
    assert_eq!(
        reply(&mut l, 0, me, &long).1,
        Reply::Rejected(Status::Malformed)
    );
    // Unknown version (1 and 2 are known) and unknown op.
    let mut v3 = good.clone();
    v3[2] = 3;
    assert_eq!(
        reply(&mut l, 0, me, &v3),
        (77, Reply::Rejected(Status::Unsupported))
    );
    let mut op = good.clone();
    op[3] = 0x33;
    assert_eq!(
        reply(&mut l, 0, me, &op).1,
        Reply::Rejected(Status::Unsupported)
    );
    // A reply-typed frame sent as a request: counted, never answered (two
    // servers must not bounce frames), and neither is a one-way frame.
    let mut rep = good.clone();
    rep[3] |= 0x80;
    let h = l.handle(0, me, &rep);
    assert_eq!((h.reply, h.status), (None, Some(Status::Unsupported)));
    let mut oneway_v3 = good.clone();
    oneway_v3[2] = 3;
    oneway_v3[3] = proto::op::APPEND_ONEWAY;
    let h = l.handle(0, me, &oneway_v3);
    assert_eq!((h.reply, h.status), (None, Some(Status::Unsupported)));
    // No header at all: nothing to echo, so no reply; still counted.
    let h = l.handle(0, me, b"LG");
    assert_eq!((h.reply, h.status), (None, None));
    let h = l.handle(0, me, b"XX\x01\x01\0\0\0\0\0\0\0\0");
    assert_eq!(h.reply, None);
    // A malformed one-way append is counted but not answered.
    let mut oneway = proto::encode_append(
        5,
        true,
        &nexus_log::proto::AppendRequest {
            level: 2,
            target: "t",
            message: "m",
            fields: "",
        },
    )
    .unwrap();
    oneway.pop();
    let h = l.handle(0, me, &oneway);
    assert_eq!((h.reply, h.status), (None, Some(Status::Malformed)));
    let s = stats(&mut l, 0, me);
    assert_eq!(s.rejects.malformed, 5);
    assert_eq!(s.rejects.unsupported, 4);
}

#[test]
fn reject_oneway_appends_are_counted_per_sender() {
    let mut cfg = Config::default();
    cfg.rate.events_burst = 1;
    cfg.rate.events_per_sec = 1;
    let mut l = logd(cfg);
    let me = sid(3);
    let body = nexus_log::proto::AppendRequest {
        level: 2,
        target: "t",
        message: "m",
        fields: "",
    };
    for n in 0..3 {
        let h = l.handle(0, me, &proto::encode_append(n, true, &body).unwrap());
        assert_eq!(h.reply, None);
    }
    let s = stats(&mut l, 0, me);
    assert_eq!(s.senders[0].records, 1);
    assert_eq!(s.senders[0].rejected, 2);
    assert_eq!(s.rejects.rate_limited, 2);
}

fn with_version(mut frame: Vec<u8>, version: u8) -> Vec<u8> {
    frame[2] = version;
    frame
}

#[test]
fn typed_values_need_version_2_and_v1_readers_get_strings() {
    let mut l = logd(unlimited(Config::default()));
    let me = sid(3);
    let typed = "ok:b=true\npath=/a\nstatus:i=200\n";
    let frame = append_frame(1, Level::Info.as_u8(), "t", "m", typed);
    assert_eq!(
        frame[2],
        proto::VERSION_TYPED,
        "typed fields go in version 2"
    );
    assert!(matches!(reply(&mut l, 0, me, &frame).1, Reply::Appended(1)));

    // The same fields in a version 1 frame break the version 1 grammar.
    let v1 = with_version(frame.clone(), proto::VERSION);
    assert_eq!(
        reply(&mut l, 0, me, &v1).1,
        Reply::Rejected(Status::InvalidArgs)
    );

    // Untyped fields: a version 1 frame, exactly the bytes version 1 sent.
    let plain = append_frame(1, 2, "t", "m", "a=1\n");
    assert_eq!(
        plain,
        [
            &b"LG\x01\x01"[..],
            &1u64.to_le_bytes(),
            &[2, 1, b't', 1, 0, b'm', 4, 0],
            b"a=1\n"
        ]
        .concat()
    );
    assert!(matches!(reply(&mut l, 0, me, &plain).1, Reply::Appended(2)));

    // A version 2 reader gets the typed values back.
    let q = QueryRequest::all(10);
    let (h, r) = proto::decode_reply(
        &l.handle(
            0,
            me,
            &proto::encode_query_version(5, proto::VERSION_TYPED, &q),
        )
        .reply
        .unwrap(),
    )
    .unwrap();
    assert_eq!(h.version, proto::VERSION_TYPED);
    let Reply::Page(p) = r else { panic!() };
    assert_eq!(p.records[0].fields.as_str(), typed);
    assert_eq!(
        p.records[0].fields.get_typed("status"),
        Some((FieldType::Int, "200"))
    );

    // A version 1 reader gets every value as a string, in a version 1 reply.
    let raw = l.handle(0, me, &proto::encode_query(6, &q)).reply.unwrap();
    let (h, r) = proto::decode_reply(&raw).unwrap();
    assert_eq!(h.version, proto::VERSION);
    let Reply::Page(p) = r else { panic!() };
    assert_eq!(
        p.records[0].fields.as_str(),
        "ok=true\npath=/a\nstatus=200\n"
    );
    assert_eq!(p.records[1].fields.as_str(), "a=1\n");
    // ...and a page without typed records is the zero-copy frame.
    let mut only_plain = q;
    only_plain.cursor = 2;
    let raw = l
        .handle(0, me, &proto::encode_query(7, &only_plain))
        .reply
        .unwrap();
    assert_eq!(proto::untype_page(&raw), None);

    // Bad typed values and unknown markers are invalid.
    for bad in ["a:i=1.5\n", "a:q=1\n", "a:b=yes\n", "a:f=NaN\n"] {
        let f = append_frame(8, 2, "t", "m", bad);
        assert_eq!(
            reply(&mut l, 0, me, &f).1,
            Reply::Rejected(Status::InvalidArgs),
            "{bad}"
        );
    }
    // An identity claim behind a type marker is still a claim.
    let spoof = append_frame(9, 2, "t", "m", "sender:i=1\n");
    assert_eq!(
        reply(&mut l, 0, me, &spoof).1,
        Reply::Rejected(Status::InvalidArgs)
    );
    assert_eq!(stats(&mut l, 0, me).identity_spoofs, 1);

    // An unknown version is answered `unsupported` in the highest version.
    let future = with_version(plain, 9);
    let (h, r) = proto::decode_reply(&l.handle(0, me, &future).reply.unwrap()).unwrap();
    assert_eq!(
        (h.version, r),
        (proto::VERSION_TYPED, Reply::Rejected(Status::Unsupported))
    );
}
