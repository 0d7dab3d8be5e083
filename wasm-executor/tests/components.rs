//! Loading components: bad input gets a precise error, good input is compiled once and cached.

mod common;

use common::*;
use wasmos_wasm_executor::{ComponentError, LimitMode, RuntimeConfig, WasmRuntime};

fn runtime() -> WasmRuntime {
    WasmRuntime::new(RuntimeConfig {
        pooling: Some(small_pool()),
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn load_err(bytes: &[u8]) -> ComponentError {
    match runtime().load(bytes) {
        Ok(_) => panic!("loading {} bytes should fail", bytes.len()),
        Err(e) => e,
    }
}

/// Deterministic noise (xorshift), so a failure can be reproduced.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[test]
fn an_empty_file_is_refused() {
    let e = load_err(b"");
    assert!(matches!(e, ComponentError::Empty), "{e:?}");
    assert_eq!(e.to_string(), "component is empty (0 bytes)");
}

#[test]
fn random_bytes_are_refused() {
    let e = load_err(&noise(4096, 7));
    assert!(matches!(e, ComponentError::NotWasm), "{e:?}");
    assert!(e.to_string().contains("not a WebAssembly binary"), "{e}");
    // Noise behind a valid component header gets past the cheap checks; the parser refuses it.
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    bytes.extend(noise(4096, 11));
    let e = load_err(&bytes);
    assert!(matches!(e, ComponentError::Invalid(_)), "{e:?}");
    assert!(e.to_string().starts_with("invalid component"), "{e}");
}

#[test]
fn a_core_module_is_refused_with_advice() {
    let module = wat::parse_str("(module (func (export \"run\")))").unwrap();
    let e = load_err(&module);
    assert!(matches!(e, ComponentError::CoreModule), "{e:?}");
    assert!(
        e.to_string()
            .contains("core WebAssembly module, not a component"),
        "{e}"
    );
    assert!(e.to_string().contains("wasm32-wasip2"), "{e}");
}

#[test]
fn a_truncated_component_is_refused() {
    let bytes = example_bytes("pi");
    for cut in [9, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
        let e = load_err(&bytes[..cut]);
        assert!(
            matches!(e, ComponentError::Invalid(_)),
            "cut at {cut}: {e:?}"
        );
    }
}

#[test]
fn a_component_of_another_world_is_refused() {
    let e = load_err(&example_bytes("wrongworld"));
    assert!(matches!(e, ComponentError::WrongWorld(_)), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("does not implement the wasmos:framework@0.1.0 world"),
        "{text}"
    );
}

#[test]
fn oversized_components_are_refused_before_parsing() {
    let rt = WasmRuntime::new(RuntimeConfig {
        pooling: None,
        max_component_bytes: 1000,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let e = rt.load(&example_bytes("pi")).err().expect("too large");
    assert!(e.to_string().contains("the limit is 1000 bytes"), "{e}");
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let cache = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        pooling: None,
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let bytes = example_bytes("pi");
    let first = WasmRuntime::new(config.clone()).unwrap();
    let a = first.load(&bytes).unwrap();
    assert_eq!(first.compile_count(), 1);
    // Loading again in the same process is a table lookup.
    let again = first.load(&bytes).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &again));
    assert_eq!(first.compile_count(), 1);
    drop(first);

    // A new process (a restarted agent) finds the compiled artifact.
    let second = WasmRuntime::new(config.clone()).unwrap();
    let b = second.load(&bytes).unwrap();
    assert_eq!(
        second.compile_count(),
        0,
        "the second start must not recompile"
    );
    assert_eq!(a.digest(), b.digest());
    let entries: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);

    // An engine with another configuration does not use the first one's artifact.
    let epoch = WasmRuntime::new(RuntimeConfig {
        limit_mode: LimitMode::Epoch,
        ..config.clone()
    })
    .unwrap();
    epoch.load(&bytes).unwrap();
    assert_eq!(epoch.compile_count(), 1);

    // A corrupt entry is discarded and rebuilt, not trusted.
    for entry in std::fs::read_dir(cache.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let third = WasmRuntime::new(config).unwrap();
    third
        .load(&bytes)
        .expect("a corrupt cache entry is rebuilt");
    assert_eq!(third.compile_count(), 1);
}

/// `bytes` with a custom section appended: the same component under another digest.
fn with_custom_section(mut bytes: Vec<u8>, tag: u8) -> Vec<u8> {
    bytes.extend_from_slice(&[0, 3, 1, b'x', tag]);
    bytes
}

#[test]
fn a_component_over_a_content_bound_is_refused_without_compiling() {
    // The reported case: a valid component whose unused inner module has 100,000 functions.
    let mut wat = String::from("(component (core module");
    for _ in 0..100_000 {
        wat.push_str(" (func)");
    }
    wat.push_str("))");
    let hostile = wat::parse_str(&wat).unwrap();
    let rt = runtime();
    let e = match rt.load(&hostile) {
        Ok(_) => panic!("a component of 100,000 functions was compiled"),
        Err(e) => e,
    };
    assert!(matches!(e, ComponentError::OverBound(_)), "{e:?}");
    assert!(e.to_string().contains("MAX_COMPONENT_FUNCTIONS"), "{e}");
    assert_eq!(rt.compile_count(), 0, "nothing was compiled");
    // A well-behaved framework still loads on the same runtime.
    rt.load(&example_bytes("pi")).unwrap();
    assert_eq!(rt.compile_count(), 1);
}

#[test]
fn the_in_memory_table_keeps_at_most_its_bound_of_idle_components() {
    let rt = WasmRuntime::new(RuntimeConfig {
        pooling: Some(small_pool()),
        max_loaded_components: 2,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let pi = example_bytes("pi");
    let digests: Vec<_> = (0..3u8)
        .map(|tag| {
            let bytes = with_custom_section(pi.clone(), tag);
            rt.load(&bytes).unwrap().digest()
        })
        .collect();
    assert_eq!(
        rt.loaded_count(),
        2,
        "the least recently used idle one is dropped"
    );
    assert!(rt.get(&digests[0]).is_none());
    assert!(rt.get(&digests[2]).is_some());

    // Held components are never dropped, even past the bound.
    let held: Vec<_> = (10..13u8)
        .map(|tag| rt.load(&with_custom_section(pi.clone(), tag)).unwrap())
        .collect();
    assert_eq!(rt.loaded_count(), 3);
    drop(held);
    rt.load(&with_custom_section(pi.clone(), 20)).unwrap();
    assert_eq!(rt.loaded_count(), 2);
    rt.unload(&digests[2]);
    assert!(rt.get(&digests[2]).is_none());
}

#[test]
fn the_last_lease_of_a_component_unloads_it() {
    let rt = runtime();
    let pi = rt.load(&example_bytes("pi")).unwrap();
    let digest = pi.digest();
    drop(pi);
    let a = rt.lease(digest);
    let b = rt.lease(digest);
    drop(a);
    assert!(rt.get(&digest).is_some(), "unloaded while a lease is held");
    drop(b);
    assert!(
        rt.get(&digest).is_none(),
        "still loaded after the last lease"
    );
    assert_eq!(rt.loaded_count(), 0);
}
