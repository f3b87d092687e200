//! The node as the QEMU runtime composes it, on the host: the same init,
//! the same profiles, the same selftest phases, on a cooperative node with
//! a manual clock and an in-memory disk that survives "reboots".
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::RefCell;
use std::rc::Rc;

use nexus_bounds::ManualClock;
use nexus_init::selftest::PeerArgs;
use nexus_init::{Env, Profile, ProfileError};
use nexus_ipc::router::RouterConfig;
use nexus_store::{BlockDevice, MemDisk, RegionTable, StateStore, BLOCK_SIZE};
use nexus_svc::node::{Idle, Node};
use nexus_svc::platform::{NetError, Network, Platform, TcpSocket, TcpState};

type Clock = Rc<ManualClock>;

/// A disk the test keeps across boots.
#[derive(Clone)]
struct Shared(Rc<RefCell<MemDisk>>);

impl BlockDevice for Shared {
    type Error = nexus_store::MemDiskError;
    fn block_count(&self) -> u64 {
        self.0.borrow().block_count()
    }
    fn read_block(&mut self, i: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), Self::Error> {
        self.0.borrow_mut().read_block(i, buf)
    }
    fn write_block(&mut self, i: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), Self::Error> {
        self.0.borrow_mut().write_block(i, buf)
    }
}

/// The host as a platform: time moves only when something sleeps.
struct Host<'a> {
    node: &'a Node<Clock>,
}

impl Platform for Host<'_> {
    fn now_ns(&self) -> u64 {
        nexus_bounds::Clock::now_ns(self.node.clock())
    }
    fn sleep(&self, ns: u64) {
        self.node.clock().advance(ns);
    }
    fn run_once(&self) -> bool {
        self.node.run_once()
    }
    fn console(&self, line: &str) {
        self.node.console(line);
    }
    fn entropy(&self, _out: &mut [u8; 32]) -> bool {
        false
    }
}

/// No network on this host node.
#[derive(Clone)]
struct NoNet;
struct NoSocket;
impl TcpSocket for NoSocket {
    fn send(&mut self, _: &[u8]) -> usize {
        0
    }
    fn recv(&mut self, _: &mut [u8]) -> usize {
        0
    }
    fn state(&self) -> TcpState {
        TcpState::Closed
    }
    fn send_pending(&self) -> usize {
        0
    }
    fn may_recv(&self) -> bool {
        false
    }
    fn close(&mut self) {}
}
impl Network for NoNet {
    type Socket = NoSocket;
    fn ip(&self) -> [u8; 4] {
        [0; 4]
    }
    fn listen(&self, _: u16) -> Result<NoSocket, NetError> {
        Err(NetError::Refused)
    }
    fn connect(&self, _: [u8; 4], _: u16) -> Result<NoSocket, NetError> {
        Err(NetError::Refused)
    }
    fn release(&self, _: NoSocket) {}
}

struct Boot {
    console: Vec<String>,
    result: Result<(), String>,
    started: nexus_init::Started,
}

fn boot(disk: &Shared, profile: &Profile) -> Boot {
    let lines = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&lines);
    let node = Node::new(
        RouterConfig::default(),
        Rc::new(ManualClock::new(0)),
        Idle::ReturnWhenIdle,
        Box::new(move |l: &str| sink.borrow_mut().push(l.to_string())),
    );
    let started =
        nexus_init::start(&node, profile, Some(disk.clone()), &Env::<NoNet>::none()).unwrap();
    let host = Host { node: &node };
    let result =
        nexus_init::selftest::run(&node, &host, profile, &started, None::<PeerArgs<'_, NoNet>>)
            .map_err(|f| f.to_string());
    node.settle(10_000);
    let console = lines.borrow().clone();
    Boot {
        console,
        result,
        started,
    }
}

/// The console, reduced to the lines the QEMU marker file lists, must be
/// exactly that file: the host boot and the QEMU boot prove the same thing.
fn assert_markers(console: &[String], file: &str) {
    let expected: Vec<&str> = file
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| *l != "SELFTEST: end")
        .collect();
    let seen: Vec<&str> = console
        .iter()
        .map(String::as_str)
        .filter(|l| expected.contains(l))
        .collect();
    assert_eq!(seen, expected, "console:\n{}", console.join("\n"));
}

