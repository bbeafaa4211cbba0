//! `StaticRegexReplace` / `RegexReplace` (`tf.strings.regex_replace`).
//!
//! TensorFlow runs RE2. The pattern TF-Hub text models use, `\pP` → `""`, runs on the exact
//! punctuation table ([`crate::punct`]); any other pattern runs on the `regex` crate, whose
//! syntax is RE2's family (no look-around, no back-references in patterns), with every
//! `\pP` / `\p{P}` in it replaced by the exact table, so the Unicode data is TensorFlow's
//! where it matters. The rewrite string is RE2's: `\0`..`\9` insert groups, `\\` a
//! backslash.

use crate::punct;
use regex::bytes::Regex;

/// Longest pattern accepted (a hostile graph cannot make the compiler work without bound).
const MAX_PATTERN: usize = 1 << 16;

/// A compiled regex replacement.
#[derive(Debug, Clone)]
pub struct RegexReplace {
    kind: Kind,
    global: bool,
}

#[derive(Debug, Clone)]
enum Kind {
    /// `\pP` → `""`.
    RemovePunctuation,
    General {
        re: Regex,
        rewrite: Vec<Piece>,
    },
}

#[derive(Debug, Clone)]
enum Piece {
    Lit(Vec<u8>),
    Group(usize),
}

impl RegexReplace {
    /// Compiles `pattern` with RE2 `rewrite`; `global` replaces every match (TF's
    /// `replace_global`, default true), otherwise the first.
    pub fn new(pattern: &[u8], rewrite: &[u8], global: bool) -> Result<Self, String> {
        if pattern.len() > MAX_PATTERN {
            return Err(format!("a pattern of {} bytes is too long", pattern.len()));
        }
        let pat = std::str::from_utf8(pattern)
            .map_err(|_| "the pattern is not valid UTF-8".to_string())?;
        if matches!(pat, "\\pP" | "\\p{P}") && rewrite.is_empty() && global {
            return Ok(RegexReplace {
                kind: Kind::RemovePunctuation,
                global,
            });
        }
        let translated = translate(pat)?;
        let re = regex::bytes::RegexBuilder::new(&translated)
            .size_limit(1 << 24)
            .build()
            .map_err(|e| format!("pattern {pat:?}: {e}"))?;
        let rewrite = parse_rewrite(rewrite, re.captures_len())?;
        Ok(RegexReplace {
            kind: Kind::General { re, rewrite },
            global,
        })
    }

    /// Whether this is exactly `\pP` → `""` everywhere (what the hand-written text embedding
    /// computes).
    pub fn is_remove_punctuation(&self) -> bool {
        matches!(self.kind, Kind::RemovePunctuation)
    }

    /// Whether the pattern matches somewhere in `s`.
    pub fn is_match(&self, s: &[u8]) -> bool {
        match &self.kind {
            Kind::RemovePunctuation => remove_punctuation_changes(s),
            Kind::General { re, .. } => re.is_match(s),
        }
    }

    /// The replaced string.
    pub fn apply(&self, s: &[u8]) -> Vec<u8> {
        match &self.kind {
            Kind::RemovePunctuation => punct::remove_punctuation(s),
            Kind::General { re, rewrite } => {
                let mut out = Vec::with_capacity(s.len());
                let mut last = 0;
                for caps in re.captures_iter(s) {
                    let m = caps.get(0).expect("group 0 always matches");
                    out.extend_from_slice(&s[last..m.start()]);
                    for p in rewrite {
                        match p {
                            Piece::Lit(b) => out.extend_from_slice(b),
                            Piece::Group(g) => {
                                if let Some(g) = caps.get(*g) {
                                    out.extend_from_slice(g.as_bytes());
                                }
                            }
                        }
                    }
                    last = m.end();
                    if !self.global {
                        break;
                    }
                }
                out.extend_from_slice(&s[last..]);
                out
            }
        }
    }
}

fn remove_punctuation_changes(s: &[u8]) -> bool {
    punct::remove_punctuation(s).len() != s.len()
}

