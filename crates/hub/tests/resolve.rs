//! Resolution against a loopback HTTP server: downloads, redirects, errors, unsafe archives,
//! concurrency, offline mode, locks and local archives. No test here touches the environment.

#![allow(clippy::result_large_err)]

use test_support as common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use hub::{module_dir_name, Error, Resolver};

fn resolver(cache: &Path) -> Resolver {
    Resolver::new(cache)
        .quiet(true)
        .lock_poll_interval(Duration::from_millis(20))
}

fn tgz_reply() -> Reply {
    Reply::Ok {
        body: fake_model_tgz(),
        content_type: "application/x-gzip",
    }
}

/// Nothing but `expected` in the cache folder: no lock, no temporary folder.
fn assert_cache_names(cache: &Path, expected: &[String]) {
    let mut e = expected.to_vec();
    e.sort();
    assert_eq!(names(cache), e, "cache folder {}", cache.display());
}

#[test]
fn module_dir_names_match_python_hashlib() {
    // Values from hashlib.sha1(handle.encode()).hexdigest() (tensorflow_hub's cache folder names).
    for (handle, sha) in [
        (
            "https://tfhub.dev/google/imagenet/inception_v3/classification/5",
            "b0d2d75d4975ad57c942066aa2d64c6c2955a775",
        ),
        (
            "https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5",
            "d30c685f31c2a953a48eeb6695c0f7a77298ea8b",
        ),
        (
            "https://tfhub.dev/google/magenta/arbitrary-image-stylization-v1-256/2",
            "f843094219bf78a99e8ea6c8d71f1bc74f07101a",
        ),
        (
            "https://tfhub.dev/google/tf2-preview/gnews-swivel-20dim/1",
            "510580b203329a4a95dfdfefd838bdcd202f0d13",
        ),
    ] {
        assert_eq!(module_dir_name(handle), sha, "{handle}");
        assert_eq!(
            Resolver::new("/c").module_dir(handle),
            PathBuf::from("/c").join(sha)
        );
    }
}

#[test]
fn downloads_targz_into_sha1_folder_with_descriptor() {
    let server = Server::start(|_| vec![("/models/m/1".into(), tgz_reply())]);
    let cache = tempfile::tempdir().unwrap();
    let handle = format!("{}/models/m/1", server.base);
    let r = resolver(cache.path()).resolve(&handle).unwrap();
    let sha = module_dir_name(&handle);
    assert_eq!(r.path, cache.path().join(&sha));
    assert_eq!(r.handle, handle);
    assert_fake_model(&r.path);
    let desc = fs::read_to_string(cache.path().join(format!("{sha}.descriptor.txt"))).unwrap();
    assert!(
        desc.starts_with(&format!("Module: {handle}\nDownload Time: ")),
        "{desc}"
    );
    assert!(
        desc.contains(&format!("(PID:{})", std::process::id())),
        "{desc}"
    );
    assert_cache_names(
        cache.path(),
        &[sha.clone(), format!("{sha}.descriptor.txt")],
    );
    // Python tensorflow_hub's query was appended.
    assert_eq!(
        server.all_requests(),
        vec!["/models/m/1?tf-hub-format=compressed".to_string()]
    );
    // Second time: a cache hit, no request.
    let again = resolver(cache.path()).resolve(&handle).unwrap();
    assert_eq!(again.path, r.path);
    assert_eq!(server.hits("/models/m/1"), 1);
}

