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

/// A `state` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// The allocation-cycle histogram as recorded, encoded as it is.
#[derive(Debug)]
struct Histogram(AllocationHistogram);

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(
            self.0.sum_seconds,
            self.0.count,
            &self.0.buckets,
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
