//! JSONL files: one line per trace, rotation by size, the count bound,
//! and continuing after a restart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

mod common;

use nexus_trace::TraceId;
use traced::files::{FileBounds, JsonlFiles};
use traced::{Completed, Completion, Origin, TracedSpan};

fn trace(id: u128) -> Completed {
    let rec = common::record(id, 1, None, 1, 2);
    Completed {
        trace: TraceId::new(id).unwrap(),
        spans: vec![TracedSpan::local(
            rec,
            Origin {
                node: 1,
                service: 2,
            },
        )],
        continuation: false,
        dropped_spans: 0,
        completion: Completion::Idle,
    }
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("traced-files-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn lines_rotate_by_size_and_old_files_go_past_the_count() {
    let d = dir("rotate");
    let mut line = Vec::new();
    traced::jsonl::write_line(&trace(1), &mut line).unwrap();
    let len = line.len() as u64;
    let bounds = FileBounds {
        max_file_bytes: 2 * len,
        max_files: 3,
    };
    let mut f = JsonlFiles::open(&d, bounds).unwrap();
    for id in 1..=9 {
        f.write(&trace(id)).unwrap();
    }
    // 2 lines per file: files 1..=5, the first two removed.
    let files = JsonlFiles::list(&d).unwrap();
    let seqs: Vec<u64> = files.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(f.files_removed, 2);
    assert_eq!(f.lines, 9);
    let text: Vec<String> = files
        .iter()
        .map(|(_, p)| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(text[0].lines().count(), 2);
    assert_eq!(text[2].lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(text[2].trim_end()).unwrap();
    assert_eq!(v["trace_id"], format!("{}", TraceId::new(9).unwrap()));

    // A restart continues after the highest file, never overwriting.
    drop(f);
    let mut f = JsonlFiles::open(&d, bounds).unwrap();
    f.write(&trace(10)).unwrap();
    let seqs: Vec<u64> = JsonlFiles::list(&d)
        .unwrap()
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(seqs, [4, 5, 6]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_line_longer_than_a_file_gets_a_file_of_its_own() {
    let d = dir("long");
    let mut f = JsonlFiles::open(
        &d,
        FileBounds {
            max_file_bytes: 10,
            max_files: 10,
        },
    )
    .unwrap();
    f.write(&trace(1)).unwrap();
    f.write(&trace(2)).unwrap();
    let files = JsonlFiles::list(&d).unwrap();
    assert_eq!(files.len(), 2);
    for (_, p) in files {
        assert_eq!(std::fs::read_to_string(p).unwrap().lines().count(), 1);
    }
    std::fs::remove_dir_all(&d).unwrap();
}