#[test]
fn tfhub_handle_follows_redirects_to_kaggle_like_storage() {
    let handle = "https://tfhub.dev/google/imagenet/inception_v3/classification/5";
    let server = Server::start(|base| {
        vec![
            (
                "/google/imagenet/inception_v3/classification/5".into(),
                Reply::Redirect {
                    code: 302,
                    location: format!("{base}/models/google/inception-v3/tensorFlow2/classification/2?tfhub-redirect=true"),
                },
            ),
            (
                "/models/google/inception-v3/tensorFlow2/classification/2".into(),
                Reply::Redirect {
                    code: 302,
                    location: "/kaggle-models-data/1/2/bundle/archive.tar.gz?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=ab12"
                        .into(),
                },
            ),
            ("/kaggle-models-data/1/2/bundle/archive.tar.gz".into(), tgz_reply()),
        ]
    });
    let cache = tempfile::tempdir().unwrap();
    let r = resolver(cache.path())
        .tfhub_base(server.base.clone())
        .resolve(handle)
        .unwrap();
    // The cache folder is named after the tfhub.dev handle, as Python names it.
    assert_eq!(
        r.path,
        cache
            .path()
            .join("b0d2d75d4975ad57c942066aa2d64c6c2955a775")
    );
    assert_fake_model(&r.path);
    assert_eq!(
        server.all_requests(),
        vec![
            "/google/imagenet/inception_v3/classification/5?tf-hub-format=compressed".to_string(),
            "/models/google/inception-v3/tensorFlow2/classification/2?tfhub-redirect=true".to_string(),
            "/kaggle-models-data/1/2/bundle/archive.tar.gz?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=ab12"
                .to_string(),
        ]
    );
}

#[test]
fn http_404_names_url_and_status() {
    let server = Server::start(|_| vec![]);
    let cache = tempfile::tempdir().unwrap();
    let handle = format!("{}/google/nothing/1", server.base);
    let e = resolver(cache.path()).resolve(&handle).unwrap_err();
    assert!(matches!(e, Error::Http { status: 404, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("{handle}?tf-hub-format=compressed")),
        "{msg}"
    );
    assert!(msg.contains("HTTP 404"), "{msg}");
    assert_cache_names(cache.path(), &[]);
}

#[test]
fn http_403_after_redirect_names_both_urls_and_body() {
    let server = Server::start(|_| {
        vec![
            (
                "/google/yamnet/1".into(),
                Reply::Redirect {
                    code: 302,
                    location: "/signed/archive.tar.gz?Signature=x".into(),
                },
            ),
            (
                "/signed/archive.tar.gz".into(),
                Reply::Status {
                    code: 403,
                    body: "<?xml version='1.0'?><Error><Code>SignatureDoesNotMatch</Code></Error>",
                },
            ),
        ]
    });
    let cache = tempfile::tempdir().unwrap();
    let handle = format!("{}/google/yamnet/1", server.base);
    let e = resolver(cache.path()).resolve(&handle).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Http { status: 403, .. }), "{e:?}");
    assert!(msg.contains(&handle), "{msg}");
    assert!(
        msg.contains(&format!(
            "redirected to {}/signed/archive.tar.gz)",
            server.base
        )),
        "{msg}"
    );
    assert!(
        !msg.contains("Signature=x"),
        "signed query strings are not printed: {msg}"
    );
    assert!(msg.contains("SignatureDoesNotMatch"), "{msg}");
    assert_cache_names(cache.path(), &[]);
}

#[test]
fn truncated_body_fails_and_leaves_nothing() {
    let tgz = fake_model_tgz();
    let half = tgz[..tgz.len() / 2].to_vec();
    let server = Server::start(|_| {
        vec![
            (
                "/half.tar.gz".into(),
                Reply::Truncated {
                    body: half,
                    claimed: tgz.len(),
                },
            ),
            // The whole archive, but Content-Length promises more.
            (
                "/short.tar.gz".into(),
                Reply::Truncated {
                    body: tgz.clone(),
                    claimed: tgz.len() + 100,
                },
            ),
        ]
    });
    let cache = tempfile::tempdir().unwrap();
    for path in ["/half.tar.gz", "/short.tar.gz"] {
        let url = format!("{}{path}", server.base);
        let e = resolver(cache.path()).resolve(&url).unwrap_err();
        assert!(matches!(e, Error::Download { .. }), "{path}: {e:?}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("download of {url} failed after ")),
            "{msg}"
        );
        assert!(
            msg.contains(&format!(
                "of {}",
                tgz.len() + if path == "/short.tar.gz" { 100 } else { 0 }
            )),
            "{msg}"
        );
    }
    assert_cache_names(cache.path(), &[]);
}

