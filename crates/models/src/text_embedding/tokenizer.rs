//! The TF-Hub text-embedding preprocessing, byte for byte:
//! `regex_replace(s, "\pP", "")` → split on `' '` → vocabulary lookup with
//! FarmHash OOV buckets (`V + Fingerprint64(token) mod buckets`), as the TF graph computes them.
//!
//! Input is bytes, as TensorFlow strings are: invalid UTF-8 passes through
//! unchanged (RE2 never matches it as punctuation).

use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};
pub use tf_text::vocab::VocabError;
pub use tf_text::{is_punctuation, remove_punctuation};

/// How a sentence is split on the space byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SplitMode {
    /// TF2 `tf.strings.split(x, " ")` (op `StringSplitV2`): empty tokens are kept,
    /// `"a  b"` → `["a", "", "b"]`, `""` → `[""]`.
    #[default]
    KeepEmpty,
    /// TF1 `tf.compat.v1.string_split(x, " ")` (op `StringSplit`, `skip_empty=True`):
    /// empty tokens are dropped; a sentence without tokens becomes `[""]`
    /// (`sparse_fill_empty_rows` with the id of `""`).
    SkipEmpty,
}

/// Splits on the single byte `' '` (tabs, newlines and NBSP are not separators).
/// The result is never empty: a sentence without tokens gives `[""]`, which is
/// what `fill_empty_rows` makes of it.
pub fn split(s: &[u8], mode: SplitMode) -> Vec<&[u8]> {
    match mode {
        SplitMode::KeepEmpty => tf_text::split::split_v2(s, b" ", -1),
        SplitMode::SkipEmpty => {
            let mut tokens = tf_text::split::split_v1(s, b" ", true);
            if tokens.is_empty() {
                tokens.push(b"");
            }
            tokens
        }
    }
}

/// Vocabulary + OOV buckets + preprocessing options: sentence bytes → row ids.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    vocab: HashMap<Vec<u8>, u32>,
    vocab_size: usize,
    oov_buckets: usize,
    split: SplitMode,
    remove_punctuation: bool,
}

impl Tokenizer {
    /// Parses a `tokens.txt` as TensorFlow's `TextFileInitializer(WHOLE_LINE,
    /// LINE_NUMBER)` does: one token per line, `\n` or `\r\n` ends a line, the
    /// last line may lack the newline, an empty line or a repeated token is an
    /// error. `file` only names the file in errors.
    pub fn from_vocab_bytes(
        file: &str,
        bytes: &[u8],
        oov_buckets: usize,
        split: SplitMode,
        remove_punctuation: bool,
    ) -> Result<Self, VocabError> {
        let table =
            tf_text::vocab::read_table(file, bytes, &tf_text::vocab::TextFileSpec::vocabulary())?;
        let vocab: HashMap<Vec<u8>, u32> = table
            .into_iter()
            .filter_map(|(k, v)| match (k, v) {
                (tf_text::vocab::Entry::Str(k), tf_text::vocab::Entry::Int(v)) => {
                    Some((k, v as u32))
                }
                _ => None,
            })
            .collect();
        let vocab_size = vocab.len();
        if vocab_size == 0 && oov_buckets == 0 {
            return Err(VocabError::NoIds {
                file: file.into(),
                oov_buckets,
            });
        }
        Ok(Tokenizer {
            vocab,
            vocab_size,
            oov_buckets,
            split,
            remove_punctuation,
        })
    }

    /// Number of vocabulary lines (`V`).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Number of OOV hash buckets.
    pub fn oov_buckets(&self) -> usize {
        self.oov_buckets
    }

    /// Rows of the embedding table this tokenizer can address (`V + buckets`).
    pub fn num_ids(&self) -> usize {
        self.vocab_size + self.oov_buckets
    }

    pub fn split_mode(&self) -> SplitMode {
        self.split
    }

    /// The id of one token: its line number, or `V + Fingerprint64(token) mod buckets`.
    /// With no OOV buckets an unknown token maps to -1 in TensorFlow; here to `None`.
    pub fn lookup(&self, token: &[u8]) -> Option<u32> {
        if let Some(&id) = self.vocab.get(token) {
            return Some(id);
        }
        if self.oov_buckets == 0 {
            return None;
        }
        Some((self.vocab_size as u64 + tf_text::hash_bucket(token, self.oov_buckets as u64)) as u32)
    }

