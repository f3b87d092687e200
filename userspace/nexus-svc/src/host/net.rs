//! The platform's TCP over the host's sockets, loopback only: services
//! written against [`Network`] (busd) run on the host unchanged. Every
//! call returns at once (non-blocking sockets); a listener accepts one
//! connection, like the runtime's.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;

use crate::platform::{NetError, Network, TcpSocket, TcpState};

/// How long a loopback connect may take before it counts as refused.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);

/// TCP on 127.0.0.1.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdNetwork;

#[derive(Debug)]
enum Inner {
    Listening(TcpListener),
    Open {
        stream: TcpStream,
        peer_closed: bool,
        we_closed: bool,
    },
    Closed,
}

/// One host socket.
#[derive(Debug)]
pub struct StdSocket {
    inner: RefCell<Inner>,
}

impl StdSocket {
    fn new(inner: Inner) -> Self {
        Self {
            inner: RefCell::new(inner),
        }
    }

    /// The local port (a listener's, to learn an ephemeral one).
    pub fn local_port(&self) -> Option<u16> {
        match &*self.inner.borrow() {
            Inner::Listening(l) => l.local_addr().ok().map(|a| a.port()),
            Inner::Open { stream, .. } => stream.local_addr().ok().map(|a| a.port()),
            Inner::Closed => None,
        }
    }

    /// A listener takes its connection when one is waiting.
    fn poll_accept(&self) {
        let mut inner = self.inner.borrow_mut();
        let Inner::Listening(l) = &*inner else {
            return;
        };
        match l.accept() {
            Ok((stream, _)) => {
                *inner = if stream.set_nonblocking(true).is_ok() {
                    let _ = stream.set_nodelay(true);
                    Inner::Open {
                        stream,
                        peer_closed: false,
                        we_closed: false,
                    }
                } else {
                    Inner::Closed
                };
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => *inner = Inner::Closed,
        }
    }
}

impl TcpSocket for StdSocket {
    fn send(&mut self, data: &[u8]) -> usize {
        self.poll_accept();
        let mut inner = self.inner.borrow_mut();
        let Inner::Open {
            stream, we_closed, ..
        } = &mut *inner
        else {
            return 0;
        };
        if *we_closed {
            return 0;
        }
        match stream.write(data) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
            Err(_) => {
                *inner = Inner::Closed;
                0
            }
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> usize {
        self.poll_accept();
        let mut inner = self.inner.borrow_mut();
        let Inner::Open {
            stream,
            peer_closed,
            ..
        } = &mut *inner
        else {
            return 0;
        };
        if *peer_closed || buf.is_empty() {
            return 0;
        }
        match stream.read(buf) {
            Ok(0) => {
                *peer_closed = true;
                0
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
            Err(_) => {
                *inner = Inner::Closed;
                0
            }
        }
    }

    fn state(&self) -> TcpState {
        self.poll_accept();
        match &*self.inner.borrow() {
            Inner::Listening(_) => TcpState::Listen,
            Inner::Open {
                peer_closed: false,
                we_closed: false,
                ..
            } => TcpState::Established,
            Inner::Open {
                we_closed: false, ..
            } => TcpState::CloseWait,
            Inner::Open {
                peer_closed: true, ..
            } => TcpState::Closed,
            Inner::Open { .. } => TcpState::Closing,
            Inner::Closed => TcpState::Closed,
        }
    }

    fn send_pending(&self) -> usize {
        // The kernel's buffer is not visible; written bytes count as sent.
        0
    }

    fn may_recv(&self) -> bool {
        matches!(
            &*self.inner.borrow(),
            Inner::Open {
                peer_closed: false,
                ..
            }
        )
    }

    fn close(&mut self) {
        let mut inner = self.inner.borrow_mut();
        match &mut *inner {
            Inner::Open {
                stream, we_closed, ..
            } => {
                let _ = stream.shutdown(Shutdown::Write);
                *we_closed = true;
            }
            Inner::Listening(_) => *inner = Inner::Closed,
            Inner::Closed => {}
        }
    }
}

impl Network for StdNetwork {
    type Socket = StdSocket;

    fn ip(&self) -> [u8; 4] {
        [127, 0, 0, 1]
    }

    /// Listens on 127.0.0.1:`port` (0: an ephemeral port, see
    /// [`StdSocket::local_port`]).
    fn listen(&self, port: u16) -> Result<StdSocket, NetError> {
        let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
            .map_err(|_| NetError::Refused)?;
        l.set_nonblocking(true).map_err(|_| NetError::Refused)?;
        Ok(StdSocket::new(Inner::Listening(l)))
    }

    /// Connects to a loopback address; any other address is refused (the
    /// host side of nexus-obs never leaves 127.0.0.0/8). A refused connect
    /// gives a closed socket, as a reset would on the runtime.
    fn connect(&self, ip: [u8; 4], port: u16) -> Result<StdSocket, NetError> {
        if ip[0] != 127 {
            return Err(NetError::Refused);
        }
        let addr = SocketAddrV4::new(Ipv4Addr::from(ip), port).into();
        let inner = match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) if stream.set_nonblocking(true).is_ok() => {
                let _ = stream.set_nodelay(true);
                Inner::Open {
                    stream,
                    peer_closed: false,
                    we_closed: false,
                }
            }
            _ => Inner::Closed,
        };
        Ok(StdSocket::new(inner))
    }

    fn release(&self, socket: StdSocket) {
        if let Inner::Open { stream, .. } = socket.inner.into_inner() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}
