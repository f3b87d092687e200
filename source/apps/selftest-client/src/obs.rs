//! The remote-observability phase: node B's collector (obsscraped) pulls
//! node A's logs and metrics over busd (`obs.logs`, `obs.metrics`).
//!
//! | marker | node | evidence |
//! |--------|------|----------|
//! | `SELFTEST: obs logs connect ok` | B | the collector holds records from A (a LOGS query from B returns lines A's logd sent) |
//! | `SELFTEST: obs metrics connect ok` | B | the collector holds series rebuilt from A's delta frames |
//! | `SELFTEST: obs logs rate/sampling ok` | B | of the 100 info and 10 error records A appended (ids sent to B on a stream), the collector kept exactly those the sampling rule keeps for A's device (all 10 errors), and its intake stayed within the configured rate |
//! | `SELFTEST: obs metrics query ok` | B | the collector's value of A's `selftest_obs_total` equals the value A read from its own metricsd's scrape |
//!
//! A appends the records and sets the counter, reads its own scrape, then
//! sends B the record ids and the scraped value on `selftest.bulk`; B
//! checks and answers `ok` on the stream; A waits for that answer.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use nexus_bounds::Clock;
use nexus_bus::proto::{BusEvent, Handle};
use nexus_bus::{BusClient, DeviceId};
use nexus_ipc::{Endpoint, ServiceId};
use nexus_log::{Fields, Level, LogdClient};
use nexus_metrics::Metrics;
use nexus_remote::logs::keep;
use nexus_svc::platform::Platform;
use nexus_wire::{Reader, Writer};
use obsscraped::query::{self, LogsQuery, Reply, Request};

use crate::stream::{berr, open_retrying, read_to_end, send_all, timed_out};

const BULK: &str = "selftest.bulk";
const TARGET: &str = "selftest.obs";
const INFO_RECORDS: u32 = 100;
const ERROR_RECORDS: u32 = 10;
const COUNTER: &str = "selftest_obs_total";
const COUNTER_VALUE: u64 = 42;
const PHASE_TIMEOUT_NS: u64 = 60_000_000_000;
const WAIT_NS: u64 = 100_000_000;

/// What A tells B: its records' ids and levels, and its scraped value.
fn encode_report(records: &[(u64, Level)], value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    w.bytes(b"OBS1")
        .u64(value)
        .u16(u16::try_from(records.len()).unwrap_or(0));
    for (id, level) in records {
        w.u64(*id).u8(level.as_u8());
    }
    let _ = w.finish();
    out
}

fn decode_report(b: &[u8]) -> Option<(u64, Vec<(u64, Level)>)> {
    let mut r = Reader::new(b);
    if r.bytes(4).ok()? != b"OBS1" {
        return None;
    }
    let value = r.u64().ok()?;
    let n = r.u16().ok()?;
    let mut out = Vec::new();
    for _ in 0..n {
        out.push((r.u64().ok()?, Level::from_u8(r.u8().ok()?)?));
    }
    r.finish().ok()?;
    Some((value, out))
}

/// Node A's side.
pub fn run_a<P: Platform, E: Endpoint, C: Clock>(
    p: &P,
    bus: &mut BusClient<E>,
    logd: &mut LogdClient<E>,
    m: &mut Metrics<E, C>,
    peer: DeviceId,
) -> Result<(), String> {
    let deadline = p.now_ns().saturating_add(PHASE_TIMEOUT_NS);
    let mut records = Vec::new();
    for (n, level) in [(INFO_RECORDS, Level::Info), (ERROR_RECORDS, Level::Error)] {
        for i in 0..n {
            let f = Fields::parse(&format!("seq={i}\n")).unwrap_or_default();
            let id = logd
                .append(level, TARGET, "remote observability record", &f)
                .map_err(|e| format!("append: {e}"))?;
            records.push((id, level));
        }
    }
    let c = m
        .counter(COUNTER, &[])
        .map_err(|e| format!("counter: {e}"))?;
    c.add(COUNTER_VALUE);
    m.flush_sync().map_err(|e| format!("flush: {e}"))?;
    let scrape = m.scrape(64).map_err(|e| format!("scrape: {e}"))?;
    let value = scrape
        .lines()
        .filter(|l| l.starts_with(COUNTER))
        .find_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .ok_or_else(|| String::from("the counter is not in A's own scrape"))?;
    // Tell B, then wait for its answer (B checks against its collector).
    let h = open_retrying(p, bus, (peer, BULK), None, deadline)?;
    send_all(p, bus, h, &encode_report(&records, value), deadline)?;
    bus.close(h).map_err(berr("close"))?;
    let answer = read_all(p, bus, h, deadline)?;
    if answer != b"ok" {
        return Err(format!("B answered {answer:?}"));
    }
    Ok(())
}

fn read_all<P: Platform, E: Endpoint>(
    p: &P,
    bus: &mut BusClient<E>,
    h: Handle,
    deadline: u64,
) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    read_to_end(p, bus, h, (16 * 1024, deadline), &mut |d| {
        got.extend_from_slice(d)
    })?;
    Ok(got)
}

/// A query to the collector.
fn ask<E: Endpoint>(
    ep: &mut E,
    collector: ServiceId,
    nonce: &mut u64,
    req: &Request<'_>,
) -> Result<Reply, String> {
    *nonce += 1;
    let frame = query::encode_request(*nonce, req).map_err(|e| format!("encode: {e}"))?;
    ep.send(collector, &frame)
        .map_err(|e| format!("query: {e}"))?;
    for _ in 0..64 {
        let Some(f) = ep.recv_timeout(2_000_000_000) else {
            break;
        };
        if let Ok((h, r)) = query::decode_reply(&f.bytes) {
            if h.nonce == *nonce {
                return Ok(r);
            }
        }
    }
    Err(String::from("no answer from the collector"))
}