    /// The row ids of one sentence, in token order (repeats kept). Never empty
    /// unless the vocabulary has no OOV buckets and no token is known.
    pub fn ids(&self, sentence: &[u8]) -> Vec<u32> {
        let mut out = Vec::new();
        self.ids_into(sentence, &mut out);
        out
    }

    /// Appends the row ids of one sentence to `out`; returns how many were appended.
    pub fn ids_into(&self, sentence: &[u8], out: &mut Vec<u32>) -> usize {
        let before = out.len();
        let normalized;
        let text: &[u8] = if self.remove_punctuation {
            normalized = remove_punctuation(sentence);
            &normalized
        } else {
            sentence
        };
        // `split` without collecting the tokens (the same rules).
        let mut any = false;
        for token in text.split(|&b| b == b' ') {
            if self.split == SplitMode::SkipEmpty && token.is_empty() {
                continue;
            }
            any = true;
            if let Some(id) = self.lookup(token) {
                out.push(id);
            }
        }
        if !any {
            if let Some(id) = self.lookup(b"") {
                out.push(id);
            }
        }
        out.len() - before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(split: SplitMode, buckets: usize) -> Tokenizer {
        Tokenizer::from_vocab_bytes(
            "test",
            b"cat\nis\non\nthe\nmat\nHello\nworld\ndog\n",
            buckets,
            split,
            true,
        )
        .unwrap()
    }

    #[test]
    fn split_keeps_or_drops_empty_tokens() {
        let keep = SplitMode::KeepEmpty;
        assert_eq!(split(b"a  b", keep), vec![&b"a"[..], b"", b"b"]);
        assert_eq!(split(b" a", keep), vec![&b""[..], b"a"]);
        assert_eq!(split(b"a ", keep), vec![&b"a"[..], b""]);
        assert_eq!(split(b" ", keep), vec![&b""[..], b""]);
        assert_eq!(split(b"", keep), vec![&b""[..]]);
        assert_eq!(split(b"cat\tis", keep), vec![&b"cat\tis"[..]]);
        let skip = SplitMode::SkipEmpty;
        assert_eq!(split(b"a  b", skip), vec![&b"a"[..], b"b"]);
        assert_eq!(split(b"  ", skip), vec![&b""[..]]);
    }

    /// Spec §3.7 (TensorFlow's ids for the TF2 exporter pipeline, V = 8).
    #[test]
    fn ids_match_tensorflow_worked_example() {
        let t1 = tok(SplitMode::KeepEmpty, 1);
        let t3 = tok(SplitMode::KeepEmpty, 3);
        let cases: &[(&[u8], &[u32], &[u32])] = &[
            (b"cat is on the mat", &[0, 1, 2, 3, 4], &[0, 1, 2, 3, 4]),
            (b"cat  is", &[0, 8, 1], &[0, 10, 1]),
            (b" cat", &[8, 0], &[10, 0]),
            (b"", &[8], &[10]),
            (b"!!!", &[8], &[10]),
            (b"Hello, world.", &[5, 6], &[5, 6]),
            (b"hello", &[8], &[9]),
            (b"cat\tis", &[8], &[9]),
            (b"cat-dog", &[8], &[10]),
            (b"don't", &[8], &[9]),
            (b"a$b", &[8], &[8]),
            ("¿cat?".as_bytes(), &[0], &[0]),
            (b"cat zebra", &[0, 8], &[0, 10]),
        ];
        for (s, one, three) in cases {
            assert_eq!(
                t1.ids(s),
                *one,
                "1 bucket: {:?}",
                String::from_utf8_lossy(s)
            );
            assert_eq!(
                t3.ids(s),
                *three,
                "3 buckets: {:?}",
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn vocab_file_rules() {
        let t =
            Tokenizer::from_vocab_bytes("v", b"cat\r\ndog \nlast", 1, SplitMode::KeepEmpty, true)
                .unwrap();
        assert_eq!(t.vocab_size(), 3);
        assert_eq!(t.lookup(b"cat"), Some(0));
        assert_eq!(t.lookup(b"dog "), Some(1));
        assert_eq!(t.lookup(b"last"), Some(2));
        assert!(matches!(
            Tokenizer::from_vocab_bytes("v", b"a\n\nb\n", 1, SplitMode::KeepEmpty, true),
            Err(VocabError::EmptyLine { line: 2, .. })
        ));
        assert!(matches!(
            Tokenizer::from_vocab_bytes("v", b"a\nb\na\n", 1, SplitMode::KeepEmpty, true),
            Err(VocabError::Duplicate {
                first: 1,
                second: 3,
                ..
            })
        ));
    }
}
