//! A small JPEG decoder that gives the bytes TensorFlow's `tf.io.decode_jpeg` /
//! `tf.io.decode_image(channels=3)` give, bit for bit.
//!
//! TensorFlow decodes JPEG with libjpeg-turbo (2.1.4 in TF 2.21) with `dct_method =
//! JDCT_IFAST` (`"INTEGER_FAST"`, TF's default) and `do_fancy_upsampling = TRUE`. This crate
//! reproduces that pipeline:
//!
//! - entropy decoding of sequential (`SOF0`, `SOF1`) and progressive (`SOF2`) Huffman scans,
//!   8-bit, interleaved or not, with restart intervals (`jdhuff.c`, `jdphuff.c`);
//! - dequantisation by the AA&N-scaled table (`jddctmgr.c`) and the fast integer IDCT
//!   (`jidctfst.c`) as libjpeg-turbo's x86-64 SSE2 code computes it: 16-bit wrapping
//!   arithmetic, `pmulhw` products, and a saturating final clamp (the portable C code wraps
//!   instead; the two differ only on out-of-range coefficients no encoder writes);
//! - upsampling as `jdsample.c` with fancy upsampling: `h2v1` and `h2v2` triangle filters
//!   (box when the downsampled width is 2 or less), `h1v2` (4:4:0) triangle filter, other
//!   integral ratios by replication; the image edges replicate the last real row/column
//!   (`jdmainct.c`'s context rows);
//! - colour conversion with `jdcolor.c`'s 16-bit fixed-point YCbCr tables; grayscale images
//!   come out as three equal channels (`channels=3`); the colour space is guessed as
//!   `jdapimin.c` does (JFIF, Adobe transform, component ids).
//!
//! Not handled ([`Error::Unsupported`]: decode those with another decoder): arithmetic-coded
//! JPEGs, lossless and hierarchical ones, 12-bit samples, 2- and 4-component (CMYK/YCCK)
//! images, a height given only by a `DNL` marker, and progressive files whose low-frequency
//! coefficients are left incomplete (libjpeg-turbo smooths those blocks).
//!
//! Every length, count and size in the file is checked: no panic, and nothing allocated by
//! size before the caller's check of the dimensions ([`decode_rgb`]'s `check`). Damaged
//! files give what TF gives: entropy data cut by a marker reads as zero bits and then zero
//! blocks until the next restart marker, restart markers out of sequence are resynchronised
//! as `jpeg_resync_to_restart` does, an invalid Huffman code decodes as 0; data that ends
//! before the EOI marker is an error, as in TF (its source manager fails there).

use std::fmt;

