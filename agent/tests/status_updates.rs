//! The durable status-update queue against a fake master: updates queue while it is down and
//! all arrive, in order per task, once it is back; unacknowledged updates survive a restart;
//! a task's next update waits for the previous one's acknowledgement; writes share commits.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio_util::sync::CancellationToken;
use wasmos_agent::store::Store;
use wasmos_agent::{QueuedUpdate, RetryPolicy, StatusQueue, TransportError, UpdateTransport};
use wasmos_api::{TaskId, TaskState, TaskStatus};

fn fast() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    }
}

async fn open_queue(path: &Path) -> (Store, Arc<StatusQueue>) {
    // A store closed a moment ago may still be releasing its file.
    for _ in 0..500 {
        if let Ok((store, loaded)) = Store::open(path) {
            let q = StatusQueue::new(store.clone(), &loaded.meta, &loaded.updates, fast()).unwrap();
            return (store, q);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("cannot reopen {}", path.display());
}

fn status(task: &str, state: TaskState, message: &str) -> TaskStatus {
    TaskStatus {
        task_id: TaskId::new(task).unwrap(),
        agent_id: None,
        state,
        message: message.into(),
        data: None,
        uuid: None,
    }
}

/// The states each test task goes through: five progress reports, then the end.
fn script() -> Vec<(TaskState, String)> {
    let mut s: Vec<_> = (1..=5)
        .map(|i| (TaskState::Running, format!("step {i}")))
        .collect();
    s.push((TaskState::Finished, "done".into()));
    s
}

fn messages(updates: &[QueuedUpdate]) -> Vec<(TaskState, String)> {
    updates
        .iter()
        .map(|u| (u.status.state, u.status.message.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_master_down_updates_queue_and_all_arrive_in_order_after_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, queue) = open_queue(&dir.path().join("agent.redb")).await;
    let master = FakeMaster::new(false);
    let stop = CancellationToken::new();
    master.serve(queue.clone(), stop.clone());

    // Three tasks report concurrently, each in its own order.
    let tasks = ["a", "b", "c"];
    let mut writers = Vec::new();
    for t in tasks {
        let q = queue.clone();
        writers.push(tokio::spawn(async move {
            for (state, msg) in script() {
                q.enqueue(fw("fw"), status(t, state, &msg), vec![])
                    .await
                    .unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(queue.pending(), 18);
    // The queue keeps trying while the master is down, and nothing gets through.
    assert!(wait_until(Duration::from_secs(20), || queue.sends() >= 5).await);
    assert!(master.received().is_empty());
    assert_eq!(queue.pending(), 18);

    master.set_up(true);
    queue.resend_now();
    assert!(
        wait_until(Duration::from_secs(30), || queue.pending() == 0).await,
        "{} updates still pending",
        queue.pending()
    );
    for t in tasks {
        let got = master.task_updates("fw", t);
        assert_eq!(
            messages(&got),
            script(),
            "task {t}: lost or reordered updates"
        );
        // Sequence numbers of one task only grow: nothing overtook anything.
        assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_updates_survive_an_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.redb");
    let mut uuids = Vec::new();
    {
        let (_store, queue) = open_queue(&path).await;
        for (state, msg) in script() {
            let u = queue
                .enqueue(fw("fw"), status("t", state, &msg), vec![])
                .await
                .unwrap();
            uuids.push(u.status.uuid.unwrap());
        }
        // Dropped here without any acknowledgement: a crash, as far as the disk is concerned.
    }
    let (_store, queue) = open_queue(&path).await;
    assert_eq!(queue.pending(), 6);
    let master = FakeMaster::new(true);
    let stop = CancellationToken::new();
    master.serve(queue.clone(), stop.clone());
    assert!(wait_until(Duration::from_secs(30), || queue.pending() == 0).await);
    let got = master.task_updates("fw", "t");
    assert_eq!(messages(&got), script());
    let got_uuids: Vec<_> = got.iter().map(|u| u.status.uuid.clone().unwrap()).collect();
    assert_eq!(
        got_uuids, uuids,
        "an update's uuid is the same when it is resent"
    );

    // New updates after the restart get fresh uuids.
    let u = queue
        .enqueue(fw("fw"), status("t2", TaskState::Running, ""), vec![])
        .await
        .unwrap();
    assert!(!uuids.contains(&u.status.uuid.unwrap()));
    stop.cancel();
}

/// Records what it is sent and acknowledges nothing by itself.
#[derive(Default)]
struct SilentMaster {
    got: Mutex<Vec<QueuedUpdate>>,
}

#[async_trait::async_trait]
impl UpdateTransport for SilentMaster {
    async fn send(&self, updates: Vec<QueuedUpdate>) -> Result<(), TransportError> {
        self.got.lock().unwrap().extend(updates);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_next_update_waits_for_the_previous_ones_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, queue) = open_queue(&dir.path().join("agent.redb")).await;
    let master = Arc::new(SilentMaster::default());
    let stop = CancellationToken::new();
    tokio::spawn(queue.clone().run(master.clone(), stop.clone()));
    let first = queue
        .enqueue(fw("fw"), status("t", TaskState::Running, "first"), vec![])
        .await
        .unwrap();
    queue
        .enqueue(fw("fw"), status("t", TaskState::Finished, "second"), vec![])
        .await
        .unwrap();
    // The first is resent (no acknowledgement) several times; the second never goes out.
    assert!(
        wait_until(Duration::from_secs(20), || master.got.lock().unwrap().len()
            >= 3)
        .await
    );
    assert!(
        master
            .got
            .lock()
            .unwrap()
            .iter()
            .all(|u| u.status.message == "first")
    );

    // A stale acknowledgement changes nothing; the right one releases the second update.
    assert!(!queue.acknowledge(&fw("fw"), &"t".parse().unwrap(), "not-a-uuid"));
    assert!(queue.acknowledge(
        &fw("fw"),
        &"t".parse().unwrap(),
        first.status.uuid.as_deref().unwrap()
    ));
    assert!(
        wait_until(Duration::from_secs(20), || {
            master
                .got
                .lock()
                .unwrap()
                .iter()
                .any(|u| u.status.message == "second")
        })
        .await
    );
    assert_eq!(queue.pending(), 1);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_updates_shares_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (store, queue) = open_queue(&dir.path().join("agent.redb")).await;
    let before = store.commits();
    let mut writers = Vec::new();
    for i in 0..500 {
        let q = queue.clone();
        writers.push(tokio::spawn(async move {
            q.enqueue(
                fw("fw"),
                status(&format!("t{i}"), TaskState::Running, ""),
                vec![],
            )
            .await
            .unwrap();
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let commits = store.commits() - before;
    assert_eq!(queue.pending(), 500);
    // Updates enqueued while a commit is under way share the next one.
    assert!(
        commits < 500 / 10,
        "500 updates took {commits} commits (one fsync each?)"
    );
}
