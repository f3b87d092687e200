//! TCP/IP over virtio-net: a smoltcp `Interface` with one static IPv4
//! address, offered to apps as `nexus_svc::platform::Network`.
//!
//! The stack is shared (`Rc<RefCell<…>>`) by a [`NetService`], which the
//! node polls with its tasks (`Node::run_once`, as a `Poller`),
//! and by [`TcpHandle`]s (`TcpSocket`), which only move bytes in and out
//! of socket buffers and never wait. An app waits for the network the way
//! it waits for IPC: it loops on the scheduler until its condition holds
//! (`Platform::wait_until`). No interrupt is used: the receive ring is
//! polled.
//!
//! No `unsafe` here: the device is driven through virtio-drivers' safe
//! API, whose DMA memory comes from `virtio::IdentityHal`.

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};
use virtio_drivers::device::net::{RxBuffer, TxBuffer};

use crate::virtio::NetDev;
use nexus_svc::node::Poller;
use nexus_svc::platform::{NetError, Network, TcpSocket, TcpState};

/// Prefix length of the static address: one /24 link.
pub const PREFIX_LEN: u8 = 24;
/// At most this many TCP sockets at once (listening, open or closing).
pub const MAX_SOCKETS: usize = 8;
/// Bytes of each TCP socket's receive and of its send buffer.
pub const TCP_BUFFER_BYTES: usize = 64 * 1024;
/// Largest Ethernet frame (without FCS) the device sends or receives.
const MTU: usize = 1514;
/// First local port of outgoing connections (the IANA dynamic range).
const EPHEMERAL_FIRST: u16 = 49152;

/// Frame counters of the device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames taken from the receive ring.
    pub rx_frames: u64,
    /// Frames handed to the device.
    pub tx_frames: u64,
    /// Frames smoltcp built that the device refused.
    pub tx_errors: u64,
    /// Receive buffers that could not be given back to the device.
    pub rx_recycle_errors: u64,
}

/// The virtio-net device as a smoltcp `Device`.
struct Phy {
    dev: RefCell<NetDev>,
    stats: Cell<NetStats>,
}

impl Phy {
    fn count(&self, f: impl FnOnce(&mut NetStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }
}

/// A received frame; its buffer goes back to the device once consumed.
struct Rx<'a> {
    phy: &'a Phy,
    buf: RxBuffer,
}

/// Permission to send one frame.
struct Tx<'a> {
    phy: &'a Phy,
}

impl smoltcp::phy::RxToken for Rx<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        // smoltcp may transmit a response from inside `f`: the device is
        // not borrowed while `f` runs, only the buffer this token owns.
        let r = f(self.buf.packet());
        let back = match self.phy.dev.try_borrow_mut() {
            Ok(mut d) => d.recycle_rx_buffer(self.buf).is_ok(),
            Err(_) => false,
        };
        if !back {
            self.phy.count(|s| s.rx_recycle_errors += 1);
        }
        r
    }
}

impl smoltcp::phy::TxToken for Tx<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut tx = TxBuffer::from(&vec![0u8; len]);
        let r = f(tx.packet_mut());
        let sent = match self.phy.dev.try_borrow_mut() {
            Ok(mut d) => d.send(tx).is_ok(),
            Err(_) => false,
        };
        self.phy.count(|s| {
            if sent {
                s.tx_frames += 1;
            } else {
                s.tx_errors += 1;
            }
        });
        r
    }
}

impl Device for Phy {
    type RxToken<'a>
        = Rx<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = Tx<'a>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let buf = self.dev.get_mut().receive().ok()?;
        self.count(|s| s.rx_frames += 1);
        let phy: &Phy = self;
        Some((Rx { phy, buf }, Tx { phy }))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Tx<'_>> {
        self.dev.get_mut().can_send().then_some(Tx { phy: self })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = None;
        caps
    }
}

/// Interface, device and sockets.
struct Stack {
    iface: Interface,
    phy: Phy,
    sockets: SocketSet<'static>,
    next_port: u16,
}

fn instant(now_ns: u64) -> Instant {
    Instant::from_micros(i64::try_from(now_ns / 1000).unwrap_or(i64::MAX))
}