/// Why a file was not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A JPEG this decoder does not reproduce (progressive, arithmetic coding, 12-bit, CMYK,
    /// ...); another decoder may read it.
    Unsupported(String),
    /// Not a JPEG, or a malformed one.
    Invalid(String),
    /// The dimensions were refused by the caller's check.
    TooLarge(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unsupported(m) => write!(f, "unsupported JPEG: {m}"),
            Error::Invalid(m) => write!(f, "invalid JPEG: {m}"),
            Error::TooLarge(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

fn invalid<T>(msg: impl Into<String>) -> Result<T, Error> {
    Err(Error::Invalid(msg.into()))
}

fn unsupported<T>(msg: impl Into<String>) -> Result<T, Error> {
    Err(Error::Unsupported(msg.into()))
}

/// A decoded image: `height * width * 3` bytes, RGB, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8 {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// Is this a JPEG (starts with SOI followed by a marker)?
pub fn is_jpeg(data: &[u8]) -> bool {
    data.len() >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF
}

/// Zigzag position -> natural (row-major) position, with libjpeg's 16 extra entries that
/// absorb a run past the end of the block (`jpeg_natural_order`).
const NATURAL: [usize; 80] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63,
];

/// `jddctmgr.c`'s AA&N scale factors, 14 fractional bits, natural order.
const AANSCALES: [i32; 64] = [
    16384, 22725, 21407, 19266, 16384, 12873, 8867, 4520, 22725, 31521, 29692, 26722, 22725, 17855,
    12299, 6270, 21407, 29692, 27969, 25172, 21407, 16819, 11585, 5906, 19266, 26722, 25172, 22654,
    19266, 15137, 10426, 5315, 16384, 22725, 21407, 19266, 16384, 12873, 8867, 4520, 12873, 17855,
    16819, 15137, 12873, 10114, 6967, 3552, 8867, 12299, 11585, 10426, 8867, 6967, 4799, 2446,
    4520, 6270, 5906, 5315, 4520, 3552, 2446, 1247,
];

const LOOKAHEAD: u32 = 9;

/// A Huffman table decoded as `jdhuff.c`'s `jpeg_make_d_derived_tbl`.
#[derive(Clone)]
struct Huffman {
    /// For each `LOOKAHEAD`-bit prefix: `(length << 8) | symbol`, or 0 when the code is longer.
    lookup: Vec<u16>,
    /// Largest code of each length (-1 when none); `maxcode[17]` is a sentinel.
    maxcode: [i32; 18],
    valoffset: [i32; 18],
    vals: [u8; 256],
}

impl Huffman {
    fn new(counts: &[u8; 16], symbols: &[u8], is_dc: bool) -> Result<Self, Error> {
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        if total > 256 || total != symbols.len() {
            return invalid("bad Huffman table");
        }
        if is_dc && symbols.iter().any(|&s| s > 15) {
            return invalid("bad DC Huffman table (symbol above 15)");
        }
        let mut sizes = Vec::with_capacity(total);
        for (l, &n) in counts.iter().enumerate() {
            sizes.extend(std::iter::repeat_n(l as u32 + 1, n as usize));
        }
        let mut codes = Vec::with_capacity(total);
        let mut code: u32 = 0;
        let mut si = sizes.first().copied().unwrap_or(1);
        let mut p = 0;
        while p < sizes.len() {
            while p < sizes.len() && sizes[p] == si {
                codes.push(code);
                code += 1;
                p += 1;
            }
            if code >= 1 << si {
                return invalid("bad Huffman table (code space overflows)");
            }
            code <<= 1;
            si += 1;
        }
        let mut maxcode = [-1i32; 18];
        let mut valoffset = [0i32; 18];
        let mut p = 0usize;
        for l in 1..=16 {
            let n = counts[l - 1] as usize;
            if n > 0 {
                valoffset[l] = p as i32 - codes[p] as i32;
                p += n;
                maxcode[l] = codes[p - 1] as i32;
            }
        }
        maxcode[17] = 0xFFFFF;
        let mut lookup = vec![0u16; 1 << LOOKAHEAD];
        for (i, (&size, &code)) in sizes.iter().zip(&codes).enumerate() {
            if size <= LOOKAHEAD {
                let shift = LOOKAHEAD - size;
                let first = (code << shift) as usize;
                for e in &mut lookup[first..first + (1 << shift)] {
                    *e = ((size as u16) << 8) | symbols[i] as u16;
                }
            }
        }
        let mut vals = [0u8; 256];
        vals[..total].copy_from_slice(symbols);
        Ok(Huffman {
            lookup,
            maxcode,
            valoffset,
            vals,
        })
    }
}

/// The entropy-coded bits of a scan. Reading stops at a marker; past it, zero bits are
/// read, and once one of them is used the rest of the restart interval decodes as zero blocks
/// (libjpeg-turbo's `insufficient_data`). Reaching the end of the data instead is an error:
/// TF's memory source manager fails there (`JERR_FILE_READ`) unless asked to recover.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u64,
    n: u32,
    /// Zero bits at the tail of `buf` that are not data (read past a marker).
    fake: u32,
    at_marker: bool,
    /// The data ended with no marker.
    eof: bool,
    /// A bit past the marker was used.
    insufficient: bool,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Bits {
            data,
            pos,
            buf: 0,
            n: 0,
            fake: 0,
            at_marker: false,
            eof: false,
            insufficient: false,
        }
    }

    /// The next data byte, or `None` at a marker or the end of the data.
    #[inline]
    fn next_byte(&mut self) -> Option<u8> {
        if self.at_marker {
            return None;
        }
        let Some(&b) = self.data.get(self.pos) else {
            self.at_marker = true;
            self.eof = true;
            return None;
        };
        if b != 0xFF {
            self.pos += 1;
            return Some(b);
        }
        // 0xFF: stuffed zero (possibly after fill bytes), or a marker.
        let mut q = self.pos + 1;
        while q < self.data.len() && self.data[q] == 0xFF {
            q += 1;
        }
        match self.data.get(q) {
            Some(0) => {
                self.pos = q + 1;
                Some(0xFF)
            }
            Some(_) => {
                self.at_marker = true;
                None
            }
            None => {
                self.at_marker = true;
                self.eof = true;
                None
            }
        }
    }

    #[inline]
    fn fill(&mut self) {
        while self.n <= 56 {
            let b = match self.next_byte() {
                Some(b) => b,
                None => {
                    self.fake += 8;
                    0
                }
            };
            self.buf |= (b as u64) << (56 - self.n);
            self.n += 8;
        }
    }

    #[inline]
    fn consume(&mut self, k: u32) {
        self.buf <<= k;
        self.n -= k;
        if self.n < self.fake {
            self.insufficient = true;
            self.fake = self.n;
        }
    }

    #[inline]
    fn bits(&mut self, k: u32) -> u32 {
        if k == 0 {
            return 0;
        }
        if self.n < k {
            self.fill();
        }
        let v = (self.buf >> (64 - k)) as u32;
        self.consume(k);
        v
    }

    #[inline]
    fn decode(&mut self, h: &Huffman) -> u8 {
        if self.n < 16 {
            self.fill();
        }
        let peek = (self.buf >> (64 - LOOKAHEAD)) as usize;
        let e = h.lookup[peek];
        if e != 0 {
            self.consume((e >> 8) as u32);
            return e as u8;
        }
        // Longer code (or an invalid one): bit by bit, as `jpeg_huff_decode`.
        let mut code = self.bits(1) as i32;
        let mut l = 1;
        while code > h.maxcode[l] {
            code = (code << 1) | self.bits(1) as i32;
            l += 1;
        }
        if l > 16 {
            // libjpeg-turbo: JWRN_HUFF_BAD_CODE, "fake a zero as the safest result".
            return 0;
        }
        h.vals[((code + h.valoffset[l]) & 0xFF) as usize]
    }

    /// `HUFF_EXTEND(get_bits(s), s)`.
    #[inline]
    fn receive_extend(&mut self, s: u32) -> i32 {
        if s == 0 {
            return 0;
        }
        let v = self.bits(s) as i32;
        if v < 1 << (s - 1) {
            v - (1 << s) + 1
        } else {
            v
        }
    }

    /// Position of the next marker at or after `p` (libjpeg's `next_marker`: garbage and
    /// fill bytes skipped): `(index of its 0xFF, code)`, or `None` at the end of the data.
    fn marker_from(&self, mut p: usize) -> Option<(usize, u8)> {
        let d = self.data;
        loop {
            while p < d.len() && d[p] != 0xFF {
                p += 1;
            }
            while p + 1 < d.len() && d[p + 1] == 0xFF {
                p += 1;
            }
            let &m = d.get(p + 1)?;
            if m != 0 {
                return Some((p, m));
            }
            p += 2;
        }
    }

    /// At a restart boundary (`process_restart`, `read_restart_marker`,
    /// `jpeg_resync_to_restart`): drop the buffered bits and find RST`expected`.
    fn restart(&mut self, expected: u8) -> Result<(), Error> {
        self.buf = 0;
        self.n = 0;
        self.fake = 0;
        self.at_marker = false;
        let mut p = self.pos;
        loop {
            let Some((q, m)) = self.marker_from(p) else {
                return invalid("premature end of data");
            };
            let rst = |k: u8| 0xD0 + (k & 7);
            if m < 0xC0 || m == rst(expected.wrapping_sub(1)) || m == rst(expected.wrapping_sub(2))
            {
                // An invalid marker or an earlier restart: skip it, look further.
                p = q + 2;
                continue;
            }
            let is_rst = (0xD0..=0xD7).contains(&m);
            if !is_rst || m == rst(expected + 1) || m == rst(expected + 2) {
                // Left unread: the interval decodes as zeros and meets it again.
                self.pos = q;
                return Ok(());
            }
            // The expected restart (or one too far away to guess): consume it.
            self.pos = q + 2;
            self.insufficient = false;
            return Ok(());
        }
    }
}

struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Blocks allocated per row (whole MCUs).
    bw: usize,
    /// `width_in_blocks`, `height_in_blocks` (libjpeg's `jdinput.c`).
    wib: usize,
    hib: usize,
    /// `downsampled_width`, `downsampled_height`.
    dw: usize,
    dh: usize,
    plane: Vec<u8>,
    /// Progressive files: every block's coefficients (`bw * bh * 64`), and libjpeg's
    /// `coef_bits` (precision of each coefficient so far; -1 before any scan).
    coefs: Vec<i16>,
    coef_bits: [i32; 64],
    /// Quantisation table captured when the component's scan starts.
    q: Option<[i16; 64]>,
}

struct Frame {
    width: usize,
    height: usize,
    hmax: usize,
    vmax: usize,
    mcux: usize,
    mcuy: usize,
    comps: Vec<Component>,
    progressive: bool,
}

fn be16(d: &[u8], p: usize) -> usize {
    (d[p] as usize) << 8 | d[p + 1] as usize
}

/// Decodes a JPEG to RGB8 as TensorFlow's `decode_jpeg(channels=3)`. `check(width, height)`
/// is called with the header's dimensions before anything is allocated by size; an `Err`
/// from it is returned as [`Error::TooLarge`].
pub fn decode_rgb(
    data: &[u8],
    check: impl FnOnce(u32, u32) -> Result<(), String>,
) -> Result<Rgb8, Error> {
    if data.len() < 2 || data[0] != 0xFF || data[1] != 0xD8 {
        return invalid("no SOI marker");
    }
    let mut pos = 2;
    let mut qt: [Option<[u16; 64]>; 4] = [None; 4];
    let mut dc: [Option<Huffman>; 4] = [None, None, None, None];
    let mut ac: [Option<Huffman>; 4] = [None, None, None, None];
    let mut restart_interval = 0usize;
    let mut jfif = false;
    let mut adobe: Option<u8> = None;
    let mut frame: Option<Frame> = None;
    let mut check = Some(check);
    let mut scans = 0usize;
    loop {
        // Next marker: skip garbage up to an 0xFF, then fill bytes (libjpeg's next_marker).
        while pos < data.len() && data[pos] != 0xFF {
            pos += 1;
        }
        while pos < data.len() && data[pos] == 0xFF {
            pos += 1;
        }
        let Some(&m) = data.get(pos) else {
            // TF (libjpeg-turbo with TF's source manager) fails here too.
            return invalid("premature end of data (no EOI marker)");
        };
        pos += 1;
        match m {
            0xD8 => return invalid("second SOI marker"),
            0xD9 => break,
            0x01 | 0xD0..=0xD7 => continue, // standalone markers
            0x00 => continue,
            _ => {}
        }
        if pos + 2 > data.len() {
            return invalid("truncated marker segment");
        }
        let len = be16(data, pos);
        if len < 2 || pos + len > data.len() {
            return invalid(format!("marker 0x{m:02X}: bad length {len}"));
        }
        let seg = &data[pos + 2..pos + len];
        pos += len;
        match m {
            0xE0 if seg.len() >= 14 && seg.starts_with(b"JFIF\0") => jfif = true,
            0xEE if seg.len() >= 12 && seg.starts_with(b"Adobe") => adobe = Some(seg[11]),
            0xDB => {
                let mut p = 0;
                while p < seg.len() {
                    let pq = seg[p] >> 4;
                    let tq = (seg[p] & 15) as usize;
                    p += 1;
                    if tq > 3 || pq > 1 {
                        return invalid("bad DQT table");
                    }
                    let n = if pq == 0 { 64 } else { 128 };
                    if p + n > seg.len() {
                        return invalid("truncated DQT table");
                    }
                    let mut t = [0u16; 64];
                    for (k, &nat) in NATURAL[..64].iter().enumerate() {
                        t[nat] = if pq == 0 {
                            seg[p + k] as u16
                        } else {
                            be16(seg, p + 2 * k) as u16
                        };
                    }
                    p += n;
                    qt[tq] = Some(t);
                }
            }
            0xC4 => {
                let mut p = 0;
                while p < seg.len() {
                    if p + 17 > seg.len() {
                        return invalid("truncated DHT table");
                    }
                    let tc = seg[p] >> 4;
                    let th = (seg[p] & 15) as usize;
                    let mut counts = [0u8; 16];
                    counts.copy_from_slice(&seg[p + 1..p + 17]);
                    p += 17;
                    let total: usize = counts.iter().map(|&c| c as usize).sum();
                    if tc > 1 || th > 3 || total > 256 || p + total > seg.len() {
                        return invalid("bad DHT table");
                    }
                    let h = Huffman::new(&counts, &seg[p..p + total], tc == 0)?;
                    p += total;
                    if tc == 0 {
                        dc[th] = Some(h);
                    } else {
                        ac[th] = Some(h);
                    }
                }
            }
            0xDD => {
                if seg.len() < 2 {
                    return invalid("bad DRI marker");
                }
                restart_interval = be16(seg, 0);
            }
            0xC0..=0xC2 => {
                if frame.is_some() {
                    return invalid("second SOF marker");
                }
                let check = check.take().expect("one frame");
                frame = Some(read_frame(seg, m == 0xC2, check)?);
            }
            0xC3 | 0xC5..=0xC7 | 0xCB | 0xCD..=0xCF => {
                return unsupported(format!("lossless or hierarchical JPEG (SOF 0x{m:02X})"))
            }
            0xC9 | 0xCA => return unsupported("arithmetic-coded JPEG"),
            0xCC => return unsupported("arithmetic coding conditioning (DAC)"),
            0xDC => return unsupported("DNL marker"),
            0xDA => {
                let Some(f) = frame.as_mut() else {
                    return invalid("SOS before SOF");
                };
                pos = if f.progressive {
                    scan_progressive(data, pos, seg, f, &qt, &dc, &ac, restart_interval)?
                } else {
                    scan(data, pos, seg, f, &qt, &dc, &ac, restart_interval)?
                };
                scans += 1;
            }
            _ => {} // APPn, COM, others: skipped
        }
    }
    let Some(mut f) = frame else {
        return invalid("no SOF marker");
    };
    if scans == 0 {
        return invalid("no image data (SOS)");
    }
    if f.progressive {
        finish_progressive(&mut f)?;
    }
    let rgb_space = f.comps.len() == 3 && {
        // jdapimin.c's default_decompress_parms
        if jfif {
            false
        } else if let Some(t) = adobe {
            t == 0
        } else {
            let ids = [f.comps[0].id, f.comps[1].id, f.comps[2].id];
            ids == [82, 71, 66]
        }
    };
    Ok(Rgb8 {
        width: f.width as u32,
        height: f.height as u32,
        data: output(&f, rgb_space)?,
    })
}

