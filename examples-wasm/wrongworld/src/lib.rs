//! `wrongworld`: a valid WebAssembly component of a world that is not `wasmos:framework`.
//!
//! wasmos must reject it with a clear error (missing `wasmos:framework/executor` export) instead
//! of instantiating it. Built with `wit-bindgen` directly from the inline WIT below, so it shares
//! nothing with the SDK.

wit_bindgen::generate!({
    inline: r#"
        package other:greeter;

        world greeter {
            export greet: func(name: string) -> string;
        }
    "#,
    world: "greeter",
});

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        format!("hello, {name}")
    }
}

export!(Greeter);
