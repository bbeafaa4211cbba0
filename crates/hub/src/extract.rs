//! Safe tar extraction: relative paths only, no `..`, only plain files and folders, limits on
//! decompressed bytes (metadata included), members, name length and trailing data.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use crate::Error;

/// What the first bytes of a stream say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Gzip,
    Tar,
    Other,
}

/// Gzip magic, or `ustar` at offset 257 (POSIX and GNU tar headers).
pub(crate) fn sniff(head: &[u8]) -> Kind {
    if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        Kind::Gzip
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Kind::Tar
    } else {
        Kind::Other
    }
}

/// Reads up to `n` bytes (fewer only at end of stream).
pub(crate) fn read_head(r: &mut dyn Read, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    r.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// A printable start of a body for error messages.
pub(crate) fn body_start(head: &[u8]) -> String {
    let s = String::from_utf8_lossy(&head[..head.len().min(120)]);
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The member name as a safe relative path; `Ok(None)` for the archive root (`.`, `./`).
fn safe_relative(name: &str) -> Result<Option<PathBuf>, String> {
    if name.starts_with('/') || name.starts_with('\\') {
        return Err("absolute path".into());
    }
    let mut out = PathBuf::new();
    for comp in Path::new(name).components() {
        match comp {
            Component::Normal(c) => {
                let s = c.to_string_lossy();
                if s.contains('\\') || (cfg!(windows) && s.contains(':')) {
                    return Err("path with a drive or backslash".into());
                }
                out.push(c)
            }
            Component::CurDir => {}
            Component::ParentDir => return Err("path contains `..`".into()),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path".into()),
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// Limits of one extraction (or of one [`crate::read_archive`]).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of the extracted files. The whole decompressed tar stream (headers, padding,
    /// metadata members such as GNU long names and PAX headers) may be at most 64 MiB more.
    pub max_bytes: u64,
    /// Members (files and folders).
    pub max_members: usize,
    /// Bytes of a member name.
    pub max_name: usize,
}

impl Limits {
    /// `max_bytes` of files, at most 100,000 members and names of at most 4096 bytes.
    pub fn new(max_bytes: u64) -> Limits {
        Limits {
            max_bytes,
            max_members: 100_000,
            max_name: 4096,
        }
    }
}

/// Decompressed bytes of a tar stream beyond its files' contents: headers, padding, metadata.
pub(crate) const STREAM_ALLOWANCE: u64 = 64 << 20;

/// Largest PAX extended header or GNU long name/link member read.
const MAX_META: u64 = 64 << 10;
/// Decompressed bytes accepted after the end-of-archive blocks (tar pads to its record size,
/// 10 KiB by default; some writers use larger records).
pub(crate) const MAX_TRAILING: u64 = 1 << 20;

/// Counts every byte read from the decompressed stream against a limit.
struct Capped<'a> {
    inner: &'a mut dyn Read,
    read: u64,
    limit: u64,
}

impl Read for Capped<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = self.limit.saturating_sub(self.read).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(CAP_HIT));
        }
        Ok(n)
    }
}

const CAP_HIT: &str = "decompressed size limit reached";

/// Reads exactly `buf.len()` bytes; `Ok(false)` at a clean end of stream before the first byte.
fn read_block(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated tar block",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A numeric header field: octal (NUL/space padded) or GNU base-256.
fn header_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // Base-256: the remaining bits, big-endian; negative numbers are refused.
        if field[0] & 0x40 != 0 {
            return None;
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != 0 && b != b' ')
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    let mut v: u64 = 0;
    for b in s {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// The `path` and `size` records of a PAX extended header.
fn pax_records(data: &[u8]) -> Result<(Option<Vec<u8>>, Option<u64>), String> {
    let (mut path, mut size) = (None, None);
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let sp = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or("PAX record without a length")?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("PAX record with a bad length")?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err("PAX record length out of range".into());
        }
        let rec = &rest[sp + 1..len - 1];
        let eq = rec
            .iter()
            .position(|&b| b == b'=')
            .ok_or("PAX record without `=`")?;
        let (k, v) = (&rec[..eq], &rec[eq + 1..]);
        match k {
            b"path" => path = Some(v.to_vec()),
            b"size" => {
                size = Some(
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or("PAX size is not a number")?,
                )
            }
            _ => {}
        }
        rest = &rest[len..];
    }
    Ok((path, size))
}

