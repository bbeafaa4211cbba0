//! Handle parsing: what a handle names and where it is fetched from.

use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use crate::Error;

/// The cache folder name of a handle: the SHA-1 hex of the handle exactly as given (UTF-8), as
/// Python `tensorflow_hub` computes it (`compressed_module_resolver._module_dir`).
///
/// ```
/// assert_eq!(
///     hub::module_dir_name("https://tfhub.dev/google/imagenet/inception_v3/classification/5"),
///     "b0d2d75d4975ad57c942066aa2d64c6c2955a775"
/// );
/// ```
pub fn module_dir_name(handle: &str) -> String {
    hex::encode(Sha1::digest(handle.as_bytes()))
}

/// What a handle names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A local folder, returned as it is.
    LocalDir(PathBuf),
    /// A local non-archive file (e.g. `.tflite`), returned as it is.
    LocalFile(PathBuf),
    /// A local `.tar`/`.tar.gz`/`.tgz`, extracted into the cache.
    LocalArchive(PathBuf),
    /// A URL whose body is a tar archive of the model folder.
    RemoteArchive { url: String },
    /// A URL whose body is one model file.
    RemoteFile { url: String, file_name: String },
}

const TFHUB: &str = "https://tfhub.dev/";
const GOOGLE_CN: &str = "https://hub.tensorflow.google.cn/";
const GCS_CN_TEMPLATE: &str = "https://gcs.tensorflow.google.cn/tfhub-modules/";

fn is_archive_name(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    l.ends_with(".tar") || l.ends_with(".tar.gz") || l.ends_with(".tgz")
}

