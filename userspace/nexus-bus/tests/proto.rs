//! The busd frames: exact layouts, round trips, arbitrary bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use nexus_bus::proto::*;
use nexus_wire::{Header, Rejects, Status};
use proptest::prelude::*;

#[test]
fn open_layout_is_exact() {
    let f = encode_request(
        0x0102,
        &Request::Open {
            peer: DeviceId([1, 2, 3, 4, 5, 6, 7, 8]),
            name: "obs.logs",
            trace: Some(b"tp"),
        },
    )
    .unwrap();
    let mut want = vec![b'B', b'S', 1, 3, 2, 1, 0, 0, 0, 0, 0, 0];
    want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 8]);
    want.extend_from_slice(b"obs.logs");
    want.extend_from_slice(&[2, b't', b'p']);
    assert_eq!(f, want);
    let (h, r) = decode_request(&f).unwrap();
    assert_eq!(h.nonce, 0x0102);
    assert_eq!(
        r,
        Request::Open {
            peer: DeviceId([1, 2, 3, 4, 5, 6, 7, 8]),
            name: "obs.logs",
            trace: Some(&b"tp"[..]),
        }
    );
}

#[test]
fn bad_frames_are_classified() {
    assert_eq!(decode_request(b"XX"), Err(RequestError::NoHeader));
    let h = Header::request(MAGIC, 2, 1, 5);
    let mut f = Vec::new();
    h.emit(&mut f);
    assert_eq!(decode_request(&f), Err(RequestError::Unsupported(h)));
    let h = Header::request(MAGIC, 1, 99, 5);
    let mut f = Vec::new();
    h.emit(&mut f);
    assert_eq!(decode_request(&f), Err(RequestError::Unsupported(h)));
    let h = Header::request(MAGIC, 1, Op::Send.as_u8(), 5);
    let mut f = Vec::new();
    h.emit(&mut f);
    f.extend_from_slice(&[1, 0, 0]);
    assert_eq!(decode_request(&f), Err(RequestError::Malformed(h)));
    let mut ok = encode_request(5, &Request::Peers).unwrap();
    ok.push(0);
    assert!(matches!(
        decode_request(&ok),
        Err(RequestError::Malformed(_))
    ));
}

fn name() -> impl Strategy<Value = String> {
    "[a-z.]{1,20}"
}

fn request() -> impl Strategy<Value = (u8, Vec<u8>, String, Vec<u8>, u32, u16)> {
    (
        1u8..=11,
        proptest::collection::vec(any::<u8>(), 8),
        name(),
        proptest::collection::vec(any::<u8>(), 0..40),
        any::<u32>(),
        any::<u16>(),
    )
}