/// One member of a tar archive, as handed to the visitor of [`walk_tar`] (and of
/// [`crate::read_archive`]).
pub struct TarMember<'a> {
    /// The member's name as stored in the archive (GNU long name and PAX `path` applied).
    pub name: &'a str,
    /// The name as a safe relative path (no `..`, not absolute); `None` for the archive root.
    pub path: Option<&'a Path>,
    /// A folder (its data, if any, is skipped).
    pub is_dir: bool,
    /// The size the header declares. The data is checked against the limits before the
    /// visitor is called, but it may still be shorter (a truncated archive): never allocate
    /// from this number; read [`TarMember::data`] instead.
    pub size: u64,
    /// The member's data: at most `size` bytes. What the visitor leaves unread is skipped.
    pub data: &'a mut dyn Read,
}

/// Extracts a (decompressed) tar stream into `dest`, refusing unsafe members. Returns the number
/// of bytes written. `archive` names the source in errors; read errors are returned as
/// [`Error::BadArchive`] (callers that know better, e.g. network errors, replace them).
pub(crate) fn extract_tar(
    reader: &mut dyn Read,
    dest: &Path,
    archive: &str,
    limits: Limits,
) -> Result<u64, Error> {
    let mut total = 0u64;
    let members = walk_tar(
        reader,
        archive,
        limits,
        &mut extractor(dest, archive, &mut total),
    )?;
    check_not_empty(members, dest, archive)?;
    Ok(total)
}

/// The visitor that writes each member under `dest` (adding the bytes written to `total`).
fn extractor<'a>(
    dest: &'a Path,
    archive: &'a str,
    total: &'a mut u64,
) -> impl FnMut(TarMember<'_>) -> Result<(), Error> + 'a {
    move |m: TarMember<'_>| {
        let io = |action: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| Error::Io {
                path: p,
                action,
                source,
            }
        };
        let Some(rel) = m.path else { return Ok(()) };
        let t = dest.join(rel);
        if m.is_dir {
            fs::create_dir_all(&t).map_err(io("cannot create folder", &t))?;
            return Ok(());
        }
        if let Some(parent) = t.parent() {
            fs::create_dir_all(parent).map_err(io("cannot create folder", parent))?;
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&t)
            .map_err(io("cannot create file (a duplicate member?)", &t))?;
        let name = m.name;
        let n = io::copy(m.data, &mut f).map_err(|e| Error::BadArchive {
            archive: archive.to_string(),
            message: format!("cannot extract {name:?}: {e}"),
        })?;
        if n != m.size {
            return Err(Error::BadArchive {
                archive: archive.to_string(),
                message: format!("member {name:?} is truncated ({n} of {} bytes)", m.size),
            });
        }
        *total += n;
        Ok(())
    }
}

/// An archive without members that left `dest` empty is an error.
fn check_not_empty(members: usize, dest: &Path, archive: &str) -> Result<(), Error> {
    if members == 0
        && fs::read_dir(dest)
            .map(|mut d| d.next().is_none())
            .unwrap_or(true)
    {
        return Err(Error::BadArchive {
            archive: archive.to_string(),
            message: "the archive is empty".into(),
        });
    }
    Ok(())
}

