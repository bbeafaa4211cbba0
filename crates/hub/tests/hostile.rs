//! Hostile archives, downloads and locks: every crafted input is refused with a clear error,
//! within the limits, and leaves nothing in the cache.

use test_support as common;

use common::*;
use hub::{module_dir_name, Error, Resolver};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

fn resolver(cache: &Path) -> Resolver {
    Resolver::new(cache)
        .quiet(true)
        .lock_poll_interval(Duration::from_millis(20))
}

fn serve(path: &str, reply: Reply) -> Server {
    let p = path.to_string();
    Server::start(move |_| vec![(p, reply)])
}

fn gz_reply(body: Vec<u8>) -> Reply {
    Reply::Ok {
        body: gzip(&body),
        content_type: "application/gzip",
    }
}

/// A header block of `ty` for `name` with `size`, checksum set (no data).
fn header(name: &str, ty: tar::EntryType, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(ty);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// A member with its data and padding.
fn member(name: &str, ty: tar::EntryType, data: &[u8]) -> Vec<u8> {
    let mut v = header(name, ty, data.len() as u64);
    v.extend_from_slice(data);
    v.resize(v.len().div_ceil(512) * 512, 0);
    v
}

fn end() -> Vec<u8> {
    vec![0; 1024]
}

fn pax_record(key: &str, value: &str) -> Vec<u8> {
    // "<len> key=value\n" where <len> counts itself.
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

fn resolve_err(cache: &Path, server: &Server, path: &str) -> Error {
    resolver(cache)
        .resolve(&format!("{}{path}", server.base))
        .unwrap_err()
}

#[test]
fn huge_gnu_long_name_is_refused_without_reading_it() {
    // A 4 GiB GNU long name announced in a 512-byte header (its data is never sent).
    let mut tar = header("././@LongLink", tar::EntryType::GNULongName, 4 << 30);
    tar.extend(end());
    let server = serve("/m.tar.gz", gz_reply(tar));
    let cache = tempfile::tempdir().unwrap();
    let e = resolve_err(cache.path(), &server, "/m.tar.gz");
    let msg = e.to_string();
    assert!(matches!(e, Error::UnsafeArchive { .. }), "{e:?}");
    assert!(
        msg.contains("GNU long name metadata member of 4294967296 bytes (at most 65536)"),
        "{msg}"
    );
    assert!(msg.contains("/m.tar.gz"), "{msg}");
    assert_eq!(names(cache.path()), Vec::<String>::new());
}

#[test]
fn long_pax_names_and_huge_pax_headers_are_refused() {
    let cache = tempfile::tempdir().unwrap();
    // A 5000-byte name through PAX.
    let long = "a/".repeat(2499) + "bb";
    let mut tar = member(
        "PaxHeader",
        tar::EntryType::XHeader,
        &pax_record("path", &long),
    );
    tar.extend(member("x", tar::EntryType::Regular, b"data"));
    tar.extend(end());
    let server = serve("/m.tar.gz", gz_reply(tar));
    let e = resolve_err(cache.path(), &server, "/m.tar.gz");
    assert!(
        e.to_string()
            .contains("a member name of 5000 bytes (at most 4096)"),
        "{e}"
    );
    // A PAX header of 1 MiB.
    let mut tar = header("PaxHeader", tar::EntryType::XHeader, 1 << 20);
    tar.extend(end());
    let server = serve("/m.tar.gz", gz_reply(tar));
    let e = resolve_err(cache.path(), &server, "/m.tar.gz");
    assert!(
        e.to_string()
            .contains("PAX metadata member of 1048576 bytes"),
        "{e}"
    );
    assert_eq!(names(cache.path()), Vec::<String>::new());
}

#[test]
fn pax_path_and_long_names_within_limits_still_work() {
    let cache = tempfile::tempdir().unwrap();
    let long = format!(
        "variables/{}/{}/{}",
        "d".repeat(100),
        "e".repeat(100),
        "v".repeat(100)
    );
    let mut tar = member(
        "PaxHeader",
        tar::EntryType::XHeader,
        &pax_record("path", "saved_model.pb"),
    );
    tar.extend(member("ignored", tar::EntryType::Regular, b"pb"));
    tar.extend(member(
        "././@LongLink",
        tar::EntryType::GNULongName,
        long.as_bytes(),
    ));
    tar.extend(member("short", tar::EntryType::Regular, b"long one"));
    tar.extend(end());
    let server = serve("/m.tar.gz", gz_reply(tar));
    let r = resolver(cache.path())
        .resolve(&format!("{}/m.tar.gz", server.base))
        .unwrap();
    assert_eq!(fs::read(r.path.join("saved_model.pb")).unwrap(), b"pb");
    assert_eq!(fs::read(r.path.join(&long)).unwrap(), b"long one");
}

#[test]
fn metadata_members_count_against_the_decompressed_size() {
    // 1100 global PAX headers of 64 KiB each: 70 MB of metadata in a ~70 KB download, no file.
    let mut tar = Vec::new();
    let zeros = vec![0u8; 64 << 10];
    for _ in 0..1100 {
        tar.extend(member("g", tar::EntryType::XGlobalHeader, &zeros));
    }
    tar.extend(end());
    let server = serve("/m.tar.gz", gz_reply(tar));
    let cache = tempfile::tempdir().unwrap();
    let e = resolver(cache.path())
        .max_extract_bytes(1 << 20)
        .resolve(&format!("{}/m.tar.gz", server.base))
        .unwrap_err();
    assert!(matches!(e, Error::TooLarge { limit: 1048576, .. }), "{e:?}");
    assert_eq!(names(cache.path()), Vec::<String>::new());
}

#[test]
fn member_count_is_capped() {
    let mut files: Vec<(String, Vec<u8>)> = vec![("saved_model.pb".into(), b"pb".to_vec())];
    for i in 0..30 {
        files.push((format!("f{i}"), vec![]));
    }
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let server = serve("/m.tar.gz", gz_reply(tar_of(&refs)));
    let cache = tempfile::tempdir().unwrap();
    let e = resolver(cache.path())
        .max_extract_members(20)
        .resolve(&format!("{}/m.tar.gz", server.base))
        .unwrap_err();
    assert!(e.to_string().contains("more than 20 members"), "{e}");
    assert_eq!(names(cache.path()), Vec::<String>::new());
    // The same archive under the default limit is fine.
    let r = resolver(cache.path())
        .resolve(&format!("{}/m.tar.gz", server.base))
        .unwrap();
    assert!(r.path.join("f29").is_file());
}

#[test]
fn trailing_data_after_the_archive_is_not_read_without_limit() {
    let mut tar = tar_of(&fake_saved_model());
    tar.extend(vec![0u8; 3 << 20]);
    let server = serve("/m.tar.gz", gz_reply(tar));
    let cache = tempfile::tempdir().unwrap();
    let e = resolve_err(cache.path(), &server, "/m.tar.gz");
    assert!(
        e.to_string()
            .contains("bytes of data after the end of the archive"),
        "{e}"
    );
    assert_eq!(names(cache.path()), Vec::<String>::new());
    // The usual padding to a 10 KiB record is accepted.
    let mut tar = tar_of(&fake_saved_model());
    tar.extend(vec![0u8; 10240]);
    let server = serve("/m.tar.gz", gz_reply(tar));
    let r = resolver(cache.path())
        .resolve(&format!("{}/m.tar.gz", server.base))
        .unwrap();
    assert_fake_model(&r.path);
}

#[test]
fn archive_without_a_model_is_not_cached() {
    let tar = tar_of(&[("README", b"not a model".to_vec()), ("x/y", b"z".to_vec())]);
    let server = serve("/m.tar.gz", gz_reply(tar));
    let cache = tempfile::tempdir().unwrap();
    let e = resolve_err(cache.path(), &server, "/m.tar.gz");
    assert!(e.to_string().contains("the archive holds no model"), "{e}");
    assert_eq!(names(cache.path()), Vec::<String>::new());
}

#[test]
fn single_file_downloads_are_capped() {
    let body: Vec<u8> = b"\x1c\x00\x00\x00TFL3"
        .iter()
        .copied()
        .chain(vec![0u8; 992])
        .collect();
    let server = serve(
        "/model.tflite",
        Reply::Ok {
            body: body.clone(),
            content_type: "application/octet-stream",
        },
    );
    let cache = tempfile::tempdir().unwrap();
    let e = resolver(cache.path())
        .max_file_bytes(100)
        .resolve(&format!("{}/model.tflite", server.base))
        .unwrap_err();
    assert!(
        e.to_string().contains("larger than the 100-byte limit"),
        "{e}"
    );
    assert_eq!(names(cache.path()), Vec::<String>::new());
    let r = resolver(cache.path())
        .max_file_bytes(1000)
        .resolve(&format!("{}/model.tflite", server.base))
        .unwrap();
    assert_eq!(fs::read(&r.path).unwrap(), body);
}

#[test]
fn stalled_and_overlong_downloads_fail() {
    let tgz = fake_model_tgz();
    assert!(tgz.len() > 400, "{}", tgz.len());
    // 16 bytes every 40 ms: each read is quick, but far below 64 KiB per 300 ms.
    let server = serve(
        "/m.tar.gz",
        Reply::Slow {
            body: tgz.clone(),
            chunk: 16,
            pause: Duration::from_millis(40),
        },
    );
    let cache = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let e = resolver(cache.path())
        .timeouts(Duration::from_secs(5), Duration::from_millis(300))
        .resolve(&format!("{}/m.tar.gz", server.base))
        .unwrap_err();
    assert!(e.to_string().contains("stalled"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(names(cache.path()), Vec::<String>::new());
    // Fast enough for the stall rule, but longer than the total deadline.
    let server = serve(
        "/m.tar.gz",
        Reply::Slow {
            body: tgz,
            chunk: 64,
            pause: Duration::from_millis(20),
        },
    );
    let e = resolver(cache.path())
        .timeouts(Duration::from_secs(5), Duration::from_secs(30))
        .total_timeout(Duration::from_millis(60))
        .resolve(&format!("{}/m.tar.gz", server.base))
        .unwrap_err();
    assert!(e.to_string().contains("deadline"), "{e}");
    assert_eq!(names(cache.path()), Vec::<String>::new());
}

/// A lock as another process of this crate holds it (in another container: other pid, maybe
/// the same hostname), with its OS lock held by the returned file.
fn foreign_lock(cache: &Path, sha: &str, uid: &str, os_locked: bool) -> fs::File {
    let lock = cache.join(format!("{sha}.lock"));
    fs::write(&lock, format!("{}.4242.{uid}", this_hostname())).unwrap();
    let f = fs::File::open(&lock).unwrap();
    if os_locked {
        f.lock().unwrap();
    }
    fs::create_dir_all(cache.join(format!("{sha}.{uid}.tmp/variables"))).unwrap();
    f
}

fn this_hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

#[cfg(unix)]
#[test]
fn a_live_os_locked_download_is_never_taken_over() {
    let server = serve("/m/1", gz_reply(tar_of(&fake_saved_model())));
    let cache = tempfile::tempdir().unwrap();
    let handle = format!("{}/m/1", server.base);
    let sha = module_dir_name(&handle);
    let uid = "rs0123456789abcdef0123456789abcd";
    // pid 4242 does not exist here (another PID namespace), and the lock makes no progress
    // (a stopped process): neither is a reason to take it over while its OS lock is held.
    let held = foreign_lock(cache.path(), &sha, uid, true);
    let e = resolver(cache.path())
        .lock_timeout(Duration::from_millis(300))
        .resolve(&handle)
        .unwrap_err();
    assert!(
        e.to_string().contains("Not taking over a live download"),
        "{e}"
    );
    assert!(cache.path().join(format!("{sha}.lock")).exists());
    assert!(cache
        .path()
        .join(format!("{sha}.{uid}.tmp/variables"))
        .is_dir());
    assert_eq!(server.hits("/m/1"), 0);
    // Once its owner is gone (the OS lock released), the lock and its folder are recovered at
    // once, even with a long lock timeout.
    drop(held);
    let r = resolver(cache.path())
        .lock_timeout(Duration::from_secs(3600))
        .resolve(&handle)
        .unwrap();
    assert_fake_model(&r.path);
    assert_eq!(
        names(cache.path()),
        vec![sha.clone(), format!("{sha}.descriptor.txt")]
    );
}

#[cfg(unix)]
#[test]
fn a_python_lock_past_its_timeout_loses_its_lock_but_keeps_its_folder() {
    let server = serve("/m/1", gz_reply(tar_of(&fake_saved_model())));
    let cache = tempfile::tempdir().unwrap();
    let handle = format!("{}/m/1", server.base);
    let sha = module_dir_name(&handle);
    let uid = "ffffffffffffffffffffffffffffffff";
    let lock = cache.path().join(format!("{sha}.lock"));
    fs::write(&lock, format!("other-host.4242.{uid}")).unwrap();
    fs::create_dir_all(cache.path().join(format!("{sha}.{uid}.tmp/variables"))).unwrap();
    let r = resolver(cache.path())
        .lock_timeout(Duration::from_millis(200))
        .resolve(&handle)
        .unwrap();
    assert_fake_model(&r.path);
    // Its owner may be alive on another host: its folder is not ours to delete.
    assert!(cache
        .path()
        .join(format!("{sha}.{uid}.tmp/variables"))
        .is_dir());
}

/// `read_archive` (datasets read without extracting): each file reaches the visitor with at
/// most its bytes, unread data is skipped, a lying size field is an error (no allocation from
/// it), and the limits apply as in extraction.
#[test]
fn read_archive_streams_members_without_trusting_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let mut tar = member("data/", tar::EntryType::Directory, b"");
    tar.extend(member("data/a.txt", tar::EntryType::Regular, b"alpha"));
    tar.extend(member(
        "data/skip.bin",
        tar::EntryType::Regular,
        &[7u8; 3000],
    ));
    tar.extend(member("data/b.txt", tar::EntryType::Regular, b"beta"));
    tar.extend(end());
    let p = dir.path().join("d.tar.gz");
    fs::write(&p, gzip(&tar)).unwrap();
    let mut seen = Vec::new();
    let n = hub::read_archive(&p, hub::ArchiveLimits::new(1 << 20), |m| {
        if m.name.ends_with(".txt") {
            let mut s = String::new();
            std::io::Read::read_to_string(m.data, &mut s).unwrap();
            seen.push((m.path.unwrap().to_path_buf(), s));
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 4);
    assert_eq!(
        seen,
        vec![
            ("data/a.txt".into(), "alpha".to_string()),
            ("data/b.txt".into(), "beta".to_string())
        ]
    );

    // A member that claims 1 GiB over 5 bytes.
    let mut tar = header("big.txt", tar::EntryType::Regular, 1 << 30);
    tar.extend_from_slice(b"short");
    let p = dir.path().join("lie.tar");
    fs::write(&p, &tar).unwrap();
    let mut got = 0;
    let err = hub::read_archive(&p, hub::ArchiveLimits::new(4 << 30), |m| {
        let mut v = Vec::new();
        std::io::Read::read_to_end(m.data, &mut v).unwrap();
        got = v.len();
        Ok(())
    })
    .unwrap_err();
    assert_eq!(got, 5);
    assert!(err.to_string().contains("truncated"), "{err}");
    // Over the byte limit: refused before the visitor sees it.
    let err =
        hub::read_archive(&p, hub::ArchiveLimits::new(1 << 20), |_| panic!("visited")).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    // A visitor's error stops the walk.
    let err = hub::read_archive(
        &dir.path().join("d.tar.gz"),
        hub::ArchiveLimits::new(1 << 20),
        |_| Err(Error::Other("stop".into())),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "stop");
}