#[test]
fn html_body_is_not_an_archive() {
    let server = Server::start(|_| {
        vec![
            // What tfhub.dev does for a model that was not migrated to Kaggle.
            (
                "/models/google/x".into(),
                Reply::Redirect {
                    code: 302,
                    location: "/models?tfhub-redirect=true".into(),
                },
            ),
            (
                "/models".into(),
                Reply::Ok {
                    body: b"<!DOCTYPE html>\n<html><title>Kaggle</title></html>".to_vec(),
                    content_type: "text/html; charset=utf-8",
                },
            ),
        ]
    });
    let cache = tempfile::tempdir().unwrap();
    let handle = format!("{}/models/google/x", server.base);
    let e = resolver(cache.path()).resolve(&handle).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, Error::UnexpectedContent { status: 200, .. }),
        "{e:?}"
    );
    assert!(
        msg.starts_with(&format!(
            "{handle}?tf-hub-format=compressed (redirected to "
        )),
        "{msg}"
    );
    assert!(
        msg.contains("does not appear to be a valid module archive"),
        "{msg}"
    );
    assert!(
        msg.contains("HTTP 200") && msg.contains("text/html") && msg.contains("<!DOCTYPE html>"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("(redirected to {}/models)", server.base)),
        "{msg}"
    );
    assert_cache_names(cache.path(), &[]);
}

fn serve_and_resolve(body: Vec<u8>, cache: &Path) -> Result<hub::Resolved, Error> {
    let server = Server::start(|_| {
        vec![(
            "/evil.tar.gz".into(),
            Reply::Ok {
                body,
                content_type: "application/gzip",
            },
        )]
    });
    resolver(cache).resolve(&format!("{}/evil.tar.gz", server.base))
}

#[test]
fn parent_dir_member_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let tar = raw_tar_member(b"../evil", tar::EntryType::Regular, b"pwned", None);
    let e = serve_and_resolve(gzip(&tar), &cache).unwrap_err();
    assert!(
        matches!(&e, Error::UnsafeArchive { member, .. } if member == "../evil"),
        "{e:?}"
    );
    assert!(e.to_string().contains("`..`"), "{e}");
    assert!(!cache.join("evil").exists() && !root.path().join("evil").exists());
    assert_cache_names(&cache, &[]);
}

#[test]
fn absolute_member_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let target = root.path().join("abs_evil");
    let tar = raw_tar_member(
        target.to_str().unwrap().as_bytes(),
        tar::EntryType::Regular,
        b"pwned",
        None,
    );
    let e = serve_and_resolve(gzip(&tar), &cache).unwrap_err();
    assert!(
        matches!(&e, Error::UnsafeArchive { reason, .. } if reason == "absolute path"),
        "{e:?}"
    );
    assert!(!target.exists());
    assert_cache_names(&cache, &[]);
}

#[test]
fn symlink_hardlink_and_device_members_are_refused() {
    for (ty, what) in [
        (tar::EntryType::Symlink, "symbolic links"),
        (tar::EntryType::Link, "hard links"),
        (tar::EntryType::Char, "device"),
        (tar::EntryType::Fifo, "FIFO"),
    ] {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let tar = raw_tar_member(b"saved_model.pb", ty, b"", Some(b"/etc/passwd"));
        // Served plain (not gzipped) this time: raw tar is accepted too.
        let e = serve_and_resolve(tar, &cache).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::UnsafeArchive { .. }), "{ty:?}: {e:?}");
        assert!(
            msg.contains(what) && msg.contains("saved_model.pb"),
            "{msg}"
        );
        assert_cache_names(&cache, &[]);
    }
}

#[test]
fn size_limit_refuses_big_archives() {
    let server = Server::start(|_| vec![("/m.tar.gz".into(), tgz_reply())]);
    let cache = tempfile::tempdir().unwrap();
    let e = resolver(cache.path())
        .max_extract_bytes(1000)
        .resolve(&format!("{}/m.tar.gz", server.base))
        .unwrap_err();
    assert!(
        matches!(&e, Error::TooLarge { limit: 1000, member, .. } if member.contains("variables.data")),
        "{e:?}"
    );
    assert_cache_names(cache.path(), &[]);
}

