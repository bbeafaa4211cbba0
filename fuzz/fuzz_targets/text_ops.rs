//! tf-text's parsers and kernels (what a hostile text graph or vocabulary file reaches) must
//! never panic, hang or allocate without bound: `vocab::read_table` under every
//! `TextFileSpec`, `RegexReplace` on a fuzzed pattern and rewrite, `split_v2` / `split_v1`,
//! `segment::reduce` over untrusted indices and segment ids (f32 and f64),
//! `remove_punctuation`, `fingerprint64` / `hash_bucket`.
//!
//! Input: `[selector][body]`, `selector % 5` picks the kernel; each body's layout is at its
//! function. Results are checked against simple invariants (split tokens rejoin to the input,
//! `\pP` through the regex engine equals the punctuation table, an `Ok` segment reduction had
//! valid ids and sums as a plain loop does).
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tf_text::segment::{self, Combiner, SegmentFloat};
use tf_text::vocab::{self, Column, Entry, TextFileSpec};
use tf_text::{split, RegexReplace};

/// Longest text a regex / split / punctuation call sees (a run cannot take long).
const MAX_TEXT: usize = 4096;
/// Longest rewrite (a rewrite repeated at every empty match stays small).
const MAX_REWRITE: usize = 1024;
/// Most indices / segment ids / data values a reduction gets.
const MAX_ITEMS: usize = 1024;
/// Largest reduction output tried, in elements. The crate accepts up to 2^28 (1 GiB of f32,
/// 2 GiB of f64), which libFuzzer's default malloc limit reports; larger outputs are still
/// tried when they exceed the crate's cap (they must be an error without allocating).
const MAX_OUT: usize = 1 << 22;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    match sel % 5 {
        0 => table(body),
        1 => regex(body),
        2 => splits(body),
        3 => segments(body),
        _ => text(body),
    }
});

fn byte(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut x = [0u8; 8];
    for (k, v) in x.iter_mut().enumerate() {
        *v = byte(b, i + k);
    }
    u64::from_le_bytes(x)
}

/// `[key i8][value i8][flags][delimiter][vocab_size u8][offset i64][file...]`; flags: 1 key
/// is int, 2 value is int, 4 vocab_size given, 8 vocab_size = usize::MAX, 16 empty delimiter,
/// 32 `TextFileSpec::vocabulary()` (columns from the spec), 64 small offset (i8).
fn table(b: &[u8]) {
    let flags = byte(b, 2);
    let mut spec = if flags & 32 != 0 {
        TextFileSpec::vocabulary()
    } else {
        let (Ok(key), Ok(value)) = (
            Column::from_index(byte(b, 0) as i8 as i64),
            Column::from_index(byte(b, 1) as i8 as i64),
        ) else {
            return;
        };
        TextFileSpec {
            key,
            value,
            key_is_int: flags & 1 != 0,
            value_is_int: flags & 2 != 0,
            delimiter: if flags & 16 != 0 {
                Vec::new()
            } else {
                vec![byte(b, 3)]
            },
            vocab_size: None,
            offset: 0,
        }
    };
    if flags & 4 != 0 {
        spec.vocab_size = Some(if flags & 8 != 0 {
            usize::MAX
        } else {
            byte(b, 4) as usize
        });
    }
    spec.offset = if flags & 64 != 0 {
        byte(b, 5) as i8 as i64
    } else {
        u64_at(b, 5) as i64
    };
    let file = b.get(13..).unwrap_or(&[]);
    let Ok(t) = vocab::read_table("fuzz.txt", file, &spec) else {
        return;
    };
    let lines = if file.is_empty() {
        0
    } else {
        file.strip_suffix(b"\n").unwrap_or(file).split(|&c| c == b'\n').count()
    };
    let read = spec.vocab_size.map_or(lines, |n| n.min(lines));
    assert!(t.len() <= read, "{} entries from {read} lines", t.len());
    for (k, v) in &t {
        for (e, col, is_int) in [
            (k, spec.key, spec.key_is_int),
            (v, spec.value, spec.value_is_int),
        ] {
            match (e, col) {
                (Entry::Int(n), Column::LineNumber) => {
                    let line = n.wrapping_sub(spec.offset);
                    assert!((0..read as i64).contains(&line), "line number {n}");
                }
                (Entry::Int(_), _) => assert!(is_int),
                (Entry::Str(s), _) => {
                    assert!(!is_int);
                    assert!(!s.is_empty() || matches!(col, Column::Field(_)));
                    assert!(!s.contains(&b'\n'));
                }
            }
        }
    }
}