fn fresh_disk() -> Shared {
    Shared(Rc::new(RefCell::new(MemDisk::new(16 * 1024))))
}

fn wipe_region(disk: &Shared, name: &str) {
    let table = RegionTable::read(&mut disk.clone()).unwrap().unwrap();
    let r = table.get(name).unwrap();
    let mut d = disk.0.borrow_mut();
    let bytes = d.as_bytes_mut();
    let (a, b) = (
        r.first as usize * BLOCK_SIZE,
        (r.first + r.blocks) as usize * BLOCK_SIZE,
    );
    bytes[a..b].fill(0);
}

#[test]
fn the_single_profile_passes_twice_and_the_second_boot_finds_the_first() {
    let profile = Profile::builtin("single").unwrap();
    let disk = fresh_disk();
    let b1 = boot(&disk, &profile);
    assert_eq!(b1.result, Ok(()), "{}", b1.console.join("\n"));
    assert_eq!(b1.started.boot, 1);
    assert!(b1.started.persistent);
    assert_markers(
        &b1.console,
        include_str!("../../../scripts/profiles/single.boot1"),
    );
    let b2 = boot(&disk, &profile);
    assert_eq!(b2.result, Ok(()), "{}", b2.console.join("\n"));
    assert_eq!(b2.started.boot, 2);
    assert_markers(
        &b2.console,
        include_str!("../../../scripts/profiles/single.boot2"),
    );
}

#[test]
fn no_persist_marker_without_logds_records() {
    let profile = Profile::builtin("single").unwrap();
    let disk = fresh_disk();
    assert_eq!(boot(&disk, &profile).result, Ok(()));
    wipe_region(&disk, "logd");
    let b2 = boot(&disk, &profile);
    assert!(b2.result.is_err());
    assert!(!b2.console.iter().any(|m| m == "SELFTEST: log persist ok"));
}

#[test]
fn no_retention_marker_without_the_previous_boots_segments() {
    let profile = Profile::builtin("single").unwrap();
    let disk = fresh_disk();
    assert_eq!(boot(&disk, &profile).result, Ok(()));
    wipe_region(&disk, "metricsd");
    let b2 = boot(&disk, &profile);
    assert!(b2.result.is_err(), "{:?}", b2.result);
    assert!(b2.console.iter().any(|m| m == "SELFTEST: log persist ok"));
    assert!(!b2
        .console
        .iter()
        .any(|m| m == "SELFTEST: metrics retention ok"));
}

#[test]
fn a_profile_that_adds_a_region_keeps_the_old_ones_and_their_data() {
    let single = Profile::builtin("single").unwrap();
    let disk = fresh_disk();
    assert_eq!(boot(&disk, &single).result, Ok(()));
    let before = RegionTable::read(&mut disk.clone()).unwrap().unwrap();
    // A later profile adds a region in front of the others in its list.
    let text = include_str!("../../../recipes/boot/single.toml").replace(
        "[[region]]\nname = \"logd\"",
        "[[region]]\nname = \"traced\"\nblocks = 1024\n\n[[region]]\nname = \"logd\"",
    );
    let grown = Profile::parse(&text).unwrap();
    assert_eq!(grown.regions[0].name, "traced");
    let b2 = boot(&disk, &grown);
    assert_eq!(b2.result, Ok(()), "{}", b2.console.join("\n"));
    assert!(b2.console.iter().any(|m| m == "SELFTEST: log persist ok"));
    assert!(b2
        .console
        .iter()
        .any(|m| m == "SELFTEST: metrics retention ok"));
    let after = RegionTable::read(&mut disk.clone()).unwrap().unwrap();
    assert_eq!(after.entries[..2], before.entries[..]);
    assert_eq!(after.get("traced").unwrap().first, before.end());
    assert!(b2.console.iter().any(|l| l.ends_with(", added traced")));
}

#[test]
fn a_first_wave_disk_is_refused_with_a_console_line() {
    let disk = fresh_disk();
    // The first wave put logd's store superblock in block 0.
    {
        let (mut store, _, _) = StateStore::mount(disk.clone()).unwrap();
        store.append(b"old").unwrap();
        store.flush().unwrap();
    }
    let b = boot(&disk, &Profile::builtin("single").unwrap());
    assert!(!b.started.persistent);
    assert!(b
        .console
        .iter()
        .any(|l| l.starts_with("init: disk has the first-wave layout")));
    // Nothing was written over the old data.
    let (_, _, entries) = StateStore::open_read_only(disk.clone()).unwrap();
    assert_eq!(entries, vec![b"old".to_vec()]);
}

