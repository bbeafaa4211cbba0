//! Resolving TF Hub / Kaggle handles, URLs, archives and local folders to a
//! local path, with a cache shared with Python `tensorflow_hub`.
//!
//! ```no_run
//! let opts = hub::Options::from_env();
//! let model = hub::resolve("https://tfhub.dev/google/imagenet/inception_v3/classification/5", &opts)?;
//! println!("SavedModel folder: {}", model.path.display());
//! # Ok::<(), hub::Error>(())
//! ```
//!
//! # Handles
//! - `https://tfhub.dev/...`, Kaggle model URLs and any other `http(s)` URL that does not name a
//!   file: fetched with `?tf-hub-format=compressed` appended (as Python `tensorflow_hub` does),
//!   following redirects (tfhub.dev → Kaggle → signed storage URL). The answer must be a tar
//!   archive (plain or gzip) whose root is the model folder.
//! - `http(s)` URLs ending in `.tar`, `.tar.gz` or `.tgz`: fetched as they are, then extracted.
//! - `https://hub.tensorflow.google.cn/...`: fetched from `gcs.tensorflow.google.cn` like Python does;
//!   `gs://bucket/path.tar.gz`: fetched from `storage.googleapis.com`.
//! - `.tflite` URLs and TF Hub `.../lite-model/...` handles (fetched with `?lite-format=tflite`):
//!   resolved to a single cached file.
//! - `file://` URLs and local paths: a folder or a non-archive file (e.g. `.tflite`) is returned as it
//!   is; a `.tar`/`.tar.gz`/`.tgz` file is extracted into the cache.
//!
//! # Cache
//! The cache folder is [`Options::cache_dir`], else `TFHUB_CACHE_DIR` (shared with Python
//! `tensorflow_hub` both ways), else `$XDG_CACHE_HOME/tfhub-rs` or `~/.cache/tfhub-rs`. A URL
//! handle lives in `<cache>/<sha1(handle)>/` (SHA-1 hex of the handle exactly as given), next to
//! `<sha1>.descriptor.txt`, exactly like `tensorflow_hub`. A folder that exists and is non-empty
//! is complete: downloads go to `<sha1>.<uid>.tmp/` and are renamed into place only after the
//! whole archive was received, checked and extracted. `<sha1>.lock` (content
//! `<hostname>.<pid>.<uid>`, as in `tensorflow_hub`) guards concurrent downloads of one handle;
//! a waiter removes a lock that has not changed, nor its temporary folder grown, for
//! [`Resolver::lock_timeout`] (600 s by default, like Python), or for
//! [`Resolver::dead_holder_grace`] (30 s) when its process is not alive here on the same host
//! (it may be alive in another PID namespace, hence the grace). Our own downloads also hold an
//! OS file lock on the lock file: such a lock is never taken from a live holder, in any PID
//! namespace, and is removed at once when its holder is gone. Another program's download
//! folder is never deleted.
//! Local archives are extracted to `<cache>/<sha1(path, size, mtime)>/`; files fetched with
//! [`download_file`] live in `<cache>/downloads/<sha1(url)>/<file name>`.
//!
//! # Network
//! HTTP goes through `reqwest` (blocking, rustls, webpki roots). Proxies come from the usual
//! environment variables, which reqwest reads by default: `HTTPS_PROXY`/`https_proxy`,
//! `HTTP_PROXY`/`http_proxy` (ignored when `REQUEST_METHOD` is set, i.e. under CGI),
//! `ALL_PROXY`/`all_proxy` and `NO_PROXY`/`no_proxy`. Timeouts: 30 s to connect; a download
//! stalls out when a read waits 120 s or less than 64 KiB arrive in 120 s; 6 hours in all.
//! Limits: archives of at most 64 GiB decompressed (metadata members included) and 100,000
//! members, names of at most 4096 bytes, single files of at most 16 GiB. `TFHUB_DISABLE_CERT_VALIDATION=true` turns off certificate checks (as
//! in Python). `TFHUB_OFFLINE=1` (or [`Options::offline`]) uses the cache only (a local archive,
//! which needs no network, is still extracted into it).
//! `TFHUB_BASE_URL` (or [`Resolver::tfhub_base`]) fetches `https://tfhub.dev/...` handles from
//! another server (a mirror, or a local test server); the cache key stays the handle.
//!
//! Not supported: `TFHUB_MODEL_LOAD_FORMAT=UNCOMPRESSED` (reading `gs://` folders).
#![deny(missing_docs)]

mod cache;
mod extract;
mod handle;
mod http;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use extract::{Limits as ArchiveLimits, TarMember};
pub use handle::module_dir_name;

