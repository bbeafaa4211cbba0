//! Helpers for the workspace's tests (a dev-dependency only):
//! - [`program!`] / [`Program`]: one way to run a program under test, with a private cache
//!   and no network unless a test asks for it, and to check how it ended;
//! - a loopback HTTP/1.1 server on 127.0.0.1:0 ([`Server`], std only) and small archives;
//! - [`with_env`]: the process environment changed for one closure, one caller at a time;
//! - [`hex_list`]: the byte strings a TF fixture records as a JSON list of hex strings.

mod program;
pub use program::{listing, os, Program};

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A JSON list of hex strings (how the TF fixture scripts record byte strings such as
/// sentences) as bytes.
pub fn hex_list(v: &serde_json::Value) -> Vec<Vec<u8>> {
    v.as_array()
        .expect("a list of hex strings")
        .iter()
        .map(|h| hex::decode(h.as_str().expect("a hex string")).expect("valid hex"))
        .collect()
}

/// How the server answers one path.
#[derive(Clone)]
pub enum Reply {
    /// 200 with this body and content type.
    Ok {
        body: Vec<u8>,
        content_type: &'static str,
    },
    /// 200, body sent in chunks with a pause after each (to make downloads overlap).
    Slow {
        body: Vec<u8>,
        chunk: usize,
        pause: Duration,
    },
    /// An error status with a body.
    Status { code: u16, body: &'static str },
    /// A redirect (301/302/303/307) to `location` (absolute, or a path on this server).
    Redirect { code: u16, location: String },
    /// `Content-Length: claimed` but only `body` is sent, then the connection is closed.
    Truncated { body: Vec<u8>, claimed: usize },
}

/// A running server; requests are recorded as (request target) strings.
pub struct Server {
    pub base: String,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts a server; `routes` gets the base URL (`http://127.0.0.1:PORT`) and returns
    /// (path without query, reply) pairs. Unknown paths get 404.
    pub fn start(routes: impl FnOnce(&str) -> Vec<(String, Reply)>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<HashMap<String, Reply>> = Arc::new(routes(&base).into_iter().collect());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let reqs = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let routes = routes.clone();
                let reqs = reqs.clone();
                thread::spawn(move || {
                    let _ = serve(stream, &routes, &reqs);
                });
            }
        });
        Server { base, requests }
    }

    /// How many requests had this path (query ignored; absolute-form targets reduced to path).
    pub fn hits(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|t| path_of(t) == path)
            .count()
    }

    pub fn all_requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn path_of(target: &str) -> &str {
    let t = target.split('?').next().unwrap_or(target);
    // absolute-form (proxy requests): http://host/path
    if let Some(rest) = t.strip_prefix("http://") {
        return rest.find('/').map(|i| &rest[i..]).unwrap_or("/");
    }
    t
}

