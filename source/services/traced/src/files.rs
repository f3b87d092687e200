//! Completed traces as JSONL files on the host (feature `std`), rotated
//! by size, the oldest files removed past a count.
//!
//! Files are `<dir>/traces-<seq>.jsonl`, `seq` a zero-padded counter that
//! only grows (continued after the highest one found in `dir`). A line
//! never straddles two files; a line longer than `max_file_bytes` gets a
//! file of its own. At most `max_files` files are kept: rotating past
//! that removes the oldest (counted).

use std::format;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::vec::Vec;

use crate::correlate::Completed;
use crate::jsonl;

/// Bounds of a [`JsonlFiles`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileBounds {
    /// A file is rotated before it would pass this many bytes.
    pub max_file_bytes: u64,
    /// Files kept (at least 1).
    pub max_files: usize,
}

/// The JSONL writer (see the module doc).
#[derive(Debug)]
pub struct JsonlFiles {
    dir: PathBuf,
    bounds: FileBounds,
    seq: u64,
    file: Option<(File, u64)>,
    /// Files removed by the count bound.
    pub files_removed: u64,
    /// Lines written.
    pub lines: u64,
}

fn seq_of(p: &Path) -> Option<u64> {
    let name = p.file_name()?.to_str()?;
    name.strip_prefix("traces-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

impl JsonlFiles {
    /// Opens `dir` (created if missing); writing continues in a new file
    /// after the highest sequence already there.
    pub fn open(dir: &Path, bounds: FileBounds) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let last = Self::list(dir)?.last().map_or(0, |(s, _)| *s);
        Ok(Self {
            dir: dir.to_path_buf(),
            bounds,
            seq: last,
            file: None,
            files_removed: 0,
            lines: 0,
        })
    }

    /// The trace files in `dir`, oldest first.
    pub fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
        let mut v: Vec<(u64, PathBuf)> = fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| seq_of(&p).map(|s| (s, p)))
            .collect();
        v.sort();
        Ok(v)
    }

    /// Appends `trace` as one line.
    pub fn write(&mut self, trace: &Completed) -> io::Result<()> {
        let mut line = Vec::new();
        jsonl::write_line(trace, &mut line).map_err(io::Error::other)?;
        let len = line.len() as u64;
        let full = match &self.file {
            Some((_, used)) => *used > 0 && used + len > self.bounds.max_file_bytes,
            None => true,
        };
        if full {
            self.rotate()?;
        }
        if let Some((f, used)) = self.file.as_mut() {
            f.write_all(&line)?;
            *used += len;
            self.lines += 1;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.seq += 1;
        let path = self.dir.join(format!("traces-{:08}.jsonl", self.seq));
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        self.file = Some((f, 0));
        let files = Self::list(&self.dir)?;
        let excess = files.len().saturating_sub(self.bounds.max_files.max(1));
        for (_, p) in files.iter().take(excess) {
            fs::remove_file(p)?;
            self.files_removed += 1;
        }
        Ok(())
    }
}
