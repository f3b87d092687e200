//! The selftest workload.
//!
//! It talks to logd through the same client library every app uses, over
//! whatever [`Endpoint`] the platform gives it (the QEMU runtime's router,
//! or the host bus in tests), and prints each marker only after checking
//! the evidence the marker names:
//!
//! | marker | evidence |
//! |--------|----------|
//! | `SELFTEST: logd hardening rejects ok` | logd answered `invalid_args` (bad level, identity claim), `over_limit` (oversized message) and `rate_limited` (a flood), and its STATS counters agree |
//! | `SELFTEST: log query ok` | three records appended, then read back by QUERY with the sender id the transport stamped, and identical text and fields |
//! | `SELFTEST: log persist pending` | first boot: nothing from an earlier boot exists yet |
//! | `SELFTEST: log persist ok` | a later boot: the records the previous boot appended are in the journal again (restored from the state store), older than anything appended in this boot |
//!
//! The two-node phases run instead on a node booted with a role: [`pair`]
//! (plain TCP) and [`bus`] (dsoftbus sessions and streams over TCP), with
//! their byte protocol in [`pairproto`]. They are written against the
//! platform traits of `nexus_svc::platform`, so the runtime only supplies
//! time, a console, entropy and sockets.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod bus;
pub mod metrics;
pub mod obs;
pub mod pair;
pub mod pairproto;
pub mod stream;

pub use pair::Role;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use nexus_ipc::Endpoint;
use nexus_log::proto::{AppendRequest, QueryRequest, Status};
use nexus_log::{ClientError, Fields, Level, LogdClient, Record};

/// How many records each boot appends for the query and persistence checks.
pub const RECORDS_PER_BOOT: u32 = 3;
/// Upper bound on the flood that must trip the rate limit.
pub const MAX_FLOOD: u32 = 10_000;

/// Why the selftest failed: the step, and what was seen instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

fn fail<T>(what: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(what.into()))
}

fn expect_reject(r: Result<u64, ClientError>, want: Status, what: &str) -> Result<(), Failure> {
    match r {
        Err(ClientError::Rejected(s)) if s == want => Ok(()),
        other => fail(format!("{what}: expected {want}, got {other:?}")),
    }
}

/// The fields of the `seq`-th record of boot `boot`.
pub fn record_fields(boot: u32, seq: u32) -> Fields {
    Fields::parse(&format!("boot={boot}\npersist=1\nseq={seq}\n")).unwrap_or_default()
}

fn is_boot_record(r: &Record, boot: u32) -> bool {
    r.target == "selftest"
        && r.fields.get("persist") == Some("1")
        && r.fields.get("boot") == Some(&*format!("{boot}"))
}

