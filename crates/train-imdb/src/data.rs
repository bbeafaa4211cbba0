//! The IMDB Large Movie Review Dataset (`aclImdb`), read from the official `.tar.gz`
//! (streamed, never extracted) or from an extracted folder, plus the deterministic
//! shuffle/split and the from-scratch vocabulary, shared bit for bit with
//! `tools/keras_imdb.py`.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// One labelled review.
#[derive(Clone, Debug)]
pub struct Review {
    /// Path inside the dataset, e.g. `train/pos/0_9.txt` (used for the stable order).
    pub path: String,
    pub text: Vec<u8>,
    /// 1 = positive, 0 = negative.
    pub label: u8,
}

/// The 25,000 train and 25,000 test reviews, each sorted by path.
#[derive(Debug, Default)]
pub struct Imdb {
    pub train: Vec<Review>,
    pub test: Vec<Review>,
}

/// `(split, label)` from a path such as `aclImdb/train/pos/0_9.txt`; `None` for other files.
fn classify(path: &str) -> Option<(&'static str, u8, String)> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.len() < 3 || !parts[parts.len() - 1].ends_with(".txt") {
        return None;
    }
    let (split, label, file) = (
        parts[parts.len() - 3],
        parts[parts.len() - 2],
        parts[parts.len() - 1],
    );
    let split = match split {
        "train" => "train",
        "test" => "test",
        _ => return None,
    };
    let label = match label {
        "pos" => 1,
        "neg" => 0,
        _ => return None,
    };
    Some((
        split,
        label,
        format!("{split}/{}/{file}", if label == 1 { "pos" } else { "neg" }),
    ))
}

/// Largest review read (the longest IMDB review has about 14 KB).
pub const MAX_REVIEW_BYTES: u64 = 1 << 20;
/// Largest total of review text kept in memory (the 50,000 labelled reviews are about 65 MB).
pub const MAX_TEXT_BYTES: u64 = 1 << 30;
/// Largest number of reviews (the dataset has 50,000 labelled ones).
pub const MAX_REVIEWS: usize = 1_000_000;
/// Archive limits: the files' decompressed bytes (the official archive holds about 0.3 GB,
/// unlabelled reviews and bag-of-words files included) and its members (about 100,000).
const ARCHIVE_MAX_BYTES: u64 = 4 << 30;
const ARCHIVE_MAX_MEMBERS: usize = 1_000_000;

/// Reads at most [`MAX_REVIEW_BYTES`] from `r` (the size a header declares is not trusted:
/// the buffer grows with the bytes actually read).
fn read_review(r: &mut dyn Read, what: &dyn Fn() -> String) -> Result<Vec<u8>> {
    let mut text = Vec::new();
    r.take(MAX_REVIEW_BYTES + 1)
        .read_to_end(&mut text)
        .with_context(|| format!("{}: cannot read", what()))?;
    if text.len() as u64 > MAX_REVIEW_BYTES {
        bail!(
            "{}: a review of more than {MAX_REVIEW_BYTES} bytes; not an IMDB review",
            what()
        );
    }
    Ok(text)
}

