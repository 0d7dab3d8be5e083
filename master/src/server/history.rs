//! The history calls of `OperatorService` (`ListCompletedTasks`, `ListCompletedFrameworks`):
//! the leader's in-memory [`crate::history`], filtered to what the caller may see (its own
//! frameworks without `see_all_frameworks`, never a refusal, like `GetState`) and paged by an
//! offset token.

use tonic::{Request, Response, Status};
use wasmos_api::convert;
use wasmos_api::proto as pb;
use wasmos_api::{AgentId, FrameworkId, TaskId};

use super::Master;
use super::status::ServiceError;
use crate::acl::{Action, Caller};
use crate::history::{FrameworkEnd, TaskFilter};

/// Page size when a request asks for 0.
const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page served; a larger `page_size` is served as this.
const MAX_PAGE_SIZE: usize = 1000;

/// The page a request asks for: (offset, size).
fn page(page_size: u32, token: &str) -> Result<(usize, usize), ServiceError> {
    let size = match page_size as usize {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    };
    let offset = if token.is_empty() {
        0
    } else {
        token.parse::<usize>().map_err(|_| {
            ServiceError::PageToken(format!(
                "page_token {token:?} is not one this master gave; pass the previous answer's \
                 next_page_token, or none for the first page"
            ))
        })?
    };
    Ok((offset, size))
}

/// Takes one page of `items`, and the token of the next (empty on the last page).
fn take_page<T>(items: impl Iterator<Item = T>, offset: usize, size: usize) -> (Vec<T>, String) {
    let mut items = items.skip(offset);
    let page: Vec<T> = items.by_ref().take(size).collect();
    let next = if items.next().is_some() {
        (offset + page.len()).to_string()
    } else {
        String::new()
    };
    (page, next)
}

fn end_of(end: FrameworkEnd) -> pb::FrameworkEnd {
    match end {
        FrameworkEnd::Succeeded => pb::FrameworkEnd::Succeeded,
        FrameworkEnd::Failed => pb::FrameworkEnd::Failed,
        FrameworkEnd::TornDown => pb::FrameworkEnd::TornDown,
    }
}

impl Master {
    pub(crate) async fn list_completed_tasks_call(
        &self,
        request: Request<pb::ListCompletedTasksRequest>,
    ) -> Result<Response<pb::ListCompletedTasksResponse>, Status> {
        self.leading()?;
        let caller: Caller = self.authorize(&request, &Action::ReadHistory)?;
        let r = request.into_inner();
        let filter = TaskFilter {
            framework: convert::opt_id::<FrameworkId>("framework_id", &r.framework_id)
                .map_err(ServiceError::Convert)?,
            agent: convert::opt_id::<AgentId>("agent_id", &r.agent_id)
                .map_err(ServiceError::Convert)?,
            state: if r.state == 0 {
                None
            } else {
                Some(convert::task_state("state", r.state).map_err(ServiceError::Convert)?)
            },
            task: convert::opt_id::<TaskId>("task_id", &r.task_id)
                .map_err(ServiceError::Convert)?,
        };
        let (offset, size) = page(r.page_size, &r.page_token)?;
        let core = self.core();
        let registry = core.registry();
        let sees_all = caller.sees_all();
        let visible = |fw: &FrameworkId, completed_principal: Option<&str>| {
            sees_all
                || match completed_principal {
                    Some(p) => p == caller.principal,
                    None => registry
                        .frameworks
                        .get(fw)
                        .is_some_and(|f| f.principal == caller.principal),
                }
        };
        let history = core.tasks().history();
        let (tasks, next_page_token) = take_page(
            history.tasks(&filter, &visible).map(|t| pb::CompletedTask {
                framework_id: t.framework.to_string(),
                task_id: t.id.to_string(),
                name: t.name.clone(),
                agent_id: t.agent.to_string(),
                state: pb::TaskState::from(t.state) as i32,
                message: t.message.clone(),
                launched_unix_ms: t.launched_ms,
                ended_unix_ms: t.ended_ms,
                result_bytes: t.result_bytes,
                framework_completed: !registry.frameworks.contains_key(&t.framework),
            }),
            offset,
            size,
        );
        Ok(Response::new(pb::ListCompletedTasksResponse {
            tasks,
            next_page_token,
        }))
    }

    pub(crate) async fn list_completed_frameworks_call(
        &self,
        request: Request<pb::ListCompletedFrameworksRequest>,
    ) -> Result<Response<pb::ListCompletedFrameworksResponse>, Status> {
        self.leading()?;
        let caller: Caller = self.authorize(&request, &Action::ReadHistory)?;
        let r = request.into_inner();
        let (offset, size) = page(r.page_size, &r.page_token)?;
        let core = self.core();
        let (frameworks, next_page_token) = take_page(
            core.tasks()
                .history()
                .frameworks()
                .filter(|f| caller.sees_all() || f.principal == caller.principal)
                .map(|f| pb::CompletedFramework {
                    framework_id: f.id.to_string(),
                    name: f.name.clone(),
                    role: f.role.clone(),
                    principal: f.principal.clone(),
                    end: end_of(f.end) as i32,
                    text: f.text.clone(),
                    registered_unix_ms: f.registered_ms.unwrap_or(0),
                    ended_unix_ms: f.ended_ms,
                    tasks_finished: f.tasks_finished,
                    tasks_failed: f.tasks_failed,
                    completed_tasks: f.tasks.len() as u32,
                }),
            offset,
            size,
        );
        Ok(Response::new(pb::ListCompletedFrameworksResponse {
            frameworks,
            next_page_token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_end_with_an_empty_token_and_bad_tokens_are_refused() {
        let (p, next) = take_page(0..5, 0, 2);
        assert_eq!((p, next.as_str()), (vec![0, 1], "2"));
        let (p, next) = take_page(0..5, 4, 2);
        assert_eq!((p, next.as_str()), (vec![4], ""));
        let (p, next) = take_page(0..4, 2, 2);
        assert_eq!((p, next.as_str()), (vec![2, 3], ""));
        assert_eq!(page(0, "").unwrap(), (0, DEFAULT_PAGE_SIZE));
        assert_eq!(page(5000, "7").unwrap(), (7, MAX_PAGE_SIZE));
        assert!(page(1, "x").is_err());
    }
}
