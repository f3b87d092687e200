//! The one rule every server applies when it answers a request.

use alloc::vec::Vec;

use crate::{Header, Rejects, Status};

/// A protocol's reply: the status it carries and its frame.
pub trait ReplyBody {
    /// The status the reply carries (`ok` for a success body).
    fn status(&self) -> Status;
    /// The whole reply frame to the request with header `req`.
    fn encode(&self, req: &Header) -> Vec<u8>;
}

/// What answering produced: the status (counted when it is a refusal) and
/// the frame to send back, if the request may be answered at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The outcome.
    pub status: Status,
    /// The reply frame; `None` for a reply frame received as a request or
    /// for the protocol's one-way op ([`Header::wants_reply`]).
    pub frame: Option<Vec<u8>>,
}

/// Answers the request `req` with `reply`: counts a non-ok status in
/// `rejects`, and encodes the reply only when `req` wants one.
pub fn answer<R: ReplyBody>(
    rejects: &mut Rejects,
    req: &Header,
    oneway_op: u8,
    reply: &R,
) -> Answer {
    let status = reply.status();
    rejects.count(status);
    Answer {
        status,
        frame: req.wants_reply(oneway_op).then(|| reply.encode(req)),
    }
}

/// Implements [`ReplyBody`] for a protocol's reply enum that has a
/// `Rejected(Status)` variant (every other variant is `ok`) and an
/// `encode_reply(&Header, &Reply) -> Vec<u8>` function.
#[macro_export]
macro_rules! reply_body {
    ($reply:ident, $encode:path) => {
        impl $crate::ReplyBody for $reply {
            fn status(&self) -> $crate::Status {
                match self {
                    $reply::Rejected(s) => *s,
                    _ => $crate::Status::Ok,
                }
            }
            fn encode(&self, req: &$crate::Header) -> ::alloc::vec::Vec<u8> {
                $encode(req, self)
            }
        }
    };
}
