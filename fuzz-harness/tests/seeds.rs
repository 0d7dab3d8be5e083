//! Writes the generated part of the seed corpus (`fuzz/corpus/<target>/gen-*`): valid
//! messages and records the targets' inputs are made of, so that mutations start from inputs
//! that reach deep. Ignored by the test command; rerun by hand after a format changes:
//! `cargo nextest run --workspace -E 'test(write_seed_corpus)' --run-ignored only`.

use std::path::Path;

use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, SnapshotMeta, Vote};
use prost::Message;
use wasmos_agent::checkpoint::TaskRecord;
use wasmos_agent::containerizer::ContainerCheckpoint;
use wasmos_agent::status_queue::QueuedUpdate;
use wasmos_api::proto as pb;
use wasmos_api::{FrameworkId, TaskInfo, TaskKind, TaskState, TaskStatus, WasmBudget};
use wasmos_master::raft::store::{seal_record, seal_snapshot};
use wasmos_master::raft::{NodeId, TypeConfig, codec};
use wasmos_master::registry::{
    AgentRecord, AgentState, BlobBytes, Command, FrameworkRecord, FrameworkState, Registry,
};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("gen-{name}")), bytes).unwrap();
}

fn with(mode: u8, rest: &[u8]) -> Vec<u8> {
    [&[mode][..], rest].concat()
}

fn wasm_task(id: &str) -> pb::TaskInfo {
    pb::TaskInfo {
        task_id: id.into(),
        name: "pi".into(),
        agent_id: "agent-1".into(),
        resources: Some(pb::Resources {
            millicpus: 500,
            mem_mb: 64,
            disk_mb: 0,
        }),
        kind: Some(pb::task_info::Kind::Wasm(pb::WasmTask {
            executor_id: "e1".into(),
            payload: vec![1, 2, 3],
            timeout_seconds: Some(30.0),
            fuel: Some(1_000_000),
        })),
    }
}

fn status() -> pb::TaskStatus {
    pb::TaskStatus {
        task_id: "t1".into(),
        agent_id: "agent-1".into(),
        state: pb::TaskState::Finished as i32,
        message: "done".into(),
        data: Some(vec![9; 4]),
        uuid: "u1".into(),
        reason: "REASON".into(),
    }
}

fn convert_seeds() {
    write(
        "convert",
        "task-wasm",
        &with(0, &wasm_task("t1").encode_to_vec()),
    );
    let command = pb::TaskInfo {
        kind: Some(pb::task_info::Kind::Command(pb::CommandTask {
            argv: vec!["/bin/true".into()],
            env: vec![pb::Attribute {
                key: "K".into(),
                value: "V".into(),
            }],
        })),
        ..wasm_task("t2")
    };
    write(
        "convert",
        "task-command",
        &with(0, &command.encode_to_vec()),
    );
    write("convert", "status", &with(1, &status().encode_to_vec()));
    let accept = pb::SchedulerCall {
        call: Some(pb::scheduler_call::Call::Accept(
            pb::scheduler_call::Accept {
                offer_ids: vec!["o-1".into()],
                launches: vec![wasm_task("t1"), command],
                filters: Some(pb::Filters {
                    refuse_seconds: Some(1.5),
                }),
            },
        )),
    };
    write("convert", "accept", &with(2, &accept.encode_to_vec()));
    let updates = pb::AgentMessage {
        message: Some(pb::agent_message::Message::StatusUpdates(
            pb::agent_message::StatusUpdates {
                updates: vec![pb::AgentStatusUpdate {
                    framework_id: "fw-1".into(),
                    status: Some(status()),
                }],
            },
        )),
    };
    write(
        "convert",
        "agent-updates",
        &with(3, &updates.encode_to_vec()),
    );
    write("convert", "ids", &with(6, b"fw-1"));
    write("convert", "digest", &with(6, "ab".repeat(32).as_bytes()));
}

