//! The `obs.traces` frames: exact layouts, round trips, and every way a
//! body is refused (never a panic).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use proptest::prelude::*;
use traced::link::{self, LinkError, LinkFrame, SpansBody, MAX_LINK_BODY, MAX_LINK_SPANS};

#[test]
fn layouts_are_exact_and_round_trip() {
    assert_eq!(link::hello(), [1, 1]);
    assert_eq!(
        link::decode(&link::hello()),
        Ok(LinkFrame::Hello { version: 1 })
    );
    let p = link::ping(0x0102_0304, 0x1122_3344_5566_7788);
    assert_eq!(
        p,
        [2, 4, 3, 2, 1, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
    );
    assert_eq!(
        link::decode(&p),
        Ok(LinkFrame::Ping {
            seq: 0x0102_0304,
            t1: 0x1122_3344_5566_7788
        })
    );
    let q = link::pong(7, 1, 2, 3);
    assert_eq!(q.len(), 29);
    assert_eq!(
        link::decode(&q),
        Ok(LinkFrame::Pong {
            seq: 7,
            t1: 1,
            t2: 2,
            t3: 3
        })
    );
    let mut b = SpansBody::new();
    let a = common::record(9, 1, None, 10, 20);
    let c = common::record(9, 2, Some(1), 12, 18);
    assert!(b.push(40, &a).unwrap());
    assert!(b.push(41, &c).unwrap());
    let body = b.finish().unwrap();
    assert_eq!(&body[..2], [4, 2]);
    assert_eq!(&body[2..6], 40u32.to_le_bytes());
    assert_eq!(
        link::decode(&body),
        Ok(LinkFrame::Spans(vec![(40, a), (41, c)]))
    );
    assert_eq!(
        SpansBody::new().finish(),
        None,
        "an empty body is never sent"
    );
}

#[test]
fn a_body_holds_at_most_its_span_cap_and_byte_bound() {
    let mut b = SpansBody::new();
    for i in 0..u64::from(MAX_LINK_SPANS) {
        assert!(b.push(1, &common::record(5, i + 1, None, 0, 1)).unwrap());
    }
    assert!(!b.push(1, &common::record(5, 999, None, 0, 1)).unwrap());
    assert_eq!(b.count(), MAX_LINK_SPANS);
    // Big spans: the byte bound ends the body first.
    let mut b = SpansBody::new();
    let mut n = 0;
    loop {
        let mut r = common::record(5, n + 1, None, 0, 1);
        r.attrs = (0..8).map(|k| (format!("k{k}"), "v".repeat(200))).collect();
        if !b.push(1, &r).unwrap() {
            break;
        }
        n += 1;
    }
    let body = b.finish().unwrap();
    assert!(body.len() <= MAX_LINK_BODY && n < u64::from(MAX_LINK_SPANS));
    assert!(matches!(link::decode(&body), Ok(LinkFrame::Spans(s)) if s.len() as u64 == n));
}

#[test]
fn test_reject_unknown_kinds_and_versions() {
    assert_eq!(link::decode(&[9, 0]), Err(LinkError::UnknownKind(9)));
    assert_eq!(link::decode(&[0]), Err(LinkError::UnknownKind(0)));
    assert_eq!(link::decode(&[1, 2]), Err(LinkError::Version(2)));
    assert_eq!(link::decode(&[1, 0]), Err(LinkError::Version(0)));
}

#[test]
fn test_reject_span_counts_out_of_range() {
    assert_eq!(link::decode(&[4, 0]), Err(LinkError::Count(0)));
    assert_eq!(
        link::decode(&[4, MAX_LINK_SPANS + 1]),
        Err(LinkError::Count(MAX_LINK_SPANS + 1))
    );
}

#[test]
fn test_reject_truncated_and_trailing_bytes() {
    let mut b = SpansBody::new();
    b.push(3, &common::record(1, 1, None, 0, 1)).unwrap();
    let body = b.finish().unwrap();
    for good in [
        link::hello(),
        link::ping(1, 2),
        link::pong(1, 2, 3, 4),
        body,
    ] {
        for n in 0..good.len() {
            assert!(
                matches!(link::decode(&good[..n]), Err(LinkError::Malformed(_))),
                "prefix {n} of {good:?}"
            );
        }
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(link::decode(&long), Err(LinkError::Malformed(_))));
    }
}

#[test]
fn test_reject_oversized_bodies() {
    let big = vec![4u8; MAX_LINK_BODY + 1];
    assert_eq!(link::decode(&big), Err(LinkError::TooLarge));
}

#[test]
fn test_reject_malformed_span_inside_a_batch() {
    let mut b = SpansBody::new();
    b.push(3, &common::record(1, 1, None, 0, 1)).unwrap();
    let mut body = b.finish().unwrap();
    // The trace id of the span (after kind, count, service) zeroed.
    for x in &mut body[6..22] {
        *x = 0;
    }
    assert!(matches!(link::decode(&body), Err(LinkError::Malformed(_))));
}

proptest! {
    #[test]
    fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = link::decode(&bytes);
    }

    #[test]
    fn mutated_batches_never_panic(flip in 0usize..400, to in any::<u8>()) {
        let mut b = SpansBody::new();
        b.push(3, &common::record(1, 1, None, 0, 1)).unwrap();
        b.push(4, &common::record(1, 2, Some(1), 0, 1)).unwrap();
        let mut body = b.finish().unwrap();
        let i = flip % body.len();
        body[i] = to;
        let _ = link::decode(&body);
    }
}
