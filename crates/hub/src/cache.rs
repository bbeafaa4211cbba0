//! Cache folder protocol, compatible with Python `tensorflow_hub` (`resolver.atomic_download`):
//! `<dir>` complete when it exists and is non-empty; `<dir>.lock` holding
//! `<hostname>.<pid>.<uid>`; download into `<dir>.<uid>.tmp`; `<dir>.descriptor.txt`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha1::{Digest, Sha1};

use crate::{Error, Resolver};

/// A cached folder is complete when it exists and is non-empty (tensorflow_hub's rule).
pub(crate) fn is_complete(dir: &Path) -> bool {
    fs::read_dir(dir)
        .map(|mut it| it.next().is_some())
        .unwrap_or(false)
}

fn with_suffix(dir: &Path, suffix: &str) -> PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub(crate) fn lock_path(dir: &Path) -> PathBuf {
    with_suffix(dir, ".lock")
}

pub(crate) fn tmp_path(dir: &Path, uid: &str) -> PathBuf {
    with_suffix(dir, &format!(".{uid}.tmp"))
}

pub(crate) fn descriptor_path(dir: &Path) -> PathBuf {
    with_suffix(dir, ".descriptor.txt")
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

pub(crate) fn hostname() -> String {
    let from_proc = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string());
    from_proc
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("COMPUTERNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}

/// 32 hex digits, unique per call within this host (like `uuid.uuid4().hex`).
pub(crate) fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha1::new();
    h.update(std::process::id().to_le_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    h.update(now.as_nanos().to_le_bytes());
    h.update(format!("{:?}", std::thread::current().id()).as_bytes());
    let addr = &h as *const _ as usize;
    h.update(addr.to_le_bytes());
    hex::encode(&h.finalize()[..16])
}

/// Whether process `pid` on this host is alive. `None` when that cannot be told.
fn pid_alive(pid: u32) -> Option<bool> {
    if cfg!(target_os = "linux") {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            // A zombie has finished: its lock will never be released.
            Ok(stat) => Some(
                !stat
                    .rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
                    .unwrap_or(false),
            ),
            Err(_) => Some(false),
        }
    } else {
        None
    }
}

/// `<hostname>.<pid>.<uid>` → (hostname, pid, uid); hostnames may contain dots.
pub(crate) fn parse_lock(content: &str) -> Option<(&str, u32, &str)> {
    let (rest, uid) = content.trim().rsplit_once('.')?;
    let (host, pid) = rest.rsplit_once('.')?;
    Some((host, pid.parse().ok()?, uid))
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(p) else { return 0 };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Prefix of the uid of locks taken by this crate. Such a lock file is held with an OS file lock
/// (`flock`) by its owner for the whole download: when that lock can be taken by someone else,
/// the owner is gone, whatever PID namespace or host it ran in.
const OUR_UID_PREFIX: &str = "rs";

/// An acquired `<dir>.lock`: the file (content `<hostname>.<pid>.<uid>`, as tensorflow_hub
/// writes it) with an OS file lock on it held until drop. Removed on drop if it is still ours.
pub(crate) struct Lock {
    path: PathBuf,
    content: String,
    pub(crate) uid: String,
    file: fs::File,
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.still_ours() {
            let _ = fs::remove_file(&self.path);
        }
        // Closing the file releases the OS lock.
    }
}

#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

impl Lock {
    /// Whether `<dir>.lock` is still the file we created, with our content (nobody judged it
    /// stale and replaced or removed it).
    pub(crate) fn still_ours(&self) -> bool {
        let (Ok(on_disk), Ok(mine)) = (fs::metadata(&self.path), self.file.metadata()) else {
            return false;
        };
        same_file(&on_disk, &mine)
            && fs::read_to_string(&self.path)
                .map(|c| c == self.content)
                .unwrap_or(false)
    }
}

/// Removes a stale lock file if it still holds `content` (someone may have replaced it
/// meanwhile). `tmp_too`: also remove the abandoned download folder it names (only when its
/// owner is known to be gone).
fn remove_lock_if(path: &Path, content: &str, tmp_too: bool) {
    if fs::read_to_string(path)
        .map(|c| c == content)
        .unwrap_or(false)
    {
        let _ = fs::remove_file(path);
        if !tmp_too {
            return;
        }
        if let (Some((_, _, uid)), Some(dir)) = (
            parse_lock(content),
            path.to_str().and_then(|p| p.strip_suffix(".lock")),
        ) {
            if !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_alphanumeric()) {
                let _ = fs::remove_dir_all(tmp_path(Path::new(dir), uid));
            }
        }
    }
}