fn core_calls_seeds() {
    // register agent 0; subscribe framework 0; tick; accept an offer with one Wasm task;
    // the agent reports it running then finished; the scheduler acknowledges; tick far.
    let register = [2, 0, 1, 0, 4, 8, 1];
    let subscribe = [0, 0, 1, 2];
    let tick = [15, 0, 0xe8, 0x03];
    let accept = [4, 0, 0, 0, 0, 1, 0, 5, 1, 1, 2, 2];
    let running = [6, 0, 0, 1, 3];
    let finished = [6, 0, 0, 1, 4];
    let ack = [7, 0, 0];
    let far = [15, 0, 0x10, 0x27];
    let job: Vec<u8> = [
        &register[..],
        &subscribe,
        &tick,
        &accept,
        &running,
        &finished,
        &ack,
        &far,
    ]
    .concat();
    write("core_calls", "job", &job);
    let kill: Vec<u8> = [
        &register[..],
        &subscribe,
        &tick,
        &accept,
        &[8, 0, 1],
        &running,
        &far,
    ]
    .concat();
    write("core_calls", "kill", &kill);
    let lost: Vec<u8> = [
        &register[..],
        &subscribe,
        &tick,
        &accept,
        &[3, 0],
        &far,
        &far,
        &[2, 0, 1, 1, 4, 8, 1],
    ]
    .concat();
    write("core_calls", "agent-lost", &lost);
    let raw_call = pb::SchedulerCall {
        call: Some(pb::scheduler_call::Call::Kill(pb::scheduler_call::Kill {
            task_id: "t1".into(),
            agent_id: String::new(),
        })),
    }
    .encode_to_vec();
    let raw: Vec<u8> = [
        &register[..],
        &subscribe,
        &tick,
        &accept,
        &[9, 0, raw_call.len() as u8, 0],
        &raw_call,
        &teardown(),
    ]
    .concat();
    write("core_calls", "raw-call", &raw);
}

fn teardown() -> [u8; 3] {
    [13, 0, 4]
}

fn entry(term: u64, index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload,
    }
}

fn raft_seeds() {
    // Mode 1: valid logs the harness builds and corrupts, from a few choices.
    write(
        "raft_log",
        "valid-3",
        &[1, 2, 0, 0, 1, 0, 2, 1, 3, 0, 7, 1, 5, 0, 1],
    );
    write(
        "raft_log",
        "valid-8",
        &[
            2, 7, 9, 1, 0, 1, 1, 0, 2, 1, 1, 0, 0, 1, 2, 1, 3, 9, 3, 4, 5, 6,
        ],
    );
    // Mode 0: real records, as chunks.
    let vote = seal_record(&Vote::<NodeId>::new(3, 1)).unwrap();
    let committed = seal_record(&Some(LogId::new(CommittedLeaderId::new(3, 1), 1))).unwrap();
    let e1 = seal_record(&entry(3, 1, EntryPayload::Blank)).unwrap();
    let mut raw = vec![0, 1, vote.len() as u8];
    raw.extend(&vote);
    raw.extend([1, committed.len() as u8]);
    raw.extend(&committed);
    raw.extend([0, 0]);
    raw.extend(1u64.to_le_bytes());
    raw.extend([e1.len() as u8, 0]);
    raw.extend(&e1);
    write("raft_log", "records", &raw);
    // Mode 3: RPC payloads.
    let vote_rpc = codec::to_vec(&VoteRequest::<NodeId>::new(
        Vote::new(4, 2),
        Some(LogId::new(CommittedLeaderId::new(3, 1), 7)),
    ))
    .unwrap();
    write("raft_log", "rpc-vote", &[&[3, 1][..], &vote_rpc].concat());
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new(3, 1),
        prev_log_id: None,
        leader_commit: None,
        entries: vec![entry(
            3,
            1,
            EntryPayload::Normal(Command::RemoveAgent {
                id: "agent-1".parse().unwrap(),
            }),
        )],
    };
    write(
        "raft_log",
        "rpc-append",
        &[&[3, 0][..], &codec::to_vec(&append).unwrap()].concat(),
    );
}

