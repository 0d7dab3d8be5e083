//! The gRPC service `wasmos.v1.Raft`: decodes openraft's requests from peer masters, hands them
//! to the local Raft, and sends back its `Result` as it is (an error of the local Raft is an
//! answer, not a failed call).

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};
use wasmos_api::proto::raft_server::{Raft as RaftRpc, RaftServer};
use wasmos_api::proto::{RaftReply, RaftRequest};

use super::network::MAX_MESSAGE_BYTES;
use super::{NodeId, Raft, TypeConfig};

/// Serves the Raft RPCs of one master.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
}

impl RaftService {
    /// The service for `raft`, wrapped for a tonic router, with message size limits that fit
    /// entry batches and snapshot chunks.
    pub fn server(raft: Raft) -> RaftServer<RaftService> {
        RaftServer::new(RaftService { raft })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

fn decode<T: DeserializeOwned>(what: &str, payload: &[u8]) -> Result<T, Status> {
    super::codec::from_slice(payload)
        .map_err(|e| Status::invalid_argument(format!("undecodable {what} request: {e}")))
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftReply>, Status> {
    let payload = super::codec::to_vec(result)
        .map_err(|e| Status::internal(format!("cannot encode the Raft answer: {e}")))?;
    Ok(Response::new(RaftReply { payload }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode("AppendEntries", &request.get_ref().payload)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc: VoteRequest<NodeId> = decode("Vote", &request.get_ref().payload)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let RaftRequest { payload, data } = request.into_inner();
        let mut rpc: InstallSnapshotRequest<TypeConfig> = decode("InstallSnapshot", &payload)?;
        rpc.data = data;
        reply(&self.raft.install_snapshot(rpc).await)
    }
}
