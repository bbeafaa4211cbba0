//! The cache is shared with Python `tensorflow_hub` both ways (`TFHUB_CACHE_DIR`): Python finds
//! what Rust downloaded without touching the network, and Rust (offline) finds what Python
//! downloaded. Skips when `tools/.venv/bin/python` cannot `import tensorflow_hub`.

use test_support as common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use hub::{module_dir_name, Resolver};

fn python() -> Option<PathBuf> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/.venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import tensorflow_hub"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then_some(py)
}

/// `hub.resolve(handle)` in Python with `TFHUB_CACHE_DIR=cache`.
fn python_resolve(py: &Path, cache: &Path, handle: &str) -> String {
    let out = Command::new(py)
        .args([
            "-c",
            "import sys, tensorflow_hub as hub; print('PATH=' + hub.resolve(sys.argv[1]))",
            handle,
        ])
        .env("TFHUB_CACHE_DIR", cache)
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .env_remove("TFHUB_MODEL_LOAD_FORMAT")
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("PATH="))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{stdout}"))
}

#[test]
fn cache_is_shared_with_python_tensorflow_hub_both_ways() {
    let Some(py) = python() else {
        eprintln!("SKIPPED: tools/.venv/bin/python cannot import tensorflow_hub (pip install tensorflow-hub --no-deps)");
        return;
    };
    let server = Server::start(|_| {
        vec![
            (
                "/rust/first/1".into(),
                Reply::Ok {
                    body: fake_model_tgz(),
                    content_type: "application/x-gzip",
                },
            ),
            (
                "/python/first/1".into(),
                Reply::Ok {
                    body: fake_model_tgz(),
                    content_type: "application/x-gzip",
                },
            ),
        ]
    });
    let cache = tempfile::tempdir().unwrap();

    // Rust downloads, Python finds it (no second request).
    let handle = format!("{}/rust/first/1", server.base);
    let r = Resolver::new(cache.path())
        .quiet(true)
        .resolve(&handle)
        .unwrap();
    let from_python = python_resolve(&py, cache.path(), &handle);
    assert_eq!(PathBuf::from(from_python), r.path);
    assert_eq!(server.hits("/rust/first/1"), 1);

    // Python downloads, Rust finds it offline.
    let handle = format!("{}/python/first/1", server.base);
    let from_python = python_resolve(&py, cache.path(), &handle);
    assert_eq!(
        PathBuf::from(&from_python),
        cache.path().join(module_dir_name(&handle))
    );
    assert_eq!(server.hits("/python/first/1"), 1);
    let r = Resolver::new(cache.path())
        .offline(true)
        .resolve(&handle)
        .unwrap();
    assert_eq!(r.path, PathBuf::from(from_python));
    assert_fake_model(&r.path);
    let desc = std::fs::read_to_string(
        cache
            .path()
            .join(format!("{}.descriptor.txt", module_dir_name(&handle))),
    )
    .unwrap();
    assert!(
        desc.starts_with(&format!("Module: {handle}\n")),
        "Python's descriptor: {desc}"
    );
}
