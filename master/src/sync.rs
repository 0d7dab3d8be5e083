//! How the master treats a poisoned lock: one policy for every `Mutex` and `RwLock` in this
//! crate, applied through [`lock()`], [`read()`] and [`write()`] (no `lock().expect(..)`
//! elsewhere).
//!
//! Policy: a poisoned lock is recovered, logged once at `error`, and its poison cleared.
//!
//! Why: a lock is poisoned when a thread panicked while holding it, which is a bug in the master
//! (nothing under a master lock unwraps what came from a tenant, a file or the network). Every
//! structure behind these locks is left consistent between the statements that can panic: the
//! core checks a call before it applies it; the Raft log's in-memory copy changes only through
//! map inserts and splits, which do not panic; the state machine counts an entry as applied
//! only after applying it. So the data is still usable. Panicking on poison
//! instead would turn one tenant's failed call into a master that fails every later call of
//! every tenant while still holding leadership, which is the outcome a cluster manager must
//! avoid. The panic itself is still logged by the task that hit it.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, recovering it if a panic poisoned it (see the module doc).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| {
        tracing::error!("recovered a lock poisoned by a panic (a bug): the master serves on");
        m.clear_poison();
        poisoned.into_inner()
    })
}

/// Takes `l` for reading, recovering it if a panic poisoned it (see the module doc).
pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|poisoned| {
        tracing::error!("recovered a lock poisoned by a panic (a bug): the master serves on");
        l.clear_poison();
        poisoned.into_inner()
    })
}

/// Takes `l` for writing, recovering it if a panic poisoned it (see the module doc).
pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|poisoned| {
        tracing::error!("recovered a lock poisoned by a panic (a bug): the master serves on");
        l.clear_poison();
        poisoned.into_inner()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_mutex_is_recovered_and_cleared() {
        let m = Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert!(!m.is_poisoned());
        assert_eq!(*lock(&m), 2);
    }

    #[test]
    fn a_poisoned_rwlock_is_recovered_for_reads_and_writes() {
        let l = Arc::new(RwLock::new(1));
        let l2 = l.clone();
        let _ = std::thread::spawn(move || {
            let _g = l2.write().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(l.is_poisoned());
        assert_eq!(*read(&l), 1);
        *write(&l) = 3;
        assert!(!l.is_poisoned());
        assert_eq!(*read(&l), 3);
    }
}
