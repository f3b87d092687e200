//! Test and bench support (feature `std`): busd nodes on loopback TCP,
//! each on its own in-process bus and thread, with client endpoints for
//! the "services". Setup failures panic: this is harness code, never on a
//! service path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::{Busd, Config};
use dsoftbus::identity::DeviceKey;
use nexus_bounds::Clock;
use nexus_bus::{BusClient, DeviceId};
use nexus_ipc::host::{HostBus, HostEndpoint};
use nexus_ipc::router::RouterConfig;
use nexus_ipc::Endpoint;
use nexus_svc::host::net::StdNetwork;
use nexus_svc::host::serve;
use nexus_svc::{InMemory, Links, Shell};

pub const TIMEOUT: u64 = 5_000_000_000;
/// How long an idle host busd waits for a frame before it polls its
/// sockets again (the host shell does not wait on socket readiness).
pub const POLL_NS: u64 = 50_000;

/// Nanoseconds since it was made.
#[derive(Debug, Clone, Copy)]
pub struct WallClock(Instant);

impl WallClock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self(Instant::now())
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}
impl Clock for WallClock {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

pub fn key(b: u8) -> [u8; 32] {
    [b; 32]
}

pub fn id_of(secret: [u8; 32]) -> DeviceId {
    DeviceId(DeviceKey::from_secret(secret).id().to_bytes())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config for a node listening on `port`, with peers (secret, port,
/// streams) and caps lowered where the tests need them.
pub fn config(port: u16, peers: &[([u8; 32], u16, &[&str])], per_service: u32) -> Config {
    let mut text = format!(
        "listen_port = {port}\nhandshake_timeout_ms = 2000\ncontrol = [\"control\"]\n\
         [limits]\nmax_listeners = 4\nmax_streams_per_service = {per_service}\nmax_streams_per_peer = 8\n\
         max_watchers = 4\nmax_pending_accepts = 4\nwindow = 16384\n\
         [backoff]\ninitial_ms = 20\nmax_ms = 200\n"
    );
    for (i, (secret, p, streams)) in peers.iter().enumerate() {
        let public = DeviceKey::from_secret(*secret).public();
        let names: Vec<String> = streams.iter().map(|s| format!("\"{s}\"")).collect();
        text.push_str(&format!(
            "[[peer]]\nname = \"p{i}\"\nkey = \"{}\"\naddr = \"127.0.0.1:{p}\"\nstreams = [{}]\n",
            hex(&public),
            names.join(", ")
        ));
    }
    Config::parse(&text).unwrap()
}

/// One node: its bus, busd on a thread, its console.
#[derive(Debug)]
pub struct Node {
    pub bus: HostBus,
    pub busd: nexus_ipc::ServiceId,
    pub console: Arc<Mutex<Vec<String>>>,
    control: Option<HostEndpoint>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    pub fn start(secret: [u8; 32], cfg: Config) -> Node {
        let bus = HostBus::new(RouterConfig::default());
        let mut ep = bus.endpoint("busd").unwrap();
        let busd = ep.id();
        // The control role is resolved by name, as init does.
        let control = bus.endpoint("control").unwrap();
        let control_id = control.id();
        let console = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, s2) = (Arc::clone(&console), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let b = Busd::new(
                cfg,
                StdNetwork,
                DeviceKey::from_secret(secret),
                [secret[0]; 32],
                vec![control_id],
            )
            .unwrap();
            let mut shell = Shell::new(b, InMemory, Links::new());
            let clock = WallClock(Instant::now());
            serve(&mut shell, &mut ep, &clock, &s2, POLL_NS, &mut |l| {
                c2.lock().unwrap().push(l.to_string())
            });
        });
        Node {
            bus,
            busd,
            console,
            control: Some(control),
            stop,
            thread: Some(thread),
        }
    }

    pub fn client(&self, name: &str) -> BusClient<HostEndpoint> {
        BusClient::new(self.bus.endpoint(name).unwrap(), self.busd, TIMEOUT)
    }

    /// The control endpoint (allowed to DROP sessions), once.
    pub fn control(&mut self) -> BusClient<HostEndpoint> {
        BusClient::new(self.control.take().unwrap(), self.busd, TIMEOUT)
    }

    pub fn lines(&self) -> Vec<String> {
        self.console.lock().unwrap().clone()
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits (bounded) until `client` sees peer `id` up.
pub fn wait_up(client: &mut BusClient<HostEndpoint>, id: DeviceId) {
    for _ in 0..500 {
        if client.peers().unwrap().iter().any(|p| p.id == id && p.up) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("peer {id} never came up");
}
