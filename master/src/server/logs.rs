//! Task and scheduler logs for `OperatorService` (`ReadTaskLog`, `ReadSchedulerLog`), and the
//! [`LogProxy`] that asks agents for a task's output over their session streams.
//!
//! Clients never talk to agents: the master finds the task's agent (in its task book, or in
//! the history for a task that ended), sends it a `ReadLog` on its session and waits for the
//! `LogChunk` with the same request id, at most [`READ_TIMEOUT`], with at most
//! [`MAX_OUTSTANDING_PER_AGENT`] reads waiting per agent (so a slow agent cannot make the
//! master hold unbounded waiters). An answer is taken only from the agent that was asked.
//! Both calls are authorized by [`Action::ReadTaskLog`]: the framework's principal, or
//! `see_all_frameworks`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tonic::{Request, Response, Status};
use wasmos_api::convert;
use wasmos_api::proto as pb;
use wasmos_api::{AgentId, FrameworkId, TaskId};

use super::Master;
use super::status::ServiceError;
use crate::acl::Action;
use crate::history::TaskFilter;
use crate::sync::lock;

/// How long the master waits for an agent's answer to one read.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Most reads waiting for one agent's answers at a time.
pub(crate) const MAX_OUTSTANDING_PER_AGENT: usize = 16;
/// Bytes one read returns when the request asks for 0.
const DEFAULT_MAX_BYTES: u32 = 64 << 10;
/// Most bytes one read returns (a larger `max_bytes` is served as this).
const MAX_BYTES: u32 = 1 << 20;
/// Most lines `tail_lines` returns (a larger value is served as this).
const MAX_TAIL_LINES: u32 = 10_000;

/// Why a log could not be read; each maps to its wire code in `status.rs`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LogError {
    /// No live or completed task has that id (in that framework).
    #[error(
        "task {0} is not known: neither running nor kept in the history (`wasmos tasks --all` \
         lists what is kept)"
    )]
    UnknownTask(TaskId),
    /// Several frameworks have a task of that id and none was named.
    #[error("{frameworks} frameworks have a task {task}; name one with --framework ID")]
    AmbiguousTask {
        /// The task.
        task: TaskId,
        /// How many frameworks have it.
        frameworks: usize,
    },
    /// The agent that ran the task has no session with this master.
    #[error(
        "agent {agent} ({host}) that ran task {task} is not connected; its output is on that \
         agent under <work dir>/sandboxes/{framework}/{task}/ (until its sandbox is collected)"
    )]
    AgentGone {
        /// The agent.
        agent: AgentId,
        /// Its host name, as registered.
        host: String,
        /// The task's framework.
        framework: FrameworkId,
        /// The task.
        task: TaskId,
    },
    /// Too many reads wait for that agent.
    #[error("agent {0} already has {MAX_OUTSTANDING_PER_AGENT} log reads waiting; retry shortly")]
    AgentBusy(AgentId),
    /// The agent did not answer in time.
    #[error("agent {0} did not answer the log read within {secs} s; retry", secs = READ_TIMEOUT.as_secs())]
    AgentTimeout(AgentId),
    /// The agent answered with an error.
    #[error("agent {agent} cannot read the output of task {task}: {message}")]
    AgentRefused {
        /// The agent.
        agent: AgentId,
        /// The task.
        task: TaskId,
        /// The agent's words.
        message: String,
    },
    /// The task ended and its file is not there.
    #[error(
        "task {task} on agent {agent} has no {stream}: it wrote none, or its sandbox was \
         collected (an agent keeps a finished task's sandbox for 7 days, less when its disk runs \
         low)"
    )]
    NoOutput {
        /// The task.
        task: TaskId,
        /// The agent.
        agent: AgentId,
        /// "stdout" or "stderr".
        stream: &'static str,
    },
}

impl LogError {
    /// Its wire code.
    pub(crate) fn code(&self) -> tonic::Code {
        match self {
            LogError::UnknownTask(_) | LogError::NoOutput { .. } => tonic::Code::NotFound,
            LogError::AmbiguousTask { .. } | LogError::AgentRefused { .. } => {
                tonic::Code::FailedPrecondition
            }
            LogError::AgentGone { .. } | LogError::AgentBusy(_) | LogError::AgentTimeout(_) => {
                tonic::Code::Unavailable
            }
        }
    }
}

struct Waiting {
    agent: AgentId,
    answer: oneshot::Sender<pb::agent_message::LogChunk>,
}

/// Reads waiting for agents' answers, by request id.
#[derive(Default)]
pub(crate) struct LogProxy {
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, Waiting>>,
}

/// Removes a read's entry however its wait ends (answer, timeout, the caller going away).
struct Forget<'a> {
    proxy: &'a LogProxy,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(&self.proxy.waiting).remove(&self.id);
    }
}