fn read_frame(
    seg: &[u8],
    progressive: bool,
    check: impl FnOnce(u32, u32) -> Result<(), String>,
) -> Result<Frame, Error> {
    if seg.len() < 6 {
        return invalid("truncated SOF marker");
    }
    let precision = seg[0];
    let height = be16(seg, 1);
    let width = be16(seg, 3);
    let nc = seg[5] as usize;
    if precision != 8 {
        return unsupported(format!("{precision}-bit samples"));
    }
    if seg.len() != 6 + 3 * nc {
        return invalid("bad SOF marker length");
    }
    if height == 0 {
        return unsupported("height 0 (set by a DNL marker)");
    }
    if width == 0 {
        return invalid("width 0");
    }
    match nc {
        1 | 3 => {}
        4 => return unsupported("4-component (CMYK/YCCK) JPEG"),
        n => return unsupported(format!("{n} components")),
    }
    let mut comps = Vec::with_capacity(nc);
    for c in 0..nc {
        let p = 6 + 3 * c;
        let (h, v) = ((seg[p + 1] >> 4) as usize, (seg[p + 1] & 15) as usize);
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
            return invalid("bad sampling factors");
        }
        if seg[p + 2] > 3 {
            return invalid("bad quantisation table number");
        }
        comps.push((seg[p], h, v, seg[p + 2] as usize));
    }
    check(width as u32, height as u32).map_err(Error::TooLarge)?;
    let hmax = comps.iter().map(|c| c.1).max().unwrap_or(1);
    let vmax = comps.iter().map(|c| c.2).max().unwrap_or(1);
    let mcux = width.div_ceil(hmax * 8);
    let mcuy = height.div_ceil(vmax * 8);
    let comps = comps
        .into_iter()
        .map(|(id, h, v, tq)| {
            let bw = mcux * h;
            let bh = mcuy * v;
            Component {
                id,
                h,
                v,
                tq,
                bw,
                wib: (width * h).div_ceil(hmax * 8),
                hib: (height * v).div_ceil(vmax * 8),
                dw: (width * h).div_ceil(hmax),
                dh: (height * v).div_ceil(vmax),
                // An all-zero block decodes to 128: what a component absent from every
                // scan gives (libjpeg's zeroed coefficient buffer).
                plane: vec![128u8; bw * 8 * bh * 8],
                coefs: if progressive {
                    vec![0i16; bw * bh * 64]
                } else {
                    Vec::new()
                },
                coef_bits: [-1; 64],
                q: None,
            }
        })
        .collect();
    Ok(Frame {
        width,
        height,
        hmax,
        vmax,
        mcux,
        mcuy,
        comps,
        progressive,
    })
}

/// Decodes one sequential scan (its header `seg`, its data from `pos`), IDCT-ing each block
/// into its component's plane. Returns the position after the scan's data.
#[allow(clippy::too_many_arguments)]
fn scan(
    data: &[u8],
    pos: usize,
    seg: &[u8],
    f: &mut Frame,
    qt: &[Option<[u16; 64]>; 4],
    dc: &[Option<Huffman>; 4],
    ac: &[Option<Huffman>; 4],
    restart_interval: usize,
) -> Result<usize, Error> {
    let (comps, _) = parse_sos(seg, f, qt)?;
    let ns = comps.len();
    let mut sc: Vec<(usize, &Huffman, &Huffman)> = Vec::with_capacity(ns);
    for &(ci, td, ta) in &comps {
        let (Some(d), Some(a)) = (dc[td].as_ref(), ac[ta].as_ref()) else {
            return invalid("SOS uses an undefined Huffman table");
        };
        sc.push((ci, d, a));
    }
    let blocks_per_mcu: usize = if ns == 1 {
        1
    } else {
        sc.iter().map(|s| f.comps[s.0].h * f.comps[s.0].v).sum()
    };
    if blocks_per_mcu > 10 {
        return invalid("more than 10 blocks in an MCU");
    }
    let (mx, my) = if ns == 1 {
        let c = &f.comps[sc[0].0];
        (c.wib, c.hib)
    } else {
        (f.mcux, f.mcuy)
    };
    let quant: Vec<[i16; 64]> = sc
        .iter()
        .map(|s| f.comps[s.0].q.expect("set above"))
        .collect();
    let mut bits = Bits::new(data, pos);
    let mut pred = [0i32; 4];
    let mut coef = [0i16; 64];
    let mut todo = restart_interval;
    let mut next_rst = 0u8;
    for y in 0..my {
        for x in 0..mx {
            if restart_interval > 0 {
                if todo == 0 {
                    bits.restart(next_rst)?;
                    next_rst = (next_rst + 1) & 7;
                    pred = [0; 4];
                    todo = restart_interval;
                }
                todo -= 1;
            }
            // Checked per MCU, as `decode_mcu`: once data ran out, whole MCUs are zeros.
            let skip = bits.insufficient;
            for (si, &(ci, dch, ach)) in sc.iter().enumerate() {
                let c = &mut f.comps[ci];
                let (bx0, by0, nh, nv) = if ns == 1 {
                    (x, y, 1, 1)
                } else {
                    (x * c.h, y * c.v, c.h, c.v)
                };
                let q = &quant[si];
                for by in by0..by0 + nv {
                    for bx in bx0..bx0 + nh {
                        coef.fill(0);
                        if skip {
                            // Out of data: a zero block, the DC prediction untouched.
                            let stride = c.bw * 8;
                            let off = by * 8 * stride + bx * 8;
                            idct_dc_only(0, q[0], &mut c.plane[off..], stride);
                            continue;
                        }
                        let s = bits.decode(dch) as u32;
                        let diff = bits.receive_extend(s);
                        pred[si] = match pred[si].checked_add(diff) {
                            Some(v) => v,
                            None => return invalid("DC coefficient overflows"),
                        };
                        coef[0] = pred[si] as i16;
                        let mut k = 1usize;
                        let mut ac = false;
                        while k < 64 {
                            let rs = bits.decode(ach);
                            let r = (rs >> 4) as usize;
                            let s = (rs & 15) as u32;
                            if s != 0 {
                                k += r;
                                coef[NATURAL[k]] = bits.receive_extend(s) as i16;
                                ac = true;
                            } else if r != 15 {
                                break;
                            } else {
                                k += 15;
                            }
                            k += 1;
                        }
                        let stride = c.bw * 8;
                        let off = by * 8 * stride + bx * 8;
                        if ac {
                            idct_ifast(&coef, q, &mut c.plane[off..], stride);
                        } else {
                            idct_dc_only(coef[0], q[0], &mut c.plane[off..], stride);
                        }
                    }
                }
            }
        }
    }
    if bits.eof {
        return invalid("premature end of data");
    }
    // Past the scan's data: back to the marker the bit reader stopped at (or just after
    // the last byte it used).
    Ok(bits.pos)
}

