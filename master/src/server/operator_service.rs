//! `OperatorService`: what an operator (the `wasmos` CLI) asks of the master: the cluster
//! state, killing a task, tearing a framework down, weights and quotas, uploading and deleting a component,
//! submitting a hosted framework and reading its result, and the Raft membership.
//!
//! Every call asks the authorization layer first (`Master::authorize`, `authz.rs`); the token
//! and policy calls' bodies live there too.
//!
//! `KillTask` and `TeardownFramework` go through the same core paths as a scheduler's own kill
//! and teardown calls; `SubmitFramework` starts the framework in the [`FrameworkHost`].

use tonic::{Request, Response, Status, Streaming};
use tracing::info;
use wasmos_api::convert;
use wasmos_api::proto as pb;
use wasmos_api::proto::operator_service_server::OperatorService;
use wasmos_api::{FrameworkId, TaskId};

use super::Master;
use super::status::ServiceError;
use crate::acl::{Action, SchedulerAsk};
use crate::allocator::Quota;
use crate::blobs::{BlobError, Digest};
use crate::framework_host::FrameworkHost;
use crate::raft::RaftNode;
use crate::registry::FrameworkOutcome;

impl Master {
    /// The Raft member, or the refusal a master kept in memory answers membership calls with.
    fn replication(&self) -> Result<&RaftNode, ServiceError> {
        self.raft_node().ok_or(ServiceError::NotReplicated)
    }

    /// The Raft group's members, voters marked, and this master's id.
    pub(crate) fn members(&self) -> Result<pb::ListMembersResponse, ServiceError> {
        let node = self.replication()?;
        let voters = node.voters();
        Ok(pb::ListMembersResponse {
            members: node
                .members()
                .into_iter()
                .map(|(id, address)| pb::Member {
                    id,
                    address,
                    voter: voters.contains(&id),
                })
                .collect(),
            leader_id: node.id(),
        })
    }
}

#[tonic::async_trait]
impl OperatorService for Master {
    async fn get_state(
        &self,
        request: Request<pb::GetStateRequest>,
    ) -> Result<Response<pb::ClusterState>, Status> {
        self.leading()?;
        let caller = self.authorize(&request, &Action::ReadState)?;
        let state = Self::filter_state(&caller, self.cluster_state());
        Ok(Response::new(state))
    }

    async fn kill_task(
        &self,
        request: Request<pb::KillTaskRequest>,
    ) -> Result<Response<pb::KillTaskResponse>, Status> {
        self.leading()?;
        let task: TaskId =
            convert::id("task_id", &request.get_ref().task_id).map_err(ServiceError::Convert)?;
        let framework: Option<FrameworkId> =
            convert::opt_id("framework_id", &request.get_ref().framework_id)
                .map_err(ServiceError::Convert)?;
        let frameworks = match &framework {
            Some(f) => vec![f.clone()],
            None => self.core().frameworks_with_task(&task),
        };
        let action = Action::KillTask {
            task: task.to_string(),
            frameworks,
        };
        self.authorize(&request, &action)?;
        let now = self.now();
        let kill = self
            .core()
            .operator_kill_task(framework.as_ref(), &task, now)
            .map_err(ServiceError::Core)?;
        Ok(Response::new(pb::KillTaskResponse {
            framework_id: kill.framework.to_string(),
            agent_id: kill.agent.to_string(),
            state: pb::TaskState::from(kill.state) as i32,
        }))
    }