/// Runs every check, printing markers through `out`. `main` must have the
/// reader role; `flood` is a second identity used to trip the rate limit
/// without spending `main`'s budget. `boot` is the state store's boot
/// counter (1 on a fresh disk).
pub fn run<E: Endpoint>(
    main: &mut LogdClient<E>,
    flood: &mut LogdClient<E>,
    boot: u32,
    out: &mut dyn FnMut(&str),
) -> Result<(), Failure> {
    let me = main.endpoint().id();
    // Gather the persistence evidence first, before this boot appends
    // anything: records of the previous boot, restored from the store.
    let before = main
        .query_all(&QueryRequest::all(64), 10_000)
        .map_err(|e| Failure(format!("initial query: {e}")))?;
    let first_id_this_boot = before.records.last().map_or(1, |r| r.id + 1);
    let restored: Vec<u32> = if boot > 1 {
        before
            .records
            .iter()
            .filter(|r| r.sender == me && is_boot_record(r, boot - 1))
            .filter_map(|r| r.fields.get("seq")?.parse().ok())
            .collect()
    } else {
        Vec::new()
    };

    hardening(main, flood)?;
    out("SELFTEST: logd hardening rejects ok");

    let mut ids = Vec::new();
    for seq in 0..RECORDS_PER_BOOT {
        let msg = format!("selftest record {seq} of boot {boot}");
        let id = main
            .append(Level::Info, "selftest", &msg, &record_fields(boot, seq))
            .map_err(|e| Failure(format!("append {seq}: {e}")))?;
        ids.push(id);
    }
    let mut q = QueryRequest::all(64);
    q.sender = Some(me);
    q.cursor = ids.first().copied().unwrap_or(0);
    let page = main.query(&q).map_err(|e| Failure(format!("query: {e}")))?;
    for (seq, id) in ids.iter().enumerate() {
        let Some(r) = page.records.iter().find(|r| r.id == *id) else {
            return fail(format!("record {id} not returned by QUERY"));
        };
        let seq = seq as u32;
        if r.sender != me {
            return fail(format!(
                "record {id} has sender {} instead of {me}",
                r.sender
            ));
        }
        if r.message != format!("selftest record {seq} of boot {boot}")
            || r.fields != record_fields(boot, seq)
        {
            return fail(format!("record {id} came back different: {r:?}"));
        }
        if *id < first_id_this_boot {
            return fail(format!("record {id} is older than this boot"));
        }
    }
    out("SELFTEST: log query ok");

    if boot <= 1 {
        out("SELFTEST: log persist pending");
        return Ok(());
    }
    let want: Vec<u32> = (0..RECORDS_PER_BOOT).collect();
    let mut got = restored;
    got.sort_unstable();
    if got != want {
        return fail(format!(
            "persist: expected records {want:?} of boot {} restored, found {got:?}",
            boot - 1
        ));
    }
    out("SELFTEST: log persist ok");
    Ok(())
}

fn hardening<E: Endpoint>(
    main: &mut LogdClient<E>,
    flood: &mut LogdClient<E>,
) -> Result<(), Failure> {
    let start = main.stats().map_err(|e| Failure(format!("stats: {e}")))?;
    expect_reject(
        main.append_raw(&AppendRequest {
            level: 9,
            target: "selftest",
            message: "level nine",
            fields: "",
        }),
        Status::InvalidArgs,
        "bad level",
    )?;
    expect_reject(
        main.append_raw(&AppendRequest {
            level: Level::Info.as_u8(),
            target: "selftest",
            message: "i am logd",
            fields: "sender_service_id=1\n",
        }),
        Status::InvalidArgs,
        "identity claim",
    )?;
    let huge = "x".repeat(usize::from(u16::MAX / 2));
    expect_reject(
        main.append(Level::Info, "selftest", &huge, &Fields::empty()),
        Status::OverLimit,
        "oversized message",
    )?;
    let mut accepted = 0u32;
    let mut limited = false;
    for i in 0..MAX_FLOOD {
        match flood.append(
            Level::Debug,
            "selftest.flood",
            &format!("flood {i}"),
            &Fields::empty(),
        ) {
            Ok(_) => accepted += 1,
            Err(ClientError::Rejected(Status::RateLimited)) => {
                limited = true;
                break;
            }
            Err(e) => return fail(format!("flood {i}: {e}")),
        }
    }
    if !limited || accepted == 0 {
        return fail(format!("flood: {accepted} accepted, never rate limited"));
    }
    let end = main.stats().map_err(|e| Failure(format!("stats: {e}")))?;
    let d = |a: u64, b: u64| b.saturating_sub(a);
    let seen = (
        d(start.rejects.invalid_args, end.rejects.invalid_args),
        d(start.rejects.over_limit, end.rejects.over_limit),
        d(start.rejects.rate_limited, end.rejects.rate_limited),
        d(start.identity_spoofs, end.identity_spoofs),
    );
    if seen != (2, 1, 1, 1) {
        return fail(format!(
            "STATS disagree: invalid_args/over_limit/rate_limited/spoofs moved by {seen:?}, expected (2, 1, 1, 1)"
        ));
    }
    let own = flood
        .stats()
        .map_err(|e| Failure(format!("flood stats: {e}")))?;
    match own.senders.first() {
        Some(s) if s.sender == flood.endpoint().id() && s.rejected >= 1 => Ok(()),
        other => fail(format!(
            "flood sender's own STATS entry is wrong: {other:?}"
        )),
    }
}
