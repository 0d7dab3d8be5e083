//! Host bindings for the `wasmos:framework` world, generated from `wit/framework.wit`.
//!
//! Exports are called asynchronously so a long-running guest yields to the runtime (on fuel or
//! epoch ticks) and a deadline or kill can cancel it. Imports are synchronous host functions
//! that may trap: a guest that calls an import it may not use (an executor calling the
//! scheduler's `driver`) is stopped with a clear message.

// The generator copies the WIT docs onto the interfaces' functions and types, but not onto the
// helpers it adds (`add_to_linker`, `FrameworkPre`, the `*Indices` types, `call_*` methods).
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "framework",
    path: "../wit",
    imports: { default: trappable },
    exports: { default: async },
});

pub use exports::wasmos::framework::executor::Task as ExecutorTask;
pub use wasmos::framework::types;

// The WIT `resources` record and the domain `Resources` hold the same three numbers, so that the
// framework host can do its arithmetic with `Resources`'s methods.

impl From<types::Resources> for wasmos_api::Resources {
    fn from(r: types::Resources) -> Self {
        wasmos_api::Resources {
            millicpus: r.millicpus,
            mem_mb: r.mem_mb,
            disk_mb: r.disk_mb,
        }
    }
}

impl From<wasmos_api::Resources> for types::Resources {
    fn from(r: wasmos_api::Resources) -> Self {
        types::Resources {
            millicpus: r.millicpus,
            mem_mb: r.mem_mb,
            disk_mb: r.disk_mb,
        }
    }
}