#[test]
fn concurrent_threads_download_once_and_all_succeed() {
    let body = fake_model_tgz();
    let server = Server::start(|_| {
        vec![(
            "/slow/model/1".into(),
            Reply::Slow {
                body,
                chunk: 200,
                pause: Duration::from_millis(15),
            },
        )]
    });
    let cache = tempfile::tempdir().unwrap();
    let handle = format!("{}/slow/model/1", server.base);
    let n = 4;
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (cache, handle, barrier) =
                (cache.path().to_path_buf(), handle.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                resolver(&cache).resolve(&handle)
            })
        })
        .collect();
    let paths: Vec<PathBuf> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap().path)
        .collect();
    let sha = module_dir_name(&handle);
    for p in &paths {
        assert_eq!(p, &cache.path().join(&sha));
    }
    assert_fake_model(&paths[0]);
    assert_eq!(
        server.hits("/slow/model/1"),
        1,
        "downloaded once: {:?}",
        server.all_requests()
    );
    assert_cache_names(
        cache.path(),
        &[sha.clone(), format!("{sha}.descriptor.txt")],
    );
}

#[test]
fn concurrent_processes_download_once_and_both_succeed() {
    if let (Ok(handle), Ok(cache)) = (
        std::env::var("HUB_TEST_CHILD_HANDLE"),
        std::env::var("HUB_TEST_CHILD_CACHE"),
    ) {
        // Child process: resolve and report.
        let r = resolver(Path::new(&cache)).resolve(&handle).unwrap();
        println!("\nRESOLVED:{}", r.path.display());
        return;
    }
    let body = fake_model_tgz();
    let server = Server::start(|_| {
        vec![(
            "/proc/model/1".into(),
            Reply::Slow {
                body,
                chunk: 200,
                pause: Duration::from_millis(20),
            },
        )]
    });
    let cache = tempfile::tempdir().unwrap();
    let handle = format!("{}/proc/model/1", server.base);
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "concurrent_processes_download_once_and_both_succeed",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("HUB_TEST_CHILD_HANDLE", &handle)
                .env("HUB_TEST_CHILD_CACHE", cache.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let expected = format!(
        "RESOLVED:{}",
        cache.path().join(module_dir_name(&handle)).display()
    );
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(&expected), "{stdout}");
    }
    assert_eq!(
        server.hits("/proc/model/1"),
        1,
        "{:?}",
        server.all_requests()
    );
    assert_fake_model(&cache.path().join(module_dir_name(&handle)));
}

#[test]
fn offline_mode_hit_and_miss() {
    let server = Server::start(|_| vec![("/m/1".into(), tgz_reply())]);
    let cache = tempfile::tempdir().unwrap();
    let handle = format!("{}/m/1", server.base);
    let e = resolver(cache.path())
        .offline(true)
        .resolve(&handle)
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Offline { .. }), "{e:?}");
    assert!(
        msg.contains(&handle) && msg.contains("offline") && msg.contains(&module_dir_name(&handle)),
        "{msg}"
    );
    assert_eq!(
        server.all_requests().len(),
        0,
        "offline must not touch the network"
    );
    resolver(cache.path()).resolve(&handle).unwrap();
    let hit = resolver(cache.path())
        .offline(true)
        .resolve(&handle)
        .unwrap();
    assert_fake_model(&hit.path);
    assert_eq!(server.all_requests().len(), 1);
}

fn this_hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A server of `/m/1`, a cache in which `<sha>.lock` is held as `uid` by a tensorflow_hub-style
/// lock of this hostname and a pid that is not alive here (a reaped child), the handle and its
/// cache folder name.
fn held_by_a_pid_not_alive_here(uid: &str) -> (Server, tempfile::TempDir, String, String) {
    let server = Server::start(|_| vec![("/m/1".into(), tgz_reply())]);
    let cache = tempfile::tempdir().unwrap();
    let handle = format!("{}/m/1", server.base);
    let sha = module_dir_name(&handle);
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let lock = cache.path().join(format!("{sha}.lock"));
    fs::write(&lock, format!("{}.{dead}.{uid}", this_hostname())).unwrap();
    (server, cache, handle, sha)
}