/// The pattern with `\pP` / `\p{P}` spelled as the exact code-point ranges.
fn translate(pat: &str) -> Result<String, String> {
    let ranges: String = punct::ranges()
        .iter()
        .map(|&(lo, hi)| format!("\\x{{{lo:X}}}-\\x{{{hi:X}}}"))
        .collect();
    let mut out = String::with_capacity(pat.len());
    let mut in_class = 0usize;
    let mut it = pat.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        match c {
            '\\' => {
                let rest = &pat[i..];
                let (skip, is_p) = if rest.starts_with("\\pP") {
                    (3, true)
                } else if rest.starts_with("\\p{P}") {
                    (5, true)
                } else {
                    (0, false)
                };
                if is_p {
                    if in_class > 0 {
                        out.push_str(&ranges);
                    } else {
                        out.push('[');
                        out.push_str(&ranges);
                        out.push(']');
                    }
                    for _ in 1..skip {
                        it.next();
                    }
                    continue;
                }
                out.push('\\');
                if let Some((_, n)) = it.next() {
                    out.push(n);
                }
            }
            '[' => {
                in_class += 1;
                out.push(c);
                // A `]` or `^]` right after `[` is a literal.
                if let Some(&(_, '^')) = it.peek() {
                    out.push('^');
                    it.next();
                }
                if let Some(&(_, ']')) = it.peek() {
                    out.push_str("\\]");
                    it.next();
                }
            }
            ']' if in_class > 0 => {
                in_class -= 1;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// RE2's rewrite string: `\0`..`\9` are groups, `\\` is a backslash; any other `\` is an
/// error, as in RE2.
fn parse_rewrite(rw: &[u8], groups: usize) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut lit = Vec::new();
    let mut i = 0;
    while i < rw.len() {
        if rw[i] == b'\\' {
            match rw.get(i + 1) {
                Some(b'\\') => lit.push(b'\\'),
                Some(&d) if d.is_ascii_digit() => {
                    let g = (d - b'0') as usize;
                    if g >= groups {
                        return Err(format!(
                            "the rewrite refers to group {g}; the pattern has {}",
                            groups - 1
                        ));
                    }
                    if !lit.is_empty() {
                        out.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    out.push(Piece::Group(g));
                }
                _ => return Err("invalid rewrite: `\\` must be followed by a digit or `\\`".into()),
            }
            i += 2;
        } else {
            lit.push(rw[i]);
            i += 1;
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pat: &str, rw: &str, global: bool, s: &[u8]) -> Vec<u8> {
        RegexReplace::new(pat.as_bytes(), rw.as_bytes(), global)
            .unwrap()
            .apply(s)
    }

    /// TensorFlow 2.21's `tf.strings.regex_replace` results.
    #[test]
    fn matches_tensorflow() {
        assert!(RegexReplace::new(b"\\pP", b"", true)
            .unwrap()
            .is_remove_punctuation());
        assert_eq!(run("a*", "X", true, b"abc"), b"XbXcX");
        assert_eq!(run("a*", "X", true, b"baab"), b"XbXbX");
        assert_eq!(run("a*", "X", false, b"abc"), b"Xbc");
        assert_eq!(run("(b)", "[\\1]", true, b"baab"), b"[b]aa[b]");
        assert_eq!(run("(b)", "[\\1]", false, b"baab"), b"[b]aab");
        assert_eq!(run("[0-9]+", "#", true, b"x1y22"), b"x#y#");
        assert_eq!(run("\\pP|[0-9]", "", true, b"x1y22"), b"xy");
        assert_eq!(
            run("\\pP|[0-9]", "", true, "«café» 3, naïve·".as_bytes()),
            "café  naïve".as_bytes()
        );
        assert_eq!(run("[\\pP0-9]", "", true, b"a,1b"), b"ab");
        assert_eq!(run("\\pP|[0-9]", "", true, b"a\xffb"), b"a\xffb");
        assert_eq!(run("", "-", true, b"abc"), b"-a-b-c-");
    }

    #[test]
    fn bad_patterns_and_rewrites_are_errors() {
        assert!(RegexReplace::new(b"(", b"", true).is_err());
        assert!(RegexReplace::new(b"a", b"\\1", true).is_err());
        assert!(RegexReplace::new(b"a", b"\\x", true).is_err());
        assert!(RegexReplace::new(b"\xff", b"", true).is_err());
        assert!(RegexReplace::new(&vec![b'a'; MAX_PATTERN + 1], b"", true).is_err());
    }
}
