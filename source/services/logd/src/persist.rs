//! logd's journal on the state store.
//!
//! Every accepted record is appended to the store in its wire form (the
//! QUERY record layout), buffered, and written at [`JournalStore::flush`]
//! (the I/O loop flushes after each batch of frames). When the store's
//! active half is full, the live journal — which is bounded well below a
//! half, see `Config` and the recipe — is compacted into the other half, so
//! persistence never stops for good. On start, [`JournalStore::open`]
//! returns the records of the last run in id order for [`Logd::restore`].

use nexus_log::proto::decode_record_bytes;
use nexus_store::{BlockDevice, MountReport, StateStore, StoreError};

use nexus_svc::Persist;

use crate::server::Logd;
use crate::service::LogdService;

impl<D: BlockDevice> Persist<LogdService> for JournalStore<D> {
    fn save(&mut self, svc: &mut LogdService) -> u32 {
        let ids = svc.take_unsaved();
        for id in &ids {
            self.on_appended(&svc.logd, *id);
        }
        u32::try_from(ids.len()).unwrap_or(u32::MAX)
    }
    fn flush(&mut self) -> bool {
        JournalStore::flush(self).is_ok()
    }
}

/// What opening the store found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// The store's own report (boot counter, entries, torn tail, …).
    pub mount: MountReport,
    /// Records put back into the journal.
    pub records: u64,
    /// Entries that did not decode as records, or were refused by the
    /// journal (out-of-order id, too large): skipped, never trusted.
    pub skipped: u64,
}

/// Counters of the persistence path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PersistStats {
    /// Records appended to the store.
    pub written: u64,
    /// Compactions of the live journal into the other half.
    pub compactions: u64,
    /// Records that could not be persisted (device error, or the live
    /// journal does not fit a half): they stay in memory only.
    pub failed: u64,
}

/// The journal's persistence.
#[derive(Debug)]
pub struct JournalStore<D: BlockDevice> {
    store: StateStore<D>,
    stats: PersistStats,
}

impl<D: BlockDevice> JournalStore<D> {
    /// Mounts the store on `dev` and restores its records into `logd`.
    pub fn open(dev: D, logd: &mut Logd) -> Result<(Self, Restored), StoreError<D::Error>> {
        let (store, mount, entries) = StateStore::mount(dev)?;
        let mut restored = Restored {
            mount,
            records: 0,
            skipped: 0,
        };
        for e in entries {
            match decode_record_bytes(&e).map(|r| logd.restore(r)) {
                Ok(Ok(())) => restored.records += 1,
                _ => restored.skipped += 1,
            }
        }
        Ok((
            Self {
                store,
                stats: PersistStats::default(),
            },
            restored,
        ))
    }

    /// Persists record `id` of `logd`'s journal (just appended).
    pub fn on_appended(&mut self, logd: &Logd, id: u64) {
        let Some(rec) = logd.journal().wire(id) else {
            return;
        };
        match self.store.append(rec) {
            Ok(()) => self.stats.written += 1,
            Err(StoreError::Full) => {
                // The live journal (which already holds `rec`) replaces the
                // store's contents.
                match self.store.compact(logd.journal().wire_from(0)) {
                    Ok(()) => {
                        self.stats.compactions += 1;
                        self.stats.written += 1;
                    }
                    Err(_) => self.stats.failed += 1,
                }
            }
            Err(_) => self.stats.failed += 1,
        }
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) -> Result<(), StoreError<D::Error>> {
        self.store.flush()
    }

    /// Counters.
    pub fn stats(&self) -> PersistStats {
        self.stats
    }

    /// The store's current numbers.
    pub fn report(&self) -> MountReport {
        self.store.report()
    }

    /// Gives the device back (tests reopen it to simulate a reboot).
    pub fn into_device(self) -> D {
        self.store.into_device()
    }
}
