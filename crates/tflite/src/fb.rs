//! A minimal, bounds-checked FlatBuffers reader: just what the TF Lite schema
//! needs (tables, scalars, strings, vectors of scalars and of tables).
//!
//! Every access checks that the bytes it touches lie inside the buffer, so a
//! truncated or corrupted file gives an error, never a panic. Errors are plain
//! strings naming the field; the caller adds the file name.

pub(crate) type FbResult<T> = Result<T, String>;

use std::cell::Cell;

/// Bytes of decoded structures a file may produce: vectors of a FlatBuffer can all point at
/// one shared table, so without a bound a small file decodes into gigabytes. Every decoded
/// vector element and table is charged against this budget (a generous multiple of the file).
pub(crate) struct Budget {
    left: Cell<usize>,
    limit: usize,
}

/// Bytes charged per decoded table (its struct, strings and labels).
const TABLE_COST: usize = 128;

impl Budget {
    pub(crate) fn for_file(len: usize) -> Self {
        let limit = len.saturating_mul(32).saturating_add(1 << 20);
        Budget {
            left: Cell::new(limit),
            limit,
        }
    }

    fn charge(&self, n: usize, unit: usize, what: &str) -> FbResult<()> {
        let cost = n.saturating_mul(unit);
        let left = self.left.get();
        if cost > left {
            return Err(format!(
                "{what}: the file decodes to more than {} bytes of structures (vectors \
                 pointing at shared tables?)",
                self.limit
            ));
        }
        self.left.set(left - cost);
        Ok(())
    }
}

/// A table inside the buffer.
#[derive(Clone, Copy)]
pub(crate) struct Table<'a> {
    buf: &'a [u8],
    budget: &'a Budget,
    pos: usize,
    vtable: usize,
    vt_len: usize,
}

fn read_bytes<const N: usize>(buf: &[u8], pos: usize, what: &str) -> FbResult<[u8; N]> {
    let end = pos
        .checked_add(N)
        .ok_or_else(|| format!("{what}: offset overflow"))?;
    if end > buf.len() {
        return Err(format!(
            "{what}: offset {pos} is past the end of the file ({} bytes)",
            buf.len()
        ));
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[pos..end]);
    Ok(out)
}

pub(crate) fn u32_at(buf: &[u8], pos: usize, what: &str) -> FbResult<u32> {
    Ok(u32::from_le_bytes(read_bytes::<4>(buf, pos, what)?))
}

fn u16_at(buf: &[u8], pos: usize, what: &str) -> FbResult<u16> {
    Ok(u16::from_le_bytes(read_bytes::<2>(buf, pos, what)?))
}

/// Follows a `uoffset_t` stored at `pos` (relative to `pos`).
fn follow(buf: &[u8], pos: usize, what: &str) -> FbResult<usize> {
    let off = u32_at(buf, pos, what)? as usize;
    let target = pos
        .checked_add(off)
        .ok_or_else(|| format!("{what}: offset overflow"))?;
    if target >= buf.len() {
        return Err(format!("{what}: points past the end of the file"));
    }
    Ok(target)
}

impl<'a> Table<'a> {
    /// The root table of a buffer.
    pub(crate) fn root(buf: &'a [u8], budget: &'a Budget) -> FbResult<Self> {
        let pos = follow(buf, 0, "root table offset")?;
        budget.charge(1, TABLE_COST, "root table")?;
        Self::at(buf, budget, pos, "root table")
    }

    fn at(buf: &'a [u8], budget: &'a Budget, pos: usize, what: &str) -> FbResult<Self> {
        let soff = i32::from_le_bytes(read_bytes::<4>(buf, pos, what)?) as i64;
        let vtable = pos as i64 - soff;
        if vtable < 0 || vtable as usize > buf.len().saturating_sub(4) {
            return Err(format!("{what}: vtable out of bounds"));
        }
        let vtable = vtable as usize;
        let vt_len = u16_at(buf, vtable, what)? as usize;
        if vt_len < 4 || vt_len % 2 != 0 || vtable + vt_len > buf.len() {
            return Err(format!("{what}: invalid vtable size {vt_len}"));
        }
        let tbl_len = u16_at(buf, vtable + 2, what)? as usize;
        if pos.checked_add(tbl_len).is_none_or(|end| end > buf.len()) {
            return Err(format!("{what}: table extends past the end of the file"));
        }
        Ok(Self {
            buf,
            budget,
            pos,
            vtable,
            vt_len,
        })
    }

    /// Position of field `slot` inside the table, or `None` when absent.
    fn field(&self, slot: usize, what: &str) -> FbResult<Option<usize>> {
        let entry = 4 + 2 * slot;
        if entry + 2 > self.vt_len {
            return Ok(None);
        }
        let off = u16_at(self.buf, self.vtable + entry, what)? as usize;
        Ok(if off == 0 {
            None
        } else {
            Some(
                self.pos
                    .checked_add(off)
                    .ok_or_else(|| format!("{what}: offset overflow"))?,
            )
        })
    }

