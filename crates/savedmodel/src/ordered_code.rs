//! The key under which one slice of a partitioned variable is stored:
//! `checkpoint::EncodeTensorNameSlice(name, slice)` (tensorflow/core/util/saved_tensor_slice_util.cc),
//! built with `OrderedCode` (tensorflow/core/lib/strings/ordered_code.cc):
//! `NumIncreasing(0) ‖ String(name) ‖ NumIncreasing(dims) ‖ (SignedNumIncreasing(start) ‖
//! SignedNumIncreasing(length))*`, where a whole-dimension extent is written as start 0, length -1.

fn write_num_increasing(out: &mut Vec<u8>, v: u64) {
    let n = (64 - v.leading_zeros() as usize).div_ceil(8);
    out.push(n as u8);
    out.extend_from_slice(&v.to_be_bytes()[8 - n..]);
}

fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        match b {
            0x00 => out.extend([0x00, 0xff]),
            0xff => out.extend([0xff, 0x00]),
            b => out.push(b),
        }
    }
    out.extend([0x00, 0x01]);
}

const BITS_TO_LENGTH: [u8; 64] = [
    1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5,
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9,
    10,
];
const LENGTH_TO_HEADER_BITS: [[u8; 2]; 11] = [
    [0, 0],
    [0x80, 0],
    [0xc0, 0],
    [0xe0, 0],
    [0xf0, 0],
    [0xf8, 0],
    [0xfc, 0],
    [0xfe, 0],
    [0xff, 0],
    [0xff, 0x80],
    [0xff, 0xc0],
];

fn write_signed_num_increasing(out: &mut Vec<u8>, val: i64) {
    let x = if val < 0 { !(val as u64) } else { val as u64 };
    if x < 64 {
        out.push(LENGTH_TO_HEADER_BITS[1][0] ^ (val as u8));
        return;
    }
    let sign = if val < 0 { 0xff } else { 0 };
    let mut buf = [sign; 10];
    buf[2..].copy_from_slice(&val.to_be_bytes());
    let log2 = 63 - x.leading_zeros() as usize;
    let len = BITS_TO_LENGTH[log2 + 1] as usize;
    let begin = 10 - len;
    buf[begin] ^= LENGTH_TO_HEADER_BITS[len][0];
    buf[begin + 1] ^= LENGTH_TO_HEADER_BITS[len][1];
    out.extend_from_slice(&buf[begin..]);
}

/// Key of the slice `extents` (`(start, length)`, length -1 = whole dimension) of `name`.
pub fn tensor_name_slice_key(name: &[u8], extents: &[(i64, i64)]) -> Vec<u8> {
    let mut out = Vec::new();
    write_num_increasing(&mut out, 0);
    write_string(&mut out, name);
    write_num_increasing(&mut out, extents.len() as u64);
    for &(start, length) in extents {
        write_signed_num_increasing(&mut out, start);
        write_signed_num_increasing(&mut out, length);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_key_tensorflow_wrote() {
        // Key of slice [0:4, 0:3] of `emb` in tests/fixtures/savedmodel/tf1 (from its index).
        let k = tensor_name_slice_key(b"emb", &[(0, 4), (0, 3)]);
        assert_eq!(
            k,
            vec![0x00, b'e', b'm', b'b', 0x00, 0x01, 0x01, 0x02, 0x80, 0x84, 0x80, 0x83]
        );
    }

    #[test]
    fn signed_numbers_follow_ordered_code() {
        let enc = |v| {
            let mut o = Vec::new();
            write_signed_num_increasing(&mut o, v);
            o
        };
        assert_eq!(enc(-1), vec![0x7f]);
        assert_eq!(enc(63), vec![0xbf]);
        assert_eq!(enc(64), vec![0xc0, 0x40]);
        assert_eq!(enc(1000), vec![0xc3, 0xe8]);
        assert_eq!(enc(-65), vec![0x3f, 0xbf]);
        // Order is preserved bytewise.
        let vals = [-100000i64, -65, -64, -1, 0, 1, 63, 64, 8191, 8192, 1 << 40];
        for w in vals.windows(2) {
            assert!(enc(w[0]) < enc(w[1]), "{} vs {}", w[0], w[1]);
        }
    }
}