/// Appends `key=value` to the query of `url` (keeping an existing query and fragment).
pub(crate) fn append_query(url: &str, key: &str, value: &str) -> String {
    let (base, fragment) = match url.find('#') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let sep = if base.contains('?') {
        if base.ends_with('?') || base.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    format!("{base}{sep}{key}={value}{fragment}")
}

/// The part of a URL before `?` and `#`.
fn url_path(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

/// The last non-empty path segment of a URL (`download` if there is none).
pub(crate) fn file_name_of_url(url: &str) -> String {
    let path = url_path(url);
    let after_scheme = path.split_once("://").map(|(_, r)| r).unwrap_or(path);
    let last = after_scheme
        .split('/')
        .skip(1)
        .filter(|s| !s.is_empty())
        .last()
        .map(percent_decode)
        .unwrap_or_default();
    let clean: String = last
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c == '\0' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if clean.is_empty() || clean == "." || clean == ".." {
        "download".to_string()
    } else {
        clean
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A `file://` URL or a plain path as a path.
pub(crate) fn local_path(handle: &str) -> PathBuf {
    if let Some(rest) = handle.strip_prefix("file://") {
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        PathBuf::from(percent_decode(rest))
    } else {
        PathBuf::from(handle)
    }
}

/// Classifies `handle`. `tfhub_base` replaces `https://tfhub.dev` when fetching.
pub(crate) fn parse(handle: &str, tfhub_base: Option<&str>) -> Result<Source, Error> {
    let handle_trim = handle.trim();
    if handle_trim.is_empty() {
        return Err(Error::NotFound {
            handle: handle.to_string(),
        });
    }
    let lower = handle_trim.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(parse_url(handle_trim, tfhub_base));
    }
    if let Some(rest) = handle_trim.strip_prefix("gs://") {
        let url = format!("https://storage.googleapis.com/{rest}");
        if is_archive_name(url_path(&url)) {
            return Ok(Source::RemoteArchive { url });
        }
        return Err(Error::Unsupported {
            handle: handle.to_string(),
            reason: "only gs:// URLs of .tar/.tar.gz/.tgz archives are supported".into(),
        });
    }
    if !lower.starts_with("file://") && lower.contains("://") {
        return Err(Error::Unsupported {
            handle: handle.to_string(),
            reason: "unknown URL scheme (use https://, http://, file:// or gs://)".into(),
        });
    }
    let p = local_path(handle_trim);
    if p.is_dir() {
        Ok(Source::LocalDir(p))
    } else if p.is_file() {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if is_archive_name(&name) {
            Ok(Source::LocalArchive(p))
        } else {
            Ok(Source::LocalFile(p))
        }
    } else {
        Err(Error::NotFound {
            handle: handle.to_string(),
        })
    }
}

fn parse_url(handle: &str, tfhub_base: Option<&str>) -> Source {
    // Where to fetch from.
    let mut url = handle.to_string();
    if let Some(rest) = handle.strip_prefix(GOOGLE_CN) {
        let rest = url_path(rest).trim_end_matches('/');
        return Source::RemoteArchive {
            url: format!("{GCS_CN_TEMPLATE}{rest}.tar.gz"),
        };
    }
    if let (Some(base), Some(rest)) = (tfhub_base, handle.strip_prefix(TFHUB)) {
        url = format!("{}/{rest}", base.trim_end_matches('/'));
    }
    let path = url_path(handle).to_ascii_lowercase();
    if path.ends_with(".tflite") {
        let file_name = file_name_of_url(handle);
        return Source::RemoteFile { url, file_name };
    }
    if path.contains("/lite-model/") {
        return Source::RemoteFile {
            url: append_query(&url, "lite-format", "tflite"),
            file_name: "model.tflite".to_string(),
        };
    }
    if is_archive_name(&path) {
        return Source::RemoteArchive { url };
    }
    Source::RemoteArchive {
        url: append_query(&url, "tf-hub-format", "compressed"),
    }
}

/// Cache key of a local archive: SHA-1 of its canonical path, size and modification time, so an
/// archive replaced in place is extracted again.
pub(crate) fn local_archive_key(p: &Path) -> Result<String, Error> {
    let io = |action, source| Error::Io {
        path: p.to_path_buf(),
        action,
        source,
    };
    let canon = p.canonicalize().map_err(|e| io("cannot resolve path", e))?;
    let meta = std::fs::metadata(&canon).map_err(|e| io("cannot read metadata", e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(module_dir_name(&format!(
        "local-archive:{}\nsize={}\nmtime={}",
        canon.display(),
        meta.len(),
        mtime
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_query_appended_like_python() {
        assert_eq!(
            parse("https://tfhub.dev/google/spice/2", None).unwrap(),
            Source::RemoteArchive {
                url: "https://tfhub.dev/google/spice/2?tf-hub-format=compressed".into()
            }
        );
        assert_eq!(
            append_query(
                "https://www.kaggle.com/models/x/y?a=b",
                "tf-hub-format",
                "compressed"
            ),
            "https://www.kaggle.com/models/x/y?a=b&tf-hub-format=compressed"
        );
    }

    #[test]
    fn archive_and_tflite_urls() {
        assert_eq!(
            parse("https://example.com/m/model.TAR.GZ?sig=1", None).unwrap(),
            Source::RemoteArchive {
                url: "https://example.com/m/model.TAR.GZ?sig=1".into()
            }
        );
        assert_eq!(
            parse("https://example.com/a/b/style%20predict.tflite", None).unwrap(),
            Source::RemoteFile {
                url: "https://example.com/a/b/style%20predict.tflite".into(),
                file_name: "style predict.tflite".into()
            }
        );
        assert_eq!(
            parse("https://tfhub.dev/google/lite-model/magenta/x/int8/prediction/1", Some("http://127.0.0.1:9/")).unwrap(),
            Source::RemoteFile {
                url: "http://127.0.0.1:9/google/lite-model/magenta/x/int8/prediction/1?lite-format=tflite".into(),
                file_name: "model.tflite".into()
            }
        );
    }

    #[test]
    fn google_cn_and_gs() {
        assert_eq!(
            parse("https://hub.tensorflow.google.cn/google/spice/2", None).unwrap(),
            Source::RemoteArchive {
                url: "https://gcs.tensorflow.google.cn/tfhub-modules/google/spice/2.tar.gz".into()
            }
        );
        assert_eq!(
            parse("gs://bucket/m/1.tar.gz", None).unwrap(),
            Source::RemoteArchive {
                url: "https://storage.googleapis.com/bucket/m/1.tar.gz".into()
            }
        );
        assert!(matches!(
            parse("gs://bucket/m/1", None),
            Err(Error::Unsupported { .. })
        ));
        assert!(matches!(
            parse("ftp://x/y", None),
            Err(Error::Unsupported { .. })
        ));
    }

    #[test]
    fn missing_local_path_is_not_found() {
        let e = parse("/definitely/not/here/model", None).unwrap_err();
        assert!(
            e.to_string()
                .contains("/definitely/not/here/model: no such file"),
            "{e}"
        );
    }

    #[test]
    fn file_names_and_percent_decoding() {
        assert_eq!(
            file_name_of_url("https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"),
            "aclImdb_v1.tar.gz"
        );
        assert_eq!(file_name_of_url("https://h/"), "download");
        assert_eq!(file_name_of_url("https://h/a/%2E%2E"), "download");
        assert_eq!(local_path("file:///tmp/a%20b"), PathBuf::from("/tmp/a b"));
        assert_eq!(
            local_path("file://localhost/tmp/x"),
            PathBuf::from("/tmp/x")
        );
    }
}
