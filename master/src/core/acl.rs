//! What the authorization layer (`crate::acl`) needs of the core: committing the ACL's
//! registry commands (tokens, policies) like any other change, and finding which frameworks
//! a task id names (to decide a kill given without its framework).

use wasmos_api::{FrameworkId, TaskId};

use super::{CoreError, MasterCore};
use crate::registry::Command;

impl MasterCore {
    /// Applies an ACL command ([`Command::AclBootstrap`], [`Command::PutToken`],
    /// [`Command::RevokeToken`], [`Command::PutPolicy`]) through the registry's one commit
    /// path; other commands are refused as internal errors.
    pub fn acl_command(&mut self, command: Command) -> Result<(), CoreError> {
        if !matches!(
            command,
            Command::AclBootstrap(_)
                | Command::PutToken(_)
                | Command::RevokeToken { .. }
                | Command::PutPolicy { .. }
        ) {
            return Err(CoreError::Internal("not an ACL command".into()));
        }
        Ok(self.commit(command)?)
    }

    /// The frameworks with a live task of id `task`.
    pub fn frameworks_with_task(&self, task: &TaskId) -> Vec<FrameworkId> {
        let mut out: Vec<FrameworkId> = self
            .tasks
            .all()
            .filter(|r| &r.id == task && !r.state.is_terminal())
            .map(|r| r.framework.clone())
            .collect();
        out.dedup();
        out
    }
}