proptest! {
    #[test]
    fn requests_round_trip((op, p, n, data, h, max) in request(), nonce in any::<u64>()) {
        let peer = DeviceId(p.try_into().unwrap());
        let handle = Handle(h);
        let req = match Op::from_u8(op).unwrap() {
            Op::Listen => Request::Listen(&n),
            Op::Unlisten => Request::Unlisten(&n),
            Op::Open => Request::Open { peer, name: &n, trace: (!data.is_empty()).then_some(&data[..]) },
            Op::Send => Request::Send { handle, data: &data },
            Op::Recv => Request::Recv { handle, max },
            Op::Close => Request::Close(handle),
            Op::Reset => Request::Reset(handle),
            Op::Peers => Request::Peers,
            Op::Stats => Request::Stats,
            Op::Watch => Request::Watch,
            Op::Drop => Request::Drop(peer),
        };
        let f = encode_request(nonce, &req).unwrap();
        let (h2, back) = decode_request(&f).unwrap();
        prop_assert_eq!(h2.nonce, nonce);
        prop_assert_eq!(back, req);
        for c in 0..f.len() {
            prop_assert!(decode_request(&f[..c]).is_err());
        }
    }

    #[test]
    fn replies_and_events_round_trip(op in 1u8..=11, s in 0u8..8, data in proptest::collection::vec(any::<u8>(), 0..40), n in any::<u32>(), seq in any::<u64>(), kind in 1u8..=7) {
        let op_e = Op::from_u8(op).unwrap();
        let status = Status::from_u8(s).unwrap();
        let reply = if status != Status::Ok { Reply::Rejected(status) } else {
            match op_e {
                Op::Open => Reply::Opened(Handle(n)),
                Op::Send => Reply::Sent(n),
                Op::Recv => Reply::Data { fin: n % 2 == 0, data: data.clone() },
                Op::Peers => Reply::Peers(vec![PeerInfo { id: DeviceId([7; 8]), up: true, sessions: n }]),
                Op::Stats => Reply::Stats(BusStats { sessions: u64::from(n), ..BusStats::default() }, Rejects { denied: 3, unavailable: 4, ..Rejects::default() }),
                _ => Reply::Done,
            }
        };
        let req = Header::request(MAGIC, VERSION, op, seq);
        let f = encode_reply(&req, &reply);
        prop_assert_eq!(decode_reply(&f).unwrap(), (req.reply(), reply));
        let e = match EventKind::from_u8(kind).unwrap() {
            EventKind::PeerUp => BusEvent::PeerUp(DeviceId([1; 8])),
            EventKind::PeerDown => BusEvent::PeerDown(DeviceId([2; 8])),
            EventKind::Incoming => BusEvent::Incoming { handle: Handle(n), peer: DeviceId([3; 8]), name: "x.y".into(), trace: (!data.is_empty()).then(|| data.clone()) },
            EventKind::Readable => BusEvent::Readable(Handle(n)),
            EventKind::Writable => BusEvent::Writable(Handle(n)),
            EventKind::Closed => BusEvent::Closed(Handle(n)),
            EventKind::Reset => BusEvent::Reset { handle: Handle(n), reason: s },
        };
        let f = encode_event(seq, &e);
        prop_assert_eq!(decode_event(&f).unwrap(), (seq, e));
        prop_assert!(decode_reply(&f).is_err(), "an event is not a reply");
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), tail in proptest::collection::vec(any::<u8>(), 0..64), op in any::<u8>()) {
        let _ = decode_request(&bytes);
        let _ = decode_reply(&bytes);
        let _ = decode_event(&bytes);
        let mut f = vec![b'B', b'S', 1, op, 0, 0, 0, 0, 0, 0, 0, 0];
        f.extend_from_slice(&tail);
        let _ = decode_request(&f);
        let _ = decode_reply(&f);
        let _ = decode_event(&f);
    }
}

#[test]
fn the_agent_forgets_the_oldest_request_when_full_never_refuses_forever() {
    use nexus_bus::agent::MAX_PENDING;
    use nexus_bus::BusAgent;
    let busd = nexus_ipc::ServiceId::new(1);
    let mut agent = BusAgent::new(busd);
    let mut sent = 0;
    let mut send = |_: nexus_ipc::ServiceId, _: &[u8]| {
        sent += 1;
        true
    };
    for _ in 0..MAX_PENDING + 10 {
        assert!(agent.watch(&mut send));
    }
    assert_eq!(agent.pending(), MAX_PENDING);
    assert_eq!(agent.forgotten(), 10);
}

/// busd also speaks other services' protocols to them (it registers its
/// own metrics with metricsd, which is itself a busd client): the agent
/// leaves such frames to the service instead of swallowing them.
#[test]
fn the_agent_takes_only_busd_protocol_frames_from_busd() {
    use nexus_bus::BusAgent;
    let busd = nexus_ipc::ServiceId::new(1);
    let mut agent = BusAgent::new(busd);
    // A metricsd REGISTER-like frame from busd: not the agent's.
    let other = [b'M', b'T', 1, 1, 9, 0, 0, 0, 0, 0, 0, 0, 3];
    assert_eq!(agent.on_frame(busd, &other), None);
    // From another service: not the agent's either.
    assert_eq!(
        agent.on_frame(nexus_ipc::ServiceId::new(2), b"BS\x01"),
        None
    );
    // busd's protocol, even a reply nobody waits for: the agent's.
    let stray = [b'B', b'S', 1, 0x81, 7, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(agent.on_frame(busd, &stray), Some(None));
    assert_eq!(agent.unmatched(), 1);
}