#[test]
fn stale_lock_of_dead_process_is_recovered() {
    if !cfg!(target_os = "linux") {
        eprintln!("SKIPPED: needs /proc to tell a dead process");
        return;
    }
    let uid = "0123456789abcdef0123456789abcdef";
    let (_server, cache, handle, sha) = held_by_a_pid_not_alive_here(uid);
    // The dead downloader's half-written folder and an empty leftover target folder.
    let abandoned = cache.path().join(format!("{sha}.{uid}.tmp"));
    fs::create_dir_all(abandoned.join("variables")).unwrap();
    fs::create_dir(cache.path().join(&sha)).unwrap();
    // A long lock timeout: only the dead-holder grace can free it quickly.
    let started = std::time::Instant::now();
    let r = resolver(cache.path())
        .lock_timeout(Duration::from_secs(3600))
        .dead_holder_grace(Duration::from_millis(300))
        .resolve(&handle)
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "taken before the grace"
    );
    assert_fake_model(&r.path);
    // The lock is gone; the other program's download folder is left alone (its owner may be
    // alive in another PID namespace).
    assert_cache_names(
        cache.path(),
        &[
            sha.clone(),
            format!("{sha}.descriptor.txt"),
            format!("{sha}.{uid}.tmp"),
        ],
    );
    assert!(abandoned.join("variables").is_dir());
}

/// Another downloader holding `<sha>.lock` as `uid`: it fills `<sha>.<uid>.tmp` one file every
/// 100 ms (a write fails, and the thread panics, if a waiter deleted the folder), renames it
/// into place and removes its lock.
fn slow_downloader(cache: &Path, sha: &str, uid: &str) -> std::thread::JoinHandle<()> {
    let (c, s) = (cache.to_path_buf(), sha.to_string());
    let tmp = c.join(format!("{s}.{uid}.tmp"));
    fs::create_dir(&tmp).unwrap();
    std::thread::spawn(move || {
        for (rel, data) in fake_saved_model() {
            std::thread::sleep(Duration::from_millis(100));
            fs::create_dir_all(tmp.join(rel).parent().unwrap()).unwrap();
            fs::write(tmp.join(rel), data).unwrap();
        }
        fs::rename(&tmp, c.join(&s)).unwrap();
        fs::remove_file(c.join(format!("{s}.lock"))).unwrap();
    })
}

#[test]
fn lock_of_a_live_holder_in_another_pid_namespace_is_not_taken() {
    // A tensorflow_hub download in a container that shares this hostname and the cache: its pid
    // is not alive here, but its download folder keeps growing. It must be waited for, its
    // result used, and its folder never deleted under it.
    if !cfg!(target_os = "linux") {
        eprintln!("SKIPPED: needs /proc to tell a dead process");
        return;
    }
    let uid = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let (server, cache, handle, sha) = held_by_a_pid_not_alive_here(uid);
    let other = slow_downloader(cache.path(), &sha, uid);
    // The grace is longer than any pause between the holder's writes.
    let r = resolver(cache.path())
        .lock_timeout(Duration::from_secs(3600))
        .dead_holder_grace(Duration::from_secs(1))
        .resolve(&handle)
        .unwrap();
    other.join().unwrap();
    assert_fake_model(&r.path);
    assert_eq!(
        server.all_requests().len(),
        0,
        "the other download was used"
    );
}

#[test]
fn stale_lock_of_other_host_is_recovered_after_timeout() {
    let server = Server::start(|_| vec![("/m/1".into(), tgz_reply())]);
    let cache = tempfile::tempdir().unwrap();
    let handle = format!("{}/m/1", server.base);
    let lock = cache
        .path()
        .join(format!("{}.lock", module_dir_name(&handle)));
    fs::write(
        &lock,
        "build-box.example.org.4242.ffffffffffffffffffffffffffffffff",
    )
    .unwrap();
    let r = resolver(cache.path())
        .lock_timeout(Duration::from_millis(300))
        .resolve(&handle)
        .unwrap();
    assert_fake_model(&r.path);
    assert!(!lock.exists());
    assert_eq!(server.hits("/m/1"), 1);
}

