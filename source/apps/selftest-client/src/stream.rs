//! Bounded waits on busd streams, shared by the two-node phases (bus,
//! obs, and init's mux-trace): every loop ends at the phase's deadline
//! with an error saying what it waited for.

use alloc::format;
use alloc::string::String;

use nexus_bus::proto::Handle;
use nexus_bus::{BusClient, BusError, DeviceId};
use nexus_ipc::Endpoint;
use nexus_svc::platform::Platform;
use nexus_wire::Status;

/// How long one wait for a busd event lasts before the loop looks again.
pub const EVENT_WAIT_NS: u64 = 50_000_000;

/// A busd error as a phase failure: what was being done, and why.
pub fn berr(what: &str) -> impl Fn(BusError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// `Err` once `deadline` passed, naming what was awaited.
pub fn timed_out<P: Platform>(p: &P, deadline: u64, what: &str) -> Result<(), String> {
    if p.now_ns() >= deadline {
        Err(format!("timeout waiting for {what}"))
    } else {
        Ok(())
    }
}

/// Opens `name` on `peer`, retrying while the peer has no listener yet.
pub fn open_retrying<P: Platform, E: Endpoint>(
    p: &P,
    bus: &mut BusClient<E>,
    (peer, name): (DeviceId, &str),
    trace: Option<&[u8]>,
    deadline: u64,
) -> Result<Handle, String> {
    loop {
        match bus.open(peer, name, trace) {
            Ok(h) => return Ok(h),
            Err(BusError::Rejected(Status::Denied | Status::Unavailable)) => {
                timed_out(p, deadline, "the peer's listener")?;
                let _ = bus.next_event(EVENT_WAIT_NS);
            }
            Err(e) => return Err(format!("open: {e}")),
        }
    }
}

/// Writes all of `data`, waiting for credit.
pub fn send_all<P: Platform, E: Endpoint>(
    p: &P,
    bus: &mut BusClient<E>,
    h: Handle,
    mut data: &[u8],
    deadline: u64,
) -> Result<(), String> {
    while !data.is_empty() {
        let n = bus.send(h, data).map_err(berr("send"))?;
        data = data.get(n..).unwrap_or_default();
        if n == 0 {
            timed_out(p, deadline, "credit")?;
            let _ = bus.next_event(EVENT_WAIT_NS);
        }
    }
    Ok(())
}

/// Reads until the peer's end (`max` bytes per RECV), folding bytes into
/// `sink`; returns how many.
pub fn read_to_end<P: Platform, E: Endpoint>(
    p: &P,
    bus: &mut BusClient<E>,
    h: Handle,
    (max, deadline): (u16, u64),
    sink: &mut dyn FnMut(&[u8]),
) -> Result<u64, String> {
    let mut total = 0u64;
    loop {
        let (fin, data) = bus.recv(h, max).map_err(berr("recv"))?;
        if fin {
            return Ok(total);
        }
        if data.is_empty() {
            timed_out(p, deadline, "stream data")?;
            let _ = bus.next_event(EVENT_WAIT_NS);
        }
        total += data.len() as u64;
        sink(&data);
    }
}
