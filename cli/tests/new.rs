//! `wasmos new` as a user runs it: each template is written into a temporary directory outside
//! this repository, built with its own `./build.sh` (whose last line is the component's path),
//! run to its result with `wasmos dev --run` and no arguments, and its executor run alone with
//! `wasmos task run`. And its refusals: a bad name (at the length bound, one past, far past), an
//! existing non-empty directory or a file, and an unknown language.
//!
//! The toolchains are those `scripts/build-examples.sh` installs (it runs before the tests); the
//! Rust build uses the route it chose (`target/guest-toolchain.env`) and a target directory
//! shared between runs (`target/new-template`), so only the project's own crates are compiled
//! again. The Python build uses the componentize-py of `target/python-guest`, the JavaScript one
//! links the packages of `guest-sdk-js/node_modules` (the same lock file the project carries)
//! instead of running `npm ci` again.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;

use common::succeeded;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `wasmos ARGS` in `cwd`.
fn wasmos_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmos"))
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("wasmos runs")
}

/// Checks that `wasmos ARGS` in `cwd` exits 2 saying `reason`.
fn refused(cwd: &Path, args: &[&str], reason: &str) {
    let out = wasmos_in(cwd, args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr {stderr}");
    assert!(
        stderr.contains(reason),
        "{args:?}: expected {reason:?} in {stderr}"
    );
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The guest route `scripts/install-guest-toolchain.sh` chose.
fn guest_route() -> String {
    let env = workspace().join("target/guest-toolchain.env");
    let text = std::fs::read_to_string(&env).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: run scripts/build-examples.sh (scripts/test.sh does) before the tests",
            env.display()
        )
    });
    text.lines()
        .find_map(|l| l.strip_prefix("WASMOS_GUEST_ROUTE="))
        .unwrap_or_else(|| panic!("no WASMOS_GUEST_ROUTE in {}", env.display()))
        .trim()
        .to_string()
}

/// Writes project `name` in `lang` under a fresh temporary directory, builds it with its
/// `./build.sh` and returns the directory and the component's path (the script's last line).
fn new_and_build(name: &str, lang: &str, env: &[(&str, &Path)]) -> (tempfile::TempDir, String) {
    let tmp = tempfile::Builder::new()
        .prefix("wasmos-new-")
        .tempdir()
        .unwrap();
    let dir = tmp.path().join(name);
    let out = wasmos_in(tmp.path(), &["new", name, "--lang", lang]);
    succeeded(&out);
    assert!(dir.join("README.md").is_file() && dir.join("wit/framework.wit").is_file());

    let started = Instant::now();
    let mut build = Command::new("./build.sh");
    build
        .current_dir(&dir)
        .env("WASMOS_GUEST_ROUTE", guest_route());
    for (k, v) in env {
        build.env(k, v);
    }
    let out = build.output().expect("build.sh runs");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "{lang} build.sh failed\nstdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    eprintln!("{lang}: ./build.sh took {:?}", started.elapsed());
    let wasm = stdout.lines().last().unwrap_or_default().to_string();
    assert!(
        Path::new(&wasm).is_file(),
        "the last line {wasm:?} is not the component"
    );
    (tmp, wasm)
}

/// Flags of the runs of a template's component: none for the small Rust and C components. A
/// Python or JavaScript one carries its interpreter (CPython: 13,000 functions; StarlingMonkey),
/// which this debug build compiles for tens of seconds on a busy machine, more than the default
/// 60 s compile budget allows under load; so those runs get `--compile-timeout 600s`, one agent,
/// and a compiled-component cache shared by every run (and kept in `target/` between test runs,
/// keyed by the component's hash).
struct Runs {
    big: bool,
    cache: PathBuf,
    wait: Duration,
}

impl Runs {
    fn small() -> Runs {
        Runs {
            big: false,
            cache: PathBuf::new(),
            wait: common::WAIT,
        }
    }

    fn big() -> Runs {
        let cache = workspace().join("target/new-template-compiled");
        std::fs::create_dir_all(&cache).expect("create the compiled-component cache");
        Runs {
            big: true,
            cache,
            wait: Duration::from_secs(600),
        }
    }