impl Stack {
    fn poll(&mut self, now_ns: u64) -> bool {
        let before = self.phy.stats.get();
        let r = self
            .iface
            .poll(instant(now_ns), &mut self.phy, &mut self.sockets);
        let after = self.phy.stats.get();
        r == PollResult::SocketStateChanged
            || before.rx_frames != after.rx_frames
            || before.tx_frames != after.tx_frames
    }

    fn add_tcp(&mut self) -> Result<SocketHandle, NetError> {
        if self.sockets.iter().count() >= MAX_SOCKETS {
            return Err(NetError::NoSocket);
        }
        let s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER_BYTES]),
            tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER_BYTES]),
        );
        Ok(self.sockets.add(s))
    }

    fn ephemeral_port(&mut self) -> u16 {
        let p = self.next_port;
        self.next_port = p.checked_add(1).unwrap_or(EPHEMERAL_FIRST);
        p
    }
}

/// The network stack of the runtime (a cheap handle: clones share it).
#[derive(Clone)]
pub struct Net {
    stack: Rc<RefCell<Stack>>,
    ip: [u8; 4],
    mac: [u8; 6],
    device_mac: [u8; 6],
}

impl core::fmt::Debug for Net {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Net")
            .field("ip", &self.ip)
            .field("mac", &self.mac)
            .finish_non_exhaustive()
    }
}

impl Net {
    /// Brings the interface up on `dev` with the static address `ip`/24
    /// and the Ethernet address `mac` (the device's own when `None`).
    pub fn new(dev: NetDev, ip: [u8; 4], mac: Option<[u8; 6]>, now_ns: u64) -> Self {
        let device_mac = dev.mac_address();
        let mac = mac.unwrap_or(device_mac);
        let mut phy = Phy {
            dev: RefCell::new(dev),
            stats: Cell::new(NetStats::default()),
        };
        let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        // Seeds TCP initial sequence numbers and ephemeral choices.
        cfg.random_seed =
            u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], ip[3], 0x5a])
                ^ now_ns;
        let mut iface = Interface::new(cfg, &mut phy, instant(now_ns));
        iface.update_ip_addrs(|addrs| {
            // The vector holds IFACE_MAX_ADDR_COUNT (2) entries and is empty.
            let _ = addrs.push(IpCidr::new(
                IpAddress::Ipv4(Ipv4Address::from(ip)),
                PREFIX_LEN,
            ));
        });
        let stack = Stack {
            iface,
            phy,
            sockets: SocketSet::new(Vec::new()),
            next_port: EPHEMERAL_FIRST,
        };
        Self {
            stack: Rc::new(RefCell::new(stack)),
            ip,
            mac,
            device_mac,
        }
    }

    /// The interface's IPv4 address.
    pub fn ip(&self) -> [u8; 4] {
        self.ip
    }

    /// The interface's Ethernet address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The Ethernet address the device reports (QEMU `mac=`).
    pub fn device_mac(&self) -> [u8; 6] {
        self.device_mac
    }

    /// The task the scheduler polls to move frames.
    pub fn service(&self) -> NetService {
        NetService {
            stack: Rc::clone(&self.stack),
        }
    }

    /// Frame counters.
    pub fn stats(&self) -> NetStats {
        self.stack
            .try_borrow()
            .map(|s| s.phy.stats.get())
            .unwrap_or_default()
    }
}

/// The runtime's stack as the platform's network: a busy stack (a
/// re-entrant call) or a listen/connect smoltcp refuses (port 0, no
/// route) is [`NetError::Refused`].
impl Network for Net {
    type Socket = TcpHandle;

    fn ip(&self) -> [u8; 4] {
        self.ip
    }

    /// A socket listening on `port`; it accepts one connection.
    fn listen(&self, port: u16) -> Result<TcpHandle, NetError> {
        let mut st = self.stack.try_borrow_mut().map_err(|_| NetError::Refused)?;
        let h = st.add_tcp()?;
        if st.sockets.get_mut::<tcp::Socket>(h).listen(port).is_err() {
            st.sockets.remove(h);
            return Err(NetError::Refused);
        }
        Ok(TcpHandle {
            stack: Rc::clone(&self.stack),
            handle: h,
        })
    }