/// How to resolve a handle.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Use the cache only (also set by `TFHUB_OFFLINE=1`).
    pub offline: bool,
    /// Cache folder; `None` = `TFHUB_CACHE_DIR` or the per-user cache folder.
    pub cache_dir: Option<PathBuf>,
    /// Show a progress bar (only ever drawn on a terminal).
    pub progress: bool,
}

impl Options {
    /// Options from the environment: `TFHUB_OFFLINE` (`1`/`true`/`yes`), `TFHUB_CACHE_DIR`;
    /// progress bars on (they are only drawn when stderr is a terminal).
    pub fn from_env() -> Options {
        Options {
            offline: env_offline(),
            cache_dir: env_cache_dir(),
            progress: true,
        }
    }
}

/// What a handle resolved to.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// A SavedModel folder, or a single model file (e.g. `.tflite`).
    pub path: PathBuf,
    /// The handle as given.
    pub handle: String,
}

/// Everything that can go wrong while resolving a handle. Each message names the handle, URL or
/// path involved and the problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A local path that does not exist (and is not a URL).
    #[error(
        "{handle}: no such file or folder (a handle is https://tfhub.dev/..., a Kaggle model URL, \
         an http(s) URL of a .tar.gz or .tflite, file://..., a SavedModel folder, a .tar/.tar.gz/.tgz \
         or a .tflite file)"
    )]
    NotFound {
        /// The handle as given.
        handle: String,
    },
    /// A handle of a kind this crate does not read.
    #[error("{handle}: unsupported handle: {reason}")]
    Unsupported {
        /// The handle as given.
        handle: String,
        /// Why.
        reason: String,
    },
    /// Offline mode and the handle is not in the cache.
    #[error(
        "{handle} is not in the cache (looked for {}) and offline mode is on (TFHUB_OFFLINE=1 or \
         --offline); run once online to download it, or point TFHUB_CACHE_DIR at a cache that has it",
        dir.display()
    )]
    Offline {
        /// The handle as given.
        handle: String,
        /// The cache folder it would be in.
        dir: PathBuf,
    },
    /// No cache folder could be chosen.
    #[error("no cache folder: set TFHUB_CACHE_DIR (neither XDG_CACHE_HOME nor HOME is set)")]
    NoCacheDir,
    /// The server could not be reached (DNS, connection refused, TLS, timeout, proxy, ...).
    #[error("cannot reach {url}: {message}")]
    Unreachable {
        /// The URL requested.
        url: String,
        /// What failed (the whole error chain).
        message: String,
    },
    /// The server answered with an error status.
    #[error(
        "GET {url}{} failed: HTTP {status}{}",
        redirect_note(url, final_url),
        body_note(body_start)
    )]
    Http {
        /// The URL requested.
        url: String,
        /// The URL that answered, after redirects (query string dropped).
        final_url: String,
        /// The HTTP status code.
        status: u16,
        /// The first characters of the body (e.g. a storage error document).
        body_start: String,
    },
    /// The connection broke or the body was shorter than announced.
    #[error("download of {url} failed after {received} bytes{}: {message}", expected.map(|n| format!(" of {n}")).unwrap_or_default())]
    Download {
        /// The URL requested.
        url: String,
        /// Bytes received.
        received: u64,
        /// `Content-Length`, if the server sent one.
        expected: Option<u64>,
        /// What failed.
        message: String,
    },
    /// The body is not what was expected (an HTML page instead of a tar archive or model file).
    #[error("{url}{} does not appear to be a valid {expected}{}", redirect_note(url, final_url), content_note(*status, content_type, body_start))]
    UnexpectedContent {
        /// The URL requested (or the local file).
        url: String,
        /// The URL that answered, after redirects (query string dropped; empty for local files).
        /// A tfhub.dev handle that lands on an HTML page of kaggle.com was usually not migrated.
        final_url: String,
        /// What was expected: "module archive (tar or tar.gz)", "TF Lite model", ...
        expected: String,
        /// The HTTP status code (0 for local files).
        status: u16,
        /// The `Content-Type` header.
        content_type: String,
        /// The first characters of the body.
        body_start: String,
    },
    /// An archive member that would write outside the target folder, or is not a plain file/folder.
    #[error("{archive}: unsafe archive member {member:?}: {reason}")]
    UnsafeArchive {
        /// The URL or path of the archive.
        archive: String,
        /// The member's name.
        member: String,
        /// Why it is refused.
        reason: String,
    },
    /// A malformed or unreadable archive.
    #[error("{archive}: bad archive: {message}")]
    BadArchive {
        /// The URL or path of the archive.
        archive: String,
        /// What is wrong.
        message: String,
    },
    /// An archive that extracts to more than the size limit.
    #[error(
        "{archive}: archive extracts to more than {limit} bytes (at member {member:?}); refusing"
    )]
    TooLarge {
        /// The URL or path of the archive.
        archive: String,
        /// The member at which the limit was crossed.
        member: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A file-system operation failed.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

fn redirect_note(url: &str, final_url: &str) -> String {
    if final_url.is_empty() || url.split(['?', '#']).next() == Some(final_url) {
        String::new()
    } else {
        format!(" (redirected to {final_url})")
    }
}

/// What an unexpected body looked like: the HTTP status and content type of a download; for a
/// local file (status 0) its first characters when they are text, never binary garbage.
fn content_note(status: u16, content_type: &str, body_start: &str) -> String {
    if status != 0 {
        return format!(
            " (HTTP {status}, content-type {content_type:?}, body starts with {body_start:?})"
        );
    }
    let text = !body_start.is_empty()
        && body_start
            .chars()
            .all(|c| c != char::REPLACEMENT_CHARACTER && !c.is_control());
    if text {
        format!(" (it starts with {body_start:?})")
    } else {
        " (binary content of another format)".into()
    }
}

fn body_note(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(", body starts with {body:?}")
    }
}

