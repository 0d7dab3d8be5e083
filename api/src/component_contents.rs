//! What a component may contain before anything compiles it: [`check_contents`] walks every
//! nested component and core module with `wasmparser` (parsing, not validating: a few
//! milliseconds per MiB) and refuses one over any bound of
//! [`crate::limits`]' component section, naming the bound, the value and the limit.
//!
//! Why: compiling costs memory and time in proportion to what is inside, not to the file's
//! size. A 2.9 MB component whose unused inner module held 100,000 functions passed a size cap
//! and took a master to 1.2 GB while wasmtime compiled it. The bounds here are checked where a
//! component enters (the master's upload) and again where one is compiled (the Wasm runtime),
//! so neither compiles what the other would refuse.
//!
//! What lives elsewhere: the header and digest ([`crate::component`]), whether the component is
//! of the `wasmos:framework` world (the master's blob store), and type checking (wasmtime's
//! validator, when it compiles).

use crate::limits::ComponentBounds;

/// What [`check_contents`] counted in a component, across all its nested components and core
/// modules. Every field is a total over the whole component unless its doc says otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ComponentContents {
    /// Functions defined (with a body) in core modules.
    pub functions: u64,
    /// Bytes of core modules' code sections.
    pub code_bytes: u64,
    /// Bytes of the largest single function body.
    pub largest_function_bytes: u64,
    /// Deepest nesting: the top-level component is 1, a core module in it 2, and so on.
    pub depth: u64,
    /// Bytes of core modules' data segments.
    pub data_bytes: u64,
    /// Core modules, nested at any depth.
    pub core_modules: u64,
    /// Core instances and component instances created (instance section entries).
    pub instances: u64,
    /// Imports and exports, of core modules and of components, together.
    pub imports_exports: u64,
}

/// A component over one of the content bounds, or one whose sections do not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentsError {
    /// One bound passed. Checking stops at the first bound passed, so `value` is the count when
    /// it passed (at least `bound + 1`), not necessarily the component's whole count.
    #[error(
        "the component has {value} {what}, above the limit of {bound} ({name}); a framework \
         needs far less: strip unused code, or split the component"
    )]
    OverBound {
        /// The constant's name in `wasmos_api::limits`, e.g. `MAX_COMPONENT_FUNCTIONS`.
        name: &'static str,
        /// What was counted, e.g. `functions in its core modules`.
        what: &'static str,
        /// The count reached.
        value: u64,
        /// The bound.
        bound: u64,
    },
    /// The bytes do not parse as a component (truncated, or a section is malformed).
    #[error("the component cannot be parsed: {0}")]
    Malformed(String),
}