/// `[flags][u32 len][pattern][u32 len][rewrite][text]`; flags: 1 global.
fn regex(b: &[u8]) {
    let global = byte(b, 0) & 1 != 0;
    let p = common::parts(b.get(1..).unwrap_or(&[]), 3);
    let (pattern, rewrite) = (p[0], &p[1][..p[1].len().min(MAX_REWRITE)]);
    let text = &p[2][..p[2].len().min(MAX_TEXT)];
    let Ok(re) = RegexReplace::new(pattern, rewrite, global) else {
        return;
    };
    let out = re.apply(text);
    if !re.is_match(text) {
        assert_eq!(out, text, "no match, yet the text changed");
    }
    if re.is_remove_punctuation() {
        assert_eq!(out, tf_text::remove_punctuation(text));
    }
}

/// `[flags][maxsplit i64][u32 len][separator][text]`; flags: 1 skip_empty (v1), 2 small
/// maxsplit (i8).
fn splits(b: &[u8]) {
    let flags = byte(b, 0);
    let maxsplit = if flags & 2 != 0 {
        byte(b, 1) as i8 as i64
    } else {
        u64_at(b, 1) as i64
    };
    let p = common::parts(b.get(9..).unwrap_or(&[]), 2);
    let sep = &p[0][..p[0].len().min(64)];
    let s = &p[1][..p[1].len().min(MAX_TEXT)];

    let t = split::split_v2(s, sep, maxsplit);
    if maxsplit > 0 {
        assert!(t.len() as u64 <= maxsplit as u64 + 1);
    }
    if maxsplit == 0 {
        assert_eq!(t, vec![s]);
    } else if !sep.is_empty() {
        assert_eq!(t.join(sep), s, "tokens do not rejoin to the input");
    } else {
        let space = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
        let last = t.len().saturating_sub(1);
        for (i, tok) in t.iter().enumerate() {
            if i < last || maxsplit < 0 || (t.len() as i64) <= maxsplit {
                assert!(!tok.is_empty() && !tok.iter().any(space), "token {tok:?}");
            }
        }
        let kept: Vec<u8> = s.iter().filter(|c| !space(c)).copied().collect();
        let got: Vec<u8> = t.concat().iter().filter(|c| !space(c)).copied().collect();
        assert_eq!(got, kept);
    }

    let skip_empty = flags & 1 != 0;
    let t = split::split_v1(s, sep, skip_empty);
    if sep.is_empty() {
        assert_eq!(t.len(), s.len());
        assert!(t.iter().all(|x| x.len() == 1));
    } else {
        let delims = s.iter().filter(|c| sep.contains(c)).count();
        assert!(t.iter().all(|x| !x.iter().any(|c| sep.contains(c))));
        assert_eq!(t.iter().map(|x| x.len()).sum::<usize>() + delims, s.len());
        if skip_empty {
            assert!(t.iter().all(|x| !x.is_empty()));
        } else {
            assert_eq!(t.len(), delims + 1);
        }
    }
}

/// Index / segment-id stream: a byte < 0x80 is that value, a byte >= 0x80 is followed by a
/// little-endian i64 (any value: negative, huge).
fn ids(b: &[u8]) -> Vec<i64> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() && out.len() < MAX_ITEMS {
        let c = b[i];
        if c < 0x80 || i + 9 > b.len() {
            out.push((c & 0x7f) as i64);
            i += 1;
        } else {
            out.push(u64_at(b, i + 1) as i64);
            i += 9;
        }
    }
    out
}

/// `[flags][cols][num_segments u64][u32 len][data][u32 len][indices][segment ids]`; flags: 1
/// f64, 2|4 combiner, 8 num_segments given, 16 num_segments full range (else its low byte),
/// 32 segment ids are deltas (sorted unless they wrap), 64 data is raw float bits (else one
/// i8 per value, whose sums are exact).
fn segments(b: &[u8]) {
    let flags = byte(b, 0);
    let cols = (byte(b, 1) % 9) as usize;
    let combiner = match (flags >> 1) & 3 {
        1 => Combiner::Mean,
        2 => Combiner::SqrtN,
        _ => Combiner::Sum,
    };
    let num = (flags & 8 != 0).then(|| {
        if flags & 16 != 0 {
            u64_at(b, 2) as usize
        } else {
            byte(b, 2) as usize
        }
    });
    let p = common::parts(b.get(10..).unwrap_or(&[]), 3);
    let indices = ids(p[1]);
    let mut segs = ids(p[2]);
    if flags & 32 != 0 {
        let mut acc = 0i64;
        for s in segs.iter_mut() {
            acc = acc.wrapping_add(*s);
            *s = acc;
        }
    }
    // The output the crate would allocate; stay under libFuzzer's malloc limit.
    let rows = num.or_else(|| segs.last().and_then(|&s| usize::try_from(s).ok()?.checked_add(1)));
    if let Some(n) = rows.and_then(|r| r.checked_mul(cols)) {
        if n > MAX_OUT && n <= 1 << 28 {
            return;
        }
    }
    let raw = flags & 64 != 0;
    if flags & 1 != 0 {
        let data: Vec<f64> = if raw {
            p[0].chunks_exact(8)
                .take(MAX_ITEMS)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect()
        } else {
            p[0].iter().take(MAX_ITEMS).map(|&c| c as i8 as f64).collect()
        };
        check_reduce(&data, cols, &indices, &segs, num, combiner, !raw);
    } else {
        let data: Vec<f32> = if raw {
            p[0].chunks_exact(4)
                .take(MAX_ITEMS)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        } else {
            p[0].iter().take(MAX_ITEMS).map(|&c| c as i8 as f32).collect()
        };
        check_reduce(&data, cols, &indices, &segs, num, combiner, !raw);
    }
}

