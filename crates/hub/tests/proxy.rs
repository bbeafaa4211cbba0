//! Proxy settings come from the usual environment variables (reqwest's default). This file is
//! its own test process; its tests are serialised by a mutex.

use test_support as common;

use common::*;
use hub::{Error, Resolver};

const VARS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

fn with_env<T>(set: &[(&str, &str)], f: impl FnOnce() -> T) -> T {
    common::with_env(&VARS, set, f)
}

/// The loopback server plays the proxy: a request for an unresolvable host reaches it in
/// absolute form.
#[test]
fn http_proxy_variable_is_honoured() {
    if std::env::var_os("REQUEST_METHOD").is_some() {
        eprintln!("SKIPPED: REQUEST_METHOD is set (CGI), where reqwest ignores HTTP_PROXY");
        return;
    }
    let server = Server::start(|_| {
        vec![(
            "/m/model.tar.gz".into(),
            Reply::Ok {
                body: fake_model_tgz(),
                content_type: "application/gzip",
            },
        )]
    });
    let cache = tempfile::tempdir().unwrap();
    let url = "http://models.example.invalid/m/model.tar.gz";
    let r = with_env(&[("HTTP_PROXY", server.base.as_str())], || {
        Resolver::new(cache.path()).resolve(url).unwrap()
    });
    assert_fake_model(&r.path);
    assert_eq!(server.all_requests(), vec![url.to_string()]);
}

#[test]
fn no_proxy_variable_bypasses_the_proxy() {
    let server = Server::start(|_| vec![]);
    let cache = tempfile::tempdir().unwrap();
    let url = "http://models.example.invalid/m/model.tar.gz";
    let e = with_env(
        &[
            ("HTTP_PROXY", server.base.as_str()),
            ("NO_PROXY", "example.invalid"),
        ],
        || Resolver::new(cache.path()).resolve(url).unwrap_err(),
    );
    assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with(&format!("cannot reach {url}: ")),
        "{e}"
    );
    assert!(server.all_requests().is_empty());
}
