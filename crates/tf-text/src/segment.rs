//! `SparseSegmentSum` / `SparseSegmentMean` / `SparseSegmentSqrtN` (and their
//! `WithNumSegments` forms), the embedding bag of `safe_embedding_lookup_sparse`, computed in
//! the order of TensorFlow's CPU kernel so that long rows give TensorFlow's bits:
//!
//! - a segment of one row is that row;
//! - otherwise the first `n mod 8` rows (8 when that is 0, 9 when it is 1) are summed left to
//!   right and scaled by `1/n` (mean) or `1/sqrt(n)` (sqrtn) when `n < 10`; the following
//!   blocks of 8 rows are each summed left to right and added; when `n >= 10` the total is
//!   divided by `n` or `sqrt(n)` at the end;
//! - all in the data's precision (a float64 table sums in float64).

use std::ops::{Add, Div, Mul};

/// The reduction of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combiner {
    Sum,
    Mean,
    SqrtN,
}

impl Combiner {
    /// From the op type (`SparseSegmentSqrtN`, `SparseSegmentMeanWithNumSegments`, ...).
    pub fn of_op(op: &str) -> Option<Combiner> {
        let base = op.strip_suffix("WithNumSegments").unwrap_or(op);
        match base {
            "SparseSegmentSum" => Some(Combiner::Sum),
            "SparseSegmentMean" => Some(Combiner::Mean),
            "SparseSegmentSqrtN" => Some(Combiner::SqrtN),
            _ => None,
        }
    }
}

/// The float types the kernel runs in.
pub trait SegmentFloat:
    Copy + Add<Output = Self> + Mul<Output = Self> + Div<Output = Self> + Default
{
    fn from_f64(x: f64) -> Self;
}
impl SegmentFloat for f32 {
    fn from_f64(x: f64) -> Self {
        x as f32
    }
}
impl SegmentFloat for f64 {
    fn from_f64(x: f64) -> Self {
        x
    }
}

/// Reduces the rows `data[indices[i]]` (`data` row-major with `cols` columns) into output row
/// `segments[i]`; `segments` must be sorted. Returns the output, `rows x cols` with
/// `rows = num_segments` or the last segment id + 1; rows no index reaches are zero.
pub fn reduce<T: SegmentFloat>(
    data: &[T],
    cols: usize,
    indices: &[i64],
    segments: &[i64],
    num_segments: Option<usize>,
    combiner: Combiner,
) -> Result<(Vec<T>, usize), String> {
    if indices.len() != segments.len() {
        return Err(format!(
            "{} indices and {} segment ids",
            indices.len(),
            segments.len()
        ));
    }
    if segments.windows(2).any(|w| w[1] < w[0]) {
        return Err("segment ids are not increasing".into());
    }
    let data_rows = data.len().checked_div(cols).unwrap_or(0);
    let needed = match segments.last() {
        Some(&s) if s < 0 => return Err("segment ids must be >= 0".into()),
        Some(&s) => s as usize + 1,
        None => 0,
    };
    let rows = match num_segments {
        Some(n) if n < needed => return Err("segment ids must be < num_segments".into()),
        Some(n) => n,
        None => needed,
    };
    let len = rows
        .checked_mul(cols)
        .filter(|&n| n <= 1 << 28)
        .ok_or_else(|| format!("an output of {rows} x {cols} is too large"))?;
    let mut out = vec![T::default(); len];
    let mut start = 0;
    let mut prev: Option<i64> = None;
    while start < indices.len() {
        let seg = segments[start];
        if prev.is_some_and(|p| seg <= p) || seg < 0 {
            return Err("segment ids are not increasing".into());
        }
        if seg as u64 >= rows as u64 {
            return Err(format!("segment id {seg} is out of range [0, {rows})"));
        }
        prev = Some(seg);
        let mut end = start + 1;
        while end < indices.len() && segments[end] == seg {
            end += 1;
        }
        let mut rows_of = Vec::with_capacity(end - start);
        for (k, &i) in indices[start..end].iter().enumerate() {
            if i < 0 || i as usize >= data_rows {
                return Err(format!(
                    "indices[{}] = {i} is out of range [0, {data_rows})",
                    start + k
                ));
            }
            let i = i as usize;
            rows_of.push(&data[i * cols..(i + 1) * cols]);
        }
        let s = seg as usize;
        reduce_segment(&rows_of, &mut out[s * cols..(s + 1) * cols], combiner);
        start = end;
    }
    Ok((out, rows))
}

