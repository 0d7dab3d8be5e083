//! Host bindings for the `wasmos:framework` world, generated from `wit/framework.wit`.
//!
//! Exports are called asynchronously so a long-running guest yields to the runtime (on fuel or
//! epoch ticks) and a deadline or kill can cancel it. Imports are synchronous host functions
//! that may trap: a guest that calls an import it may not use (an executor calling the
//! scheduler's `driver`) is stopped with a clear message.

wasmtime::component::bindgen!({
    world: "framework",
    path: "../wit",
    imports: { default: trappable },
    exports: { default: async },
});

pub use exports::wasmos::framework::executor::Task as ExecutorTask;
pub use wasmos::framework::types;
