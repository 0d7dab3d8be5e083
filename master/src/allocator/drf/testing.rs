//! Test helpers shared by the allocator's unit tests: ids, resources and a small cluster.

use wasmos_api::{AgentId, FrameworkId, Resources};

use super::super::{Allocator, AllocatorConfig};
use super::DrfAllocator;

pub(super) fn agent(i: usize) -> AgentId {
    AgentId::new(format!("a{i}")).unwrap()
}
pub(super) fn fwk(i: usize) -> FrameworkId {
    FrameworkId::new(format!("f{i}")).unwrap()
}
pub(super) fn res(cpus: f64, mem: u64) -> Resources {
    Resources::new(cpus, mem, 0)
}

pub(super) fn cluster(agents: usize, frameworks: &[&str]) -> DrfAllocator {
    let mut al = DrfAllocator::new(AllocatorConfig::default());
    for i in 0..agents {
        al.add_agent(agent(i), res(4.0, 4096)).unwrap();
    }
    for (i, role) in frameworks.iter().enumerate() {
        al.add_framework(fwk(i), role, true).unwrap();
    }
    al
}