fn reduce_segment<T: SegmentFloat>(rows: &[&[T]], out: &mut [T], combiner: Combiner) {
    let num = rows.len();
    if num == 1 {
        out.copy_from_slice(rows[0]);
        return;
    }
    let root = (num as f64).sqrt();
    let scale = {
        let m = match combiner {
            Combiner::Mean if num < 10 => T::from_f64(num as f64),
            Combiner::SqrtN if num < 10 => T::from_f64(root),
            _ => T::from_f64(1.0),
        };
        T::from_f64(1.0) / m
    };
    let head = match num & 7 {
        0 => 8,
        1 => 9,
        r => r,
    };
    for (c, o) in out.iter_mut().enumerate() {
        let mut acc = rows[0][c];
        for r in &rows[1..head] {
            acc = acc + r[c];
        }
        let mut total = acc * scale;
        let mut k = head;
        while k < num {
            let mut block = rows[k][c];
            for r in &rows[k + 1..k + 8] {
                block = block + r[c];
            }
            total = total + block;
            k += 8;
        }
        if num >= 10 {
            match combiner {
                Combiner::Mean => total = total / T::from_f64(num as f64),
                Combiner::SqrtN => total = total / T::from_f64(root),
                Combiner::Sum => {}
            }
        }
        *o = total;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_scaling() {
        // 3 rows of 2 columns; segment 0 = rows 0, 1; segment 2 = row 2 (segment 1 empty).
        let data = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let (out, rows) = reduce(&data, 2, &[0, 1, 2], &[0, 0, 2], None, Combiner::SqrtN).unwrap();
        assert_eq!(rows, 3);
        let s = 1.0f32 / (2f64.sqrt() as f32);
        assert_eq!(out, vec![4.0 * s, 6.0 * s, 0.0, 0.0, 5.0, 6.0]);
        let (out, _) = reduce(&data, 2, &[0, 1], &[0, 0], Some(2), Combiner::Mean).unwrap();
        assert_eq!(out, vec![4.0 * 0.5, 6.0 * 0.5, 0.0, 0.0]);
    }

    /// 13 rows: head of 5 scaled by nothing (n >= 10), one block of 8, divided by sqrt(13).
    #[test]
    fn long_segments_follow_the_kernel_order() {
        let vals: Vec<f32> = (0..13)
            .map(|i| 1.0 + (i as f32) * 1e-3 + 1e7 * ((i % 2) as f32))
            .collect();
        let idx: Vec<i64> = (0..13).collect();
        let seg = vec![0i64; 13];
        let (out, _) = reduce(&vals, 1, &idx, &seg, None, Combiner::SqrtN).unwrap();
        let head = vals[0] + vals[1] + vals[2] + vals[3] + vals[4];
        let block = vals[5..13].iter().skip(1).fold(vals[5], |a, &b| a + b);
        assert_eq!(out[0], (head * 1.0 + block) / (13f64.sqrt() as f32));
    }

    #[test]
    fn bad_input_is_an_error() {
        let d = [1.0f64, 2.0];
        assert!(reduce(&d, 1, &[0, 5], &[0, 0], None, Combiner::Sum).is_err());
        assert!(reduce(&d, 1, &[0, 1], &[1, 0], None, Combiner::Sum).is_err());
        assert!(reduce(&d, 1, &[0, 1], &[0, -1], None, Combiner::Sum).is_err());
        assert!(reduce(&d, 1, &[0], &[3], Some(2), Combiner::Sum).is_err());
        assert!(reduce(&d, 1, &[0], &[0, 1], None, Combiner::Sum).is_err());
        assert!(reduce(&d, 1, &[0], &[1 << 40], None, Combiner::Sum).is_err());
        assert!(reduce(&d, 1, &[0, 1], &[3, 1], None, Combiner::Sum).is_err());
    }
}