fn serve(
    stream: TcpStream,
    routes: &HashMap<String, Reply>,
    reqs: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    reqs.lock().unwrap().push(target.clone());
    let mut out = stream;
    let reply = routes
        .get(path_of(&target))
        .cloned()
        .unwrap_or(Reply::Status {
            code: 404,
            body: "<html>Not Found</html>",
        });
    let head = |code: u16, extra: &str, len: usize| {
        format!(
            "HTTP/1.1 {code} {}\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n",
            reason(code)
        )
    };
    match reply {
        Reply::Ok { body, content_type } => {
            out.write_all(
                head(
                    200,
                    &format!("Content-Type: {content_type}\r\n"),
                    body.len(),
                )
                .as_bytes(),
            )?;
            out.write_all(&body)?;
        }
        Reply::Slow { body, chunk, pause } => {
            out.write_all(
                head(
                    200,
                    "Content-Type: application/octet-stream\r\n",
                    body.len(),
                )
                .as_bytes(),
            )?;
            for c in body.chunks(chunk.max(1)) {
                out.write_all(c)?;
                out.flush()?;
                thread::sleep(pause);
            }
        }
        Reply::Status { code, body } => {
            out.write_all(head(code, "Content-Type: text/html\r\n", body.len()).as_bytes())?;
            out.write_all(body.as_bytes())?;
        }
        Reply::Redirect { code, location } => {
            out.write_all(head(code, &format!("Location: {location}\r\n"), 0).as_bytes())?;
        }
        Reply::Truncated { body, claimed } => {
            out.write_all(
                head(200, "Content-Type: application/octet-stream\r\n", claimed).as_bytes(),
            )?;
            out.write_all(&body)?;
        }
    }
    out.flush()?;
    let _ = out.shutdown(std::net::Shutdown::Write);
    // Drain whatever the client still sends, then close.
    let mut sink = [0u8; 1024];
    let _ = reader
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(200)));
    let _ = reader.read(&mut sink);
    Ok(())
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// Files of a small fake SavedModel: (relative path, content).
pub fn fake_saved_model() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("saved_model.pb", b"\x08\x01fake saved model proto".to_vec()),
        ("variables/variables.index", b"fake index".to_vec()),
        (
            "variables/variables.data-00000-of-00001",
            (0..5000u32).map(|i| (i * 7 % 251) as u8).collect(),
        ),
        ("assets/vocab.txt", b"cat\nis\non\nthe\nmat\n".to_vec()),
    ]
}

/// A tar of `files` rooted at `./` (as TF Hub archives are), with folder entries.
pub fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    b.append_data(&mut dir.clone(), "./", std::io::empty())
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for (path, data) in files {
        if let Some((d, _)) = path.rsplit_once('/') {
            if seen.insert(d.to_string()) {
                b.append_data(&mut dir.clone(), format!("./{d}/"), std::io::empty())
                    .unwrap();
            }
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, format!("./{path}"), &data[..])
            .unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Serves every file under `dir` as one `.tar.gz` at `route` on a loopback server; returns the
/// server (keep it alive) and the URL, a handle as a user would give it.
pub fn serve_folder(dir: &Path, route: &str) -> (Server, String) {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.sort();
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let tgz = gzip(&tar_of(&files));
    let route = route.to_string();
    let r = route.clone();
    let server = Server::start(move |_| {
        vec![(
            r.clone(),
            Reply::Ok {
                body: tgz.clone(),
                content_type: "application/gzip",
            },
        )]
    });
    let url = format!("{}{route}", server.base);
    (server, url)
}

pub fn fake_model_tgz() -> Vec<u8> {
    gzip(&tar_of(&fake_saved_model()))
}

/// A raw tar with one member whose name and type are written into the header directly
/// (the tar crate's builder refuses `..` and absolute names).
pub fn raw_tar_member(
    name: &[u8],
    ty: tar::EntryType,
    data: &[u8],
    link: Option<&[u8]>,
) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(l);
        }
    }
    h.set_entry_type(ty);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

/// Asserts `dir` holds exactly the fake SavedModel files.
pub fn assert_fake_model(dir: &Path) {
    for (rel, data) in fake_saved_model() {
        let got = std::fs::read(dir.join(rel))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(rel).display()));
        assert_eq!(got, data, "{rel}");
    }
}

/// Names in `dir` (sorted), for checking that no temporary or partial folder was left.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    };
    v.sort();
    v
}

static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` with exactly `set` among `vars` set (the others removed), one caller at a time
/// (the environment is process-global), restoring the previous values afterwards.
pub fn with_env<T>(vars: &[&str], set: &[(&str, &str)], f: impl FnOnce() -> T) -> T {
    let _g = ENV_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let saved: Vec<_> = vars.iter().map(|k| (*k, std::env::var_os(k))).collect();
    for k in vars {
        std::env::remove_var(k);
    }
    for (k, v) in set {
        std::env::set_var(k, v);
    }
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    for (k, v) in saved {
        match v {
            Some(v) => std::env::set_var(k, v),
            None => std::env::remove_var(k),
        }
    }
    out.unwrap_or_else(|p| std::panic::resume_unwind(p))
}