/// Reads a (decompressed) tar stream member by member, refusing unsafe members, and hands each
/// file and folder to `visit`. Returns the number of members.
///
/// The tar stream is parsed here (not by the `tar` crate, which reads GNU long names and PAX
/// headers whole into memory, whatever their size): metadata members are capped at 64 KiB,
/// names at `limits.max_name` bytes, members at `limits.max_members`, and every byte read from
/// the stream at `limits.max_bytes`.
pub(crate) fn walk_tar(
    reader: &mut dyn Read,
    archive: &str,
    limits: Limits,
    visit: &mut dyn FnMut(TarMember<'_>) -> Result<(), Error>,
) -> Result<usize, Error> {
    let bad = |message: String| Error::BadArchive {
        archive: archive.to_string(),
        message,
    };
    let too_large = |member: &str| Error::TooLarge {
        archive: archive.to_string(),
        member: member.to_string(),
        limit: limits.max_bytes,
    };
    let mut r = Capped {
        inner: reader,
        read: 0,
        limit: limits.max_bytes.saturating_add(STREAM_ALLOWANCE),
    };
    let read_err = |e: io::Error, what: &str, member: &str| {
        if e.to_string() == CAP_HIT {
            too_large(member)
        } else {
            bad(format!("{what}: {e}"))
        }
    };
    let mut total: u64 = 0;
    let mut members = 0usize;
    let mut long_name: Option<Vec<u8>> = None;
    let mut pax_path: Option<Vec<u8>> = None;
    let mut pax_size: Option<u64> = None;
    let mut header = [0u8; 512];
    let mut last_name = String::new();
    loop {
        let more = read_block(&mut r, &mut header)
            .map_err(|e| read_err(e, "cannot read tar header", &last_name))?;
        if !more || header.iter().all(|&b| b == 0) {
            // End of archive (two zero blocks, or a stream that simply ends).
            break;
        }
        let stored = header_number(&header[148..156])
            .ok_or_else(|| bad("bad header checksum field".into()))?;
        let sum: u64 = header
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        if stored != sum {
            return Err(bad(format!(
                "tar header checksum mismatch after {:?} (not a tar archive, or corrupt)",
                last_name
            )));
        }
        let size = header_number(&header[124..136]).ok_or_else(|| bad("bad size field".into()))?;
        let ty = header[156];
        let padded = |n: u64| n.checked_add(511).map(|x| x & !511);
        // Metadata members: read (capped), then applied to the next member.
        if matches!(ty, b'L' | b'K' | b'x' | b'g') {
            if size > MAX_META {
                return Err(Error::UnsafeArchive {
                    archive: archive.to_string(),
                    member: last_name.clone(),
                    reason: format!(
                        "a {} metadata member of {size} bytes (at most {MAX_META})",
                        match ty {
                            b'L' => "GNU long name",
                            b'K' => "GNU long link",
                            _ => "PAX",
                        }
                    ),
                });
            }
            let mut data = vec![0u8; padded(size).unwrap_or(0) as usize];
            if !read_block(&mut r, &mut data)
                .map_err(|e| read_err(e, "cannot read tar metadata", &last_name))?
                && !data.is_empty()
            {
                return Err(bad("the archive ends inside a metadata member".into()));
            }
            data.truncate(size as usize);
            match ty {
                b'L' => long_name = Some(cstr(&data).to_vec()),
                b'x' => {
                    let (p, s) = pax_records(&data).map_err(bad)?;
                    pax_path = p.or(pax_path);
                    pax_size = s.or(pax_size);
                }
                _ => {} // link names and global headers: nothing we use
            }
            continue;
        }
        let name_bytes = if let Some(n) = pax_path.take().or(long_name.take()) {
            n
        } else {
            let name = cstr(&header[0..100]);
            // POSIX ustar ("ustar\0") has a name prefix; old GNU headers ("ustar  ") do not.
            let prefix = if &header[257..263] == b"ustar\0" {
                cstr(&header[345..500])
            } else {
                &[][..]
            };
            if prefix.is_empty() {
                name.to_vec()
            } else {
                let mut v = prefix.to_vec();
                v.push(b'/');
                v.extend_from_slice(name);
                v
            }
        };
        let size = pax_size.take().unwrap_or(size);
        long_name = None;
        if name_bytes.len() > limits.max_name {
            return Err(Error::UnsafeArchive {
                archive: archive.to_string(),
                member: String::from_utf8_lossy(&name_bytes[..name_bytes.len().min(200)])
                    .into_owned()
                    + "...",
                reason: format!(
                    "a member name of {} bytes (at most {})",
                    name_bytes.len(),
                    limits.max_name
                ),
            });
        }
        let name = String::from_utf8(name_bytes).map_err(|e| {
            bad(format!(
                "member name is not UTF-8: {:?}",
                String::from_utf8_lossy(e.as_bytes())
            ))
        })?;
        last_name = name.clone();
        let unsafe_member = |reason: &str| Error::UnsafeArchive {
            archive: archive.to_string(),
            member: name.clone(),
            reason: reason.to_string(),
        };
        match ty {
            b'0' | 0 | b'7' | b'5' => {}
            b'2' => return Err(unsafe_member("symbolic links are not allowed")),
            b'1' => return Err(unsafe_member("hard links are not allowed")),
            b'3' | b'4' | b'6' => {
                return Err(unsafe_member("device or FIFO members are not allowed"))
            }
            other => {
                return Err(unsafe_member(&format!(
                    "unexpected member type {:?}",
                    other as char
                )))
            }
        }
        members += 1;
        if members > limits.max_members {
            return Err(unsafe_member(&format!(
                "more than {} members",
                limits.max_members
            )));
        }
        let rel = safe_relative(&name).map_err(|r| unsafe_member(&r))?;
        let is_dir = ty == b'5';
        let data_len = padded(size).ok_or_else(|| bad("size overflow".into()))?;
        if total.saturating_add(size) > limits.max_bytes
            || r.read.saturating_add(data_len) > r.limit
        {
            return Err(too_large(&name));
        }
        if rel.is_none() && !is_dir && size > 0 {
            return Err(unsafe_member("a file named like the archive root"));
        }
        // Folders' data (if any) is skipped, not handed over.
        let given = if is_dir { 0 } else { size };
        let mut data = Counted {
            inner: (&mut r).take(given),
            n: 0,
        };
        visit(TarMember {
            name: &name,
            path: rel.as_deref(),
            is_dir,
            size,
            data: &mut data,
        })?;
        let consumed = data.n;
        if !is_dir {
            total += size;
        }
        // Skip the rest of the member (what the visitor left, folders' data, padding).
        let skip = data_len - consumed;
        let n = io::copy(&mut (&mut r).take(skip), &mut io::sink())
            .map_err(|e| read_err(e, &format!("cannot read {name:?}"), &name))?;
        if n != skip {
            return Err(bad(format!("member {name:?} is truncated")));
        }
    }
    Ok(members)
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Reads what follows the end of the archive (gzip trailer check, tar padding, the
/// Content-Length check of downloads), at most [`MAX_TRAILING`] decompressed bytes.
pub(crate) fn drain_trailing(reader: &mut dyn Read, archive: &str) -> Result<(), Error> {
    let n = io::copy(&mut reader.take(MAX_TRAILING + 1), &mut io::sink()).map_err(|e| {
        Error::BadArchive {
            archive: archive.to_string(),
            message: format!("after the last member: {e}"),
        }
    })?;
    if n > MAX_TRAILING {
        return Err(Error::BadArchive {
            archive: archive.to_string(),
            message: format!("more than {MAX_TRAILING} bytes of data after the end of the archive"),
        });
    }
    Ok(())
}

/// Extracts a local `.tar`/`.tar.gz`/`.tgz` into `dest`.
pub(crate) fn extract_local(path: &Path, dest: &Path, limits: Limits) -> Result<(), Error> {
    let label = path.display().to_string();
    let mut total = 0u64;
    let members = walk_local(path, limits, &mut extractor(dest, &label, &mut total))?;
    check_not_empty(members, dest, &label)
}

/// Reads a local `.tar`/`.tar.gz`/`.tgz` member by member (see [`walk_tar`]), then checks what
/// follows the archive (gzip trailer, padding). Returns the number of members.
pub(crate) fn walk_local(
    path: &Path,
    limits: Limits,
    visit: &mut dyn FnMut(TarMember<'_>) -> Result<(), Error>,
) -> Result<usize, Error> {
    let label = path.display().to_string();
    let mut f = fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        action: "cannot open archive",
        source,
    })?;
    let head = read_head(&mut f, 512).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        action: "cannot read archive",
        source,
    })?;
    let kind = sniff(&head);
    let mut chained: Box<dyn Read> = Box::new(io::Cursor::new(head.clone()).chain(f));
    match kind {
        Kind::Gzip => {
            let mut gz = flate2::read::MultiGzDecoder::new(chained);
            let n = walk_tar(&mut gz, &label, limits, visit)?;
            // Read to the end so a corrupt gzip trailer (CRC) is noticed.
            drain_trailing(&mut gz, &label)?;
            Ok(n)
        }
        Kind::Tar => {
            let n = walk_tar(&mut chained, &label, limits, visit)?;
            drain_trailing(&mut chained, &label)?;
            Ok(n)
        }
        Kind::Other => Err(Error::UnexpectedContent {
            url: label,
            final_url: String::new(),
            expected: "tar or tar.gz archive".into(),
            status: 0,
            content_type: String::new(),
            body_start: body_start(&head),
        }),
    }
}