impl Imdb {
    /// Reads a `.tar.gz`/`.tgz`/`.tar` archive or an `aclImdb` folder (or its parent).
    ///
    /// The archive is streamed, never extracted, through [`hub::read_archive`] (unsafe members
    /// refused, metadata members and names capped); reviews of more than
    /// [`MAX_REVIEW_BYTES`], more than [`MAX_REVIEWS`] reviews or [`MAX_TEXT_BYTES`] of text
    /// are errors. In a folder, reviews must be regular files.
    pub fn load(path: &Path) -> Result<Self> {
        let mut data = Imdb::default();
        let mut text_bytes = 0u64;
        let mut add = |data: &mut Imdb, split: &str, review: Review| -> Result<()> {
            text_bytes += review.text.len() as u64;
            if text_bytes > MAX_TEXT_BYTES || data.train.len() + data.test.len() >= MAX_REVIEWS {
                bail!(
                    "{}: more than {MAX_REVIEWS} reviews or {MAX_TEXT_BYTES} bytes of text; not the IMDB dataset",
                    path.display()
                );
            }
            data.push(split, review);
            Ok(())
        };
        if path.is_dir() {
            let root = if path.join("aclImdb").is_dir() {
                path.join("aclImdb")
            } else {
                path.to_path_buf()
            };
            for split in ["train", "test"] {
                for label in ["pos", "neg"] {
                    let dir = root.join(split).join(label);
                    let entries = std::fs::read_dir(&dir).with_context(|| {
                        format!("{}: cannot list (not an aclImdb folder?)", dir.display())
                    })?;
                    for e in entries {
                        let e = e.with_context(|| format!("{}: cannot list", dir.display()))?;
                        let name = e.file_name().to_string_lossy().into_owned();
                        let rel = format!("{split}/{label}/{name}");
                        if let Some((s, l, key)) = classify(&rel) {
                            let p = e.path();
                            let what = || p.display().to_string();
                            // Not a FIFO or device (which could block or never end).
                            let meta = std::fs::metadata(&p)
                                .with_context(|| format!("{}: cannot read", what()))?;
                            if !meta.is_file() {
                                bail!("{}: not a regular file", what());
                            }
                            let mut f = std::fs::File::open(&p)
                                .with_context(|| format!("{}: cannot open", what()))?;
                            let text = read_review(&mut f, &what)?;
                            add(
                                &mut data,
                                s,
                                Review {
                                    path: key,
                                    text,
                                    label: l,
                                },
                            )?;
                        }
                    }
                }
            }
        } else {
            let limits = hub::ArchiveLimits {
                max_bytes: ARCHIVE_MAX_BYTES,
                max_members: ARCHIVE_MAX_MEMBERS,
                ..hub::ArchiveLimits::new(ARCHIVE_MAX_BYTES)
            };
            // The visitor's own errors are kept aside (hub's error type has no room for them).
            let mut failure: Option<anyhow::Error> = None;
            let walked = hub::read_archive(path, limits, |m| {
                if m.is_dir {
                    return Ok(());
                }
                let Some((s, l, key)) = classify(m.name) else {
                    return Ok(());
                };
                let name = m.name.to_string();
                let what = || format!("{}: member {name}", path.display());
                let result = read_review(m.data, &what).and_then(|text| {
                    add(
                        &mut data,
                        s,
                        Review {
                            path: key,
                            text,
                            label: l,
                        },
                    )
                });
                result.map_err(|e| {
                    let message = format!("{e:#}");
                    failure = Some(e);
                    hub::Error::Other(message)
                })
            });
            if let Some(e) = failure {
                return Err(e);
            }
            walked.with_context(|| format!("{}: cannot read the IMDB archive", path.display()))?;
        }
        if data.train.is_empty() || data.test.is_empty() {
            bail!(
                "{}: found {} train and {} test reviews; expected the aclImdb layout {{train,test}}/{{pos,neg}}/*.txt",
                path.display(),
                data.train.len(),
                data.test.len()
            );
        }
        data.train.sort_by(|a, b| a.path.cmp(&b.path));
        data.test.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(data)
    }

    fn push(&mut self, split: &str, r: Review) {
        if split == "train" {
            self.train.push(r)
        } else {
            self.test.push(r)
        }
    }
}

/// splitmix64: the generator shared with `tools/keras_imdb.py` (tested against the
/// reference values in [`models::rng`]).
pub use models::rng::SplitMix64;

/// The from-scratch vocabulary: the `size` most frequent tokens of `texts` after the
/// module's own preprocessing (`\pP` removal, split on `' '`), most frequent first,
/// ties by byte order; `""` and tokens a `tokens.txt` line cannot hold (containing
/// `\n`, ending in `\r`) are left out. Returns the `tokens.txt` bytes.
pub fn build_vocab<'a>(texts: impl Iterator<Item = &'a [u8]>, size: usize) -> Vec<u8> {
    let mut counts: HashMap<Vec<u8>, u64> = HashMap::new();
    for t in texts {
        let norm = models::text_embedding::tokenizer::remove_punctuation(t);
        for tok in norm.split(|&b| b == b' ') {
            if tok.is_empty() || tok.contains(&b'\n') || tok.ends_with(b"\r") {
                continue;
            }
            match counts.get_mut(tok) {
                Some(c) => *c += 1,
                None => {
                    counts.insert(tok.to_vec(), 1);
                }
            }
        }
    }
    let mut v: Vec<(Vec<u8>, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(size);
    let mut out = Vec::new();
    for (tok, _) in v {
        out.extend_from_slice(&tok);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified() {
        assert_eq!(
            classify("aclImdb/train/pos/0_9.txt").map(|c| c.2),
            Some("train/pos/0_9.txt".into())
        );
        assert_eq!(classify("aclImdb/test/neg/1_1.txt").map(|c| c.1), Some(0));
        assert!(classify("aclImdb/train/unsup/0_0.txt").is_none());
        assert!(classify("aclImdb/imdb.vocab").is_none());
    }

    #[test]
    fn vocab_orders_by_count_then_bytes() {
        let texts: Vec<&[u8]> = vec![b"b a, a  c", b"c a"];
        assert_eq!(build_vocab(texts.into_iter(), 2), b"a\nc\n");
    }
}