    async fn teardown_framework(
        &self,
        request: Request<pb::TeardownFrameworkRequest>,
    ) -> Result<Response<pb::TeardownFrameworkResponse>, Status> {
        self.leading()?;
        let fw: FrameworkId = convert::id("framework_id", &request.get_ref().framework_id)
            .map_err(ServiceError::Convert)?;
        self.authorize(
            &request,
            &Action::Teardown {
                framework: fw.clone(),
            },
        )?;
        // Read first: a hosted scheduler leaves the host's set as soon as it has stopped.
        let hosted = self
            .started_framework_host()
            .is_some_and(|h| h.is_running(&fw));
        let now = self.now();
        // The core closes the scheduler's stream with a fatal error; a hosted scheduler's
        // driving task sees it and stops (then leaves the host's set).
        let done = self
            .core()
            .operator_teardown(&fw, now)
            .map_err(ServiceError::Core)?;
        self.committed().await?;
        info!(framework_id = %fw, tasks = done.tasks_killed, hosted, "framework torn down by an operator");
        Ok(Response::new(pb::TeardownFrameworkResponse {
            tasks_killed: done.tasks_killed,
            agents: done.agents,
            hosted,
        }))
    }

    async fn set_weights(
        &self,
        request: Request<pb::SetWeightsRequest>,
    ) -> Result<Response<pb::SetWeightsResponse>, Status> {
        self.leading()?;
        let roles = request
            .get_ref()
            .weights
            .iter()
            .map(|w| w.role.clone())
            .collect();
        self.authorize(&request, &Action::SetWeights { roles })?;
        let weights = request
            .into_inner()
            .weights
            .into_iter()
            .map(|w| (w.role, w.weight))
            .collect();
        self.core()
            .set_weights(weights)
            .map_err(ServiceError::Core)?;
        self.committed().await?;
        Ok(Response::new(pb::SetWeightsResponse {}))
    }