impl Lock {
    /// Takes `<dir>.lock`, waiting while another live downloader holds it.
    ///
    /// The lock file is written and OS-locked under a temporary name, then hard-linked into
    /// place (fails if a lock exists): it never appears without its content and its OS lock.
    pub(crate) fn acquire(r: &Resolver, dir: &Path, handle: &str) -> Result<Lock, Error> {
        let path = lock_path(dir);
        let uid = format!("{OUR_UID_PREFIX}{}", &unique_id()[..30]);
        let content = format!("{}.{}.{}", hostname(), std::process::id(), uid);
        let staging = with_suffix(&path, &format!(".{uid}.tmp"));
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&staging)
            .map_err(io_err(&staging, "cannot create lock file"))?;
        let staged = (|| {
            file.write_all(content.as_bytes())?;
            file.sync_all()?;
            file.lock()
        })();
        if let Err(e) = staged {
            let _ = fs::remove_file(&staging);
            return Err(io_err(&path, "cannot lock the lock file")(e));
        }
        let mut announced = false;
        let result = loop {
            match fs::hard_link(&staging, &path) {
                Ok(()) => {
                    break Ok(Lock {
                        path: path.clone(),
                        content: content.clone(),
                        uid: uid.clone(),
                        file,
                    })
                }
                // Then try again; the caller re-checks the cache once it holds the lock.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if let Err(e) = wait_for_lock(r, dir, &path, handle, &mut announced) {
                        break Err(e);
                    }
                }
                Err(e) => break Err(io_err(&path, "cannot create lock file")(e)),
            }
        };
        let _ = fs::remove_file(&staging);
        result
    }
}

/// Whether the lock file at `lock` is held with an OS lock by a live process. `None`: the file
/// is gone. Taking the OS lock ourselves proves its owner is gone (it is released at exit).
fn os_lock_held(lock: &Path) -> Option<bool> {
    let f = fs::File::open(lock).ok()?;
    match f.try_lock_shared() {
        Ok(()) => Some(false),
        Err(fs::TryLockError::WouldBlock) => Some(true),
        // A file system without locks: tell nothing.
        Err(fs::TryLockError::Error(_)) => Some(false),
    }
}

