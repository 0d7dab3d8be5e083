//! Target `convert`: prost-decoded scheduler, agent and master messages through every public
//! conversion of `wasmos_api::convert` (and the id and digest parsers they rely on). Nothing
//! panics, and what converts from the wire converts back to the same value.

use prost::Message;
use wasmos_api::convert::{self, ConvertError};
use wasmos_api::proto as pb;
use wasmos_api::{
    AgentId, ComponentDigest, ExecutorId, FrameworkId, OfferId, TaskId, TaskInfo, TaskStatus,
};

use crate::input::Input;

/// The first byte chooses the message type, the rest is its protobuf encoding (or, for ids,
/// the text to parse).
pub fn convert(data: &[u8]) {
    let mut input = Input::new(data);
    let which = input.byte();
    let bytes = input.rest();
    match which % 7 {
        0 => {
            if let Ok(t) = pb::TaskInfo::decode(bytes) {
                task_info(t);
            }
        }
        1 => {
            if let Ok(s) = pb::TaskStatus::decode(bytes) {
                task_status(s);
            }
        }
        2 => {
            if let Ok(c) = pb::SchedulerCall::decode(bytes) {
                scheduler_call(c);
            }
        }
        3 => {
            if let Ok(m) = pb::AgentMessage::decode(bytes) {
                agent_message(m);
            }
        }
        4 => {
            if let Ok(m) = pb::MasterMessage::decode(bytes) {
                master_message(m);
            }
        }
        5 => {
            if let Ok(o) = pb::Offer::decode(bytes) {
                let _ = convert::resources(o.resources);
                let attrs = convert::attributes(o.attributes);
                let back = convert::attributes(convert::attributes_pb(&attrs));
                assert_eq!(back, attrs, "attributes do not round-trip");
                ids(&o.id);
                ids(&o.framework_id);
                ids(&o.agent_id);
            }
        }
        _ => ids(&String::from_utf8_lossy(bytes)),
    }
}

/// A task from the wire: if it converts, it converts back to the same task.
fn task_info(t: pb::TaskInfo) {
    if let Ok(info) = TaskInfo::try_from(t) {
        let wire = pb::TaskInfo::from(&info);
        let again = TaskInfo::try_from(wire).expect("a task converted to the wire converts back");
        assert_eq!(again, info, "a task does not round-trip");
    }
}

/// A status from the wire: if it converts, it converts back to the same status.
fn task_status(s: pb::TaskStatus) {
    let reason = s.reason.clone();
    if let Ok(status) = TaskStatus::try_from(s) {
        let wire = convert::status_to_pb(&status, &reason);
        let again =
            TaskStatus::try_from(wire).expect("a status converted to the wire converts back");
        assert_eq!(again, status, "a status does not round-trip");
    }
}

fn state(value: i32) {
    if let Ok(s) = convert::task_state("state", value) {
        let back = wasmos_api::proto::TaskState::from(s) as i32;
        assert_eq!(back, value, "a task state does not round-trip");
    }
}

fn scheduler_call(c: pb::SchedulerCall) {
    use pb::scheduler_call::Call;
    match c.call {
        Some(Call::Subscribe(s)) => {
            if let Some(info) = s.framework_info {
                let _ = convert::opt_id::<FrameworkId>("id", &info.id);
            }
        }
        Some(Call::Accept(a)) => {
            for id in &a.offer_ids {
                let _ = convert::id::<OfferId>("offer_id", id);
            }
            for t in a.launches {
                task_info(t);
            }
            let _ = convert::filters(a.filters);
        }
        Some(Call::Decline(d)) => {
            for id in &d.offer_ids {
                let _ = convert::id::<OfferId>("offer_id", id);
            }
            let _ = convert::filters(d.filters);
        }
        Some(Call::Kill(k)) => {
            let _ = convert::id::<TaskId>("task_id", &k.task_id);
            let _ = convert::opt_id::<AgentId>("agent_id", &k.agent_id);
        }
        Some(Call::Reconcile(r)) => {
            for t in r.tasks {
                let _ = convert::id::<TaskId>("task_id", &t.task_id);
                let _ = convert::opt_id::<AgentId>("agent_id", &t.agent_id);
            }
        }
        Some(Call::Acknowledge(a)) => {
            let _ = convert::id::<TaskId>("task_id", &a.task_id);
            let _ = convert::id::<AgentId>("agent_id", &a.agent_id);
        }
        Some(Call::Message(m)) => {
            let _ = convert::id::<AgentId>("agent_id", &m.agent_id);
            let _ = convert::opt_id::<ExecutorId>("executor_id", &m.executor_id);
        }
        Some(Call::Revive(_) | Call::Suppress(_) | Call::Teardown(_)) | None => {}
    }
}

fn agent_message(m: pb::AgentMessage) {
    use pb::agent_message::Message as M;
    match m.message {
        Some(M::Register(r)) => {
            if let Some(info) = r.info {
                let _ = convert::opt_id::<AgentId>("id", &info.id);
                let _ = convert::resources(info.resources);
                let _ = convert::attributes(info.attributes);
            }
            for t in r.tasks {
                let _ = convert::id::<FrameworkId>("framework_id", &t.framework_id);
                state(t.state);
                if let Some(t) = t.task {
                    task_info(t);
                }
            }
        }
        Some(M::StatusUpdates(u)) => {
            for u in u.updates {
                let _ = convert::id::<FrameworkId>("framework_id", &u.framework_id);
                if let Some(s) = u.status {
                    state(s.state);
                    task_status(s);
                }
            }
        }
        Some(M::ExecutorMessage(e)) => {
            let _ = convert::id::<FrameworkId>("framework_id", &e.framework_id);
            let _ = convert::id::<ExecutorId>("executor_id", &e.executor_id);
        }
        Some(M::Heartbeat(_)) | Some(M::LogChunk(_)) | None => {}
    }
}

fn master_message(m: pb::MasterMessage) {
    use pb::master_message::Message as M;
    if let Some(M::RunTasks(r)) = m.message {
        let _ = convert::id::<FrameworkId>("framework_id", &r.framework_id);
        for t in r.tasks {
            task_info(t);
        }
    }
}

/// Every id parser on `s`: what parses prints back as `s`, and digests round-trip.
fn ids(s: &str) {
    fn one<T: std::str::FromStr<Err = wasmos_api::IdError> + std::fmt::Display>(s: &str) {
        if let Ok(id) = convert::id::<T>("id", s) {
            assert_eq!(id.to_string(), s, "an id does not print as it was parsed");
        }
        match convert::opt_id::<T>("id", s) {
            Ok(None) => assert!(s.is_empty()),
            Ok(Some(_)) | Err(ConvertError::Id { .. }) => {}
            Err(e) => panic!("an id parse failed with {e:?}"),
        }
    }
    one::<AgentId>(s);
    one::<FrameworkId>(s);
    one::<TaskId>(s);
    one::<OfferId>(s);
    one::<ExecutorId>(s);
    if let Ok(d) = ComponentDigest::parse(s) {
        assert!(
            ComponentDigest::parse(&d.to_hex()).ok() == Some(d),
            "a digest does not round-trip"
        );
    }
}
