//! openraft's network over gRPC: one lazily connected tonic client per peer master, which
//! reconnects by itself after a failure, and a deadline on every call.
//!
//! A peer that cannot be reached is reported as `Unreachable`, so openraft backs off before
//! trying it again; a call that outlives its deadline is a `Timeout`; an error the peer's Raft
//! returned comes back as openraft's `RemoteError`.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes, RaftNetwork, RaftNetworkFactory};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;
use wasmos_api::proto::RaftRequest;
use wasmos_api::proto::raft_client::RaftClient;
use wasmos_api::tls::TlsMaterial;

use super::{NodeId, TypeConfig};

/// The largest Raft message a master sends or accepts (entries batches, snapshot chunks).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Makes [`PeerClient`]s for openraft.
#[derive(Clone, Debug)]
pub struct NetworkFactory {
    id: NodeId,
    connect_timeout: Duration,
    backoff: Duration,
    tls: Option<Arc<TlsMaterial>>,
}

impl NetworkFactory {
    /// A factory for the master `id`: connections give up after `connect_timeout`, and an
    /// unreachable peer is retried every `backoff`.
    pub fn new(id: NodeId, connect_timeout: Duration, backoff: Duration) -> Self {
        NetworkFactory {
            id,
            connect_timeout,
            backoff,
            tls: None,
        }
    }

    /// Dials peers over mutual TLS with `tls` (this master's certificate, key and the cluster
    /// CA), checking that each peer's certificate is a master's; `None`: plain text.
    pub fn with_tls(mut self, tls: Option<TlsMaterial>) -> Self {
        self.tls = tls.map(Arc::new);
        self
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            id: self.id,
            target,
            node: node.clone(),
            connect_timeout: self.connect_timeout,
            backoff: self.backoff,
            tls: self.tls.clone(),
            client: None,
        }
    }
}

/// The connection to one peer master.
pub struct PeerClient {
    id: NodeId,
    target: NodeId,
    node: BasicNode,
    connect_timeout: Duration,
    backoff: Duration,
    tls: Option<Arc<TlsMaterial>>,
    client: Option<RaftClient<Channel>>,
}

/// How one call failed before any answer from the peer's Raft.
enum CallError {
    Unreachable(String),
    Timeout,
    Network(String),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

impl PeerClient {
    fn client(&mut self) -> Result<RaftClient<Channel>, CallError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let addr = &self.node.addr;
        let endpoint =
            wasmos_api::tls::endpoint(addr, self.tls.as_deref(), self.connect_timeout)
                .map_err(|e| CallError::Unreachable(format!("master {}: {e}", self.target)))?;
        let channel = endpoint.connect_lazy();
        let client = RaftClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Sends one request and decodes the peer's `Result<Resp, E>`.
    async fn call<Req, Resp, E>(
        &mut self,
        kind: RPCTypes,
        request: &Req,
        data: Vec<u8>,
        ttl: Duration,
    ) -> Result<Result<Resp, E>, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: DeserializeOwned,
    {
        let payload = super::codec::to_vec(request)
            .map_err(|e| CallError::Network(format!("cannot encode {kind}: {e}")))?;
        let mut client = self.client()?;
        let request = RaftRequest { payload, data };
        let call = async {
            match kind {
                RPCTypes::AppendEntries => client.append_entries(request).await,
                RPCTypes::Vote => client.vote(request).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(request).await,
            }
        };
        let reply = match tokio::time::timeout(ttl, call).await {
            Err(_) => return Err(CallError::Timeout),
            Ok(Err(status)) => {
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                        // Dial afresh next time (a restarted peer may be at a new connection).
                        self.client = None;
                        CallError::Unreachable(format!(
                            "master {} at {} is unreachable: {}",
                            self.target,
                            self.node.addr,
                            status.message()
                        ))
                    }
                    _ => CallError::Network(format!(
                        "master {} answered {kind} with {:?}: {}",
                        self.target,
                        status.code(),
                        status.message()
                    )),
                });
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
        super::codec::from_slice(&reply.payload).map_err(|e| {
            CallError::Network(format!(
                "undecodable {kind} answer from master {}: {e}",
                self.target
            ))
        })
    }

    fn rpc_error<E: std::error::Error>(
        &self,
        kind: RPCTypes,
        ttl: Duration,
        e: CallError,
    ) -> RPCError<NodeId, BasicNode, E> {
        match e {
            CallError::Unreachable(m) => RPCError::Unreachable(Unreachable::new(&Message(m))),
            CallError::Network(m) => RPCError::Network(NetworkError::new(&Message(m))),
            CallError::Timeout => RPCError::Timeout(Timeout {
                action: kind,
                id: self.id,
                target: self.target,
                timeout: ttl,
            }),
        }
    }

    async fn rpc<Req, Resp, E>(
        &mut self,
        kind: RPCTypes,
        request: &Req,
        data: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let ttl = option.hard_ttl();
        match self
            .call::<Req, Resp, RaftError<NodeId, E>>(kind, request, data, ttl)
            .await
        {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                remote,
            ))),
            Err(e) => Err(self.rpc_error(kind, ttl, e)),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc(RPCTypes::AppendEntries, &rpc, Vec::new(), &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        // The chunk travels as raw bytes beside the encoded (postcard) metadata, so it is not
        // encoded a second time.
        let data = std::mem::take(&mut rpc.data);
        self.rpc(RPCTypes::InstallSnapshot, &rpc, data, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc(RPCTypes::Vote, &rpc, Vec::new(), &option).await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.backoff))
    }
}