/// Waits until `lock` disappears, removing it when stale. A lock held with an OS lock (by this
/// crate, in any process, container or PID namespace) is never stale: after `r.lock_timeout`
/// without progress the waiter gives up with an error instead. A lock of ours without its OS
/// lock was left by a process that is gone: removed at once with its download folder.
///
/// Other locks (tensorflow_hub's) carry no OS lock, and their `<hostname>.<pid>` cannot prove
/// a process dead: a container sharing this hostname and the cache folder runs in another PID
/// namespace, where that pid means nothing here. Such a lock is stale when neither its content
/// nor its download folder changed for `r.lock_timeout`, or for `r.dead_holder_grace` when its
/// pid is not alive here on the same host. Only the lock file is removed then: the download
/// folder of another program is never deleted (its owner may be alive elsewhere and still
/// write into it, and it may rename it into place, which tensorflow_hub does without
/// re-checking its lock; our own copy is published only while nobody else's is).
fn wait_for_lock(
    r: &Resolver,
    dir: &Path,
    lock: &Path,
    handle: &str,
    announced: &mut bool,
) -> Result<(), Error> {
    let me = hostname();
    let mut last: Option<(String, u64)> = None;
    let mut last_change = Instant::now();
    loop {
        let content = match fs::read_to_string(lock) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(lock, "cannot read lock file")(e)),
        };
        let parsed = parse_lock(&content);
        let ours = parsed.is_some_and(|(_, _, uid)| uid.starts_with(OUR_UID_PREFIX));
        let held = match os_lock_held(lock) {
            None => return Ok(()),
            Some(h) => h,
        };
        if ours && !held {
            // Re-read: the owner may have finished and removed it meanwhile.
            if fs::read_to_string(lock).ok().as_deref() == Some(content.as_str()) {
                if !r.quiet {
                    eprintln!(
                        "hub: removing stale lock {} of {handle} (its owner {:?} is gone)",
                        lock.display(),
                        content.trim()
                    );
                }
                remove_lock_if(lock, &content, true);
            }
            return Ok(());
        }
        // A foreign lock whose pid is not alive here: dead, or alive in another PID namespace.
        let holder_absent_here = !held
            && !ours
            && parsed.is_some_and(|(host, pid, _)| host == me && pid_alive(pid) == Some(false));
        let patience = if holder_absent_here {
            r.lock_timeout.min(r.dead_holder_grace)
        } else {
            r.lock_timeout
        };
        let size = parsed
            .map(|(_, _, uid)| dir_size(&tmp_path(dir, uid)))
            .unwrap_or(0);
        let state = (content.clone(), size);
        if last.as_ref() != Some(&state) {
            last = Some(state);
            last_change = Instant::now();
        } else if last_change.elapsed() >= patience {
            if held {
                return Err(Error::Other(format!(
                    "{handle}: another process ({:?}) is downloading it and has made no progress \
                     for {:?}; it still holds {} (a stopped process?). Not taking over a live \
                     download: try again later",
                    content.trim(),
                    r.lock_timeout,
                    lock.display()
                )));
            }
            if !r.quiet {
                let why = if holder_absent_here {
                    "its process is not alive in this PID namespace"
                } else {
                    "no OS lock on it"
                };
                eprintln!(
                    "hub: removing stale lock {} of {handle} (held by {:?}, unchanged for {:?}, \
                     {why}); its download folder, if any, is left alone",
                    lock.display(),
                    content.trim(),
                    patience
                );
            }
            remove_lock_if(lock, &content, false);
            return Ok(());
        }
        if !*announced && !r.quiet {
            eprintln!(
                "hub: waiting for another download of {handle} to finish (lock file {} held by {:?}); \
                 a lock unchanged for {:?} is treated as stale",
                lock.display(),
                content.trim(),
                patience
            );
            *announced = true;
        }
        std::thread::sleep(r.lock_poll);
    }
}

/// Locks `dir`, fills `<dir>.<uid>.tmp` with `populate`, checks it with `check`, writes the
/// descriptor and renames the folder into place, after re-checking that the lock is still ours.
/// A failure removes the temporary folder (ours): no incomplete `dir` ever appears.
pub(crate) fn populate_atomically(
    r: &Resolver,
    dir: &Path,
    handle: &str,
    populate: impl FnOnce(&Path) -> Result<(), Error>,
    check: impl FnOnce(&Path) -> Result<(), Error>,
) -> Result<(), Error> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_err(parent, "cannot create cache folder"))?;
    let lock = Lock::acquire(r, dir, handle)?;
    if is_complete(dir) {
        return Ok(());
    }
    let tmp = tmp_path(dir, &lock.uid);
    // A fresh uid: nobody else's folder.
    fs::create_dir(&tmp).map_err(io_err(&tmp, "cannot create download folder"))?;
    let result = populate(&tmp).and_then(|()| {
        if !is_complete(&tmp) {
            return Err(Error::Other(format!(
                "{handle}: download produced no files"
            )));
        }
        check(&tmp)?;
        if is_complete(dir) {
            // Someone else finished meanwhile (e.g. a lock judged stale too early): keep theirs.
            let _ = fs::remove_dir_all(&tmp);
            return Ok(());
        }
        if !lock.still_ours() {
            return Err(Error::Other(format!(
                "{handle}: lost the lock {} to another process during the download; not \
                 publishing this copy",
                lock_path(dir).display()
            )));
        }
        write_descriptor(dir, handle)?;
        if dir.exists() {
            // An empty leftover folder (not complete by the rule above).
            let _ = fs::remove_dir(dir);
        }
        match fs::rename(&tmp, dir) {
            Ok(()) => Ok(()),
            Err(_) if is_complete(dir) => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(())
            }
            Err(e) => Err(io_err(&tmp, "cannot move download into the cache")(e)),
        }
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    drop(lock);
    result
}

