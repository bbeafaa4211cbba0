//! Safe tar extraction: relative paths only, no `..`, only plain files and folders, a size limit.

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

/// Extracts a (decompressed) tar stream into `dest`, refusing unsafe members. Returns the number
/// of bytes written. `archive` names the source in errors; read errors are returned as
/// [`Error::BadArchive`] (callers that know better, e.g. network errors, replace them).
pub(crate) fn extract_tar(
    reader: &mut dyn Read,
    dest: &Path,
    archive: &str,
    max_bytes: u64,
) -> Result<u64, Error> {
    let bad = |message: String| Error::BadArchive {
        archive: archive.to_string(),
        message,
    };
    let mut ar = tar::Archive::new(reader);
    let entries = ar
        .entries()
        .map_err(|e| bad(format!("cannot read tar: {e}")))?;
    let mut total: u64 = 0;
    let mut members = 0usize;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("cannot read tar entry: {e}")))?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8(raw).map_err(|e| {
            bad(format!(
                "member name is not UTF-8: {:?}",
                String::from_utf8_lossy(e.as_bytes())
            ))
        })?;
        let unsafe_member = |reason: &str| Error::UnsafeArchive {
            archive: archive.to_string(),
            member: name.clone(),
            reason: reason.to_string(),
        };
        use tar::EntryType as T;
        let ty = entry.header().entry_type();
        match ty {
            // Pax/GNU metadata the tar crate has not folded into the next entry: nothing to write.
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            T::Regular | T::Continuous | T::Directory => {}
            T::Symlink => return Err(unsafe_member("symbolic links are not allowed")),
            T::Link => return Err(unsafe_member("hard links are not allowed")),
            T::Char | T::Block | T::Fifo => {
                return Err(unsafe_member("device or FIFO members are not allowed"))
            }
            other => return Err(unsafe_member(&format!("unexpected member type {other:?}"))),
        }
        let rel = safe_relative(&name).map_err(|r| unsafe_member(&r))?;
        let Some(rel) = rel else { continue };
        let target = dest.join(&rel);
        let io = |action: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| Error::Io {
                path: p,
                action,
                source,
            }
        };
        if ty == T::Directory {
            fs::create_dir_all(&target).map_err(io("cannot create folder", &target))?;
            continue;
        }
        let size = entry.size();
        if total.saturating_add(size) > max_bytes {
            return Err(Error::TooLarge {
                archive: archive.to_string(),
                member: name,
                limit: max_bytes,
            });
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io("cannot create folder", parent))?;
        }
        let mut f = fs::File::create(&target).map_err(io("cannot create file", &target))?;
        let n = io::copy(&mut (&mut entry).take(size), &mut f)
            .map_err(|e| bad(format!("cannot extract {name:?}: {e}")))?;
        if n != size {
            return Err(bad(format!(
                "member {name:?} is truncated ({n} of {size} bytes)"
            )));
        }
        total += n;
        members += 1;
    }
    if members == 0
        && fs::read_dir(dest)
            .map(|mut d| d.next().is_none())
            .unwrap_or(true)
    {
        return Err(bad("the archive is empty".into()));
    }
    Ok(total)
}

/// Extracts a local `.tar`/`.tar.gz`/`.tgz` into `dest`.
pub(crate) fn extract_local(path: &Path, dest: &Path, max_bytes: u64) -> Result<(), Error> {
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
            extract_tar(&mut gz, dest, &label, max_bytes)?;
            // Read to the end so a corrupt gzip trailer (CRC) is noticed.
            io::copy(&mut gz, &mut io::sink()).map_err(|e| Error::BadArchive {
                archive: label.clone(),
                message: format!("gzip: {e}"),
            })?;
        }
        Kind::Tar => {
            extract_tar(&mut chained, dest, &label, max_bytes)?;
        }
        Kind::Other => {
            return Err(Error::UnexpectedContent {
                url: label,
                final_url: String::new(),
                expected: "tar or tar.gz archive".into(),
                status: 0,
                content_type: String::new(),
                body_start: body_start(&head),
            })
        }
    }
    Ok(())
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