/// The scan header: its components `(index, DC table, AC table)` and `(Ss, Se, Ah, Al)`;
/// latches each component's dequantisation multipliers at its first scan (`jdinput.c`,
/// `jddctmgr.c` for JDCT_IFAST).
type ScanHeader = (Vec<(usize, usize, usize)>, (usize, usize, u32, u32));

fn parse_sos(seg: &[u8], f: &mut Frame, qt: &[Option<[u16; 64]>; 4]) -> Result<ScanHeader, Error> {
    if seg.is_empty() {
        return invalid("truncated SOS marker");
    }
    let ns = seg[0] as usize;
    if ns == 0 || ns > 4 || seg.len() != 4 + 2 * ns {
        return invalid("bad SOS marker");
    }
    let mut comps: Vec<(usize, usize, usize)> = Vec::with_capacity(ns);
    for i in 0..ns {
        let id = seg[1 + 2 * i];
        let t = seg[2 + 2 * i];
        let Some(ci) = f.comps.iter().position(|c| c.id == id) else {
            return invalid(format!("SOS names an unknown component {id}"));
        };
        if comps.iter().any(|s| s.0 == ci) {
            return invalid("SOS names a component twice");
        }
        let (td, ta) = ((t >> 4) as usize, (t & 15) as usize);
        if td > 3 || ta > 3 {
            return invalid("SOS uses an undefined Huffman table");
        }
        comps.push((ci, td, ta));
    }
    for &(ci, _, _) in &comps {
        let c = &mut f.comps[ci];
        if c.q.is_some() {
            continue;
        }
        let Some(q) = qt[c.tq] else {
            return invalid("component uses an undefined quantisation table");
        };
        let mut m = [0i16; 64];
        for i in 0..64 {
            // DESCALE(q * aan, 14 - 2), rounded; kept in 16 bits (IFAST_MULT_TYPE).
            m[i] = ((q[i] as i32 * AANSCALES[i] + (1 << 11)) >> 12) as i16;
        }
        c.q = Some(m);
    }
    let p = 1 + 2 * ns;
    let (ss, se) = (seg[p] as usize, seg[p + 1] as usize);
    let (ah, al) = ((seg[p + 2] >> 4) as u32, (seg[p + 2] & 15) as u32);
    Ok((comps, (ss, se, ah, al)))
}

