//! `export!` must expand to code that compiles in a framework's crate (this test is such a
//! crate): the generated glue is only type-checked here, since the host imports it would call
//! exist only inside a wasmos host.

use wasmos_guest::{DeclineAll, Executor, Task};

struct Echo;

impl Executor for Echo {
    fn new() -> Self {
        Echo
    }
    fn launch(&mut self, task: Task) -> Result<Vec<u8>, String> {
        Ok(task.payload)
    }
}

wasmos_guest::export!(scheduler = DeclineAll, executor = Echo);

#[test]
fn export_macro_compiles() {
    // Reaching here means the expansion type-checked against the generated traits.
    assert!(
        Echo::new()
            .launch(Task {
                task_id: "t".into(),
                executor_id: "e".into(),
                payload: b"hi".to_vec(),
            })
            .is_ok()
    );
}