#[test]
fn live_lock_is_waited_for_and_its_result_used() {
    // Another downloader (this process, so alive) holds the lock and finishes after a while.
    let server = Server::start(|_| vec![("/m/1".into(), tgz_reply())]);
    let cache = tempfile::tempdir().unwrap();
    let handle = format!("{}/m/1", server.base);
    let sha = module_dir_name(&handle);
    let lock = cache.path().join(format!("{sha}.lock"));
    let uid = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    fs::write(
        &lock,
        format!("{}.{}.{uid}", this_hostname(), std::process::id()),
    )
    .unwrap();
    let other = slow_downloader(cache.path(), &sha, uid);
    // A growing download folder keeps the lock alive: the timeout is far longer than the
    // 100 ms between the holder's writes (even on a stalled machine), and the waiter still
    // returns as soon as the holder finishes.
    let r = resolver(cache.path())
        .lock_timeout(Duration::from_secs(5))
        .resolve(&handle)
        .unwrap();
    other.join().unwrap();
    assert_fake_model(&r.path);
    assert_eq!(
        server.all_requests().len(),
        0,
        "the other download was used"
    );
}

/// A local archive needs no network: offline mode extracts it too, and refuses nothing else.
#[test]
fn local_archive_is_extracted_offline() {
    let src = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let archive = src.path().join("model.tar.gz");
    fs::write(&archive, fake_model_tgz()).unwrap();
    let r = resolver(cache.path())
        .offline(true)
        .resolve(archive.to_str().unwrap())
        .unwrap();
    assert!(r.path.starts_with(cache.path()), "{}", r.path.display());
    assert_fake_model(&r.path);
    let junk = src.path().join("junk.tar.gz");
    fs::write(&junk, [0x8bu8, 0x1f, 0, 1, 2, 3, 0xff, 0xfe]).unwrap();
    let e = resolver(cache.path())
        .offline(true)
        .resolve(junk.to_str().unwrap())
        .unwrap_err();
    assert!(!matches!(e, Error::Offline { .. }), "{e:?}");
    assert!(
        e.to_string().contains("junk.tar.gz")
            && e.to_string().contains("binary content of another format"),
        "{e}"
    );
}

#[test]
fn local_targz_is_extracted_into_cache_once() {
    let src = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let archive = src.path().join("model.tgz");
    fs::write(&archive, fake_model_tgz()).unwrap();
    let r = resolver(cache.path())
        .resolve(archive.to_str().unwrap())
        .unwrap();
    assert!(r.path.starts_with(cache.path()), "{}", r.path.display());
    assert_fake_model(&r.path);
    let again = resolver(cache.path())
        .offline(true)
        .resolve(archive.to_str().unwrap())
        .unwrap();
    assert_eq!(again.path, r.path);
}

#[test]
fn file_urls_of_folders_archives_and_tflite() {
    let src = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    // A folder: returned as it is.
    let folder = src.path().join("my model");
    fs::create_dir(&folder).unwrap();
    fs::write(folder.join("saved_model.pb"), b"x").unwrap();
    let url = format!("file://{}", folder.display()).replace(' ', "%20");
    assert_eq!(resolver(cache.path()).resolve(&url).unwrap().path, folder);
    // A plain .tar whose members sit under a top folder: extracted, the inner folder returned.
    let nested: Vec<(String, Vec<u8>)> = fake_saved_model()
        .into_iter()
        .map(|(p, d)| (format!("inception/{p}"), d))
        .collect();
    let nested: Vec<(&str, Vec<u8>)> = nested
        .iter()
        .map(|(p, d)| (p.as_str(), d.clone()))
        .collect();
    let tar_path = src.path().join("nested.tar");
    fs::write(&tar_path, tar_of(&nested)).unwrap();
    let r = resolver(cache.path())
        .resolve(&format!("file://{}", tar_path.display()))
        .unwrap();
    assert!(
        r.path.ends_with("inception") && r.path.starts_with(cache.path()),
        "{}",
        r.path.display()
    );
    assert_fake_model(&r.path);
    // A .tflite file: returned as it is.
    let tfl = src.path().join("m.tflite");
    fs::write(&tfl, b"\x1c\0\0\0TFL3").unwrap();
    assert_eq!(
        resolver(cache.path())
            .resolve(tfl.to_str().unwrap())
            .unwrap()
            .path,
        tfl
    );
}

#[test]
fn local_non_archive_named_tgz_is_a_clear_error() {
    let src = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let bogus = src.path().join("model.tar.gz");
    fs::write(&bogus, b"<html>not an archive</html>").unwrap();
    let e = resolver(cache.path())
        .resolve(bogus.to_str().unwrap())
        .unwrap_err();
    assert!(
        e.to_string().contains(&format!(
            "{} does not appear to be a valid tar or tar.gz archive",
            bogus.display()
        )),
        "{e}"
    );
    assert_cache_names(cache.path(), &[]);
}