    /// A socket connecting to `ip:port` from the next ephemeral port. The
    /// SYN leaves on the next poll; watch the socket's state.
    fn connect(&self, ip: [u8; 4], port: u16) -> Result<TcpHandle, NetError> {
        let mut st = self.stack.try_borrow_mut().map_err(|_| NetError::Refused)?;
        let h = st.add_tcp()?;
        let local = st.ephemeral_port();
        let remote = (IpAddress::Ipv4(Ipv4Address::from(ip)), port);
        let Stack { iface, sockets, .. } = &mut *st;
        if sockets
            .get_mut::<tcp::Socket>(h)
            .connect(iface.context(), remote, local)
            .is_err()
        {
            sockets.remove(h);
            return Err(NetError::Refused);
        }
        Ok(TcpHandle {
            stack: Rc::clone(&self.stack),
            handle: h,
        })
    }

    fn release(&self, socket: TcpHandle) {
        if let Ok(mut st) = socket.stack.try_borrow_mut() {
            st.sockets.remove(socket.handle);
        }
    }
}

/// The network as a runtime service: polled with the others.
pub struct NetService {
    stack: Rc<RefCell<Stack>>,
}

impl core::fmt::Debug for NetService {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NetService").finish_non_exhaustive()
    }
}

impl NetService {
    /// Processes received frames, timers and queued sends at `now_ns`
    /// (guest time). Returns whether anything moved.
    pub fn poll_at(&self, now_ns: u64) -> bool {
        self.stack
            .try_borrow_mut()
            .is_ok_and(|mut s| s.poll(now_ns))
    }
}

impl Poller for NetService {
    fn poll(&mut self, now_ns: u64) -> bool {
        self.poll_at(now_ns)
    }
}

/// One TCP socket. Every call returns at once; bytes move when the
/// scheduler polls the [`NetService`].
pub struct TcpHandle {
    stack: Rc<RefCell<Stack>>,
    handle: SocketHandle,
}

impl core::fmt::Debug for TcpHandle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TcpHandle")
            .field("state", &self.smol_state())
            .finish_non_exhaustive()
    }
}

impl TcpHandle {
    fn with<R>(&self, otherwise: R, f: impl FnOnce(&mut tcp::Socket<'static>) -> R) -> R {
        match self.stack.try_borrow_mut() {
            Ok(mut st) => f(st.sockets.get_mut::<tcp::Socket>(self.handle)),
            Err(_) => otherwise,
        }
    }

    fn smol_state(&self) -> tcp::State {
        self.with(tcp::State::Closed, |s| s.state())
    }
}

/// smoltcp's state as the platform names it.
fn platform_state(s: tcp::State) -> TcpState {
    match s {
        tcp::State::Closed => TcpState::Closed,
        tcp::State::Listen => TcpState::Listen,
        tcp::State::SynSent => TcpState::SynSent,
        tcp::State::SynReceived => TcpState::SynReceived,
        tcp::State::Established => TcpState::Established,
        tcp::State::CloseWait => TcpState::CloseWait,
        tcp::State::FinWait1 | tcp::State::FinWait2 | tcp::State::Closing | tcp::State::LastAck => {
            TcpState::Closing
        }
        tcp::State::TimeWait => TcpState::TimeWait,
    }
}

impl TcpSocket for TcpHandle {
    fn send(&mut self, data: &[u8]) -> usize {
        self.with(0, |s| s.send_slice(data).unwrap_or(0))
    }

    fn recv(&mut self, buf: &mut [u8]) -> usize {
        self.with(0, |s| s.recv_slice(buf).unwrap_or(0))
    }

    fn state(&self) -> TcpState {
        platform_state(self.smol_state())
    }

    fn send_pending(&self) -> usize {
        self.with(0, |s| s.send_queue())
    }

    fn may_recv(&self) -> bool {
        self.with(false, |s| s.may_recv())
    }

    fn close(&mut self) {
        self.with((), |s| s.close());
    }
}