    /// Runs `wasmos ARGS` to its end within the wait.
    async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(
            self.wait,
            tokio::process::Command::new(env!("CARGO_BIN_EXE_wasmos"))
                .args(args)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("wasmos {args:?} did not exit within {:?}", self.wait))
        .expect("wasmos runs")
    }

    /// `wasmos dev --run WASM -- ARGS`; a big component's in a data directory whose compiled
    /// caches (the master's and the agent's) are links to the shared one.
    async fn dev(&self, wasm: &str, args: &[&str]) -> Output {
        let data = tempfile::tempdir().expect("a temporary directory");
        let data_dir = data.path().to_str().expect("a UTF-8 path").to_string();
        let mut all = vec!["dev"];
        if self.big {
            for dir in [data.path().to_path_buf(), data.path().join("agent-0")] {
                std::fs::create_dir_all(&dir).expect("create the directory");
                std::os::unix::fs::symlink(&self.cache, dir.join("compiled"))
                    .expect("link the cache");
            }
            all.extend([
                "--agents",
                "1",
                "--data-dir",
                &data_dir,
                "--compile-timeout",
                "600s",
            ]);
        }
        all.extend(["--run", wasm]);
        if !args.is_empty() {
            all.push("--");
            all.extend(args);
        }
        self.run(&all).await
    }

    /// `wasmos task run WASM ARGS`, a big component's with the shared cache.
    async fn task(&self, wasm: &str, args: &[&str]) -> Output {
        let cache = self.cache.to_str().expect("a UTF-8 path").to_string();
        let mut all = vec!["task", "run", wasm];
        all.extend(args);
        if self.big {
            all.extend(["--cache-dir", &cache]);
        }
        self.run(&all).await
    }
}

