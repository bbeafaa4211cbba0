//! Minimal NumPy `.npy` (format 1.0/2.0/3.0) reading and writing for float arrays.
//!
//! Writes little-endian float32 (`<f4`), C order. Reads `<f4`, `<f8` (cast to f32),
//! `<f2`, and little-endian integer arrays (cast to f32), C order only.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors naming the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a .npy file: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error("{path}: unsupported .npy array: {msg}")]
    Unsupported { path: PathBuf, msg: String },
}

/// A float array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Encodes a float32 array as `.npy` bytes.
pub fn to_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let shape_str = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_str}, }}");
    // magic(6) + version(2) + len(2) + header + '\n', padded to a multiple of 64
    let unpadded = 10 + header.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes a float32 `.npy` file atomically (temporary file in the same folder, then rename).
pub fn write(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let path = path.as_ref();
    let expected: usize = shape.iter().product();
    if expected != data.len() {
        return Err(NpyError::Unsupported {
            path: path.to_path_buf(),
            msg: format!(
                "shape {shape:?} needs {expected} values, got {}",
                data.len()
            ),
        });
    }
    let io = |source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out.npy".into());
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&to_bytes(shape, data))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Largest `.npy` file read (a regular file only: no device or FIFO).
pub const MAX_NPY_BYTES: u64 = 16 << 30;

/// Reads a `.npy` file as f32.
pub fn read(path: impl AsRef<Path>) -> Result<NpyArray, NpyError> {
    let path = path.as_ref();
    let bytes = crate::read_regular_file(path, MAX_NPY_BYTES).map_err(|e| match e {
        crate::FolderError::Io { path, source } => NpyError::Io { path, source },
        other => NpyError::Format {
            path: path.to_path_buf(),
            msg: other.to_string(),
        },
    })?;
    from_bytes(&bytes).map_err(|e| match e {
        NpyError::Format { msg, .. } => NpyError::Format {
            path: path.to_path_buf(),
            msg,
        },
        NpyError::Unsupported { msg, .. } => NpyError::Unsupported {
            path: path.to_path_buf(),
            msg,
        },
        other => other,
    })
}

/// Parses `.npy` bytes as f32 (errors carry an empty path).
pub fn from_bytes(bytes: &[u8]) -> Result<NpyArray, NpyError> {
    let fmt = |msg: &str| NpyError::Format {
        path: PathBuf::new(),
        msg: msg.to_string(),
    };
    let unsup = |msg: String| NpyError::Unsupported {
        path: PathBuf::new(),
        msg,
    };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(fmt("missing the \\x93NUMPY magic"));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(fmt("truncated header"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(unsup(format!("format version {v}"))),
    };
    let header_end = (start as usize)
        .checked_add(hlen)
        .ok_or_else(|| fmt("truncated header"))?;
    let header = bytes
        .get(start..header_end)
        .ok_or_else(|| fmt("truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| fmt("header is not text"))?;
    let descr = dict_value(header, "descr").ok_or_else(|| fmt("header has no 'descr'"))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran =
        dict_value(header, "fortran_order").ok_or_else(|| fmt("header has no 'fortran_order'"))?;
    if fortran.trim() != "False" {
        return Err(unsup("Fortran-order arrays".into()));
    }
    let shape_s = dict_value(header, "shape").ok_or_else(|| fmt("header has no 'shape'"))?;
    let shape: Vec<usize> = shape_s
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| fmt("bad shape")))
        .collect::<Result<_, _>>()?;
    let n: Option<usize> = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let body = &bytes[header_end..];
    let (size, conv): (usize, fn(&[u8]) -> f32) = match descr {
        "<f4" | "=f4" => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        "<f8" | "=f8" => (8, |b| {
            f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }),
        "<f2" | "=f2" => (2, |b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
        "<i4" | "=i4" => (4, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32),
        "<i8" | "=i8" => (8, |b| {
            i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }),
        "|u1" | "<u1" => (1, |b| b[0] as f32),
        other => {
            return Err(unsup(format!(
                "dtype {other} (expected <f4, <f8, <f2, <i4, <i8 or |u1)"
            )))
        }
    };
    // Checked arithmetic: a hostile shape must not wrap around to a small size.
    let need = n
        .and_then(|n| n.checked_mul(size))
        .filter(|&need| need <= body.len())
        .ok_or_else(|| {
            fmt(&format!(
                "data holds {} bytes, less than shape {shape:?} of {descr} needs",
                body.len()
            ))
        })?;
    let data = body[..need].chunks_exact(size).map(conv).collect();
    Ok(NpyArray { shape, data })
}

/// The raw text of `'key': value` in a Python dict literal (value up to the next
/// top-level comma).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let k1 = format!("'{key}'");
    let k2 = format!("\"{key}\"");
    let at = header
        .find(&k1)
        .map(|i| i + k1.len())
        .or_else(|| header.find(&k2).map(|i| i + k2.len()))?;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // subnormal
            let v = m as f32 / 1024.0 * 2f32.powi(-14);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header_alignment() {
        let bytes = to_bytes(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, -6.5]);
        assert_eq!((bytes.len() - 24) % 64, 0);
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let a = from_bytes(&bytes).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, -6.5]);
        let header = std::str::from_utf8(&bytes[10..74]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
        let one = from_bytes(&to_bytes(&[3], &[1.0, 2.0, 3.0])).unwrap();
        assert_eq!(one.shape, vec![3]);
    }

    /// Bytes as `numpy.save` 1.26 writes them for `np.array([[1.5, -2]], dtype="<f8")`.
    #[test]
    fn reads_numpy_float64() {
        let mut bytes =
            b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }"
                .to_vec();
        bytes.resize(10 + 0x76 - 1, b' ');
        bytes.push(b'\n');
        bytes.extend_from_slice(&1.5f64.to_le_bytes());
        bytes.extend_from_slice(&(-2f64).to_le_bytes());
        let a = from_bytes(&bytes).unwrap();
        assert_eq!(a.shape, vec![1, 2]);
        assert_eq!(a.data, vec![1.5, -2.0]);
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            from_bytes(b"hello world"),
            Err(NpyError::Format { .. })
        ));
    }
}
