//! [`StoreFaults`]: a switch that makes a redb store's file fail its writes (with ENOSPC), for
//! tests of what the master (its Raft store) and the agent (its store) do when their disk is
//! full or failing. Shared by both, as the store marker ([`crate::marker`]) is.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::StorageBackend;

/// `ENOSPC` (no space left on device), the same number on Linux and macOS.
const ENOSPC: i32 = 28;

/// A switch that makes a store's file fail every write and sync (with ENOSPC) while it
/// is on, as a full or failing disk does. Cheap to clone; clones share the switch. Off by
/// default.
#[derive(Clone, Debug, Default)]
pub struct StoreFaults {
    flag: Arc<AtomicBool>,
    file: Option<PathBuf>,
}

impl StoreFaults {
    /// A switch, off.
    pub fn new() -> Self {
        Self::default()
    }

    /// A switch that is on while `path` exists (to fail another process's store from a test;
    /// costs a `stat` per write of the store).
    pub fn while_file_exists(path: impl Into<PathBuf>) -> Self {
        StoreFaults {
            flag: Arc::default(),
            file: Some(path.into()),
        }
    }

    /// `inner` (a store's file) behind this switch, for `Database::builder().create_with_backend`.
    pub fn backend(&self, inner: redb::backends::FileBackend) -> FaultyFile {
        FaultyFile {
            inner,
            faults: self.clone(),
        }
    }

    /// Turns failing writes on (`true`) or off.
    pub fn set_failing(&self, failing: bool) {
        self.flag.store(failing, Ordering::SeqCst);
    }

    fn failing(&self) -> bool {
        self.flag.load(Ordering::SeqCst) || self.file.as_ref().is_some_and(|f| f.exists())
    }
}

/// redb's file backend, failing writes while a [`StoreFaults`] switch is on.
#[derive(Debug)]
pub struct FaultyFile {
    inner: redb::backends::FileBackend,
    faults: StoreFaults,
}

impl FaultyFile {
    fn check(&self) -> Result<(), std::io::Error> {
        if self.faults.failing() {
            Err(std::io::Error::from_raw_os_error(ENOSPC))
        } else {
            Ok(())
        }
    }
}

impl StorageBackend for FaultyFile {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.check()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.check()?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.check()?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }
    fn try_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }
    fn lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }
    fn lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }
    fn unlock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }
    fn query_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