trait AsF64: SegmentFloat {
    fn f64(self) -> f64;
}
impl AsF64 for f32 {
    fn f64(self) -> f64 {
        self as f64
    }
}
impl AsF64 for f64 {
    fn f64(self) -> f64 {
        self
    }
}

fn check_reduce<T: AsF64>(
    data: &[T],
    cols: usize,
    indices: &[i64],
    segs: &[i64],
    num: Option<usize>,
    combiner: Combiner,
    exact: bool,
) {
    let Ok((out, rows)) = segment::reduce(data, cols, indices, segs, num, combiner) else {
        return;
    };
    // Ok: the ids were valid.
    let data_rows = if cols == 0 { 0 } else { data.len() / cols };
    assert_eq!(indices.len(), segs.len());
    assert_eq!(out.len(), rows * cols);
    assert!(segs.windows(2).all(|w| w[0] <= w[1]), "unsorted ids accepted");
    assert!(segs.iter().all(|&s| s >= 0 && (s as u64) < rows as u64));
    assert!(indices.iter().all(|&i| i >= 0 && (i as u64) < data_rows as u64));
    if let Some(n) = num {
        assert_eq!(rows, n);
    }
    // With no columns any row count is an empty output (the ids are still checked above).
    if !exact || cols == 0 {
        return;
    }
    // Small integers: the kernel's order changes nothing for Sum, a few ulps for the others.
    let mut want = vec![0f64; rows * cols];
    let mut count = vec![0usize; rows];
    for (&i, &s) in indices.iter().zip(segs) {
        let (i, s) = (i as usize, s as usize);
        count[s] += 1;
        for c in 0..cols {
            want[s * cols + c] += data[i * cols + c].f64();
        }
    }
    for r in 0..rows {
        let n = count[r] as f64;
        for c in 0..cols {
            let w = match combiner {
                Combiner::Sum => want[r * cols + c],
                _ if count[r] == 0 => 0.0,
                Combiner::Mean => want[r * cols + c] / n,
                Combiner::SqrtN => want[r * cols + c] / n.sqrt(),
            };
            let got = out[r * cols + c].f64();
            let tol = if combiner == Combiner::Sum { 0.0 } else { 1e-4 * (1.0 + w.abs()) };
            assert!((got - w).abs() <= tol, "segment {r} col {c}: {got} != {w}");
        }
    }
}

/// `[buckets u64][text]`: punctuation removal (against `\pP` through the regex engine),
/// `fingerprint64` of every prefix up to 130 bytes and of the whole text, `hash_bucket`.
fn text(b: &[u8]) {
    static PUNCT_RE: OnceLock<RegexReplace> = OnceLock::new();
    let buckets = u64_at(b, 0);
    let s = b.get(8..).unwrap_or(&[]);
    let s = &s[..s.len().min(MAX_TEXT)];
    let out = tf_text::remove_punctuation(s);
    assert!(out.len() <= s.len());
    let re = PUNCT_RE.get_or_init(|| RegexReplace::new(b"[\\pP]", b"", true).unwrap());
    assert!(!re.is_remove_punctuation());
    assert_eq!(re.apply(s), out, "the regex engine's \\pP differs from the table");
    for c in String::from_utf8_lossy(s).chars() {
        let _ = tf_text::is_punctuation(c);
    }
    for n in (0..=s.len().min(130)).chain([s.len()]) {
        let h = tf_text::fingerprint64(&s[..n]);
        assert_eq!(h, tf_text::fingerprint64(&s[..n]));
    }
    let h = tf_text::hash_bucket(s, buckets);
    assert!(h < buckets.max(1));
    assert_eq!(tf_text::hash_bucket(s, 1), 0);
}
