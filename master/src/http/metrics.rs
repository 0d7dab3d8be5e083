//! `GET /metrics`: the master's Prometheus text, encoded with prometheus-client from the
//! published view at each scrape (a fresh registry per scrape; the counters behind it are the
//! core's atomics, `crate::counters`). Names follow Prometheus's conventions: a `wasmos_`
//! prefix, base units (`_seconds`), `_total` counters, states as labels, no ids as labels.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::view::View;
use crate::Master;
use crate::counters::AllocationHistogram;

/// A `role` label: roles are few and made by operators.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: String,
}

/// A `state` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// The allocation-cycle histogram as recorded, encoded as it is.
#[derive(Debug)]
struct Histogram(AllocationHistogram);

/// What prometheus-client's encoder takes: counts per bucket (it adds them up itself) and
/// `f64::MAX` for the last bound (which it writes `+Inf`), from cumulative counts ending with
/// `f64::INFINITY`.
fn per_bucket(cumulative: &[(f64, u64)]) -> Vec<(f64, u64)> {
    let mut below = 0;
    cumulative
        .iter()
        .map(|&(bound, n)| {
            let bound = if bound.is_infinite() { f64::MAX } else { bound };
            let here = n.saturating_sub(below);
            below = n;
            (bound, here)
        })
        .collect()
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(
            self.0.sum_seconds,
            self.0.count,
            &per_bucket(&self.0.buckets),
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn by_state<
    M: Default
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + EncodeMetric
        + prometheus_client::metrics::TypedMetric
        + 'static,
>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (String, impl FnOnce(&M))>,
) {
    let family: Family<StateLabel, M> = Family::default();
    for (state, set) in values {
        set(&family.get_or_create(&StateLabel { state }));
    }
    registry.register(name, help, family);
}

/// The Prometheus text for `view` on `master`.
pub fn render(master: &Master, view: &View) -> String {
    let mut r = Registry::default();
    let s = &view.state;
    // Tasks by state: every state listed, so a state that empties reads 0.
    let mut live: std::collections::BTreeMap<String, i64> =
        ["staging", "starting", "running", "unreachable"]
            .into_iter()
            .map(|n| (n.to_string(), 0))
            .collect();
    for t in &s.tasks {
        let st = super::types::state_name(t.status.as_ref().map_or(0, |x| x.state));
        *live.entry(st).or_default() += 1;
    }
    by_state::<Gauge>(
        &mut r,
        "wasmos_tasks",
        "Tasks the master knows, by state",
        live.into_iter().map(|(k, v)| {
            (k, move |g: &Gauge| {
                g.set(v);
            })
        }),
    );
    by_state::<Counter>(
        &mut r,
        "wasmos_tasks_terminal",
        "Tasks that reached a terminal state, by state",
        view.tasks_terminal.iter().map(|(st, n)| {
            (st.to_string(), move |c: &Counter| {
                c.inc_by(*n);
            })
        }),
    );
    let connected = s.frameworks.iter().filter(|f| f.connected).count() as i64;
    by_state::<Gauge>(
        &mut r,
        "wasmos_frameworks",
        "Registered frameworks, by state",
        [
            ("connected".to_string(), connected),
            (
                "disconnected".to_string(),
                s.frameworks.len() as i64 - connected,
            ),
        ]
        .into_iter()
        .map(|(k, v)| {
            (k, move |g: &Gauge| {
                g.set(v);
            })
        }),
    );
    let reachable = s.agents.iter().filter(|a| a.reachable).count() as i64;
    by_state::<Gauge>(
        &mut r,
        "wasmos_agents",
        "Admitted agents, by state",
        [
            ("reachable".to_string(), reachable),
            ("unreachable".to_string(), s.agents.len() as i64 - reachable),
        ]
        .into_iter()
        .map(|(k, v)| {
            (k, move |g: &Gauge| {
                g.set(v);
            })
        }),
    );
    for (name, help, n) in [
        (
            "wasmos_offers_sent",
            "Offers sent to schedulers",
            view.offers_counted[0],
        ),
        (
            "wasmos_offers_declined",
            "Offers declined",
            view.offers_counted[1],
        ),
        (
            "wasmos_offers_rescinded",
            "Offers rescinded",
            view.offers_counted[2],
        ),
        (
            "wasmos_offers_accepted",
            "Offers used in accept calls",
            view.offers_counted[3],
        ),
    ] {
        let c: Counter = Counter::default();
        c.inc_by(n);
        r.register(name, help, c);
    }
    gauge(
        &mut r,
        "wasmos_offers_outstanding",
        "Offers not yet answered",
        view.offers.len() as i64,
    );
    r.register(
        "wasmos_allocation_run_duration_seconds",
        "How long one allocation cycle took",
        Histogram(view.allocation.clone()),
    );
    r.register(
        "wasmos_raft_commit_duration_seconds",
        "How long a registry change took to commit through Raft and apply",
        Histogram(view.raft_commit.clone()),
    );
    r.register(
        "wasmos_scheduler_callback_duration_seconds",
        "How long one callback of a hosted scheduler took",
        Histogram(view.scheduler_callback.clone()),
    );
    let fuel: Counter = Counter::default();
    fuel.inc_by(view.scheduler_fuel);
    r.register(
        "wasmos_scheduler_fuel_used",
        "Fuel (about one unit per Wasm instruction) hosted schedulers' callbacks burned",
        fuel,
    );
    // Each role's DRF dominant share: its largest fraction of a resource the cluster has.
    let total = s.total.clone().unwrap_or_default();
    let share = |a: u64, t: u64| if t == 0 { 0.0 } else { a as f64 / t as f64 };
    let shares: Family<RoleLabel, Gauge<f64, std::sync::atomic::AtomicU64>> = Family::default();
    for role in &s.roles {
        let a = role.allocated.clone().unwrap_or_default();
        let dominant = share(a.millicpus, total.millicpus)
            .max(share(a.mem_mb, total.mem_mb))
            .max(share(a.disk_mb, total.disk_mb));
        shares
            .get_or_create(&RoleLabel {
                role: role.role.clone(),
            })
            .set(dominant);
    }
    r.register(
        "wasmos_role_allocated_share",
        "Each role's allocated dominant share (DRF): its largest fraction of a cluster resource",
        shares,
    );
    let (leader, term, applied) = match master.raft_node() {
        None => (1, 0, 0),
        Some(node) => {
            let m = node.metrics().borrow().clone();
            (
                i64::from(m.current_leader == Some(node.id()) && view.serving),
                m.current_term as i64,
                m.last_applied.map_or(0, |l| l.index as i64),
            )
        }
    };
    gauge(
        &mut r,
        "wasmos_raft_leader",
        "1 while this master leads, else 0",
        leader,
    );
    gauge(&mut r, "wasmos_raft_term", "The current Raft term", term);
    gauge(
        &mut r,
        "wasmos_raft_last_applied_index",
        "Index of the last Raft entry applied to the registry",
        applied,
    );
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_encoded_cumulative_once_with_an_inf_bucket() {
        let h = AllocationHistogram {
            buckets: vec![(0.1, 1), (1.0, 3), (f64::INFINITY, 4)],
            count: 4,
            sum_seconds: 2.5,
        };
        let mut r = Registry::default();
        r.register("h_seconds", "h", Histogram(h));
        let mut out = String::new();
        encode(&mut out, &r).unwrap();
        assert!(out.contains("h_seconds_bucket{le=\"0.1\"} 1\n"), "{out}");
        assert!(out.contains("h_seconds_bucket{le=\"1.0\"} 3\n"), "{out}");
        assert!(out.contains("h_seconds_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("h_seconds_count 4\n"), "{out}");
    }
}