/// Decodes one progressive scan into the coefficient buffers (`jdphuff.c`).
#[allow(clippy::too_many_arguments)]
fn scan_progressive(
    data: &[u8],
    pos: usize,
    seg: &[u8],
    f: &mut Frame,
    qt: &[Option<[u16; 64]>; 4],
    dc: &[Option<Huffman>; 4],
    ac: &[Option<Huffman>; 4],
    restart_interval: usize,
) -> Result<usize, Error> {
    let (comps, (ss, se, ah, al)) = parse_sos(seg, f, qt)?;
    let ns = comps.len();
    // start_pass_phuff_decoder's checks.
    let bad = if ss == 0 {
        se != 0
    } else {
        se < ss || se > 63 || ns != 1
    };
    if bad || (ah != 0 && al != ah - 1) || al > 13 {
        return invalid("bad progressive scan parameters");
    }
    for &(ci, _, _) in &comps {
        let cb = &mut f.comps[ci].coef_bits;
        for b in &mut cb[ss..=se] {
            *b = al as i32;
        }
    }
    let dc_first = ss == 0 && ah == 0;
    let mut tabs: Vec<(usize, Option<&Huffman>, Option<&Huffman>)> = Vec::with_capacity(ns);
    for &(ci, td, ta) in &comps {
        let d = if dc_first { dc[td].as_ref() } else { None };
        let a = if ss != 0 { ac[ta].as_ref() } else { None };
        if (dc_first && d.is_none()) || (ss != 0 && a.is_none()) {
            return invalid("SOS uses an undefined Huffman table");
        }
        tabs.push((ci, d, a));
    }
    let blocks_per_mcu: usize = if ns == 1 {
        1
    } else {
        comps.iter().map(|s| f.comps[s.0].h * f.comps[s.0].v).sum()
    };
    if blocks_per_mcu > 10 {
        return invalid("more than 10 blocks in an MCU");
    }
    let (mx, my) = if ns == 1 {
        let c = &f.comps[comps[0].0];
        (c.wib, c.hib)
    } else {
        (f.mcux, f.mcuy)
    };
    let mut bits = Bits::new(data, pos);
    let mut pred = [0i32; 4];
    let mut eobrun: u32 = 0;
    let mut todo = restart_interval;
    let mut next_rst = 0u8;
    let p1: i16 = 1 << al;
    let m1: i16 = (-1i16).wrapping_shl(al);
    for y in 0..my {
        for x in 0..mx {
            if restart_interval > 0 {
                if todo == 0 {
                    bits.restart(next_rst)?;
                    next_rst = (next_rst + 1) & 7;
                    pred = [0; 4];
                    eobrun = 0;
                    todo = restart_interval;
                }
                todo -= 1;
            }
            if bits.insufficient {
                continue;
            }
            for (si, &(ci, dch, ach)) in tabs.iter().enumerate() {
                let c = &mut f.comps[ci];
                let (bx0, by0, nh, nv) = if ns == 1 {
                    (x, y, 1, 1)
                } else {
                    (x * c.h, y * c.v, c.h, c.v)
                };
                for by in by0..by0 + nv {
                    for bx in bx0..bx0 + nh {
                        let off = (by * c.bw + bx) * 64;
                        let blk = &mut c.coefs[off..off + 64];
                        if ss == 0 {
                            if let Some(dch) = dch {
                                let s = bits.decode(dch) as u32;
                                let diff = bits.receive_extend(s);
                                pred[si] = match pred[si].checked_add(diff) {
                                    Some(v) => v,
                                    None => return invalid("DC coefficient overflows"),
                                };
                                blk[0] = (pred[si] as i16).wrapping_shl(al);
                            } else if bits.bits(1) != 0 {
                                blk[0] |= p1;
                            }
                        } else if ah == 0 {
                            ac_first(
                                &mut bits,
                                ach.expect("checked"),
                                blk,
                                ss,
                                se,
                                al,
                                &mut eobrun,
                            );
                        } else {
                            ac_refine(
                                &mut bits,
                                ach.expect("checked"),
                                blk,
                                ss,
                                se,
                                p1,
                                m1,
                                &mut eobrun,
                            );
                        }
                    }
                }
            }
        }
    }
    if bits.eof {
        return invalid("premature end of data");
    }
    Ok(bits.pos)
}

/// `decode_mcu_AC_first`.
fn ac_first(
    bits: &mut Bits,
    h: &Huffman,
    blk: &mut [i16],
    ss: usize,
    se: usize,
    al: u32,
    eobrun: &mut u32,
) {
    if *eobrun > 0 {
        *eobrun -= 1;
        return;
    }
    let mut k = ss;
    while k <= se {
        let rs = bits.decode(h);
        let r = (rs >> 4) as u32;
        let s = (rs & 15) as u32;
        if s != 0 {
            k += r as usize;
            let v = bits.receive_extend(s);
            blk[NATURAL[k]] = (v as i16).wrapping_shl(al);
        } else if r == 15 {
            k += 15;
        } else {
            *eobrun = 1 << r;
            if r != 0 {
                *eobrun += bits.bits(r);
            }
            *eobrun -= 1;
            break;
        }
        k += 1;
    }
}

/// `decode_mcu_AC_refine`.
#[allow(clippy::too_many_arguments)]
fn ac_refine(
    bits: &mut Bits,
    h: &Huffman,
    blk: &mut [i16],
    ss: usize,
    se: usize,
    p1: i16,
    m1: i16,
    eobrun: &mut u32,
) {
    let refine = |bits: &mut Bits, c: &mut i16| {
        if bits.bits(1) != 0 && *c & p1 == 0 {
            *c = if *c >= 0 {
                c.wrapping_add(p1)
            } else {
                c.wrapping_add(m1)
            };
        }
    };
    let mut k = ss;
    if *eobrun == 0 {
        while k <= se {
            let rs = bits.decode(h);
            let mut r = (rs >> 4) as i32;
            let s = (rs & 15) as u32;
            let mut v: i16 = 0;
            if s != 0 {
                // s should be 1 (libjpeg-turbo warns otherwise and goes on)
                v = if bits.bits(1) != 0 { p1 } else { m1 };
            } else if r != 15 {
                *eobrun = 1 << r;
                if r != 0 {
                    *eobrun += bits.bits(r as u32);
                }
                break;
            }
            loop {
                let c = &mut blk[NATURAL[k]];
                if *c != 0 {
                    refine(bits, c);
                } else {
                    r -= 1;
                    if r < 0 {
                        break;
                    }
                }
                k += 1;
                if k > se {
                    break;
                }
            }
            if v != 0 {
                blk[NATURAL[k]] = v;
            }
            k += 1;
        }
    }
    if *eobrun > 0 {
        while k <= se {
            let c = &mut blk[NATURAL[k]];
            if *c != 0 {
                refine(bits, c);
            }
            k += 1;
        }
        *eobrun -= 1;
    }
}

/// After the last scan: the IDCT of every block. libjpeg-turbo smooths the blocks of a
/// progressive image whose low-frequency coefficients are not all complete
/// (`do_block_smoothing`, on by default); that is not reproduced: such files are
/// [`Error::Unsupported`].
fn finish_progressive(f: &mut Frame) -> Result<(), Error> {
    for c in &f.comps {
        if c.coef_bits[1..10].iter().any(|&b| b != 0) {
            return unsupported("progressive JPEG with incomplete coefficients (block smoothing)");
        }
    }
    for c in &mut f.comps {
        let Some(q) = c.q else {
            continue; // in no scan: left at 128
        };
        let stride = c.bw * 8;
        let n = c.bw * (c.plane.len() / stride / 8);
        for b in 0..n {
            let (by, bx) = (b / c.bw, b % c.bw);
            let mut coef = [0i16; 64];
            coef.copy_from_slice(&c.coefs[b * 64..b * 64 + 64]);
            let off = by * 8 * stride + bx * 8;
            idct_ifast(&coef, &q, &mut c.plane[off..], stride);
        }
    }
    Ok(())
}