/// Resolves `handle` to a local path (downloading and caching if needed).
///
/// Settings come from `opts` and the environment (see the crate documentation); use a
/// [`Resolver`] for the finer ones.
pub fn resolve(handle: &str, opts: &Options) -> Result<Resolved, Error> {
    Resolver::from_options(opts)?.resolve(handle)
}

/// Downloads one file (e.g. a dataset archive) into the cache without extracting it and returns
/// its path; a local path or `file://` URL is returned as it is. Offline mode gives
/// [`Error::Offline`] when the file is not cached yet.
pub fn download_file(url: &str, opts: &Options) -> Result<PathBuf, Error> {
    Resolver::from_options(opts)?.download_file(url)
}

/// Extracts a tar or tar.gz archive held in memory into the folder `dest` with the default
/// limits (and `max_bytes` of files), exactly as downloads are extracted (for fuzzing and tools).
#[doc(hidden)]
pub fn extract_archive_bytes(bytes: &[u8], dest: &Path, max_bytes: u64) -> Result<(), Error> {
    use std::io::Read;
    let label = "<archive bytes>";
    let limits = extract::Limits::new(max_bytes);
    match extract::sniff(bytes) {
        extract::Kind::Gzip => {
            let mut gz = flate2::read::MultiGzDecoder::new(bytes);
            extract::extract_tar(&mut gz, dest, label, limits)?;
            extract::drain_trailing(&mut gz, label)
        }
        _ => {
            let mut r: &[u8] = bytes;
            extract::extract_tar(&mut r, dest, label, limits)?;
            extract::drain_trailing(&mut r.by_ref(), label)
        }
    }
}