/// `wasmos dev --run` with no arguments reaches the sum of the squares of 1..=4, and `wasmos
/// task run` prints one square.
async fn runs_to_its_result(name: &str, wasm: &str, runs: Runs) {
    let started = Instant::now();
    let out = runs.dev(wasm, &[]).await;
    let stdout = succeeded(&out);
    let want = format!("{name}: sum of squares of 1..=4 = 30");
    assert!(stdout.contains(&want), "expected {want:?} in {stdout}");
    let out = runs.dev(wasm, &["10"]).await;
    let stdout = succeeded(&out);
    assert!(
        stdout.contains("sum of squares of 1..=10 = 385"),
        "{stdout}"
    );
    let out = runs
        .task(wasm, &["--executor-id", name, "--payload", "7"])
        .await;
    assert_eq!(succeeded(&out).trim(), "49");
    let out = runs.task(wasm, &["--payload", "seven"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not a whole number"),
        "{}",
        text(&out.stderr)
    );
    eprintln!(
        "{name}: two dev --run and two task run took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_template_builds_on_its_own_and_runs() {
    let target = workspace().join("target/new-template");
    let (_tmp, wasm) = new_and_build("squares-rs", "rust", &[("CARGO_TARGET_DIR", &target)]);
    assert!(wasm.ends_with("/squares_rs.wasm"), "{wasm}");
    runs_to_its_result("squares-rs", &wasm, Runs::small()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_template_builds_on_its_own_and_runs() {
    let (tmp, wasm) = new_and_build("squares-c", "c", &[]);
    assert_eq!(
        Path::new(&wasm),
        tmp.path().join("squares-c/target/squares_c.wasm")
    );
    runs_to_its_result("squares-c", &wasm, Runs::small()).await;
}

/// The componentize-py `scripts/install-guest-toolchain.sh` installed (named in
/// `target/python-guest/env`), unless `WASMOS_COMPONENTIZE_PY` names one.
fn componentize_py() -> PathBuf {
    if let Some(p) = std::env::var_os("WASMOS_COMPONENTIZE_PY") {
        return PathBuf::from(p);
    }
    let env = workspace().join("target/python-guest/env");
    let text = std::fs::read_to_string(&env).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: run scripts/install-guest-toolchain.sh (scripts/test.sh does) first",
            env.display()
        )
    });
    text.lines()
        .find_map(|l| l.strip_prefix("WASMOS_COMPONENTIZE_PY="))
        .map(|p| PathBuf::from(p.trim()))
        .unwrap_or_else(|| panic!("no WASMOS_COMPONENTIZE_PY in {}", env.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_template_builds_on_its_own_and_runs() {
    let cpy = componentize_py();
    let (tmp, wasm) = new_and_build("squares-py", "python", &[("WASMOS_COMPONENTIZE_PY", &cpy)]);
    assert_eq!(
        Path::new(&wasm),
        tmp.path().join("squares-py/target/squares_py.wasm")
    );
    runs_to_its_result("squares-py", &wasm, Runs::big()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_template_builds_on_its_own_and_runs() {
    // The packages `scripts/install-guest-toolchain.sh` installed from the same lock file the
    // project carries, linked instead of a second `npm ci` of 400 MB.
    let modules = workspace().join("guest-sdk-js/node_modules");
    assert!(
        modules.join("@bytecodealliance/componentize-js").is_dir(),
        "{}: run scripts/install-guest-toolchain.sh (scripts/test.sh does) first",
        modules.display()
    );
    let (tmp, wasm) = new_and_build("squares-js", "js", &[("WASMOS_JS_NODE_MODULES", &modules)]);
    assert_eq!(
        Path::new(&wasm),
        tmp.path().join("squares-js/target/squares_js.wasm")
    );
    runs_to_its_result("squares-js", &wasm, Runs::big()).await;
}

#[test]
fn the_c_glue_it_copies_matches_the_wit() {
    let root = workspace();
    let out = Command::new("sha256sum")
        .arg(root.join("wit/framework.wit"))
        .output()
        .expect("sha256sum runs");
    let have = text(&out.stdout);
    let want = std::fs::read_to_string(root.join("examples-wasm-c/bindings/WIT_SHA256")).unwrap();
    assert_eq!(
        have.split_whitespace().next(),
        Some(want.trim()),
        "wit/framework.wit changed: run examples-wasm-c/regen-bindings.sh"
    );
}

#[test]
fn refuses_bad_names_and_directories_and_unknown_languages() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let rule = "a lowercase ASCII letter first";
    for bad in [
        "Squares",
        "2fw",
        "-fw",
        "my fw",
        "fw.x",
        "../fw",
        "fn",
        "std",
        "wasmos-guest",
    ] {
        // After `--`, so that clap does not read `-fw` as a flag.
        refused(cwd, &["new", "--lang", "c", "--", bad], rule);
    }
    // The length bound: 64 is written, 65 and far past are refused.
    let at = "a".repeat(64);
    succeeded(&wasmos_in(cwd, &["new", &at, "--lang", "c"]));
    assert!(cwd.join(&at).join("build.sh").is_file());
    refused(
        cwd,
        &["new", &"a".repeat(65), "--lang", "c"],
        "it has 65 characters",
    );
    refused(
        cwd,
        &["new", &"a".repeat(100_000), "--lang", "c"],
        "it has 100000 characters",
    );
    refused(cwd, &["new", "", "--lang", "c"], "it is empty");

    // An existing non-empty directory (here the one just written), untouched; a file.
    let before = std::fs::read_dir(cwd.join(&at)).unwrap().count();
    refused(
        cwd,
        &["new", &at, "--lang", "rust"],
        "exists and is not empty",
    );
    assert_eq!(std::fs::read_dir(cwd.join(&at)).unwrap().count(), before);
    assert!(!cwd.join(&at).join("Cargo.toml").exists());
    std::fs::write(cwd.join("file"), b"x").unwrap();
    refused(
        cwd,
        &["new", "fw", "--lang", "c", "--dir", "file"],
        "is not a directory",
    );
    // An empty directory is fine, and --dir names it.
    std::fs::create_dir(cwd.join("empty")).unwrap();
    succeeded(&wasmos_in(
        cwd,
        &["new", "fw", "--lang", "rust", "--dir", "empty"],
    ));
    assert!(cwd.join("empty/wasmos-guest/src/lib.rs").is_file());
    assert!(!cwd.join("fw").exists());

    refused(cwd, &["new", "fw", "--lang", "go"], "invalid value 'go'");
    refused(cwd, &["new", "fw"], "--lang");
    assert!(!cwd.join("fw").exists());
}