/// `pmulhw(x << 2, c << 6)`: libjpeg-turbo SSE2's `MULTIPLY(x, c)` with 8 fractional bits.
#[inline(always)]
fn mul(x: i16, c: i32) -> i16 {
    ((x.wrapping_shl(2) as i32 * (c << 6)) >> 16) as i16
}

const F_1_082: i32 = 277;
const F_1_414: i32 = 362;
const F_1_847: i32 = 473;
const F_1_613: i32 = 669 - 256;

/// Eight 16-bit lanes, as one SSE2 register: the IDCT runs on eight columns (then eight
/// rows) at once, as libjpeg-turbo's SSE2 code does (and the compiler vectorises it).
type V = [i16; 8];

#[inline(always)]
fn vadd(a: V, b: V) -> V {
    std::array::from_fn(|i| a[i].wrapping_add(b[i]))
}

#[inline(always)]
fn vsub(a: V, b: V) -> V {
    std::array::from_fn(|i| a[i].wrapping_sub(b[i]))
}

#[inline(always)]
fn vmul(a: V, c: i32) -> V {
    std::array::from_fn(|i| mul(a[i], c))
}

/// One 1-D pass of the AA&N IDCT (`jidctfst.c`) on eight lanes, 16-bit wrapping as the SSE2
/// code.
#[inline(always)]
fn idct_1d(i: [V; 8]) -> [V; 8] {
    // Even part
    let tmp10 = vadd(i[0], i[4]);
    let tmp11 = vsub(i[0], i[4]);
    let tmp13 = vadd(i[2], i[6]);
    let tmp12 = vsub(vmul(vsub(i[2], i[6]), F_1_414), tmp13);
    let tmp0 = vadd(tmp10, tmp13);
    let tmp3 = vsub(tmp10, tmp13);
    let tmp1 = vadd(tmp11, tmp12);
    let tmp2 = vsub(tmp11, tmp12);
    // Odd part
    let z13 = vadd(i[5], i[3]);
    let z10 = vsub(i[5], i[3]);
    let z11 = vadd(i[1], i[7]);
    let z12 = vsub(i[1], i[7]);
    let tmp7 = vadd(z11, z13);
    let tmp11 = vmul(vsub(z11, z13), F_1_414);
    let z5 = vmul(vadd(z10, z12), F_1_847);
    let tmp10 = vsub(vmul(z12, F_1_082), z5);
    // MULTIPLY(z10, -2.613) as -1.613 * z10 - z10
    let tmp12 = vadd(vsub(vmul(z10, -F_1_613), z10), z5);
    let tmp6 = vsub(tmp12, tmp7);
    let tmp5 = vsub(tmp11, tmp6);
    let tmp4 = vadd(tmp10, tmp5);
    [
        vadd(tmp0, tmp7),
        vadd(tmp1, tmp6),
        vadd(tmp2, tmp5),
        vsub(tmp3, tmp4),
        vadd(tmp3, tmp4),
        vsub(tmp2, tmp5),
        vsub(tmp1, tmp6),
        vsub(tmp0, tmp7),
    ]
}

/// [`idct_ifast`] of a block whose AC coefficients are all zero: every output is the
/// dequantised DC, descaled and clamped (what both passes give for such a block).
fn idct_dc_only(dc: i16, q: i16, out: &mut [u8], stride: usize) {
    let v = ((dc.wrapping_mul(q) >> 5).clamp(-128, 127) + 128) as u8;
    for r in 0..8 {
        out[r * stride..r * stride + 8].fill(v);
    }
}

/// Dequantises and inverse-transforms one block into `out` (8 rows of `stride`).
fn idct_ifast(coef: &[i16; 64], q: &[i16; 64], out: &mut [u8], stride: usize) {
    // Pass 1: the eight columns at once (lane = column); row r of the input is vector r.
    let rows: [V; 8] = std::array::from_fn(|r| {
        std::array::from_fn(|c| coef[r * 8 + c].wrapping_mul(q[r * 8 + c]))
    });
    let ws = idct_1d(rows);
    // Pass 2: the eight rows at once (lane = row): transpose, so vector k is column k.
    let cols: [V; 8] = std::array::from_fn(|k| std::array::from_fn(|r| ws[r][k]));
    let o = idct_1d(cols);
    // o[k][r] is output row r, column k: descale by 2^(PASS1_BITS + 3), saturate to a
    // signed byte, re-centre.
    for r in 0..8 {
        let row = &mut out[r * stride..r * stride + 8];
        for (k, d) in row.iter_mut().enumerate() {
            *d = ((o[k][r] >> 5).clamp(-128, 127) + 128) as u8;
        }
    }
}

/// `jdcolor.c`'s fixed-point constants, `FIX(x) = (x * 65536 + 0.5) as i32`
/// (`build_ycc_rgb_table`: `Cr_r_tab[i] = (FIX(1.402) * (i - 128) + ONE_HALF) >> 16`, ...).
const FIX_1_402: i32 = 91881;
const FIX_1_772: i32 = 116130;
const FIX_0_714: i32 = 46802;
const FIX_0_344: i32 = 22554;
const ONE_HALF: i32 = 1 << 15;

/// How a component's plane becomes full-size rows (`jdsample.c`'s method choice).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Up {
    Full,
    H2V1Fancy,
    H1V2Fancy,
    H2V2Fancy,
    /// Replication by integral factors (`h2v1_upsample`, `h2v2_upsample`, `int_upsample`).
    Box(usize, usize),
}