#[test]
fn services_start_in_profile_order_with_their_names() {
    let b = boot(&fresh_disk(), &Profile::builtin("single").unwrap());
    let ready: Vec<&str> = b
        .console
        .iter()
        .filter(|l| l.ends_with(": ready"))
        .map(String::as_str)
        .collect();
    assert_eq!(ready, ["logd: ready", "metricsd: ready", "traced: ready"]);
    let names: Vec<&str> = b
        .started
        .endpoints
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "logd",
            "metricsd",
            "traced",
            "selftest",
            "selftest-flood",
            "selftest-metrics",
            "selftest-trace",
            "selftest-trace-metrics"
        ]
    );
}

#[test]
fn profiles_are_checked() {
    for (name, _) in nexus_init::profile::BUILTIN {
        Profile::builtin(name).unwrap();
    }
    assert_eq!(
        Profile::builtin("nope"),
        Err(ProfileError::NotFound("nope".into()))
    );
    let cases: [(&str, ProfileError); 9] = [
        ("name = 1", ProfileError::Syntax(String::new())),
        (
            "name = \"x\"\nextra = 1",
            ProfileError::Syntax(String::new()),
        ),
        (
            "name = \"x\"\n[[service]]\nname = \"httpd\"",
            ProfileError::UnknownService("httpd".into()),
        ),
        (
            "name = \"x\"\n[[service]]\nname = \"logd\"\n[[service]]\nname = \"logd\"",
            ProfileError::Duplicate("logd".into()),
        ),
        (
            "name = \"x\"\n[[service]]\nname = \"logd\"\nregion = \"r\"",
            ProfileError::UnknownRegion {
                service: "logd".into(),
                region: "r".into(),
            },
        ),
        (
            "name = \"x\"\n[[region]]\nname = \"r\"\nblocks = 8\n[[service]]\nname = \"logd\"\nregion = \"r\"\n[[service]]\nname = \"metricsd\"\nregion = \"r\"",
            ProfileError::SharedRegion("r".into()),
        ),
        (
            "name = \"x\"\n[[service]]\nname = \"logd\"\nlinks = [\"metricsd\"]",
            ProfileError::UnknownLink {
                service: "logd".into(),
                link: "metricsd".into(),
            },
        ),
        (
            "name = \"x\"\n[[service]]\nname = \"logd\"\n[selftest]\nphases = [\"metrics\"]",
            ProfileError::PhaseNeeds {
                phase: "metrics",
                service: "metricsd",
            },
        ),
        (
            "name = \"x\"\n[selftest]\nphases = [\"fly\"]",
            ProfileError::UnknownPhase("fly".into()),
        ),
    ];
    for (text, want) in cases {
        let got = Profile::parse(text).unwrap_err();
        match (&got, &want) {
            (ProfileError::Syntax(_), ProfileError::Syntax(_)) => {}
            _ => assert_eq!(got, want, "{text}"),
        }
    }
}

#[test]
fn no_metrics_markers_on_a_second_boot_whose_exports_are_lost() {
    // Boot 1 leaves snapshot and span records in logd; on boot 2 metricsd
    // has no link to logd, so nothing of boot 2 is exported. The restored
    // records of boot 1 must not pass for boot 2's evidence.
    let single = Profile::builtin("single").unwrap();
    let disk = fresh_disk();
    assert_eq!(boot(&disk, &single).result, Ok(()));
    let text = include_str!("../../../recipes/boot/single.toml").replace(
        "links = [\"logd\"]        # snapshots and span ends are exported to logd",
        "",
    );
    let mute = Profile::parse(&text).unwrap();
    assert!(mute.services[1].links.is_empty());
    let b2 = boot(&disk, &mute);
    assert!(b2.result.is_err(), "{:?}", b2.result);
    assert!(b2.console.iter().any(|m| m == "SELFTEST: log persist ok"));
    for marker in [
        "SELFTEST: metrics counters ok",
        "SELFTEST: metrics histograms ok",
        "SELFTEST: tracing spans ok",
    ] {
        assert!(!b2.console.iter().any(|m| m == marker), "{marker}");
    }
}