/// `<dir>.descriptor.txt` as tensorflow_hub writes it (informational).
fn write_descriptor(dir: &Path, handle: &str) -> Result<(), Error> {
    let path = descriptor_path(dir);
    let text = format!(
        "Module: {handle}\nDownload Time: {}\nDownloader Hostname: {} (PID:{})\n",
        utc_timestamp(SystemTime::now()),
        hostname(),
        std::process::id()
    );
    let tmp = with_suffix(&path, &format!(".{}.tmp", unique_id()));
    fs::write(&tmp, text).map_err(io_err(&tmp, "cannot write descriptor"))?;
    fs::rename(&tmp, &path).map_err(io_err(&path, "cannot write descriptor"))
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` (UTC), the shape of Python's `str(datetime.now())`.
pub(crate) fn utc_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_content_parses_with_dotted_hostnames() {
        assert_eq!(
            parse_lock("a.b.example.12.ff00"),
            Some(("a.b.example", 12, "ff00"))
        );
        assert_eq!(parse_lock("host.notapid.ff"), None);
        assert_eq!(parse_lock(""), None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01 00:00:00.000000");
        // 2024-02-29 12:34:56.5 UTC = 1709210096.5
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_500);
        assert_eq!(utc_timestamp(t), "2024-02-29 12:34:56.500000");
    }

    #[test]
    fn unique_ids_differ() {
        let a = unique_id();
        let b = unique_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn own_process_is_alive_and_reaped_child_is_not() {
        if !cfg!(target_os = "linux") {
            return;
        }
        assert_eq!(pid_alive(std::process::id()), Some(true));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(pid_alive(pid), Some(false));
    }

    #[test]
    fn a_lost_lock_is_noticed_before_publishing() {
        let cache = tempfile::tempdir().unwrap();
        let r = Resolver::new(cache.path()).quiet(true);
        let dir = cache.path().join("m");
        // Someone judges our lock stale during the download and replaces it with theirs.
        let e = populate_atomically(
            &r,
            &dir,
            "handle",
            |tmp| {
                fs::write(tmp.join("saved_model.pb"), b"x").unwrap();
                fs::remove_file(lock_path(&dir)).unwrap();
                fs::write(lock_path(&dir), "other.1.ffff").unwrap();
                Ok(())
            },
            |_| Ok(()),
        )
        .unwrap_err();
        assert!(e.to_string().contains("lost the lock"), "{e}");
        assert!(!dir.exists());
        // Their lock is left alone; our temporary folder is gone.
        assert_eq!(fs::read_to_string(lock_path(&dir)).unwrap(), "other.1.ffff");
        let left: Vec<_> = fs::read_dir(cache.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("m.lock")]);
    }

    #[test]
    fn our_lock_file_is_os_locked_while_held() {
        let cache = tempfile::tempdir().unwrap();
        let r = Resolver::new(cache.path()).quiet(true);
        let dir = cache.path().join("m");
        let lock = Lock::acquire(&r, &dir, "h").unwrap();
        assert!(lock.uid.starts_with(OUR_UID_PREFIX));
        assert_eq!(os_lock_held(&lock_path(&dir)), Some(true));
        assert!(lock.still_ours());
        drop(lock);
        assert!(!lock_path(&dir).exists());
        assert_eq!(os_lock_held(&lock_path(&dir)), None);
    }
}