    async fn upload_component(
        &self,
        request: Request<Streaming<pb::UploadComponentChunk>>,
    ) -> Result<Response<pb::UploadComponentResponse>, Status> {
        self.leading()?;
        let caller = self.authorize(&request, &Action::UploadComponent { size_bytes: 0 })?;
        let mut chunks = request.into_inner();
        let limit = self.core().blobs().max_blob_bytes();
        // Read no further than the principal's limit; the layer then decides on the size.
        let principal_limit = caller.rights.limits.max_upload_bytes.unwrap_or(u64::MAX);
        let mut received = 0u64;
        let mut bytes = Vec::new();
        let mut expected = None;
        let mut first = true;
        while let Some(chunk) = chunks.message().await? {
            if first && !chunk.expected_sha256.is_empty() {
                expected = Some(
                    Digest::parse(&chunk.expected_sha256)
                        .map_err(|e| ServiceError::Blob(e.into()))?,
                );
            }
            first = false;
            let size = bytes.len() as u64 + chunk.data.len() as u64;
            if size > limit {
                return Err(ServiceError::Blob(BlobError::TooLarge { size, limit }).into());
            }
            received = size;
            if size > principal_limit {
                break;
            }
            bytes.extend_from_slice(&chunk.data);
        }
        self.recheck(
            &caller,
            &Action::UploadComponent {
                size_bytes: received,
            },
        )?;
        self.core()
            .blobs()
            .check(&bytes)
            .map_err(ServiceError::Blob)?;
        let digest = Digest::of(&bytes);
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(ServiceError::Blob(BlobError::DigestMismatch {
                expected,
                actual: digest,
            })
            .into());
        }
        let size_bytes = bytes.len() as u64;
        self.core()
            .put_component(digest, bytes)
            .map_err(ServiceError::Blob)?;
        self.committed().await?;
        Ok(Response::new(pb::UploadComponentResponse {
            sha256: digest.to_string(),
            size_bytes,
        }))
    }

    async fn delete_component(
        &self,
        request: Request<pb::DeleteComponentRequest>,
    ) -> Result<Response<pb::DeleteComponentResponse>, Status> {
        self.leading()?;
        let raw = request.get_ref().sha256.clone();
        self.authorize(
            &request,
            &Action::DeleteComponent {
                sha256: raw.clone(),
            },
        )?;
        let digest = Digest::parse(&raw).map_err(|e| ServiceError::Blob(e.into()))?;
        let size_bytes = self
            .core()
            .delete_component(&digest)
            .map_err(ServiceError::Core)?;
        self.committed().await?;
        Ok(Response::new(pb::DeleteComponentResponse { size_bytes }))
    }

    async fn submit_framework(
        &self,
        request: Request<pb::SubmitFrameworkRequest>,
    ) -> Result<Response<pb::SubmitFrameworkResponse>, Status> {
        self.leading()?;
        let role = request
            .get_ref()
            .info
            .as_ref()
            .map(|i| i.role.clone())
            .unwrap_or_default();
        let ask = SchedulerAsk::of(request.get_ref().limits.as_ref());
        let caller = self.authorize(&request, &Action::SubmitFramework { role, ask })?;
        let r = request.into_inner();
        let mut info = r.info.ok_or(ServiceError::SubmitWithoutInfo)?;
        if caller.authenticated() {
            // A framework belongs to the principal of the token that submitted it.
            info.principal = caller.principal.clone();
        }
        if !info.id.is_empty() {
            return Err(ServiceError::SubmitWithId.into());
        }
        // What it did not ask for is the master's default, capped at the principal's limit
        // (what it asked for is within that limit: the layer refused more).
        let limits =
            FrameworkHost::capped(FrameworkHost::limits_from(r.limits), &caller.rights.limits);
        let submitter = caller.authenticated().then(|| caller.accessor.clone());
        let host = self.framework_host().map_err(ServiceError::Host)?;
        let hosted = host
            .start_as(self, info, r.args, limits, submitter)
            .await
            .map_err(ServiceError::Host)?;
        // The host lists it as hosted until its driving task ends.
        let framework_id = hosted.framework_id;
        self.committed().await?;
        Ok(Response::new(pb::SubmitFrameworkResponse {
            framework_id: framework_id.to_string(),
        }))
    }

    async fn get_framework_result(
        &self,
        request: Request<pb::GetFrameworkResultRequest>,
    ) -> Result<Response<pb::GetFrameworkResultResponse>, Status> {
        self.leading()?;
        let raw = request.get_ref().framework_id.clone();
        let fw: wasmos_api::FrameworkId =
            convert::id("framework_id", &raw).map_err(ServiceError::Convert)?;
        self.authorize(
            &request,
            &Action::ReadFrameworkResult {
                framework: fw.clone(),
            },
        )?;
        // An outcome is reported only once it is committed: a new leader knows it too.
        self.committed().await?;
        let core = self.core();
        let registered = core.registry().frameworks.contains_key(&fw);
        let (ended, succeeded, result) = match core.framework_outcome(&fw) {
            Some(FrameworkOutcome::Succeeded(r)) => (true, true, r.clone()),
            Some(FrameworkOutcome::Failed(e)) => (true, false, e.clone()),
            None if registered || core.registry().removed_frameworks.contains(&fw) => {
                (false, false, String::new())
            }
            None => return Err(ServiceError::UnknownFramework(fw).into()),
        };
        Ok(Response::new(pb::GetFrameworkResultResponse {
            ended,
            succeeded,
            result,
            registered,
        }))
    }

    async fn get_framework_state(
        &self,
        request: Request<pb::GetFrameworkStateRequest>,
    ) -> Result<Response<pb::GetFrameworkStateResponse>, Status> {
        self.leading()?;
        let raw = request.get_ref().framework_id.clone();
        let fw: wasmos_api::FrameworkId =
            convert::id("framework_id", &raw).map_err(ServiceError::Convert)?;
        self.authorize(
            &request,
            &Action::ReadFrameworkState {
                framework: fw.clone(),
            },
        )?;
        let key = request.into_inner().key;
        if key.len() > crate::registry::MAX_STATE_KEY_BYTES {
            return Err(ServiceError::StateKeyTooLong(key.len()).into());
        }
        let core = self.core();
        let registry = core.registry();
        if !registry.frameworks.contains_key(&fw) {
            return Err(ServiceError::UnknownFramework(fw).into());
        }
        let stored = registry.framework_state.get(&fw);
        let entries: Vec<pb::StateEntry> = stored
            .into_iter()
            .flatten()
            .filter(|(k, _)| key.is_empty() || **k == key)
            .map(|(k, v)| pb::StateEntry {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        if !key.is_empty() && entries.is_empty() {
            return Err(ServiceError::UnknownStateKey { framework: fw, key }.into());
        }
        Ok(Response::new(pb::GetFrameworkStateResponse { entries }))
    }

    async fn read_task_log(
        &self,
        request: Request<pb::ReadTaskLogRequest>,
    ) -> Result<Response<pb::ReadTaskLogResponse>, Status> {
        self.read_task_log_call(request).await
    }

    async fn read_scheduler_log(
        &self,
        request: Request<pb::ReadSchedulerLogRequest>,
    ) -> Result<Response<pb::ReadSchedulerLogResponse>, Status> {
        self.read_scheduler_log_call(request).await
    }

    async fn list_completed_tasks(
        &self,
        request: Request<pb::ListCompletedTasksRequest>,
    ) -> Result<Response<pb::ListCompletedTasksResponse>, Status> {
        self.list_completed_tasks_call(request).await
    }

    async fn list_completed_frameworks(
        &self,
        request: Request<pb::ListCompletedFrameworksRequest>,
    ) -> Result<Response<pb::ListCompletedFrameworksResponse>, Status> {
        self.list_completed_frameworks_call(request).await
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        self.leading()?;
        self.authorize(&request, &Action::ListMembers)?;
        Ok(Response::new(self.members()?))
    }

    async fn add_member(
        &self,
        request: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        self.leading()?;
        self.authorize(
            &request,
            &Action::AddMember {
                id: request.get_ref().id,
            },
        )?;
        let r = request.into_inner();
        if r.id == 0 {
            return Err(ServiceError::MemberIdZero.into());
        }
        if !wasmos_api::leader::is_valid_address(&r.address) {
            return Err(ServiceError::MemberAddress(r.address).into());
        }
        let node = self.replication()?;
        if node.members().contains_key(&r.id) {
            return Err(ServiceError::MemberExists(r.id).into());
        }
        info!(id = r.id, address = %r.address, "adding a master");
        node.add_member(r.id, r.address)
            .await
            .map_err(ServiceError::Member)?;
        Ok(Response::new(self.members()?))
    }

    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        self.leading()?;
        self.authorize(
            &request,
            &Action::RemoveMember {
                id: request.get_ref().id,
            },
        )?;
        let id = request.into_inner().id;
        let node = self.replication()?;
        if !node.members().contains_key(&id) {
            return Err(ServiceError::NotAMember(id).into());
        }
        if node.voters().len() == 1 && node.voters().contains(&id) {
            return Err(ServiceError::LastVoter.into());
        }
        info!(id, "removing a master");
        node.remove_member(id).await.map_err(ServiceError::Member)?;
        Ok(Response::new(self.members()?))
    }

    async fn set_quota(
        &self,
        request: Request<pb::SetQuotaRequest>,
    ) -> Result<Response<pb::SetQuotaResponse>, Status> {
        self.leading()?;
        self.authorize(
            &request,
            &Action::SetQuota {
                role: request.get_ref().role.clone(),
            },
        )?;
        let r = request.into_inner();
        let quota = (!r.remove).then(|| Quota {
            guarantee: convert::resources(r.guarantee),
            limit: r.limit.map(Into::into),
        });
        self.core()
            .set_quota(r.role, quota)
            .map_err(ServiceError::Core)?;
        self.committed().await?;
        Ok(Response::new(pb::SetQuotaResponse {}))
    }

    async fn bootstrap_acl(
        &self,
        request: Request<pb::BootstrapAclRequest>,
    ) -> Result<Response<pb::TokenSecret>, Status> {
        self.bootstrap_acl_call(request).await
    }

    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::TokenSecret>, Status> {
        self.create_token_call(request).await
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        self.list_tokens_call(request).await
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        self.revoke_token_call(request).await
    }

    async fn apply_policy(
        &self,
        request: Request<pb::ApplyPolicyRequest>,
    ) -> Result<Response<pb::ApplyPolicyResponse>, Status> {
        self.apply_policy_call(request).await
    }
}