/// Reads a local `.tar`, `.tar.gz` or `.tgz` archive member by member, without extracting it
/// (e.g. a dataset), with the same checks and limits as extraction: unsafe members (links,
/// devices, `..`, absolute names) are refused, metadata members are capped at 64 KiB, and
/// `limits` bound the files' bytes, the members and the name length. `visit` sees each file
/// and folder; what it leaves unread of a member is skipped. A member's declared
/// [`TarMember::size`] is checked against the limits but not trusted otherwise (a truncated
/// archive yields fewer bytes). Returns the number of members.
pub fn read_archive(
    path: &Path,
    limits: ArchiveLimits,
    mut visit: impl FnMut(TarMember<'_>) -> Result<(), Error>,
) -> Result<usize, Error> {
    extract::walk_local(path, limits, &mut visit)
}

/// The cache folder `opts` leads to: [`Options::cache_dir`], else `TFHUB_CACHE_DIR`, else the
/// per-user cache folder ([`default_cache_dir`]).
pub fn cache_dir(opts: &Options) -> Result<PathBuf, Error> {
    match opts.cache_dir.clone().or_else(env_cache_dir) {
        Some(d) => Ok(d),
        None => default_cache_dir(),
    }
}

/// The per-user cache folder: `$XDG_CACHE_HOME/tfhub-rs`, else `~/.cache/tfhub-rs`
/// (`%LOCALAPPDATA%\tfhub-rs` on Windows).
pub fn default_cache_dir() -> Result<PathBuf, Error> {
    let nonempty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(x) = nonempty("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Ok(x.join("tfhub-rs"));
    }
    if cfg!(windows) {
        if let Some(x) = nonempty("LOCALAPPDATA") {
            return Ok(x.join("tfhub-rs"));
        }
    }
    match nonempty("HOME").or_else(|| nonempty("USERPROFILE")) {
        Some(h) => Ok(h.join(".cache").join("tfhub-rs")),
        None => Err(Error::NoCacheDir),
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

fn env_offline() -> bool {
    env_flag("TFHUB_OFFLINE")
}

fn env_cache_dir() -> Option<PathBuf> {
    std::env::var_os("TFHUB_CACHE_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// A configured resolver. [`resolve`] builds one from [`Options`] and the environment;
/// [`Resolver::new`] reads no environment variable at all (what tests want).
#[derive(Debug, Clone)]
pub struct Resolver {
    cache_dir: PathBuf,
    offline: bool,
    progress: bool,
    tfhub_base: Option<String>,
    lock_timeout: Duration,
    lock_poll: Duration,
    dead_holder_grace: Duration,
    max_extract_bytes: u64,
    max_extract_members: usize,
    max_file_bytes: u64,
    connect_timeout: Duration,
    total_timeout: Duration,
    io_timeout: Duration,
    accept_invalid_certs: bool,
    quiet: bool,
}

impl Resolver {
    /// A resolver with the cache in `cache_dir`, online, no progress bar, default limits; reads no
    /// environment variable (reqwest still reads the proxy variables).
    pub fn new(cache_dir: impl Into<PathBuf>) -> Resolver {
        Resolver {
            cache_dir: cache_dir.into(),
            offline: false,
            progress: false,
            tfhub_base: None,
            lock_timeout: Duration::from_secs(600),
            lock_poll: Duration::from_millis(500),
            dead_holder_grace: Duration::from_secs(30),
            max_extract_bytes: 64 << 30,
            max_extract_members: 100_000,
            max_file_bytes: 16 << 30,
            connect_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(6 * 3600),
            io_timeout: Duration::from_secs(120),
            accept_invalid_certs: false,
            quiet: false,
        }
    }

    /// A resolver from `opts` plus the environment: `TFHUB_CACHE_DIR` (when `opts.cache_dir` is
    /// `None`), `TFHUB_OFFLINE`, `TFHUB_BASE_URL`, `TFHUB_DISABLE_CERT_VALIDATION`.
    pub fn from_options(opts: &Options) -> Result<Resolver, Error> {
        let mut r = Resolver::new(cache_dir(opts)?);
        r.offline = opts.offline || env_offline();
        r.progress = opts.progress;
        r.tfhub_base = std::env::var("TFHUB_BASE_URL")
            .ok()
            .filter(|s| !s.is_empty());
        r.accept_invalid_certs = env_flag("TFHUB_DISABLE_CERT_VALIDATION");
        Ok(r)
    }

    /// Cache only: a handle that is not cached gives [`Error::Offline`].
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Draw a progress bar for downloads (only when stderr is a terminal).
    pub fn progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    /// Fetch `https://tfhub.dev/<rest>` handles from `<base>/<rest>` instead (a mirror or a test
    /// server). The cache folder name is still the SHA-1 of the handle.
    pub fn tfhub_base(mut self, base: impl Into<String>) -> Self {
        self.tfhub_base = Some(base.into());
        self
    }

    /// How long a lock may stay unchanged (and its download folder not grow) before a waiter
    /// considers it stale and removes it. Default 600 s, like `tensorflow_hub`.
    pub fn lock_timeout(mut self, t: Duration) -> Self {
        self.lock_timeout = t;
        self
    }

    /// How long a `tensorflow_hub` lock from this hostname whose process is not alive here may
    /// stay unchanged (and its download folder not grow) before a waiter removes it. Not at
    /// once: a container that shares this hostname and the cache runs in another PID
    /// namespace, where its pid is not visible. Default 30 s (capped by `lock_timeout`).
    pub fn dead_holder_grace(mut self, t: Duration) -> Self {
        self.dead_holder_grace = t;
        self
    }

    /// How often a waiter looks at a lock held by someone else. Default 0.5 s.
    pub fn lock_poll_interval(mut self, t: Duration) -> Self {
        self.lock_poll = t;
        self
    }

    /// Refuse archives whose decompressed tar stream (every member, metadata and padding
    /// included) is larger than `bytes`. Default 64 GiB.
    pub fn max_extract_bytes(mut self, bytes: u64) -> Self {
        self.max_extract_bytes = bytes;
        self
    }

    /// Refuse archives with more than `n` members (files and folders). Default 100,000.
    pub fn max_extract_members(mut self, n: usize) -> Self {
        self.max_extract_members = n;
        self
    }

    /// Refuse single-file downloads ([`Resolver::download_file`], `.tflite` handles) larger
    /// than `bytes`. Default 16 GiB.
    pub fn max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes;
        self
    }

    /// Connection timeout (default 30 s) and stall timeout (default 120 s): a download fails
    /// when a read waits that long, or when less than 64 KiB arrive in that much time.
    pub fn timeouts(mut self, connect: Duration, io: Duration) -> Self {
        self.connect_timeout = connect;
        self.io_timeout = io;
        self
    }

    /// Deadline for a whole download, however steadily it progresses. Default 6 hours.
    pub fn total_timeout(mut self, t: Duration) -> Self {
        self.total_timeout = t;
        self
    }

    fn extract_limits(&self) -> extract::Limits {
        let mut l = extract::Limits::new(self.max_extract_bytes);
        l.max_members = self.max_extract_members;
        l
    }

    /// Do not print the "waiting for another download" message on stderr.
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// The cache folder.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The folder a URL handle is cached in: `<cache>/<sha1(handle)>`.
    pub fn module_dir(&self, handle: &str) -> PathBuf {
        self.cache_dir.join(module_dir_name(handle))
    }

    /// Resolves `handle` to a local path (downloading and caching if needed).
    pub fn resolve(&self, handle: &str) -> Result<Resolved, Error> {
        let path = match handle::parse(handle, self.tfhub_base.as_deref())? {
            handle::Source::LocalDir(p) | handle::Source::LocalFile(p) => p,
            handle::Source::LocalArchive(p) => {
                let key = handle::local_archive_key(&p)?;
                let dir = self.cache_dir.join(&key);
                // Extracting a local archive needs no network: allowed offline too.
                let dir = self.ensure(
                    &dir,
                    handle,
                    false,
                    |tmp| extract::extract_local(&p, tmp, self.extract_limits()),
                    |tmp| extract::check_model_folder(tmp, handle),
                )?;
                extract::model_root(&dir)
            }
            handle::Source::RemoteArchive { url } => {
                let dir = self.module_dir(handle);
                let dir = self.ensure(
                    &dir,
                    handle,
                    true,
                    |tmp| self.http()?.fetch_archive(&url, tmp),
                    |tmp| extract::check_model_folder(tmp, handle),
                )?;
                extract::model_root(&dir)
            }
            handle::Source::RemoteFile { url, file_name } => {
                let dir = self.module_dir(handle);
                let dir = self.ensure(
                    &dir,
                    handle,
                    true,
                    |tmp| {
                        self.http()?
                            .fetch_file(&url, &tmp.join(&file_name), http::Expect::Tflite)
                    },
                    |tmp| extract::check_single_file(tmp, &file_name, handle),
                )?;
                dir.join(file_name)
            }
        };
        Ok(Resolved {
            path,
            handle: handle.to_string(),
        })
    }

    /// Downloads one file (e.g. a dataset archive) into `<cache>/downloads/<sha1(url)>/` without
    /// extracting it and returns its path; local paths and `file://` URLs are returned as they are.
    pub fn download_file(&self, url: &str) -> Result<PathBuf, Error> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            let p = handle::local_path(url);
            return if p.exists() {
                Ok(p)
            } else {
                Err(Error::NotFound {
                    handle: url.to_string(),
                })
            };
        }
        let file_name = handle::file_name_of_url(url);
        let dir = self.cache_dir.join("downloads").join(module_dir_name(url));
        let expect = http::Expect::from_name(&file_name);
        let dir = self.ensure(
            &dir,
            url,
            true,
            |tmp| self.http()?.fetch_file(url, &tmp.join(&file_name), expect),
            |tmp| extract::check_single_file(tmp, &file_name, url),
        )?;
        Ok(dir.join(file_name))
    }

    fn http(&self) -> Result<http::Http, Error> {
        http::Http::new(self)
    }

    /// Cache hit, or lock + populate a temporary folder + rename into place. Offline, only
    /// what needs no `network` is populated.
    fn ensure(
        &self,
        dir: &Path,
        handle: &str,
        network: bool,
        populate: impl FnOnce(&Path) -> Result<(), Error>,
        check: impl FnOnce(&Path) -> Result<(), Error>,
    ) -> Result<PathBuf, Error> {
        if cache::is_complete(dir) {
            return Ok(dir.to_path_buf());
        }
        if self.offline && network {
            return Err(Error::Offline {
                handle: handle.to_string(),
                dir: dir.to_path_buf(),
            });
        }
        cache::populate_atomically(self, dir, handle, populate, check)?;
        Ok(dir.to_path_buf())
    }
}
