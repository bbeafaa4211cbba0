//! Environment variables (process-global): `TFHUB_CACHE_DIR`, `TFHUB_OFFLINE`, `XDG_CACHE_HOME`,
//! `TFHUB_BASE_URL`. This file is its own test process; its tests are serialised by a mutex.

use test_support as common;

use common::*;
use hub::{module_dir_name, Error, Options};

const VARS: [&str; 4] = [
    "TFHUB_CACHE_DIR",
    "TFHUB_OFFLINE",
    "XDG_CACHE_HOME",
    "TFHUB_BASE_URL",
];

fn with_env<T>(set: &[(&str, &str)], f: impl FnOnce() -> T) -> T {
    common::with_env(&VARS, set, f)
}

#[test]
fn tfhub_cache_dir_env_gives_python_layout() {
    let server = Server::start(|_| {
        vec![(
            "/google/m/1".into(),
            Reply::Ok {
                body: fake_model_tgz(),
                content_type: "application/gzip",
            },
        )]
    });
    let cache = tempfile::tempdir().unwrap();
    let handle = format!("{}/google/m/1", server.base);
    let r = with_env(
        &[("TFHUB_CACHE_DIR", cache.path().to_str().unwrap())],
        || {
            assert_eq!(hub::cache_dir(&Options::default()).unwrap(), cache.path());
            hub::resolve(&handle, &Options::from_env()).unwrap()
        },
    );
    let sha = module_dir_name(&handle);
    assert_eq!(r.path, cache.path().join(&sha));
    assert_fake_model(&r.path);
    assert_eq!(
        names(cache.path()),
        vec![sha.clone(), format!("{sha}.descriptor.txt")]
    );
    // An explicit Options::cache_dir wins over the variable.
    let other = tempfile::tempdir().unwrap();
    let opts = Options {
        cache_dir: Some(other.path().to_path_buf()),
        ..Options::default()
    };
    let dir = with_env(
        &[("TFHUB_CACHE_DIR", cache.path().to_str().unwrap())],
        || hub::cache_dir(&opts).unwrap(),
    );
    assert_eq!(dir, other.path());
}

#[test]
fn tfhub_offline_env_forces_cache_only() {
    let server = Server::start(|_| {
        vec![(
            "/m/1".into(),
            Reply::Ok {
                body: fake_model_tgz(),
                content_type: "application/gzip",
            },
        )]
    });
    let cache = tempfile::tempdir().unwrap();
    let handle = format!("{}/m/1", server.base);
    let opts = Options {
        cache_dir: Some(cache.path().to_path_buf()),
        ..Options::default()
    };
    let e = with_env(&[("TFHUB_OFFLINE", "1")], || {
        hub::resolve(&handle, &opts).unwrap_err()
    });
    assert!(matches!(e, Error::Offline { .. }), "{e:?}");
    assert!(e.to_string().contains("TFHUB_OFFLINE=1"), "{e}");
    assert!(server.all_requests().is_empty());
    let ok = with_env(&[("TFHUB_OFFLINE", "0")], || {
        hub::resolve(&handle, &opts).unwrap()
    });
    assert_fake_model(&ok.path);
    let hit = with_env(&[("TFHUB_OFFLINE", "true")], || {
        hub::resolve(&handle, &opts).unwrap()
    });
    assert_eq!(hit.path, ok.path);
    assert_eq!(server.all_requests().len(), 1);
}

#[test]
fn default_cache_dir_is_per_user_not_tmp() {
    let d = with_env(&[("XDG_CACHE_HOME", "/home/someone/.xdg-cache")], || {
        hub::cache_dir(&Options::default()).unwrap()
    });
    assert_eq!(
        d,
        std::path::PathBuf::from("/home/someone/.xdg-cache/tfhub-rs")
    );
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let d = with_env(&[], || hub::default_cache_dir().unwrap());
        assert_eq!(d, std::path::PathBuf::from(home).join(".cache/tfhub-rs"));
    }
}

#[test]
fn tfhub_base_url_env_redirects_tfhub_handles() {
    let server = Server::start(|_| {
        vec![(
            "/google/tf2-preview/gnews-swivel-20dim/1".into(),
            Reply::Ok {
                body: fake_model_tgz(),
                content_type: "application/gzip",
            },
        )]
    });
    let cache = tempfile::tempdir().unwrap();
    let handle = "https://tfhub.dev/google/tf2-preview/gnews-swivel-20dim/1";
    let opts = Options {
        cache_dir: Some(cache.path().to_path_buf()),
        ..Options::default()
    };
    let r = with_env(&[("TFHUB_BASE_URL", server.base.as_str())], || {
        hub::resolve(handle, &opts).unwrap()
    });
    assert_eq!(
        r.path,
        cache
            .path()
            .join("510580b203329a4a95dfdfefd838bdcd202f0d13")
    );
    assert_fake_model(&r.path);
    assert_eq!(
        server.all_requests(),
        vec!["/google/tf2-preview/gnews-swivel-20dim/1?tf-hub-format=compressed".to_string()]
    );
}