const MODEL_FILES: [&str; 3] = ["saved_model.pb", "saved_model.pbtxt", "tfhub_module.pb"];

/// The model folder inside an extracted archive: the folder itself when it holds
/// `saved_model.pb(txt)`/`tfhub_module.pb` (the TF Hub convention: the archive root is the model),
/// else its only sub-folder when that one does (archives made with a top folder).
pub(crate) fn model_root(dir: &Path) -> PathBuf {
    let has_model = |d: &Path| MODEL_FILES.iter().any(|f| d.join(f).is_file());
    if has_model(dir) {
        return dir.to_path_buf();
    }
    let entries: Vec<_> = match fs::read_dir(dir) {
        Ok(rd) => rd.flatten().collect(),
        Err(_) => return dir.to_path_buf(),
    };
    if let [only] = entries.as_slice() {
        let p = only.path();
        if p.is_dir() && has_model(&p) {
            return p;
        }
    }
    dir.to_path_buf()
}

/// Before an extracted archive is published in the cache: it holds a model (the files
/// [`model_root`] looks for, at its root or in its only folder).
pub(crate) fn check_model_folder(dir: &Path, handle: &str) -> Result<(), Error> {
    let root = model_root(dir);
    if MODEL_FILES.iter().any(|f| root.join(f).is_file()) {
        Ok(())
    } else {
        Err(Error::BadArchive {
            archive: handle.to_string(),
            message: format!(
                "the archive holds no model ({} at its root or in its only folder); not caching it",
                MODEL_FILES.join(", ")
            ),
        })
    }
}

/// Before a single-file download is published: the folder holds exactly that non-empty file.
pub(crate) fn check_single_file(dir: &Path, name: &str, handle: &str) -> Result<(), Error> {
    let ok = fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.is_file() && m.len() > 0)
        && fs::read_dir(dir).map(|d| d.count() == 1).unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "{handle}: the download did not produce the non-empty file {name:?}; not caching it"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            safe_relative("./variables/variables.index").unwrap(),
            Some(PathBuf::from("variables/variables.index"))
        );
        assert_eq!(safe_relative("./").unwrap(), None);
        assert!(safe_relative("../evil").unwrap_err().contains(".."));
        assert!(safe_relative("a/../../evil").is_err());
        assert!(safe_relative("/etc/passwd")
            .unwrap_err()
            .contains("absolute"));
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Kind::Gzip);
        assert_eq!(sniff(b"<!DOCTYPE html>"), Kind::Other);
        let mut h = vec![0u8; 512];
        h[257..262].copy_from_slice(b"ustar");
        assert_eq!(sniff(&h), Kind::Tar);
    }
}
