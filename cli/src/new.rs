//! `wasmos new NAME --lang rust|c|python|js`: writes a standalone framework project, one that
//! builds without this repository: the WIT contract (`wit/framework.wit`, the very file the
//! host implements, embedded in this binary so it cannot drift), a minimal scheduler and
//! executor, a README, and `./build.sh`, whose last line of output is the built component's
//! path.
//!
//! The templates live in `cli/templates/<lang>/` and are embedded with `include_str!`; `{{name}}`
//! becomes the project's name and `{{crate}}` its name with `-` turned to `_` (the file name
//! cargo gives the component). What each language needs from this repository is copied into
//! the project, never referenced:
//! * Rust: the `wasmos-guest` SDK's sources (`guest-sdk/src`, its README, and its manifest with
//!   the workspace fields filled in), which generate their bindings from `../wit` at build time,
//!   so the project's `wit/` is the SDK's WIT too.
//! * C: the wit-bindgen C glue committed in `examples-wasm-c/bindings/` (generated from the same
//!   WIT; `examples-wasm-c/build.sh` refuses it when the WIT changed without regenerating it).
//!
//! * Python: the SDK package `guest-sdk-python/wasmos/` as `src/wasmos/`; componentize-py
//!   generates the bindings it imports from the project's `wit/` at build time.
//! * JavaScript: the SDK `guest-sdk-js/` (its module, build tool, manifest and lock file) as
//!   `wasmos-js/`; the build tool reads the project's `wit/`, and `npm ci` installs the locked
//!   packages into `wasmos-js/node_modules` on the first build.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The longest project name: it becomes a directory, a crate, a framework and a file name.
pub const MAX_NAME_LEN: usize = 64;

/// Names a Rust crate cannot have (keywords, and crates every build links or this one vendors).
const RESERVED: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "gen",
    "macro",
    "override",
    "priv",
    "try",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "std",
    "core",
    "alloc",
    "test",
    "proc_macro",
    "wasmos_guest",
];

/// The language of the project's scheduler and executor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with the vendored wasmos-guest SDK; needs the wasm32-wasip2 target.
    Rust,
    /// C with wit-bindgen's glue; needs clang for wasm32-wasi, wasi-libc and wasm-component-ld.
    C,
    /// Python with the vendored wasmos SDK; needs componentize-py 0.25.1.
    Python,
    /// JavaScript with the vendored wasmos SDK; needs Node.js 20+ and npm.
    Js,
}

#[derive(clap::Args)]
pub struct Args {
    /// The project's name: 1 to 64 characters, a lowercase ASCII letter first, then lowercase
    /// letters, digits, `-` or `_`; not a Rust keyword or `std`, `core`, `alloc`, `test`,
    /// `proc_macro`, `wasmos_guest`. It names the directory, the crate, the component
    /// (`-` becomes `_`) and the framework.
    name: String,
    /// The language of the scheduler and executor.
    #[arg(long, value_enum)]
    lang: Lang,
    /// Where to write the project; it must not exist or be empty [default: ./NAME].
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
}

/// One file of a project: its path in the project, its bytes, and whether it is a program.
struct File {
    path: &'static str,
    contents: Contents,
    executable: bool,
}

