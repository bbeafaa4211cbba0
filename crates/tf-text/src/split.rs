//! TensorFlow's string splits, as their CPU kernels compute them.

/// `StringSplitV2` (`tf.strings.split(s, sep, maxsplit)`), Python's `str.split` rules:
/// - `sep` non-empty: every occurrence separates, so consecutive separators delimit empty
///   tokens; `""` gives `[""]`;
/// - `sep` empty: runs of ASCII whitespace (`' '`, `\t`, `\n`, `\v`, `\f`, `\r`) separate and
///   leading/trailing whitespace gives no tokens; `""` gives `[]`;
/// - `maxsplit` > 0 stops after that many splits, the rest of the string being the last
///   token; `maxsplit == 0` gives the whole string.
pub fn split_v2<'a>(s: &'a [u8], sep: &[u8], maxsplit: i64) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    if maxsplit == 0 {
        out.push(s);
        return out;
    }
    let mut text = s;
    let mut splits = 0i64;
    if sep.is_empty() {
        let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
        let skip = |t: &'a [u8]| {
            let n = t.iter().take_while(|b| is_space(b)).count();
            &t[n..]
        };
        text = skip(text);
        while !text.is_empty() {
            let n = text.iter().take_while(|b| !is_space(b)).count();
            out.push(&text[..n]);
            text = skip(&text[n..]);
            splits += 1;
            if maxsplit > 0 && splits == maxsplit {
                out.push(text);
                return out;
            }
        }
        return out;
    }
    while let Some(p) = find(text, sep) {
        out.push(&text[..p]);
        text = &text[p + sep.len()..];
        splits += 1;
        if maxsplit > 0 && splits == maxsplit {
            break;
        }
    }
    out.push(text);
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() == 1 {
        return hay.iter().position(|&b| b == needle[0]);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The TF1 `StringSplit` (`tf.compat.v1.string_split(s, delimiter, skip_empty)`): every byte
/// of `delimiter` separates; with `skip_empty` empty tokens are dropped (`""` gives `[]`),
/// without it `""` gives `[""]`. An empty `delimiter` splits into single bytes.
pub fn split_v1<'a>(s: &'a [u8], delimiter: &[u8], skip_empty: bool) -> Vec<&'a [u8]> {
    if delimiter.is_empty() {
        return (0..s.len()).map(|i| &s[i..i + 1]).collect();
    }
    let mut out: Vec<&[u8]> = s.split(|b| delimiter.contains(b)).collect();
    if skip_empty {
        out.retain(|t| !t.is_empty());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TensorFlow 2.21's results (`tf.strings.split`, `tf.compat.v1.string_split`).
    #[test]
    fn matches_tensorflow() {
        let inputs: [&[u8]; 6] = [b"", b" ", b"  a  b ", b"a\tb\nc", b"a,,b", b"abc"];
        let run = |sep: &[u8], m: i64| -> Vec<Vec<&[u8]>> {
            inputs.iter().map(|s| split_v2(s, sep, m)).collect()
        };
        let e: &[u8] = b"";
        assert_eq!(
            run(b"", -1),
            vec![
                vec![],
                vec![],
                vec![&b"a"[..], b"b"],
                vec![&b"a"[..], b"b", b"c"],
                vec![&b"a,,b"[..]],
                vec![&b"abc"[..]]
            ]
        );
        assert_eq!(
            run(b" ", -1),
            vec![
                vec![e],
                vec![e, e],
                vec![e, e, b"a", e, b"b", e],
                vec![&b"a\tb\nc"[..]],
                vec![&b"a,,b"[..]],
                vec![&b"abc"[..]]
            ]
        );
        assert_eq!(
            run(b"", 1),
            vec![
                vec![],
                vec![],
                vec![&b"a"[..], b"b "],
                vec![&b"a"[..], b"b\nc"],
                vec![&b"a,,b"[..], e],
                vec![&b"abc"[..], e]
            ]
        );
        assert_eq!(run(b" ", 1)[2], vec![e, b" a  b "]);
        assert_eq!(run(b",,", -1)[4], vec![&b"a"[..], b"b"]);
        assert_eq!(run(b"", 0)[1], vec![&b" "[..]]);

        let v1: Vec<Vec<&[u8]>> = inputs.iter().map(|s| split_v1(s, b" ", true)).collect();
        assert_eq!(v1[0], Vec::<&[u8]>::new());
        assert_eq!(v1[2], vec![&b"a"[..], b"b"]);
        let keep: Vec<Vec<&[u8]>> = inputs.iter().map(|s| split_v1(s, b" ", false)).collect();
        assert_eq!(keep[0], vec![e]);
        assert_eq!(keep[2], vec![e, e, b"a", e, b"b", e]);
        assert_eq!(split_v1(b"a\tb", b"", true), vec![&b"a"[..], b"\t", b"b"]);
        assert_eq!(split_v1(b"a,b c", b", ", true), vec![&b"a"[..], b"b", b"c"]);
    }
}