/// Upsamples and colour-converts all planes into the RGB output.
fn output(f: &Frame, rgb_space: bool) -> Result<Vec<u8>, Error> {
    let (w, h) = (f.width, f.height);
    let mut ups = Vec::with_capacity(f.comps.len());
    for c in &f.comps {
        let (hi, vi, ho, vo) = (c.h, c.v, f.hmax, f.vmax);
        let u = if hi == ho && vi == vo {
            Up::Full
        } else if hi * 2 == ho && vi == vo {
            if c.dw > 2 {
                Up::H2V1Fancy
            } else {
                Up::Box(2, 1)
            }
        } else if hi == ho && vi * 2 == vo {
            Up::H1V2Fancy
        } else if hi * 2 == ho && vi * 2 == vo {
            if c.dw > 2 {
                Up::H2V2Fancy
            } else {
                Up::Box(2, 2)
            }
        } else if ho % hi == 0 && vo % vi == 0 {
            Up::Box(ho / hi, vo / vi)
        } else {
            return unsupported("fractional sampling ratios");
        };
        ups.push(u);
    }
    let mut out = vec![0u8; w * h * 3];
    let nc = f.comps.len();
    // Full-size rows of the components that need upsampling, for the current output row.
    let mut rows: Vec<Vec<u8>> = (0..nc).map(|_| vec![0u8; w + 2]).collect();
    let mut colsum: Vec<i32> = Vec::new();
    for y in 0..h {
        for (ci, dst) in rows.iter_mut().enumerate() {
            let c = &f.comps[ci];
            let stride = c.bw * 8;
            let row_of = |r: usize| &c.plane[r * stride..r * stride + stride];
            match ups[ci] {
                Up::Full => {}
                Up::Box(hx, vx) => {
                    let src = row_of(y / vx);
                    for (x, d) in dst[..w].iter_mut().enumerate() {
                        *d = src[x / hx];
                    }
                }
                Up::H2V1Fancy => h2v1_fancy(&row_of(y)[..c.dw], &mut dst[..2 * c.dw]),
                Up::H1V2Fancy | Up::H2V2Fancy => {
                    let near = y / 2;
                    let (far, bias_v) = if y % 2 == 0 {
                        (near.saturating_sub(1), 0)
                    } else {
                        ((near + 1).min(c.dh - 1), 1)
                    };
                    let (a, b) = (&row_of(near)[..c.dw], &row_of(far)[..c.dw]);
                    colsum.clear();
                    colsum.extend(a.iter().zip(b).map(|(&a, &b)| a as i32 * 3 + b as i32));
                    if ups[ci] == Up::H1V2Fancy {
                        // bias 1 towards the row above, 2 towards the row below
                        let bias = 1 + bias_v;
                        for (d, &s) in dst[..c.dw].iter_mut().zip(&colsum) {
                            *d = ((s + bias) >> 2) as u8;
                        }
                    } else {
                        h2v2_fancy(&colsum, &mut dst[..2 * c.dw]);
                    }
                }
            }
        }
        let row = |ci: usize| -> &[u8] {
            let c = &f.comps[ci];
            if ups[ci] == Up::Full {
                let stride = c.bw * 8;
                &c.plane[y * stride..y * stride + w]
            } else {
                &rows[ci][..w]
            }
        };
        let o = &mut out[y * w * 3..(y + 1) * w * 3];
        if nc == 1 {
            for (p, &g) in o.chunks_exact_mut(3).zip(row(0)) {
                p.fill(g);
            }
        } else if rgb_space {
            for (((p, &r), &g), &b) in o.chunks_exact_mut(3).zip(row(0)).zip(row(1)).zip(row(2)) {
                p.copy_from_slice(&[r, g, b]);
            }
        } else {
            // jdcolor.c's tables, computed instead of looked up (the same integers: the
            // tables are these expressions), which the compiler vectorises.
            for (((p, &yy), &cb), &cr) in o.chunks_exact_mut(3).zip(row(0)).zip(row(1)).zip(row(2))
            {
                let yy = yy as i32;
                let (xb, xr) = (cb as i32 - 128, cr as i32 - 128);
                let r = yy + ((FIX_1_402 * xr + ONE_HALF) >> 16);
                let g = yy + ((-FIX_0_344 * xb - FIX_0_714 * xr + ONE_HALF) >> 16);
                let b = yy + ((FIX_1_772 * xb + ONE_HALF) >> 16);
                p[0] = r.clamp(0, 255) as u8;
                p[1] = g.clamp(0, 255) as u8;
                p[2] = b.clamp(0, 255) as u8;
            }
        }
    }
    Ok(out)
}

/// `h2v1_fancy_upsample` on one row of `dw > 2` samples into `2 * dw`.
fn h2v1_fancy(src: &[u8], dst: &mut [u8]) {
    let n = src.len();
    let s = |i: usize| src[i] as i32;
    dst[0] = src[0];
    dst[1] = ((s(0) * 3 + s(1) + 2) >> 2) as u8;
    for i in 1..n - 1 {
        let v = s(i) * 3;
        dst[2 * i] = ((v + s(i - 1) + 1) >> 2) as u8;
        dst[2 * i + 1] = ((v + s(i + 1) + 2) >> 2) as u8;
    }
    dst[2 * n - 2] = ((s(n - 1) * 3 + s(n - 2) + 1) >> 2) as u8;
    dst[2 * n - 1] = src[n - 1];
}

/// `h2v2_fancy_upsample`'s horizontal step on one row of column sums (`dw > 2`).
fn h2v2_fancy(cs: &[i32], dst: &mut [u8]) {
    let n = cs.len();
    dst[0] = ((cs[0] * 4 + 8) >> 4) as u8;
    dst[1] = ((cs[0] * 3 + cs[1] + 7) >> 4) as u8;
    for i in 1..n - 1 {
        dst[2 * i] = ((cs[i] * 3 + cs[i - 1] + 8) >> 4) as u8;
        dst[2 * i + 1] = ((cs[i] * 3 + cs[i + 1] + 7) >> 4) as u8;
    }
    dst[2 * n - 2] = ((cs[n - 1] * 3 + cs[n - 2] + 8) >> 4) as u8;
    dst[2 * n - 1] = ((cs[n - 1] * 4 + 7) >> 4) as u8;
}

#[cfg(test)]
mod tests {
    #[test]
    fn colour_constants_are_jdcolor_fix_values() {
        let fix = |x: f64| (x * 65536.0 + 0.5) as i32;
        assert_eq!(super::FIX_1_402, fix(1.40200));
        assert_eq!(super::FIX_1_772, fix(1.77200));
        assert_eq!(super::FIX_0_714, fix(0.71414));
        assert_eq!(super::FIX_0_344, fix(0.34414));
    }
}