impl LogProxy {
    /// Hands an agent's answer to the read waiting for it; an answer from another agent than
    /// the one asked, or to no waiting read (it timed out), is dropped.
    pub(crate) fn answer(&self, agent: &AgentId, chunk: pb::agent_message::LogChunk) {
        let mut waiting = lock(&self.waiting);
        if waiting
            .get(&chunk.request_id)
            .is_some_and(|w| &w.agent == agent)
            && let Some(w) = waiting.remove(&chunk.request_id)
        {
            let _ = w.answer.send(chunk);
        }
    }

    /// Sends `read` (its request id set here) to `agent` on `tx` and waits for the answer.
    async fn ask(
        &self,
        agent: &AgentId,
        tx: crate::core::AgentTx,
        mut read: pb::master_message::ReadLog,
    ) -> Result<pb::agent_message::LogChunk, AskError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (answer, rx) = oneshot::channel();
        {
            let mut waiting = lock(&self.waiting);
            if waiting.values().filter(|w| &w.agent == agent).count() >= MAX_OUTSTANDING_PER_AGENT {
                return Err(AskError::Busy);
            }
            waiting.insert(
                id,
                Waiting {
                    agent: agent.clone(),
                    answer,
                },
            );
        }
        let _forget = Forget { proxy: self, id };
        read.request_id = id;
        let message = pb::MasterMessage {
            message: Some(pb::master_message::Message::ReadLog(read)),
        };
        tokio::time::timeout(READ_TIMEOUT, async {
            tx.send(Ok(message)).await.map_err(|_| AskError::Gone)?;
            rx.await.map_err(|_| AskError::Gone)
        })
        .await
        .map_err(|_| AskError::Timeout)?
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        lock(&self.waiting).len()
    }
}

enum AskError {
    Busy,
    Gone,
    Timeout,
}

/// Where a task ran, and whether it ended.
struct Located {
    framework: FrameworkId,
    agent: AgentId,
    ended: bool,
}

impl Master {
    /// Finds task `task` (of `framework` when given) in the task book, then the history.
    fn locate_task(
        &self,
        task: &TaskId,
        framework: Option<&FrameworkId>,
    ) -> Result<Located, LogError> {
        let core = self.core();
        let live: Vec<&crate::tasks::TaskRecord> = match framework {
            // One lookup when the framework is named; a scan of the live tasks otherwise.
            Some(f) => core.tasks().get(f, task).into_iter().collect(),
            None => core.tasks().all().filter(|r| &r.id == task).collect(),
        };
        let mut found: Vec<Located> = live
            .into_iter()
            .map(|r| Located {
                framework: r.framework.clone(),
                agent: r.agent.clone(),
                ended: r.state.is_terminal(),
            })
            .collect();
        let filter = TaskFilter {
            framework: framework.cloned(),
            task: Some(task.clone()),
            ..TaskFilter::default()
        };
        let all = |_: &FrameworkId, _: Option<&str>| true;
        for t in core.tasks().history().tasks(&filter, &all) {
            // The newest run of a (framework, task) comes first; a live one wins.
            if !found.iter().any(|l| l.framework == t.framework) {
                found.push(Located {
                    framework: t.framework.clone(),
                    agent: t.agent.clone(),
                    ended: true,
                });
            }
        }
        match found.len() {
            0 => Err(LogError::UnknownTask(task.clone())),
            1 => Ok(found.remove(0)),
            n => Err(LogError::AmbiguousTask {
                task: task.clone(),
                frameworks: n,
            }),
        }
    }