/// Walks `bytes` (a component or a core module) and checks it against `bounds`, returning what
/// it counted. Costs one pass over the bytes and no allocation beyond one parser per nesting
/// level; stops at the first bound passed.
pub fn check_contents(
    bytes: &[u8],
    bounds: &ComponentBounds,
) -> Result<ComponentContents, ContentsError> {
    let mut c = ComponentContents::default();
    let mut depth: u64 = 0;
    let malformed = |e: wasmparser::BinaryReaderError| ContentsError::Malformed(e.to_string());
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        use wasmparser::Payload as P;
        match payload.map_err(malformed)? {
            P::Version { .. } => {
                depth += 1;
                c.depth = c.depth.max(depth);
                over(
                    "MAX_COMPONENT_DEPTH",
                    "levels of nesting",
                    c.depth,
                    bounds.max_depth,
                )?;
            }
            P::End(_) => depth = depth.saturating_sub(1),
            P::ModuleSection { .. } => {
                c.core_modules += 1;
                over(
                    "MAX_COMPONENT_CORE_MODULES",
                    "core modules",
                    c.core_modules,
                    bounds.max_core_modules,
                )?;
            }
            P::FunctionSection(s) => {
                c.functions += u64::from(s.count());
                over(
                    "MAX_COMPONENT_FUNCTIONS",
                    "functions in its core modules",
                    c.functions,
                    bounds.max_functions,
                )?;
            }
            P::CodeSectionStart { size, .. } => {
                c.code_bytes += u64::from(size);
                over(
                    "MAX_COMPONENT_CODE_BYTES",
                    "bytes of code",
                    c.code_bytes,
                    bounds.max_code_bytes,
                )?;
            }
            P::CodeSectionEntry(body) => {
                let len = body.range().len() as u64;
                c.largest_function_bytes = c.largest_function_bytes.max(len);
                over(
                    "MAX_FUNCTION_BODY_BYTES",
                    "bytes in one function body",
                    len,
                    bounds.max_function_body_bytes,
                )?;
            }
            P::DataSection(s) => {
                for data in s {
                    c.data_bytes += data.map_err(malformed)?.data.len() as u64;
                    over(
                        "MAX_COMPONENT_DATA_BYTES",
                        "bytes of data segments",
                        c.data_bytes,
                        bounds.max_data_bytes,
                    )?;
                }
            }
            P::InstanceSection(s) => c.instances += u64::from(s.count()),
            P::ComponentInstanceSection(s) => c.instances += u64::from(s.count()),
            P::ImportSection(s) => c.imports_exports += u64::from(s.count()),
            P::ExportSection(s) => c.imports_exports += u64::from(s.count()),
            P::ComponentImportSection(s) => c.imports_exports += u64::from(s.count()),
            P::ComponentExportSection(s) => c.imports_exports += u64::from(s.count()),
            _ => {}
        }
        over(
            "MAX_COMPONENT_INSTANCES",
            "instances",
            c.instances,
            bounds.max_instances,
        )?;
        over(
            "MAX_COMPONENT_IMPORTS_EXPORTS",
            "imports and exports",
            c.imports_exports,
            bounds.max_imports_exports,
        )?;
    }
    Ok(c)
}

