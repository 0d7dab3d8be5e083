//! The view the HTTP API serves from: a copy of the cluster state the core publishes, never
//! the core itself. Handlers clone an `Arc` of the latest [`View`] and filter and serialise it
//! without any lock held, so a client polling a large cluster slows no scheduler or agent
//! (a Mesos master polled for `/state.json` every 5 s locked up at 250 agents).
//!
//! Staleness: a view is rebuilt on demand, when a request finds it older than
//! [`MAX_AGE`] (250 ms); the request that triggers the rebuild waits for it (one copy of the
//! core's state under its lock, no serialisation), requests arriving meanwhile are answered
//! from the previous view. So an answer is at most 250 ms plus one rebuild old, and a master
//! nobody polls copies nothing.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use wasmos_api::proto as pb;
use wasmos_api::{FrameworkId, Resources};

use crate::Master;

/// How old a view may be before a request asks for a new one.
pub const MAX_AGE: Duration = Duration::from_millis(250);

/// One outstanding offer, as published.
#[derive(Clone, Debug)]
pub struct OfferView {
    /// The offer's id.
    pub id: String,
    /// Its framework.
    pub framework: FrameworkId,
    /// Its agent.
    pub agent: String,
    /// What it offers.
    pub resources: Resources,
    /// When it was made (unix ms).
    pub created_ms: u64,
    /// When it expires (unix ms), if it does.
    pub expires_ms: Option<u64>,
}

/// What the endpoints need of the core, copied at `built`.
#[derive(Debug)]
pub struct View {
    /// When it was copied.
    pub built: Instant,
    /// Whether this master served (led) then.
    pub serving: bool,
    /// The cluster state, unfiltered (handlers filter per caller).
    pub state: pb::ClusterState,
    /// The outstanding offers.
    pub offers: Vec<OfferView>,
    /// The terminal-task counters then, by state.
    pub tasks_terminal: Vec<(wasmos_api::TaskState, u64)>,
    /// Offers sent, declined, rescinded, accepted then.
    pub offers_counted: [u64; 4],
    /// The allocation-cycle histogram then.
    pub allocation: crate::counters::AllocationHistogram,
    /// The Raft commit latency histogram then.
    pub raft_commit: crate::counters::AllocationHistogram,
    /// The hosted scheduler callback duration histogram then.
    pub scheduler_callback: crate::counters::AllocationHistogram,
    /// Fuel hosted schedulers' callbacks had burned then.
    pub scheduler_fuel: u64,
}

/// The latest view and who rebuilds it.
pub struct Views {
    latest: RwLock<Option<Arc<View>>>,
    /// Held by the one request rebuilding the view.
    rebuilding: tokio::sync::Mutex<()>,
}

impl Views {
    /// No view yet: the first request builds one.
    pub fn new() -> Self {
        Views {
            latest: RwLock::new(None),
            rebuilding: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> Option<Arc<View>> {
        crate::sync::read(&self.latest).clone()
    }

    /// The latest view, rebuilt from `master` first if it is older than [`MAX_AGE`] and no
    /// other request is rebuilding it (else the previous one).
    pub async fn get(&self, master: &Master) -> Arc<View> {
        if let Some(v) = self.current()
            && v.built.elapsed() < MAX_AGE
        {
            return v;
        }
        let guard = match self.rebuilding.try_lock() {
            Ok(g) => g,
            Err(_) => match self.current() {
                Some(v) => return v,
                None => self.rebuilding.lock().await,
            },
        };
        // Another request may have rebuilt it while this one waited.
        if let Some(v) = self.current()
            && v.built.elapsed() < MAX_AGE
        {
            return v;
        }
        let view = Arc::new(build(master));
        *crate::sync::write(&self.latest) = Some(view.clone());
        drop(guard);
        view
    }
}

impl Default for Views {
    fn default() -> Self {
        Self::new()
    }
}

/// Copies what the endpoints need out of `master`'s core (the only place the HTTP API takes
/// the core's lock, once per rebuild).
fn build(master: &Master) -> View {
    use std::sync::atomic::Ordering::Relaxed;
    let serving = master.is_serving();
    let state = master.cluster_state();
    let core = master.core();
    let offers = core
        .offer_records()
        .map(|o| OfferView {
            id: o.id.to_string(),
            framework: o.framework.clone(),
            agent: o.agent.to_string(),
            resources: o.resources,
            created_ms: o.created_ms,
            expires_ms: o.expires_ms,
        })
        .collect();
    let c = core.counters();
    View {
        built: Instant::now(),
        serving,
        state,
        offers,
        tasks_terminal: c.tasks_terminal().collect(),
        offers_counted: [
            c.offers_sent.load(Relaxed),
            c.offers_declined.load(Relaxed),
            c.offers_rescinded.load(Relaxed),
            c.offers_accepted.load(Relaxed),
        ],
        allocation: c.allocation(),
        raft_commit: c.raft_commit.snapshot(),
        scheduler_callback: c.scheduler_callback.snapshot(),
        scheduler_fuel: c.scheduler_fuel.load(Relaxed),
    }
}
