//! [`FileStorage`] (feature `std`): segments as files on the host,
//! `<dir>/<kind>-<index:06>.jsonl`, created, appended and deleted as the
//! rotators decide. On start, [`FileStorage::found`] lists what is there so
//! the rotators resume numbering (`Rotator::resume`).

use std::format;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::vec::Vec;

use crate::rotate::{Kind, Segment, Storage};

/// Segments in a directory.
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
    open: Vec<(Kind, File)>,
}

impl FileStorage {
    /// Storage in `dir` (created if missing).
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            open: Vec::new(),
        })
    }

    /// The file of segment `index` of `kind`.
    pub fn path(&self, kind: Kind, index: u64) -> PathBuf {
        self.dir.join(format!("{}-{index:06}.jsonl", kind.as_str()))
    }

    /// The segments of `kind` already in the directory (sizes from the
    /// files; times unknown after a restart: 0).
    pub fn found(&self, kind: Kind) -> Vec<Segment> {
        let prefix = format!("{}-", kind.as_str());
        let mut out = Vec::new();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return out;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let Some(index) = name
                .strip_prefix(prefix.as_str())
                .and_then(|r| r.strip_suffix(".jsonl"))
                .and_then(|d| d.parse::<u64>().ok())
            else {
                continue;
            };
            let bytes = e.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(Segment {
                index,
                start_ns: 0,
                end_ns: 0,
                bytes,
            });
        }
        out.sort_by_key(|s| s.index);
        out
    }
}

impl Storage for FileStorage {
    fn open(&mut self, kind: Kind, index: u64) -> bool {
        self.open.retain(|(k, _)| *k != kind);
        match OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(kind, index))
        {
            Ok(f) => {
                self.open.push((kind, f));
                true
            }
            Err(_) => false,
        }
    }

    fn append(&mut self, kind: Kind, line: &[u8]) -> bool {
        let Some((_, f)) = self.open.iter_mut().find(|(k, _)| *k == kind) else {
            return false;
        };
        f.write_all(line).and_then(|()| f.write_all(b"\n")).is_ok()
    }

    fn delete(&mut self, kind: Kind, index: u64) -> bool {
        fs::remove_file(self.path(kind, index)).is_ok()
    }
}