fn commands() -> Vec<Command> {
    let fw: FrameworkId = "fw-1".parse().unwrap();
    vec![
        Command::AddFramework(FrameworkRecord {
            id: fw.clone(),
            name: "pi".into(),
            role: "batch".into(),
            principal: "alice".into(),
            failover_timeout_ms: 1000,
            state: FrameworkState::Connected,
            component_sha256: None,
            wasm_budget: WasmBudget::default(),
        }),
        Command::PutFrameworkState {
            id: fw.clone(),
            key: "k".into(),
            value: b"v".to_vec(),
        },
        Command::AdmitAgent(AgentRecord {
            id: "agent-1".parse().unwrap(),
            hostname: "h".into(),
            address: "127.0.0.1:1".into(),
            resources: wasmos_api::Resources {
                millicpus: 2000,
                mem_mb: 1024,
                disk_mb: 0,
            },
            attributes: Default::default(),
            state: AgentState::Active,
        }),
        Command::SetWeight {
            role: "batch".into(),
            weight: 2.0,
        },
        Command::PutComponent {
            sha256: "ab".repeat(32),
            bytes: BlobBytes::from(vec![0, 0x61, 0x73, 0x6d]),
        },
        Command::RemoveFramework { id: fw },
    ]
}

fn snapshot_seeds() {
    let mut commands_input = vec![1u8];
    let mut registry = Registry::default();
    for c in commands() {
        let bytes = codec::to_vec(&c).unwrap();
        commands_input.extend((bytes.len() as u16).to_le_bytes());
        commands_input.extend(&bytes);
        let _ = registry.apply(c);
    }
    write("snapshot", "commands", &commands_input);
    let data = codec::to_vec(&registry).unwrap();
    let meta = SnapshotMeta::<NodeId, BasicNode> {
        last_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), 6)),
        last_membership: Default::default(),
        snapshot_id: "2-1-6".into(),
    };
    write("snapshot", "record", &with(0, &seal_snapshot(&meta, &data)));
    write("snapshot", "registry-data", &with(0, &data));
    let empty = codec::to_vec(&Registry::default()).unwrap();
    write(
        "snapshot",
        "empty-record",
        &with(0, &seal_snapshot(&meta, &empty)),
    );
}

fn agent_seeds() {
    let task: TaskInfo = TaskInfo {
        task_id: "t1".parse().unwrap(),
        name: "pi".into(),
        agent_id: "agent-1".parse().unwrap(),
        resources: Default::default(),
        kind: TaskKind::Wasm {
            executor_id: "e1".parse().unwrap(),
            payload: vec![1, 2],
            budget: WasmBudget::default(),
        },
    };
    let record = TaskRecord {
        framework_id: "fw-1".parse().unwrap(),
        role: "batch".into(),
        component: Some("ab".repeat(32)),
        task,
        state: TaskState::Running,
        container: ContainerCheckpoint::Wasm {
            executor_id: "e1".into(),
        },
    };
    let key = b"fw-1/t1";
    let json = serde_json::to_vec(&record).unwrap();
    write(
        "agent_records",
        "task",
        &[&[0, key.len() as u8][..], key, &json].concat(),
    );
    let update = QueuedUpdate {
        seq: 7,
        framework_id: "fw-1".parse().unwrap(),
        status: TaskStatus {
            task_id: "t1".parse().unwrap(),
            agent_id: Some("agent-1".parse().unwrap()),
            state: TaskState::Finished,
            message: "done".into(),
            data: Some(vec![1]),
            uuid: Some("1f-7".into()),
        },
    };
    let json = serde_json::to_vec(&update).unwrap();
    write(
        "agent_records",
        "update",
        &[&[1][..], &7u64.to_le_bytes(), &json].concat(),
    );
    write(
        "agent_records",
        "update-other-seq",
        &[&[1][..], &8u64.to_le_bytes(), &json].concat(),
    );
}

#[test]
#[ignore = "writes the seed corpus; run by hand"]
fn write_seed_corpus() {
    convert_seeds();
    core_calls_seeds();
    raft_seeds();
    snapshot_seeds();
    agent_seeds();
}