fn over(
    name: &'static str,
    what: &'static str,
    value: u64,
    bound: u64,
) -> Result<(), ContentsError> {
    if value > bound {
        Err(ContentsError::OverBound {
            name,
            what,
            value,
            bound,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::COMPONENT_BOUNDS;

    fn examples() -> Vec<(String, Vec<u8>)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut out = Vec::new();
        for dir in [
            "examples-wasm/target/wasm32-wasip2/release",
            "examples-wasm-c/target",
        ] {
            let dir = root.join(dir);
            let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; run scripts/build-examples.sh before the tests",
                    dir.display()
                )
            });
            for entry in entries {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|x| x == "wasm") {
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    out.push((name, std::fs::read(&path).unwrap()));
                }
            }
        }
        assert!(
            out.len() >= 6,
            "expected the example components, found {}",
            out.len()
        );
        out
    }

    /// A component with one core module of `functions` empty functions (none exported).
    fn with_functions(functions: u64) -> Vec<u8> {
        let mut wat = String::from("(component (core module");
        for _ in 0..functions {
            wat.push_str(" (func)");
        }
        wat.push_str("))");
        wat::parse_str(&wat).unwrap()
    }

    /// `levels` empty components nested in each other (the outermost counts), encoded by hand
    /// (the text parser refuses deep nesting).
    fn nested(levels: u64) -> Vec<u8> {
        let preamble = crate::component::COMPONENT_PREAMBLE;
        let mut inner = preamble.to_vec();
        for _ in 1..levels {
            let mut outer = preamble.to_vec();
            outer.push(4); // A component section: one nested component.
            let mut n = inner.len();
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    outer.push(byte);
                    break;
                }
                outer.push(byte | 0x80);
            }
            outer.extend_from_slice(&inner);
            inner = outer;
        }
        inner
    }

    fn refused(bytes: &[u8], bounds: &ComponentBounds) -> (&'static str, u64, u64) {
        match check_contents(bytes, bounds) {
            Err(ContentsError::OverBound {
                name, value, bound, ..
            }) => (name, value, bound),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn every_example_fits_with_room_to_spare() {
        for (name, bytes) in examples() {
            let c = check_contents(&bytes, &COMPONENT_BOUNDS)
                .unwrap_or_else(|e| panic!("{name} refused: {e}"));
            println!("{name}: {} bytes, {c:?}", bytes.len());
            // Room to spare: every example fits a quarter of every bound.
            let quarter = ComponentBounds {
                max_functions: COMPONENT_BOUNDS.max_functions / 4,
                max_code_bytes: COMPONENT_BOUNDS.max_code_bytes / 4,
                max_function_body_bytes: COMPONENT_BOUNDS.max_function_body_bytes / 4,
                max_depth: COMPONENT_BOUNDS.max_depth,
                max_data_bytes: COMPONENT_BOUNDS.max_data_bytes / 4,
                max_core_modules: COMPONENT_BOUNDS.max_core_modules / 4,
                max_instances: COMPONENT_BOUNDS.max_instances / 4,
                max_imports_exports: COMPONENT_BOUNDS.max_imports_exports / 4,
            };
            check_contents(&bytes, &quarter)
                .unwrap_or_else(|e| panic!("{name} is near a bound: {e}"));
        }
    }

    /// The components `examples-js/build.sh` builds (JavaScript: StarlingMonkey and a script).
    fn js_examples() -> Vec<(String, Vec<u8>)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples-js/target");
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run scripts/build-examples.sh before the tests",
                dir.display()
            )
        });
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "wasm") {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                out.push((name, std::fs::read(&path).unwrap()));
            }
        }
        assert!(
            !out.is_empty(),
            "no JavaScript example in {}",
            dir.display()
        );
        out
    }

    #[test]
    fn every_js_example_fits_half_of_every_bound() {
        // A JavaScript component carries its engine, so its counts are those of the engine:
        // far above the Rust and C examples, yet within half of every bound.
        for (name, bytes) in js_examples() {
            let c = check_contents(&bytes, &COMPONENT_BOUNDS)
                .unwrap_or_else(|e| panic!("{name} refused: {e}"));
            println!("{name}: {} bytes, {c:?}", bytes.len());
            let half = ComponentBounds {
                max_functions: COMPONENT_BOUNDS.max_functions / 2,
                max_code_bytes: COMPONENT_BOUNDS.max_code_bytes / 2,
                max_function_body_bytes: COMPONENT_BOUNDS.max_function_body_bytes / 2,
                max_depth: COMPONENT_BOUNDS.max_depth,
                max_data_bytes: COMPONENT_BOUNDS.max_data_bytes / 2,
                max_core_modules: COMPONENT_BOUNDS.max_core_modules / 2,
                max_instances: COMPONENT_BOUNDS.max_instances / 2,
                max_imports_exports: COMPONENT_BOUNDS.max_imports_exports / 2,
            };
            check_contents(&bytes, &half).unwrap_or_else(|e| panic!("{name} is near a bound: {e}"));
        }
    }

    #[test]
    fn functions_are_counted_in_unused_inner_modules_at_the_bound_one_past_and_far_past() {
        let bounds = ComponentBounds {
            max_functions: 100,
            ..COMPONENT_BOUNDS
        };
        assert_eq!(
            check_contents(&with_functions(100), &bounds)
                .unwrap()
                .functions,
            100
        );
        assert_eq!(
            refused(&with_functions(101), &bounds),
            ("MAX_COMPONENT_FUNCTIONS", 101, 100)
        );
        // The reported hostile component: 100,000 functions in a module nothing instantiates.
        let hostile = with_functions(100_000);
        let (name, value, bound) = refused(&hostile, &COMPONENT_BOUNDS);
        assert_eq!(
            (name, value, bound),
            (
                "MAX_COMPONENT_FUNCTIONS",
                100_000,
                COMPONENT_BOUNDS.max_functions
            )
        );
        let text = check_contents(&hostile, &COMPONENT_BOUNDS)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("100000 functions") && text.contains("MAX_COMPONENT_FUNCTIONS"),
            "{text}"
        );
    }

    #[test]
    fn the_real_bounds_hold_at_the_bound_and_one_past() {
        let n = COMPONENT_BOUNDS.max_functions;
        check_contents(&with_functions(n), &COMPONENT_BOUNDS).unwrap();
        assert_eq!(
            refused(&with_functions(n + 1), &COMPONENT_BOUNDS).0,
            "MAX_COMPONENT_FUNCTIONS"
        );
        let d = COMPONENT_BOUNDS.max_depth;
        assert_eq!(
            check_contents(&nested(d), &COMPONENT_BOUNDS).unwrap().depth,
            d
        );
        assert_eq!(
            refused(&nested(d + 1), &COMPONENT_BOUNDS),
            ("MAX_COMPONENT_DEPTH", d + 1, d)
        );
        assert_eq!(
            refused(&nested(5000), &COMPONENT_BOUNDS).0,
            "MAX_COMPONENT_DEPTH"
        );
    }

    #[test]
    fn code_body_and_data_bytes_are_bounded() {
        // One function whose body is `size` bytes of `nop`s (plus the locals count and `end`).
        let body = |nops: usize| {
            wat::parse_str(format!(
                "(component (core module (func {})))",
                "nop ".repeat(nops)
            ))
            .unwrap()
        };
        let b = ComponentBounds {
            max_function_body_bytes: 102,
            ..COMPONENT_BOUNDS
        };
        // 100 nops, the locals count (1 byte) and `end` (1 byte).
        check_contents(&body(100), &b).unwrap();
        assert_eq!(
            refused(&body(101), &b),
            ("MAX_FUNCTION_BODY_BYTES", 103, 102)
        );
        assert_eq!(refused(&body(10_000), &b).0, "MAX_FUNCTION_BODY_BYTES");

        let b = ComponentBounds {
            max_code_bytes: 50,
            ..COMPONENT_BOUNDS
        };
        let code = check_contents(&body(100), &COMPONENT_BOUNDS)
            .unwrap()
            .code_bytes;
        assert_eq!(
            refused(&body(100), &b),
            ("MAX_COMPONENT_CODE_BYTES", code, 50)
        );

        let data = |n: usize| {
            wat::parse_str(format!(
                "(component (core module (memory 1) (data (i32.const 0) \"{}\")))",
                "a".repeat(n)
            ))
            .unwrap()
        };
        let b = ComponentBounds {
            max_data_bytes: 1000,
            ..COMPONENT_BOUNDS
        };
        check_contents(&data(1000), &b).unwrap();
        assert_eq!(
            refused(&data(1001), &b),
            ("MAX_COMPONENT_DATA_BYTES", 1001, 1000)
        );
        assert_eq!(refused(&data(100_000), &b).0, "MAX_COMPONENT_DATA_BYTES");
    }

    #[test]
    fn modules_instances_imports_and_exports_are_counted() {
        let modules = |n: usize| {
            let mut wat = String::from("(component");
            for i in 0..n {
                wat.push_str(&format!(
                    " (core module $m{i}) (core instance (instantiate $m{i}))"
                ));
            }
            wat.push(')');
            wat::parse_str(&wat).unwrap()
        };
        let c = check_contents(&modules(3), &COMPONENT_BOUNDS).unwrap();
        assert_eq!((c.core_modules, c.instances), (3, 3));
        let b = ComponentBounds {
            max_core_modules: 3,
            ..COMPONENT_BOUNDS
        };
        assert_eq!(
            refused(&modules(4), &b),
            ("MAX_COMPONENT_CORE_MODULES", 4, 3)
        );
        let b = ComponentBounds {
            max_instances: 3,
            ..COMPONENT_BOUNDS
        };
        check_contents(&modules(3), &b).unwrap();
        assert_eq!(refused(&modules(4), &b), ("MAX_COMPONENT_INSTANCES", 4, 3));

        let exports = |n: usize| {
            let mut wat = String::from("(component (core module (func $f)");
            for i in 0..n {
                wat.push_str(&format!(" (export \"e{i}\" (func $f))"));
            }
            wat.push_str("))");
            wat::parse_str(&wat).unwrap()
        };
        let b = ComponentBounds {
            max_imports_exports: 10,
            ..COMPONENT_BOUNDS
        };
        check_contents(&exports(10), &b).unwrap();
        assert_eq!(
            refused(&exports(11), &b),
            ("MAX_COMPONENT_IMPORTS_EXPORTS", 11, 10)
        );
        assert_eq!(
            refused(&exports(5000), &b).0,
            "MAX_COMPONENT_IMPORTS_EXPORTS"
        );
    }

    #[test]
    fn truncated_bytes_are_malformed() {
        let bytes = with_functions(10);
        assert!(matches!(
            check_contents(&bytes[..bytes.len() - 3], &COMPONENT_BOUNDS),
            Err(ContentsError::Malformed(_))
        ));
    }
}
