//! Conversions between the WIT types a hosted scheduler sees (`wasmos:framework/types`) and the
//! wire messages the core speaks, plus how the driver's launch check words resources.
//!
//! Plain functions, no state: what the guest may and may not do is decided in `driver.rs`.

use wasmos_api::proto as pb;
use wasmos_wasm_executor::bindings::types as wit;

/// `r` for an error message a scheduler reads.
pub(super) fn show(r: &wasmos_api::Resources) -> String {
    format!(
        "{} millicpus, {} MiB memory, {} MiB disk",
        r.millicpus, r.mem_mb, r.disk_mb
    )
}

/// A task the scheduler launches, as the core's accept call carries it.
pub(super) fn task_to_pb(t: wit::TaskInfo) -> pb::TaskInfo {
    let kind = match t.kind {
        wit::TaskKind::Wasm(w) => pb::task_info::Kind::Wasm(pb::WasmTask {
            executor_id: w.executor_id,
            payload: w.payload,
            timeout_seconds: w.timeout_seconds,
            fuel: w.fuel,
        }),
        wit::TaskKind::Command(c) => pb::task_info::Kind::Command(pb::CommandTask {
            argv: c.argv,
            env: c
                .env
                .into_iter()
                .map(|(key, value)| pb::Attribute { key, value })
                .collect(),
        }),
    };
    pb::TaskInfo {
        task_id: t.task_id,
        name: t.name,
        agent_id: t.agent_id,
        resources: Some(pb::Resources {
            millicpus: t.resources.millicpus,
            mem_mb: t.resources.mem_mb,
            disk_mb: t.resources.disk_mb,
        }),
        kind: Some(kind),
    }
}

/// Wire resources as the guest sees them (absent is zero).
fn resources_of(r: Option<pb::Resources>) -> wit::Resources {
    let r = r.unwrap_or_default();
    wit::Resources {
        millicpus: r.millicpus,
        mem_mb: r.mem_mb,
        disk_mb: r.disk_mb,
    }
}

/// An offer event as the guest's `resource-offers` takes it.
pub(super) fn offer_of(o: pb::Offer) -> wit::Offer {
    wit::Offer {
        id: o.id,
        agent_id: o.agent_id,
        hostname: o.hostname,
        resources: resources_of(o.resources),
        attributes: o.attributes.into_iter().map(|a| (a.key, a.value)).collect(),
    }
}

/// A wire task state as the guest sees it; `None` for unspecified or unknown values.
pub(super) fn state_of(raw: i32) -> Option<wit::TaskState> {
    Some(match pb::TaskState::try_from(raw).ok()? {
        pb::TaskState::Unspecified => return None,
        pb::TaskState::Staging => wit::TaskState::Staging,
        pb::TaskState::Starting => wit::TaskState::Starting,
        pb::TaskState::Running => wit::TaskState::Running,
        pb::TaskState::Finished => wit::TaskState::Finished,
        pb::TaskState::Failed => wit::TaskState::Failed,
        pb::TaskState::Killed => wit::TaskState::Killed,
        pb::TaskState::Lost => wit::TaskState::Lost,
        pb::TaskState::Error => wit::TaskState::Error,
        pb::TaskState::Unreachable => wit::TaskState::Unreachable,
    })
}
