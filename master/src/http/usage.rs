//! The cluster's CPU and memory use over the last hour, for the UI's chart
//! (`GET /api/v1/cluster/usage`): one [`Sample`] every [`INTERVAL`] (10 s), the last
//! [`CAPACITY`] (360) kept in a ring buffer. A task beside the HTTP server takes each sample
//! from the published [`View`](super::view::View) (never the core directly) while this master
//! leads; on a master that does not lead it empties the buffer, so a new leader starts with an
//! empty chart (the samples are soft state, like the history: nothing of them is replicated).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use utoipa::ToSchema;

use super::Http;
use super::types::ResourcesJson;

/// How often a sample is taken.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// How many samples are kept: an hour of them.
pub const CAPACITY: usize = 360;

/// The cluster's use at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, ToSchema)]
pub struct Sample {
    /// When (unix ms).
    pub unix_ms: u64,
    /// CPU held by live tasks, in thousandths of a core.
    pub cpu_used_millicpus: u64,
    /// CPU of every admitted agent, in thousandths of a core.
    pub cpu_total_millicpus: u64,
    /// Memory held by live tasks, in MiB.
    pub mem_used_mb: u64,
    /// Memory of every admitted agent, in MiB.
    pub mem_total_mb: u64,
}

/// `GET /api/v1/cluster/usage`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageJson {
    /// Oldest first; empty on a master that has led for less than 10 s.
    pub samples: Vec<Sample>,
}

/// The ring buffer of samples.
#[derive(Debug, Default)]
pub struct Usage {
    samples: Mutex<VecDeque<Sample>>,
}

impl Usage {
    /// Appends `s`, dropping the oldest beyond [`CAPACITY`].
    pub fn push(&self, s: Sample) {
        let mut q = crate::sync::lock(&self.samples);
        if q.len() >= CAPACITY {
            q.pop_front();
        }
        q.push_back(s);
    }

    /// Forgets every sample (this master no longer leads).
    pub fn clear(&self) {
        crate::sync::lock(&self.samples).clear();
    }

    /// Every kept sample, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        crate::sync::lock(&self.samples).iter().copied().collect()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Takes a sample from the published view every [`INTERVAL`] while `http`'s master leads,
/// until the task is aborted (the HTTP server stops).
pub async fn sample_forever(http: Http) {
    let usage = &http.usage;
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !http.master.is_serving() {
            usage.clear();
            continue;
        }
        let view = http.views.get(&http.master).await;
        let total: ResourcesJson = view.state.total.as_ref().into();
        let used = view
            .state
            .agents
            .iter()
            .fold(ResourcesJson::default(), |acc, a| {
                acc.plus(a.used.as_ref().into())
            });
        usage.push(Sample {
            unix_ms: now_ms(),
            cpu_used_millicpus: used.millicpus,
            cpu_total_millicpus: total.millicpus,
            mem_used_mb: used.mem_mb,
            mem_total_mb: total.mem_mb,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(unix_ms: u64) -> Sample {
        Sample {
            unix_ms,
            cpu_used_millicpus: 0,
            cpu_total_millicpus: 0,
            mem_used_mb: 0,
            mem_total_mb: 0,
        }
    }

    #[test]
    fn keeps_the_last_hour_of_samples_oldest_first() {
        let u = Usage::default();
        for i in 0..(CAPACITY as u64 + 5) {
            u.push(at(i));
        }
        let s = u.samples();
        assert_eq!(s.len(), CAPACITY);
        assert_eq!(s.first().map(|s| s.unix_ms), Some(5));
        assert_eq!(s.last().map(|s| s.unix_ms), Some(CAPACITY as u64 + 4));
        u.clear();
        assert!(u.samples().is_empty());
    }
}
