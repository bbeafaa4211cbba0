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

impl Imdb {
    /// Reads a `.tar.gz`/`.tgz`/`.tar` archive or an `aclImdb` folder (or its parent).
    pub fn load(path: &Path) -> Result<Self> {
        let mut data = Imdb::default();
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
                            let text = std::fs::read(e.path())
                                .with_context(|| format!("{}: cannot read", e.path().display()))?;
                            data.push(
                                s,
                                Review {
                                    path: key,
                                    text,
                                    label: l,
                                },
                            );
                        }
                    }
                }
            }
        } else {
            let file = std::fs::File::open(path)
                .with_context(|| format!("{}: cannot open", path.display()))?;
            let name = path.to_string_lossy();
            let reader: Box<dyn Read> = if name.ends_with(".tar") {
                Box::new(std::io::BufReader::new(file))
            } else {
                Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
            };
            let mut archive = tar::Archive::new(reader);
            let entries = archive
                .entries()
                .with_context(|| format!("{}: not a tar archive", path.display()))?;
            for entry in entries {
                let mut entry =
                    entry.with_context(|| format!("{}: corrupt archive", path.display()))?;
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let p = entry
                    .path()
                    .with_context(|| format!("{}: bad entry name", path.display()))?
                    .to_string_lossy()
                    .into_owned();
                if let Some((s, l, key)) = classify(&p) {
                    let mut text = Vec::with_capacity(entry.size() as usize);
                    entry
                        .read_to_end(&mut text)
                        .with_context(|| format!("{}: cannot read entry {p}", path.display()))?;
                    data.push(
                        s,
                        Review {
                            path: key,
                            text,
                            label: l,
                        },
                    );
                }
            }
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