#[test]
fn missing_local_path_is_not_found() {
    let cache = tempfile::tempdir().unwrap();
    let e = resolver(cache.path())
        .resolve("/no/such/saved_model_dir")
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }));
    assert!(
        e.to_string()
            .starts_with("/no/such/saved_model_dir: no such file or folder"),
        "{e}"
    );
}

const TFLITE: &[u8] = b"\x1c\x00\x00\x00TFL3\x00\x00\x00\x00fake flatbuffer";

#[test]
fn tflite_urls_resolve_to_a_single_cached_file() {
    let server = Server::start(|_| {
        vec![
            (
                "/files/style_predict.tflite".into(),
                Reply::Ok {
                    body: TFLITE.to_vec(),
                    content_type: "application/octet-stream",
                },
            ),
            (
                "/google/lite-model/magenta/x/int8/prediction/1".into(),
                Reply::Ok {
                    body: TFLITE.to_vec(),
                    content_type: "application/octet-stream",
                },
            ),
            (
                "/html.tflite".into(),
                Reply::Ok {
                    body: b"<html>login</html>".to_vec(),
                    content_type: "text/html",
                },
            ),
        ]
    });
    let cache = tempfile::tempdir().unwrap();
    let url = format!("{}/files/style_predict.tflite", server.base);
    let r = resolver(cache.path()).resolve(&url).unwrap();
    assert_eq!(
        r.path,
        cache
            .path()
            .join(module_dir_name(&url))
            .join("style_predict.tflite")
    );
    assert_eq!(fs::read(&r.path).unwrap(), TFLITE);

    let handle = "https://tfhub.dev/google/lite-model/magenta/x/int8/prediction/1";
    let r = resolver(cache.path())
        .tfhub_base(server.base.clone())
        .resolve(handle)
        .unwrap();
    assert_eq!(
        r.path,
        cache
            .path()
            .join(module_dir_name(handle))
            .join("model.tflite")
    );
    assert_eq!(fs::read(&r.path).unwrap(), TFLITE);
    assert!(server.all_requests().contains(
        &"/google/lite-model/magenta/x/int8/prediction/1?lite-format=tflite".to_string()
    ));

    let e = resolver(cache.path())
        .resolve(&format!("{}/html.tflite", server.base))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("does not appear to be a valid TF Lite model"),
        "{e}"
    );
}

#[test]
fn download_file_caches_a_dataset_archive_without_extracting() {
    let tgz = fake_model_tgz();
    let server = Server::start(|_| {
        vec![(
            "/~amaas/data/sentiment/aclImdb_v1.tar.gz".into(),
            Reply::Ok {
                body: tgz.clone(),
                content_type: "application/x-gzip",
            },
        )]
    });
    let cache = tempfile::tempdir().unwrap();
    let url = format!("{}/~amaas/data/sentiment/aclImdb_v1.tar.gz", server.base);
    let p = resolver(cache.path()).download_file(&url).unwrap();
    assert_eq!(
        p,
        cache
            .path()
            .join("downloads")
            .join(module_dir_name(&url))
            .join("aclImdb_v1.tar.gz")
    );
    assert_eq!(fs::read(&p).unwrap(), tgz);
    assert_eq!(
        resolver(cache.path())
            .offline(true)
            .download_file(&url)
            .unwrap(),
        p
    );
    assert_eq!(server.all_requests().len(), 1);
    let other = format!("{}/other.tar.gz", server.base);
    let e = resolver(cache.path())
        .offline(true)
        .download_file(&other)
        .unwrap_err();
    assert!(
        matches!(e, Error::Offline { .. }) && e.to_string().contains(&other),
        "{e}"
    );
}

#[test]
fn unreachable_server_is_a_clear_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cache = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/m.tar.gz");
    let e = resolver(cache.path()).resolve(&url).unwrap_err();
    assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("cannot reach {url}: ")), "{msg}");
    assert!(msg.to_lowercase().contains("connect"), "{msg}");
    assert_cache_names(cache.path(), &[]);
}
