//! HTTP downloads (reqwest blocking + rustls): status and content checks, byte counting, progress.

use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::extract::{self, Kind};
use crate::{Error, Resolver};

/// What a single-file download must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// A TF Lite flatbuffer (`TFL3` at bytes 4..8).
    Tflite,
    /// A gzip stream (`.gz`, `.tgz`).
    Gzip,
    /// A zip archive.
    Zip,
    /// Anything.
    Any,
}

impl Expect {
    pub(crate) fn from_name(name: &str) -> Expect {
        let l = name.to_ascii_lowercase();
        if l.ends_with(".tflite") {
            Expect::Tflite
        } else if l.ends_with(".gz") || l.ends_with(".tgz") {
            Expect::Gzip
        } else if l.ends_with(".zip") {
            Expect::Zip
        } else {
            Expect::Any
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Expect::Tflite => "TF Lite model (.tflite)",
            Expect::Gzip => "gzip file",
            Expect::Zip => "zip file",
            Expect::Any => "file",
        }
    }

    fn accepts(self, head: &[u8]) -> bool {
        match self {
            Expect::Tflite => head.len() >= 8 && &head[4..8] == b"TFL3",
            Expect::Gzip => extract::sniff(head) == Kind::Gzip,
            Expect::Zip => head.starts_with(b"PK"),
            Expect::Any => true,
        }
    }
}

/// The whole error chain, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn strip_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_string()
}

pub(crate) struct Http {
    client: reqwest::blocking::Client,
    progress: bool,
    limits: extract::Limits,
    max_file_bytes: u64,
    stall: Duration,
    total: Duration,
}

/// Bytes that must arrive within each stall window.
const STALL_MIN_BYTES: u64 = 64 << 10;

/// A response body reader that counts bytes, drives the progress bar and remembers the first
/// read error (so that an error surfacing through gzip/tar is reported as a download error).
struct Body {
    inner: reqwest::blocking::Response,
    received: u64,
    failure: Arc<Mutex<Option<String>>>,
    bar: Option<ProgressBar>,
    deadlines: Deadlines,
}

/// A total deadline, and a stall rule: at least [`STALL_MIN_BYTES`] per `stall` window (a
/// trickle of a few bytes per read would defeat a per-read timeout).
struct Deadlines {
    started: Instant,
    total: Duration,
    stall: Duration,
    window_start: Instant,
    window_bytes: u64,
}

impl Deadlines {
    fn new(total: Duration, stall: Duration) -> Self {
        let now = Instant::now();
        Deadlines {
            started: now,
            total,
            stall,
            window_start: now,
            window_bytes: 0,
        }
    }

    fn check(&mut self, n: usize, at_end: bool) -> io::Result<()> {
        let now = Instant::now();
        if now.duration_since(self.started) > self.total {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the download took longer than the {:?} deadline",
                    self.total
                ),
            ));
        }
        self.window_bytes += n as u64;
        if now.duration_since(self.window_start) >= self.stall {
            if self.window_bytes < STALL_MIN_BYTES && !at_end {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the download stalled ({} bytes in the last {:?})",
                        self.window_bytes, self.stall
                    ),
                ));
            }
            self.window_start = now;
            self.window_bytes = 0;
        }
        Ok(())
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf).and_then(|n| {
            self.deadlines
                .check(n, n == 0 && !buf.is_empty())
                .map(|()| n)
        });
        match r {
            Ok(n) => {
                self.received += n as u64;
                if let Some(b) = &self.bar {
                    b.inc(n as u64);
                }
                Ok(n)
            }
            Err(e) => {
                if let Ok(mut f) = self.failure.lock() {
                    f.get_or_insert_with(|| chain(&e));
                }
                Err(e)
            }
        }
    }
}

/// Shared view of a [`Body`] after it was moved into decoders.
struct Probe {
    failure: Arc<Mutex<Option<String>>>,
    received: Arc<Mutex<u64>>,
}

struct Counted<R> {
    body: R,
    received: Arc<Mutex<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.body.read(buf)?;
        if let Ok(mut r) = self.received.lock() {
            *r += n as u64;
        }
        Ok(n)
    }
}

struct Fetch {
    url: String,
    final_url: String,
    status: u16,
    content_type: String,
    expected: Option<u64>,
    head: Vec<u8>,
    rest: Counted<Body>,
    probe: Probe,
    bar: Option<ProgressBar>,
}

impl Fetch {
    fn received(&self) -> u64 {
        self.probe.received.lock().map(|r| *r).unwrap_or(0) + self.head.len() as u64
    }

    fn failure(&self) -> Option<String> {
        self.probe.failure.lock().ok().and_then(|f| f.clone())
    }

    fn download_error(&self, message: String) -> Error {
        Error::Download {
            url: self.url.clone(),
            received: self.received(),
            expected: self.expected,
            message: self.failure().unwrap_or(message),
        }
    }

    fn unexpected(&self, expected: &str) -> Error {
        Error::UnexpectedContent {
            url: self.url.clone(),
            final_url: self.final_url.clone(),
            expected: expected.to_string(),
            status: self.status,
            content_type: self.content_type.clone(),
            body_start: extract::body_start(&self.head),
        }
    }

