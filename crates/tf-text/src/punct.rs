//! RE2's `\pP` (Unicode general category P: Pc Pd Ps Pe Pi Pf Po) as TensorFlow 2.21's RE2
//! sees it.

use crate::punct_table::PUNCT_RANGES;

/// True if the code point is in category P as TensorFlow's RE2 sees it.
pub fn is_punctuation(c: char) -> bool {
    let c = c as u32;
    PUNCT_RANGES
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// The inclusive code-point ranges of `\pP`, ascending.
pub fn ranges() -> &'static [(u32, u32)] {
    PUNCT_RANGES
}

/// `tf.strings.regex_replace(s, r"\pP", "")`: removes every punctuation character; invalid
/// UTF-8 bytes are kept as they are (RE2 never matches them as punctuation).
pub fn remove_punctuation(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    remove_punctuation_into(s, &mut out);
    out
}

/// [`remove_punctuation`] appending to `out`.
pub fn remove_punctuation_into(s: &[u8], out: &mut Vec<u8>) {
    for chunk in s.utf8_chunks() {
        let valid = chunk.valid();
        if valid.is_ascii() {
            out.extend(valid.bytes().filter(|&b| !is_punctuation(b as char)));
        } else {
            let mut buf = [0u8; 4];
            for c in valid.chars() {
                if !is_punctuation(c) {
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        out.extend_from_slice(chunk.invalid());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punctuation_follows_re2_categories() {
        assert_eq!(remove_punctuation(b"Hello, world."), b"Hello world");
        // ASCII kept by \pP: $ + < = > ^ ` | ~
        assert_eq!(remove_punctuation(b"$+<=>^`|~"), b"$+<=>^`|~");
        assert_eq!(remove_punctuation(b"!\"#%&'()*,-./:;?@[\\]_{}"), b"");
        assert_eq!(remove_punctuation("¿“cat”…—«»·§¡、。’".as_bytes()), b"cat");
        assert_eq!(remove_punctuation("é © €".as_bytes()), "é © €".as_bytes());
        // invalid UTF-8 passes through unchanged
        assert_eq!(remove_punctuation(b"a\xffb,"), b"a\xffb");
        assert_eq!(remove_punctuation(b"\xe2\x80(cat)"), b"\xe2\x80cat");
    }
}
