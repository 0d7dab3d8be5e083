//! Target `agent_records`: the records an agent reads back from its store on restart, a task
//! checkpoint (`checkpoint::TaskRecord::decode`, keyed `<framework>/<task>`) and a queued status
//! update (`status_queue::QueuedUpdate::decode`, keyed by its sequence number). Nothing panics;
//! a record that decodes is the one its key names, and encodes back to a record that decodes to
//! the same value.

use wasmos_agent::checkpoint::{self, TaskRecord};
use wasmos_agent::status_queue::QueuedUpdate;
use wasmos_agent::store::Op;

use crate::input::Input;

/// The first byte chooses the record kind; then comes the key (a short string, or eight bytes
/// of sequence number) and the record's bytes.
pub fn agent_records(data: &[u8]) {
    let mut input = Input::new(data);
    if input.byte() % 2 == 0 {
        let key = input.string();
        let bytes = input.rest();
        let Ok(record) = TaskRecord::decode(&key, bytes) else {
            return;
        };
        assert_eq!(
            checkpoint::key(&record.framework_id, &record.task.task_id),
            key,
            "a task record was accepted under another task's key"
        );
        let Ok(Op::PutTask(k, v)) = record.put() else {
            panic!("a decoded task record does not encode as a put");
        };
        assert_eq!(k, key);
        let again = TaskRecord::decode(&k, &v).expect("an encoded task record decodes");
        assert_eq!(again, record, "a task record does not round-trip");
    } else {
        let seq = input.u64();
        let bytes = input.rest();
        let Ok(update) = QueuedUpdate::decode(seq, bytes) else {
            return;
        };
        assert_eq!(
            update.seq, seq,
            "a status update was accepted under another number"
        );
        let v = serde_json::to_vec(&update).expect("a decoded update encodes");
        let again = QueuedUpdate::decode(seq, &v).expect("an encoded update decodes");
        assert_eq!(again, update, "a status update does not round-trip");
    }
}