    /// After the body was read to its end: the byte count matches `Content-Length`.
    fn check_complete(&self) -> Result<(), Error> {
        if let Some(f) = self.failure() {
            return Err(self.download_error(f));
        }
        if let Some(n) = self.expected {
            if self.received() != n {
                return Err(self.download_error(format!(
                    "the body has {} bytes, Content-Length says {n}",
                    self.received()
                )));
            }
        }
        Ok(())
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Http {
    pub(crate) fn new(r: &Resolver) -> Result<Http, Error> {
        let client = reqwest::blocking::Client::builder()
            .user_agent(concat!("tfhub-rs/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(20))
            .connect_timeout(r.connect_timeout)
            .timeout(r.io_timeout)
            .danger_accept_invalid_certs(r.accept_invalid_certs)
            .build()
            .map_err(|e| Error::Other(format!("cannot set up the HTTP client: {}", chain(&e))))?;
        Ok(Http {
            client,
            progress: r.progress,
            limits: r.extract_limits(),
            max_file_bytes: r.max_file_bytes,
            stall: r.io_timeout,
            total: r.total_timeout,
        })
    }

    /// GET `url`; a non-2xx status is an error naming the URL, the final URL and the status.
    fn get(&self, url: &str) -> Result<Fetch, Error> {
        tracing::info!("downloading {url}");
        let mut resp = self
            .client
            .get(url)
            .send()
            .map_err(|e| Error::Unreachable {
                url: url.to_string(),
                message: chain(&e),
            })?;
        let status = resp.status();
        let final_url = strip_query(resp.url().as_str());
        if !status.is_success() {
            let head = extract::read_head(&mut resp, 300).unwrap_or_default();
            return Err(Error::Http {
                url: url.to_string(),
                final_url,
                status: status.as_u16(),
                body_start: extract::body_start(&head),
            });
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let expected = resp.content_length();
        let bar = (self.progress && io::stderr().is_terminal()).then(|| {
            let bar = match expected {
                Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = if expected.is_some() {
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"
            } else {
                "{msg} {spinner} {bytes} {bytes_per_sec}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(format!("Downloading {}", strip_query(url)));
            bar
        });
        let failure = Arc::new(Mutex::new(None));
        let received = Arc::new(Mutex::new(0u64));
        let mut body = Body {
            inner: resp,
            received: 0,
            failure: failure.clone(),
            bar: bar.clone(),
            deadlines: Deadlines::new(self.total, self.stall),
        };
        let head = extract::read_head(&mut body, 512);
        let probe = Probe {
            failure,
            received: received.clone(),
        };
        let head = match head {
            Ok(h) => h,
            Err(e) => {
                let received = body.received;
                return Err(Error::Download {
                    url: url.to_string(),
                    received,
                    expected,
                    message: chain(&e),
                });
            }
        };
        Ok(Fetch {
            url: url.to_string(),
            final_url,
            status: status.as_u16(),
            content_type,
            expected,
            head,
            rest: Counted { body, received },
            probe,
            bar,
        })
    }

    /// Downloads a tar/tar.gz archive and extracts it into `dest` (streamed, never stored whole).
    pub(crate) fn fetch_archive(&self, url: &str, dest: &Path) -> Result<(), Error> {
        let mut f = self.get(url)?;
        let kind = extract::sniff(&f.head);
        if kind == Kind::Other {
            f.finish();
            return Err(f.unexpected("module archive (tar or tar.gz)"));
        }
        let head = std::mem::take(&mut f.head);
        let head_len = head.len();
        let result = {
            let stream = io::Cursor::new(head).chain(&mut f.rest);
            let mut reader: Box<dyn Read + '_> = match kind {
                Kind::Gzip => Box::new(flate2::read::MultiGzDecoder::new(stream)),
                _ => Box::new(stream),
            };
            extract::extract_tar(&mut reader, dest, url, self.limits).and_then(|_| {
                // Read to the end (gzip CRC, trailing padding, the Content-Length check), but
                // not without limit.
                extract::drain_trailing(&mut reader, url)
            })
        };
        f.head = vec![0; head_len]; // only its length counts from here on
        f.finish();
        match result {
            // A read error underneath gzip/tar is a download error, not a bad archive.
            Err(Error::BadArchive { message, .. }) if f.failure().is_some() => {
                Err(f.download_error(message))
            }
            Err(e) => Err(e),
            Ok(()) => f.check_complete(),
        }
    }

    /// Downloads one file to `path` (inside the temporary folder), checking its first bytes.
    pub(crate) fn fetch_file(&self, url: &str, path: &Path, expect: Expect) -> Result<(), Error> {
        let mut f = self.get(url)?;
        if !expect.accepts(&f.head) {
            f.finish();
            return Err(f.unexpected(expect.describe()));
        }
        let cap = self.max_file_bytes;
        let too_big =
            |f: &Fetch| f.download_error(format!("the file is larger than the {cap}-byte limit"));
        if f.expected.is_some_and(|n| n > cap) || f.head.len() as u64 > cap {
            f.finish();
            return Err(too_big(&f));
        }
        let io_err = |source| Error::Io {
            path: path.to_path_buf(),
            action: "cannot write download",
            source,
        };
        let mut out = fs::File::create(path).map_err(io_err)?;
        out.write_all(&f.head).map_err(io_err)?;
        let room = cap - f.head.len() as u64;
        let copied = io::copy(&mut (&mut f.rest).take(room + 1), &mut out);
        f.finish();
        if copied.as_ref().is_ok_and(|&n| n > room) {
            drop(out);
            let _ = fs::remove_file(path);
            return Err(too_big(&f));
        }
        if let Err(e) = copied {
            return Err(if f.failure().is_some() {
                f.download_error(chain(&e))
            } else {
                io_err(e)
            });
        }
        out.sync_all().map_err(io_err)?;
        f.check_complete()
    }
}