enum Contents {
    /// Text in which `{{name}}` and `{{crate}}` are replaced.
    Template(&'static str),
    /// Copied as is (the WIT, the SDK, the C glue).
    Verbatim(&'static [u8]),
    /// The SDK's manifest, its workspace fields filled in.
    SdkManifest,
}

use Contents::{SdkManifest, Template, Verbatim};

const fn template(path: &'static str, text: &'static str) -> File {
    File {
        path,
        contents: Template(text),
        executable: false,
    }
}
const fn verbatim(path: &'static str, bytes: &'static [u8]) -> File {
    File {
        path,
        contents: Verbatim(bytes),
        executable: false,
    }
}
const fn program(path: &'static str, text: &'static str) -> File {
    File {
        path,
        contents: Template(text),
        executable: true,
    }
}

const WIT: &[u8] = include_bytes!("../../wit/framework.wit");

/// The Rust project. Every file of `guest-sdk/src` must be listed here (the `new` test builds
/// the project, so a missing one fails it).
const RUST: &[File] = &[
    template("Cargo.toml", include_str!("../templates/rust/Cargo.toml")),
    template("src/lib.rs", include_str!("../templates/rust/src/lib.rs")),
    template("README.md", include_str!("../templates/rust/README.md")),
    template(".gitignore", include_str!("../templates/rust/gitignore")),
    program("build.sh", include_str!("../templates/rust/build.sh")),
    verbatim("wit/framework.wit", WIT),
    File {
        path: "wasmos-guest/Cargo.toml",
        contents: SdkManifest,
        executable: false,
    },
    verbatim(
        "wasmos-guest/README.md",
        include_bytes!("../../guest-sdk/README.md"),
    ),
    verbatim(
        "wasmos-guest/src/lib.rs",
        include_bytes!("../../guest-sdk/src/lib.rs"),
    ),
    verbatim(
        "wasmos-guest/src/driver.rs",
        include_bytes!("../../guest-sdk/src/driver.rs"),
    ),
    verbatim(
        "wasmos-guest/src/executor_driver.rs",
        include_bytes!("../../guest-sdk/src/executor_driver.rs"),
    ),
    verbatim(
        "wasmos-guest/src/helpers.rs",
        include_bytes!("../../guest-sdk/src/helpers.rs"),
    ),
    verbatim(
        "wasmos-guest/src/runtime.rs",
        include_bytes!("../../guest-sdk/src/runtime.rs"),
    ),
];

const C: &[File] = &[
    template("src/app.c", include_str!("../templates/c/src/app.c")),
    template("README.md", include_str!("../templates/c/README.md")),
    template(".gitignore", include_str!("../templates/c/gitignore")),
    program("build.sh", include_str!("../templates/c/build.sh")),
    verbatim("wit/framework.wit", WIT),
    verbatim(
        "bindings/framework.c",
        include_bytes!("../../examples-wasm-c/bindings/framework.c"),
    ),
    verbatim(
        "bindings/framework.h",
        include_bytes!("../../examples-wasm-c/bindings/framework.h"),
    ),
    verbatim(
        "bindings/framework_component_type.o",
        include_bytes!("../../examples-wasm-c/bindings/framework_component_type.o"),
    ),
];

/// The Python project. Every file of `guest-sdk-python/wasmos` must be listed here (the `new`
/// test builds and runs the project, so a missing one fails it).
const PYTHON: &[File] = &[
    template("src/app.py", include_str!("../templates/python/src/app.py")),
    template("README.md", include_str!("../templates/python/README.md")),
    template(".gitignore", include_str!("../templates/python/gitignore")),
    program("build.sh", include_str!("../templates/python/build.sh")),
    verbatim("wit/framework.wit", WIT),
    verbatim(
        "src/wasmos/__init__.py",
        include_bytes!("../../guest-sdk-python/wasmos/__init__.py"),
    ),
    verbatim(
        "src/wasmos/_runtime.py",
        include_bytes!("../../guest-sdk-python/wasmos/_runtime.py"),
    ),
    verbatim(
        "src/wasmos/driver.py",
        include_bytes!("../../guest-sdk-python/wasmos/driver.py"),
    ),
    verbatim(
        "src/wasmos/executor_driver.py",
        include_bytes!("../../guest-sdk-python/wasmos/executor_driver.py"),
    ),
    verbatim(
        "src/wasmos/helpers.py",
        include_bytes!("../../guest-sdk-python/wasmos/helpers.py"),
    ),
];

/// The JavaScript project: the SDK's module, its build tool, and the manifest and lock file
/// that pin the build tool's packages.
const JS: &[File] = &[
    template("src/app.js", include_str!("../templates/js/src/app.js")),
    template("README.md", include_str!("../templates/js/README.md")),
    template(".gitignore", include_str!("../templates/js/gitignore")),
    program("build.sh", include_str!("../templates/js/build.sh")),
    verbatim("wit/framework.wit", WIT),
    verbatim(
        "wasmos-js/src/index.js",
        include_bytes!("../../guest-sdk-js/src/index.js"),
    ),
    verbatim(
        "wasmos-js/bin/wasmos-js-build.mjs",
        include_bytes!("../../guest-sdk-js/bin/wasmos-js-build.mjs"),
    ),
    verbatim(
        "wasmos-js/package.json",
        include_bytes!("../../guest-sdk-js/package.json"),
    ),
    verbatim(
        "wasmos-js/package-lock.json",
        include_bytes!("../../guest-sdk-js/package-lock.json"),
    ),
    verbatim(
        "wasmos-js/README.md",
        include_bytes!("../../guest-sdk-js/README.md"),
    ),
];

const SDK_MANIFEST: &str = include_str!("../../guest-sdk/Cargo.toml");

/// Why `wasmos new` refused, with what the user can do.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    #[error(
        "{name:?} is not a valid project name: use 1 to {MAX_NAME_LEN} characters, a lowercase \
         ASCII letter first, then lowercase letters, digits, '-' or '_' ({why})"
    )]
    BadName { name: String, why: String },
    #[error("{dir} exists and is not empty: choose another --dir or name, or remove it")]
    NotEmpty { dir: String },
    #[error("{dir} exists and is not a directory: choose another --dir or name")]
    NotADirectory { dir: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Checks a project name against the rule in [`Args::name`].
pub fn check_name(name: &str) -> Result<(), NewError> {
    let bad = |why: &str| NewError::BadName {
        name: name.chars().take(MAX_NAME_LEN + 16).collect(),
        why: why.into(),
    };
    let len = name.chars().count();
    if len == 0 {
        return Err(bad("it is empty"));
    }
    if len > MAX_NAME_LEN {
        return Err(bad(&format!("it has {len} characters")));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(bad("it does not start with a lowercase letter"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(bad(&format!("it holds {c:?}")));
    }
    let crate_name = name.replace('-', "_");
    if RESERVED.contains(&crate_name.as_str()) {
        return Err(bad("it is a Rust keyword or a reserved crate name"));
    }
    Ok(())
}

/// The project's files for `lang`.
fn files(lang: Lang) -> &'static [File] {
    match lang {
        Lang::Rust => RUST,
        Lang::C => C,
        Lang::Python => PYTHON,
        Lang::Js => JS,
    }
}

/// The SDK's manifest as a package of its own: the `*.workspace = true` fields of the
/// repository's workspace replaced by their values.
fn sdk_manifest() -> String {
    let mut out = String::from(
        "# The wasmos Rust SDK, copied from wasmos by `wasmos new`. Its bindings are generated \
         from ../wit.\n",
    );
    for line in SDK_MANIFEST.lines() {
        let line = match line.trim() {
            "version.workspace = true" => format!("version = \"{}\"", env!("CARGO_PKG_VERSION")),
            "edition.workspace = true" => "edition = \"2024\"".into(),
            "rust-version.workspace = true" => {
                format!("rust-version = \"{}\"", env!("CARGO_PKG_RUST_VERSION"))
            }
            "license.workspace = true" => "license = \"Apache-2.0\"".into(),
            _ => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Refuses a `dir` that exists and is not an empty directory.
fn check_dir(dir: &Path) -> Result<(), NewError> {
    let shown = || dir.display().to_string();
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(NewError::NotEmpty { dir: shown() }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory || dir.is_file() => {
            Err(NewError::NotADirectory { dir: shown() })
        }
        Err(source) => Err(NewError::Write {
            path: shown(),
            source,
        }),
    }
}

/// Writes the project for `name` and `lang` into `dir` (checked first: nothing is written
/// when the name or the directory is refused).
pub fn write_project(name: &str, lang: Lang, dir: &Path) -> Result<(), NewError> {
    check_name(name)?;
    let files = files(lang);
    check_dir(dir)?;
    let crate_name = name.replace('-', "_");
    for file in files {
        let path = dir.join(file.path);
        let write_err = |source| NewError::Write {
            path: path.display().to_string(),
            source,
        };
        let bytes = match file.contents {
            Template(text) => text
                .replace("{{name}}", name)
                .replace("{{crate}}", &crate_name)
                .into_bytes(),
            Verbatim(bytes) => bytes.to_vec(),
            SdkManifest => sdk_manifest().into_bytes(),
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_err)?;
        }
        std::fs::write(&path, bytes).map_err(write_err)?;
        if file.executable {
            make_executable(&path).map_err(write_err)?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

pub fn run(args: Args) -> ExitCode {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    match write_project(&args.name, args.lang, &dir) {
        Ok(()) => {
            let shown = dir.display();
            println!(
                "wrote {} framework {} in {shown}",
                lang_name(args.lang),
                args.name
            );
            println!("build and run it:");
            println!("  cd {shown} && wasmos dev --run \"$(./build.sh | tail -1)\"");
            ExitCode::SUCCESS
        }
        Err(e @ NewError::Write { .. }) => {
            eprintln!("wasmos: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("wasmos: {e}");
            ExitCode::from(2)
        }
    }
}

fn lang_name(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::C => "C",
        Lang::Python => "Python",
        Lang::Js => "JavaScript",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_at_and_past_the_bound() {
        check_name(&"a".repeat(MAX_NAME_LEN)).unwrap();
        assert!(check_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(check_name(&"a".repeat(100_000)).is_err());
        for ok in ["a", "squares", "my-fw_2", "x0"] {
            check_name(ok).unwrap();
        }
        for bad in [
            "", "Squares", "2fw", "-fw", "_fw", "my fw", "fw.x", "fw/x", "fn", "std",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_name("wasmos-guest").is_err());
    }

    #[test]
    fn the_sdk_manifest_uses_no_workspace_fields() {
        let m = sdk_manifest();
        assert!(!m.contains("workspace"), "{m}");
        assert!(m.contains("wit-bindgen"), "{m}");
    }
}