    pub(crate) fn u8(&self, slot: usize, default: u8, what: &str) -> FbResult<u8> {
        match self.field(slot, what)? {
            Some(p) => Ok(read_bytes::<1>(self.buf, p, what)?[0]),
            None => Ok(default),
        }
    }

    pub(crate) fn i8(&self, slot: usize, default: i8, what: &str) -> FbResult<i8> {
        Ok(self.u8(slot, default as u8, what)? as i8)
    }

    pub(crate) fn bool(&self, slot: usize, what: &str) -> FbResult<bool> {
        Ok(self.u8(slot, 0, what)? != 0)
    }

    pub(crate) fn i32(&self, slot: usize, default: i32, what: &str) -> FbResult<i32> {
        match self.field(slot, what)? {
            Some(p) => Ok(i32::from_le_bytes(read_bytes::<4>(self.buf, p, what)?)),
            None => Ok(default),
        }
    }

    pub(crate) fn u32(&self, slot: usize, default: u32, what: &str) -> FbResult<u32> {
        Ok(self.i32(slot, default as i32, what)? as u32)
    }

    pub(crate) fn u64(&self, slot: usize, default: u64, what: &str) -> FbResult<u64> {
        match self.field(slot, what)? {
            Some(p) => Ok(u64::from_le_bytes(read_bytes::<8>(self.buf, p, what)?)),
            None => Ok(default),
        }
    }

    pub(crate) fn table(&self, slot: usize, what: &str) -> FbResult<Option<Table<'a>>> {
        match self.field(slot, what)? {
            Some(p) => {
                self.budget.charge(1, TABLE_COST, what)?;
                Ok(Some(Table::at(
                    self.buf,
                    self.budget,
                    follow(self.buf, p, what)?,
                    what,
                )?))
            }
            None => Ok(None),
        }
    }

    /// (position of the first element, element count) of a vector field.
    fn vector(&self, slot: usize, elem: usize, what: &str) -> FbResult<Option<(usize, usize)>> {
        let Some(p) = self.field(slot, what)? else {
            return Ok(None);
        };
        let start = follow(self.buf, p, what)?;
        let len = u32_at(self.buf, start, what)? as usize;
        let bytes = len
            .checked_mul(elem)
            .ok_or_else(|| format!("{what}: vector length overflow"))?;
        let first = start
            .checked_add(4)
            .ok_or_else(|| format!("{what}: offset overflow"))?;
        if first
            .checked_add(bytes)
            .is_none_or(|end| end > self.buf.len())
        {
            return Err(format!(
                "{what}: vector of {len} elements extends past the end of the file"
            ));
        }
        Ok(Some((first, len)))
    }

    pub(crate) fn bytes(&self, slot: usize, what: &str) -> FbResult<Option<(usize, usize)>> {
        self.vector(slot, 1, what)
    }

    pub(crate) fn string(&self, slot: usize, what: &str) -> FbResult<Option<String>> {
        let v = self.vector(slot, 1, what)?;
        if let Some((_, n)) = v {
            self.budget.charge(n, 1, what)?;
        }
        Ok(v.map(|(p, n)| String::from_utf8_lossy(&self.buf[p..p + n]).into_owned()))
    }

    /// A vector of `elem`-byte scalars, charged to the budget.
    fn scalars(&self, slot: usize, elem: usize, what: &str) -> FbResult<Option<(usize, usize)>> {
        let v = self.vector(slot, elem, what)?;
        if let Some((_, n)) = v {
            self.budget.charge(n, elem, what)?;
        }
        Ok(v)
    }

    pub(crate) fn i32s(&self, slot: usize, what: &str) -> FbResult<Vec<i32>> {
        Ok(match self.scalars(slot, 4, what)? {
            Some((p, n)) => (0..n)
                .map(|i| {
                    i32::from_le_bytes(
                        self.buf[p + 4 * i..p + 4 * i + 4]
                            .try_into()
                            .expect("4 bytes"),
                    )
                })
                .collect(),
            None => Vec::new(),
        })
    }

    pub(crate) fn f32s(&self, slot: usize, what: &str) -> FbResult<Vec<f32>> {
        Ok(self
            .i32s(slot, what)?
            .into_iter()
            .map(|v| f32::from_bits(v as u32))
            .collect())
    }

    pub(crate) fn i64s(&self, slot: usize, what: &str) -> FbResult<Vec<i64>> {
        Ok(match self.scalars(slot, 8, what)? {
            Some((p, n)) => (0..n)
                .map(|i| {
                    i64::from_le_bytes(
                        self.buf[p + 8 * i..p + 8 * i + 8]
                            .try_into()
                            .expect("8 bytes"),
                    )
                })
                .collect(),
            None => Vec::new(),
        })
    }

    pub(crate) fn tables(&self, slot: usize, what: &str) -> FbResult<Vec<Table<'a>>> {
        let Some((p, n)) = self.vector(slot, 4, what)? else {
            return Ok(Vec::new());
        };
        self.budget.charge(n, TABLE_COST, what)?;
        (0..n)
            .map(|i| {
                let at = p + 4 * i;
                Table::at(
                    self.buf,
                    self.budget,
                    follow(self.buf, at, what)?,
                    &format!("{what}[{i}]"),
                )
            })
            .collect()
    }
}
