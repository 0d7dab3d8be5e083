//! A test framework's client of a master's `SchedulerService`: one subscription (the call
//! stream and the event stream of one `Subscribe` RPC), with helpers to wait for events, take
//! offers, accept them and read (and acknowledge) task updates. It acknowledges only what the
//! test asks it to: [`Scheduler::update`] and [`Scheduler::update_of`] do, the others do not.
//!
//! Every wait is bounded by [`WAIT`] and panics when it passes, so a test never hangs.
//!
//! It subscribes with the token given, else with the management token of the master
//! (`super::tokens_for`).

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use wasmos_api::proto as pb;
use wasmos_api::proto::scheduler_service_client::SchedulerServiceClient;

use pb::scheduler_call::Call;
use pb::scheduler_event::Event;

use super::WAIT;

/// One subscribed framework: the calls it sends and the events the master sends it.
pub struct Scheduler {
    /// The calls to the master (the request stream of the `Subscribe` RPC).
    pub tx: mpsc::Sender<pb::SchedulerCall>,
    /// The events from the master (the response stream of the `Subscribe` RPC).
    pub events: tonic::Streaming<pb::SchedulerEvent>,
    /// The framework id from the master's `Subscribed` event.
    pub id: String,
}

impl Scheduler {
    /// Subscribes `info` at the master at `addr` and waits for the `Subscribed` event; panics
    /// when the master refuses. Messages are bounded by tonic's defaults (4 MiB decoding).
    pub async fn subscribe(addr: &str, info: pb::FrameworkInfo) -> Self {
        Self::connect(addr, info, None, None)
            .await
            .expect("subscribed")
    }

    /// As [`Scheduler::subscribe`], with messages of up to `max_message_bytes` either way (a
    /// task's update carries its data, up to the payload cap).
    pub async fn subscribe_with_message_limit(
        addr: &str,
        info: pb::FrameworkInfo,
        max_message_bytes: usize,
    ) -> Self {
        Self::connect(addr, info, Some(max_message_bytes), None)
            .await
            .expect("subscribed")
    }

    /// As [`Scheduler::subscribe`], but a refusal of the subscription (e.g. of a component
    /// never uploaded) is returned as the RPC's status instead of panicking.
    pub async fn try_subscribe(addr: &str, info: pb::FrameworkInfo) -> Result<Self, tonic::Status> {
        Self::connect(addr, info, None, None).await
    }

    /// As [`Scheduler::try_subscribe`], sending `token` as `authorization: Bearer TOKEN` (for
    /// a master that enforces ACLs).
    pub async fn try_subscribe_as(
        addr: &str,
        info: pb::FrameworkInfo,
        token: &str,
    ) -> Result<Self, tonic::Status> {
        Self::connect(addr, info, None, Some(token)).await
    }

    async fn connect(
        addr: &str,
        info: pb::FrameworkInfo,
        max_message_bytes: Option<usize>,
        token: Option<&str>,
    ) -> Result<Self, tonic::Status> {
        let mut client = SchedulerServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("the scheduler API answers");
        if let Some(max) = max_message_bytes {
            client = client
                .max_decoding_message_size(max)
                .max_encoding_message_size(max);
        }
        let (tx, rx) = mpsc::channel(64);
        tx.send(pb::SchedulerCall {
            call: Some(Call::Subscribe(pb::scheduler_call::Subscribe {
                framework_info: Some(info),
            })),
        })
        .await
        .expect("the call channel is open");
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        // Without a token of its own, the framework subscribes with the master's management
        // token (that of the master bootstrapped for the test).
        let default = super::tokens_for(addr).map(|t| t.root);
        if let Some(t) = token.or(default.as_deref()) {
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {t}").parse().expect("an ASCII token"),
            );
        }
        let events = client.subscribe(request).await?.into_inner();
        let mut s = Scheduler {
            tx,
            events,
            id: String::new(),
        };
        s.id = s
            .wait_for(|e| match e {
                Event::Subscribed(sub) => Some(sub.framework_id.clone()),
                _ => None,
            })
            .await;
        Ok(s)
    }

    /// Sends `call` to the master.
    pub async fn call(&self, call: Call) {
        self.tx
            .send(pb::SchedulerCall { call: Some(call) })
            .await
            .expect("the stream is open");
    }

    /// The next event before `deadline`, or `None` when none came by then; panics when the
    /// master ends the stream.
    pub async fn event_before(&mut self, deadline: tokio::time::Instant) -> Option<Event> {
        match tokio::time::timeout_at(deadline, self.events.message()).await {
            Err(_) => None,
            Ok(Ok(Some(m))) => m.event,
            Ok(other) => panic!("the scheduler stream ended: {other:?}"),
        }
    }

    /// Skips events until `f` picks one; panics when the master ends the stream first or
    /// [`WAIT`] passes.
    pub async fn wait_for<T>(&mut self, mut f: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.events.message())
                .await
                .expect("the awaited event in time")
                .expect("the stream is healthy")
                .expect("the stream is open");
            if let Some(t) = msg.event.as_ref().and_then(&mut f) {
                return t;
            }
        }
    }

    /// Skips events until `f` picks one; `None` when the master closes or fails the stream
    /// first (e.g. after a teardown). Panics when [`WAIT`] passes.
    pub async fn wait_for_or_end<T>(
        &mut self,
        mut f: impl FnMut(&Event) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.events.message())
                .await
                .expect("the awaited event in time");
            let Ok(Some(msg)) = msg else { return None };
            if let Some(t) = msg.event.as_ref().and_then(&mut f) {
                return Some(t);
            }
        }
    }

    /// The first offer of the next `Offers` event.
    pub async fn offer(&mut self) -> pb::Offer {
        self.wait_for(|e| match e {
            Event::Offers(o) => o.offers.first().cloned(),
            _ => None,
        })
        .await
    }

    /// Accepts `offer` with `launches`; `filters` as the master takes them (`None`: its
    /// default refusal time for the remainder).
    pub async fn accept(
        &self,
        offer: &pb::Offer,
        launches: Vec<pb::TaskInfo>,
        filters: Option<pb::Filters>,
    ) {
        self.call(Call::Accept(pb::scheduler_call::Accept {
            offer_ids: vec![offer.id.clone()],
            launches,
            filters,
        }))
        .await
    }

    /// The next task update, not acknowledged.
    pub async fn next_update(&mut self) -> pb::TaskStatus {
        self.wait_for(|e| match e {
            Event::Update(u) => u.status.clone(),
            _ => None,
        })
        .await
    }

    /// Acknowledges update `s` (one without a uuid, which needs none, is ignored by the
    /// master).
    pub async fn ack(&self, s: &pb::TaskStatus) {
        self.call(Call::Acknowledge(pb::scheduler_call::Acknowledge {
            agent_id: s.agent_id.clone(),
            task_id: s.task_id.clone(),
            uuid: s.uuid.clone(),
        }))
        .await;
    }

    /// The next task update, acknowledged when it carries a uuid.
    pub async fn update(&mut self) -> pb::TaskStatus {
        let s = self.next_update().await;
        if !s.uuid.is_empty() {
            self.ack(&s).await;
        }
        s
    }

    /// The next update of `task` in `state`, acknowledging every update on the way.
    pub async fn update_of(&mut self, task: &str, state: pb::TaskState) -> pb::TaskStatus {
        loop {
            let s = self.next_update().await;
            self.ack(&s).await;
            if s.task_id == task && s.state == state as i32 {
                return s;
            }
        }
    }
}
