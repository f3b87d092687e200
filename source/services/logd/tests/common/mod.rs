//! Helpers shared by the logd test suites: build frames, decode replies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use logd::{Config, Logd};
use nexus_ipc::ServiceId;
use nexus_log::proto::{self, AppendRequest, QueryPage, QueryRequest, Reply, Stats, Status};
use nexus_log::{Fields, FieldsBuilder, Level};

pub const MAX_FRAME: usize = 64 * 1024;
pub const READER: ServiceId = ServiceId::new(1000);

pub fn logd(cfg: Config) -> Logd {
    Logd::new(cfg, MAX_FRAME, [READER]).expect("valid config")
}

/// A config with the rate limit effectively off, for tests about other things.
pub fn unlimited(mut cfg: Config) -> Config {
    cfg.rate.events_per_sec = u32::MAX / 2;
    cfg.rate.events_burst = u32::MAX / 2;
    cfg.rate.bytes_per_sec = u32::MAX / 2;
    cfg.rate.bytes_burst = u32::MAX / 2;
    cfg
}

pub fn fields(pairs: &[(&str, &str)]) -> Fields {
    let mut b = FieldsBuilder::new();
    for (k, v) in pairs {
        b.insert(k, v).unwrap();
    }
    b.build().unwrap()
}

pub fn append_frame(nonce: u64, level: u8, target: &str, message: &str, fields: &str) -> Vec<u8> {
    proto::encode_append(
        nonce,
        false,
        &AppendRequest {
            level,
            target,
            message,
            fields,
        },
    )
    .unwrap()
}

pub fn reply(l: &mut Logd, now: u64, sender: ServiceId, frame: &[u8]) -> (u64, Reply) {
    let h = l.handle(now, sender, frame);
    let bytes = h.reply.expect("a reply");
    let (hdr, r) = proto::decode_reply(&bytes).expect("a valid reply");
    (hdr.nonce, r)
}

/// APPENDs one info record; returns the id or the reject status.
pub fn append(l: &mut Logd, now: u64, sender: ServiceId, msg: &str) -> Result<u64, Status> {
    append_with(l, now, sender, Level::Info, msg, &Fields::empty())
}

pub fn append_with(
    l: &mut Logd,
    now: u64,
    sender: ServiceId,
    level: Level,
    msg: &str,
    f: &Fields,
) -> Result<u64, Status> {
    let frame = append_frame(7, level.as_u8(), "test", msg, f.as_str());
    match reply(l, now, sender, &frame).1 {
        Reply::Appended(id) => Ok(id),
        Reply::Rejected(s) => Err(s),
        other => panic!("unexpected {other:?}"),
    }
}

pub fn query(
    l: &mut Logd,
    now: u64,
    requester: ServiceId,
    q: &QueryRequest,
) -> Result<QueryPage, Status> {
    match reply(l, now, requester, &proto::encode_query(9, q)).1 {
        Reply::Page(p) => Ok(p),
        Reply::Rejected(s) => Err(s),
        other => panic!("unexpected {other:?}"),
    }
}

pub fn stats(l: &mut Logd, now: u64, requester: ServiceId) -> Stats {
    match reply(l, now, requester, &proto::encode_stats(3)).1 {
        Reply::Stats(s) => s,
        other => panic!("unexpected {other:?}"),
    }
}

pub fn sid(n: u32) -> ServiceId {
    ServiceId::new(n)
}