/// The ids of A's `selftest.obs` records the collector kept.
fn kept_ids<E: Endpoint>(
    q: &mut E,
    collector: ServiceId,
    nonce: &mut u64,
    peer: DeviceId,
) -> Result<Vec<u64>, String> {
    let mut ids = Vec::new();
    let mut token = 0;
    loop {
        let Reply::Logs { next_token, lines } = ask(
            q,
            collector,
            nonce,
            &Request::Logs(LogsQuery {
                peer: peer.0,
                token,
                max: query::MAX_LOG_LINES,
                ..LogsQuery::default()
            }),
        )?
        else {
            return Err(String::from("unexpected reply"));
        };
        for l in &lines {
            if !l.contains(&format!("\"target\":\"{TARGET}\"")) {
                continue;
            }
            if let Some(id) = l
                .split("\"id\":")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|d| d.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        if next_token == 0 {
            return Ok(ids);
        }
        token = next_token;
    }
}

/// Node B's side: `bus` listens on `selftest.bulk` (the bus phase set it
/// up); `q` queries the collector.
#[allow(clippy::too_many_arguments)]
pub fn run_b<P: Platform, E: Endpoint>(
    p: &P,
    bus: &mut BusClient<E>,
    q: &mut E,
    collector: ServiceId,
    peer: DeviceId,
    sample_ppm: u32,
    exempt: bool,
    rate: (u32, u32),
    out: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let t0 = p.now_ns();
    let deadline = t0.saturating_add(PHASE_TIMEOUT_NS);
    let mut nonce = 0u64;
    bus.listen(BULK).map_err(berr("listen"))?;
    // The streams are up and carrying A's data.
    loop {
        if let Reply::Logs { lines, .. } = ask(
            q,
            collector,
            &mut nonce,
            &Request::Logs(LogsQuery {
                peer: peer.0,
                max: 1,
                ..LogsQuery::default()
            }),
        )? {
            if !lines.is_empty() {
                break;
            }
        }
        timed_out(p, deadline, "records from A")?;
        p.wait_until(WAIT_NS, &mut || false);
    }
    out("SELFTEST: obs logs connect ok");
    loop {
        if let Reply::Metrics(list) = ask(
            q,
            collector,
            &mut nonce,
            &Request::Metrics {
                peer: peer.0,
                prefix: "",
            },
        )? {
            if !list.is_empty() {
                break;
            }
        }
        timed_out(p, deadline, "series from A")?;
        p.wait_until(WAIT_NS, &mut || false);
    }
    out("SELFTEST: obs metrics connect ok");

    // A's report.
    let h = loop {
        if let Some(BusEvent::Incoming { handle, name, .. }) = bus.next_event(WAIT_NS) {
            if name == BULK {
                break handle;
            }
        }
        timed_out(p, deadline, "A's report")?;
    };
    let report = read_all(p, bus, h, deadline)?;
    let (value, records) = decode_report(&report).ok_or_else(|| String::from("bad report"))?;
    let raw = u64::from_be_bytes(peer.0);
    let mut want: Vec<u64> = records
        .iter()
        .filter(|(id, level)| keep(raw, *id, *level, sample_ppm, exempt))
        .map(|(id, _)| *id)
        .collect();
    want.sort_unstable();
    let errors = records.iter().filter(|(_, l)| *l == Level::Error).count();
    let mut got;
    loop {
        got = kept_ids(q, collector, &mut nonce, peer)?;
        got.sort_unstable();
        if got == want {
            break;
        }
        timed_out(p, deadline, "the sampled records")?;
        p.wait_until(WAIT_NS, &mut || false);
    }
    let Reply::Stats(s) = ask(q, collector, &mut nonce, &Request::Stats)? else {
        return Err(String::from("no stats"));
    };
    let secs = p.now_ns().saturating_sub(t0) / 1_000_000_000 + 1;
    let bound = u64::from(rate.1).saturating_add(u64::from(rate.0).saturating_mul(secs))
        + records.len() as u64;
    let info_kept = want.len().saturating_sub(errors);
    if !(info_kept > 0
        && info_kept < INFO_RECORDS as usize
        && s.records_sampled_out > 0
        && s.records_received <= bound)
    {
        return Err(format!(
            "sampling/rate: {info_kept} info kept, {} sampled out, {} received (bound {bound})",
            s.records_sampled_out, s.records_received
        ));
    }
    p.console(&format!(
        "runtime: obs logs {} kept of {} (all {errors} errors), {} received in total",
        want.len(),
        records.len(),
        s.records_received
    ));
    out("SELFTEST: obs logs rate/sampling ok");
    loop {
        if let Reply::Metrics(list) = ask(
            q,
            collector,
            &mut nonce,
            &Request::Metrics {
                peer: peer.0,
                prefix: COUNTER,
            },
        )? {
            if list
                .iter()
                .any(|s| s.name == COUNTER && u64::try_from(s.value).ok() == Some(value))
            {
                break;
            }
        }
        timed_out(p, deadline, "the counter")?;
        p.wait_until(WAIT_NS, &mut || false);
    }
    out("SELFTEST: obs metrics query ok");
    send_all(p, bus, h, b"ok", deadline)?;
    bus.close(h).map_err(berr("close"))?;
    // A's close after reading the answer.
    let _ = read_all(p, bus, h, deadline);
    Ok(())
}