    pub(super) async fn read_task_log_call(
        &self,
        request: Request<pb::ReadTaskLogRequest>,
    ) -> Result<Response<pb::ReadTaskLogResponse>, Status> {
        self.leading()?;
        let r = request.get_ref();
        let task: TaskId = convert::id("task_id", &r.task_id).map_err(ServiceError::Convert)?;
        let framework = convert::opt_id::<FrameworkId>("framework_id", &r.framework_id)
            .map_err(ServiceError::Convert)?;
        // The framework is needed to decide; an unknown task is refused the same way to
        // everyone (it names nothing of another principal).
        let at = self
            .locate_task(&task, framework.as_ref())
            .map_err(ServiceError::Log)?;
        self.authorize(
            &request,
            &Action::ReadTaskLog {
                framework: at.framework.clone(),
            },
        )?;
        let r = request.into_inner();
        let stream = match pb::LogStream::try_from(r.stream) {
            Ok(pb::LogStream::Stderr) => "stderr",
            _ => "stdout",
        };
        let (tx, host) = {
            let core = self.core();
            let host = core
                .registry()
                .agents
                .get(&at.agent)
                .map(|a| a.hostname.clone())
                .unwrap_or_default();
            (core.agent_tx(&at.agent).filter(|t| !t.is_closed()), host)
        };
        let gone = || LogError::AgentGone {
            agent: at.agent.clone(),
            host: host.clone(),
            framework: at.framework.clone(),
            task: task.clone(),
        };
        let tx = tx.ok_or_else(|| ServiceError::Log(gone()))?;
        let read = pb::master_message::ReadLog {
            request_id: 0,
            framework_id: at.framework.to_string(),
            task_id: task.to_string(),
            stream: stream.into(),
            offset: r.offset,
            max_bytes: match r.max_bytes {
                0 => DEFAULT_MAX_BYTES,
                n => n.min(MAX_BYTES),
            },
            tail_lines: r.tail_lines.min(MAX_TAIL_LINES),
        };
        let chunk = self
            .log_proxy()
            .ask(&at.agent, tx, read)
            .await
            .map_err(|e| {
                ServiceError::Log(match e {
                    AskError::Busy => LogError::AgentBusy(at.agent.clone()),
                    AskError::Gone => gone(),
                    AskError::Timeout => LogError::AgentTimeout(at.agent.clone()),
                })
            })?;
        if !chunk.error.is_empty() {
            return Err(ServiceError::Log(LogError::AgentRefused {
                agent: at.agent.clone(),
                task,
                message: chunk.error,
            })
            .into());
        }
        // Whether it ended is asked after the read: what was read is then all there is.
        let ended = at.ended
            || self
                .locate_task(&task, Some(&at.framework))
                .is_ok_and(|l| l.ended);
        if chunk.missing && ended {
            return Err(ServiceError::Log(LogError::NoOutput {
                task,
                agent: at.agent,
                stream,
            })
            .into());
        }
        Ok(Response::new(pb::ReadTaskLogResponse {
            data: chunk.data,
            next_offset: if chunk.missing {
                r.offset
            } else {
                chunk.next_offset
            },
            task_ended: ended,
            agent_id: at.agent.to_string(),
            size: chunk.size,
        }))
    }

    pub(super) async fn read_scheduler_log_call(
        &self,
        request: Request<pb::ReadSchedulerLogRequest>,
    ) -> Result<Response<pb::ReadSchedulerLogResponse>, Status> {
        self.leading()?;
        let fw: FrameworkId = convert::id("framework_id", &request.get_ref().framework_id)
            .map_err(ServiceError::Convert)?;
        self.authorize(
            &request,
            &Action::ReadTaskLog {
                framework: fw.clone(),
            },
        )?;
        let r = request.into_inner();
        let (registered, known) = {
            let core = self.core();
            let registered = core.registry().frameworks.contains_key(&fw);
            let known = registered
                || core.registry().removed_frameworks.contains(&fw)
                || core.tasks().history().completed_framework(&fw).is_some();
            (registered, known)
        };
        let lines = match self.framework_host_if_any() {
            Some(h) => h.scheduler_logs().read(
                fw.as_str(),
                r.after_seq,
                r.tail_lines.min(MAX_TAIL_LINES) as usize,
            ),
            None => Vec::new(),
        };
        if !known && lines.is_empty() {
            return Err(ServiceError::UnknownFramework(fw).into());
        }
        Ok(Response::new(pb::ReadSchedulerLogResponse {
            lines: lines
                .into_iter()
                .map(|l| pb::SchedulerLogLine {
                    seq: l.seq,
                    unix_ms: l.unix_ms,
                    level: l.level.into(),
                    message: l.message,
                })
                .collect(),
            framework_ended: !registered,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: u64) -> pb::agent_message::LogChunk {
        pb::agent_message::LogChunk {
            request_id: id,
            data: b"out".to_vec(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn answers_are_taken_only_from_the_agent_asked_and_waits_are_bounded() {
        let proxy = std::sync::Arc::new(LogProxy::default());
        let a1: AgentId = "a1".parse().unwrap();
        let a2: AgentId = "a2".parse().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let p = proxy.clone();
        let asker = {
            let a1 = a1.clone();
            let tx = tx.clone();
            tokio::spawn(async move { p.ask(&a1, tx, Default::default()).await })
        };
        let sent = rx.recv().await.unwrap().unwrap();
        let Some(pb::master_message::Message::ReadLog(read)) = sent.message else {
            panic!("not a read");
        };
        // Another agent cannot answer it.
        proxy.answer(&a2, chunk(read.request_id));
        assert_eq!(proxy.waiting(), 1);
        proxy.answer(&a1, chunk(read.request_id));
        let got = asker.await.unwrap().ok().unwrap();
        assert_eq!(got.data, b"out");
        assert_eq!(proxy.waiting(), 0);

        // At most MAX_OUTSTANDING_PER_AGENT wait for one agent.
        let mut waits = Vec::new();
        for _ in 0..MAX_OUTSTANDING_PER_AGENT {
            let p = proxy.clone();
            let (a1, tx) = (a1.clone(), tx.clone());
            waits.push(tokio::spawn(async move {
                p.ask(&a1, tx, Default::default()).await.is_ok()
            }));
        }
        while proxy.waiting() < MAX_OUTSTANDING_PER_AGENT {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            proxy.ask(&a1, tx.clone(), Default::default()).await,
            Err(AskError::Busy)
        ));
        for w in waits {
            w.abort();
        }
    }
}
