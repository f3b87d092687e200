//! Limits that cross a boundary, tied to the other side's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nexus_ipc::router::RouterConfig;
use traced::proto::{MAX_FRAME, MAX_REPLY};

/// traced's largest request and reply fit the IPC router's default frame
/// (init refuses to start traced under a router whose frame is smaller).
#[test]
fn traced_frames_fit_the_ipc_router() {
    let router = RouterConfig::default().max_frame_bytes;
    assert!(MAX_FRAME <= router, "{MAX_FRAME} > {router}");
    assert!(MAX_REPLY <= router, "{MAX_REPLY} > {router}");
}

/// The trace metadata nexus-trace puts in a mux OPEN is what the mux
/// accepts.
#[test]
fn mux_trace_metadata_bound_is_the_mux_bound() {
    assert_eq!(
        nexus_trace::binary::MUX_META_MAX,
        dsoftbus::mux::wire::MAX_TRACE_LEN
    );
}
