//! NHWC activations: an owned buffer and channel-slice views of it.

/// An owned `[n, h, w, c]` f32 tensor, channels innermost.
#[derive(Debug, Clone, PartialEq)]
pub struct Nhwc {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub data: Vec<f32>,
}

impl Nhwc {
    /// A zero-filled tensor.
    pub fn zeros(n: usize, h: usize, w: usize, c: usize) -> Nhwc {
        Nhwc {
            n,
            h,
            w,
            c,
            data: vec![0.0; n * h * w * c],
        }
    }

    /// A new `n*h*w*c` tensor whose every element `fill` writes through the pointer it is
    /// given. The buffer is not zeroed first: that would be a whole extra pass over the
    /// output (a fresh allocation's pages are zero already, but a buffer reused by the
    /// caching allocator is not).
    ///
    /// # Safety
    /// `fill` must write all `n*h*w*c` floats, through the pointer only (no reads, no
    /// references to the unwritten buffer).
    pub(crate) unsafe fn filled_by(
        n: usize,
        h: usize,
        w: usize,
        c: usize,
        fill: impl FnOnce(*mut f32),
    ) -> Nhwc {
        let len = n * h * w * c;
        let mut data = Vec::<f32>::with_capacity(len);
        fill(data.as_mut_ptr());
        // SAFETY: `fill` wrote every element (the caller's promise).
        unsafe { data.set_len(len) };
        Nhwc { n, h, w, c, data }
    }

    /// Wraps `data` (length `n*h*w*c`), or `None` when the length does not match.
    pub fn from_vec(n: usize, h: usize, w: usize, c: usize, data: Vec<f32>) -> Option<Nhwc> {
        (data.len() == n * h * w * c).then_some(Nhwc { n, h, w, c, data })
    }

    /// Number of pixels, `n * h * w`.
    pub fn pixels(&self) -> usize {
        self.n * self.h * self.w
    }

    /// The whole tensor as a view.
    pub fn view(&self) -> View<'_> {
        self.channels(0, self.c)
    }

    /// Channels `start .. start + len` as a view.
    pub fn channels(&self, start: usize, len: usize) -> View<'_> {
        assert!(start + len <= self.c, "channel slice out of range");
        View {
            data: &self.data,
            n: self.n,
            h: self.h,
            w: self.w,
            c: len,
            stride: self.c,
            offset: start,
        }
    }

    /// Channels `start .. start + len` as an output slot.
    pub fn slot(&mut self, start: usize, len: usize) -> Slot<'_> {
        self.slots(&[(start, len)]).pop().expect("one slot")
    }

    /// The whole tensor as an output slot.
    pub fn slot_all(&mut self) -> Slot<'_> {
        let c = self.c;
        self.slot(0, c)
    }

    /// Output slots for several disjoint channel ranges `(start, len)` at once, e.g. for
    /// branches that fill their parts of a concatenation concurrently.
    ///
    /// Panics when a range is out of bounds or two ranges overlap.
    pub fn slots(&mut self, ranges: &[(usize, usize)]) -> Vec<Slot<'_>> {
        for (i, &(s, l)) in ranges.iter().enumerate() {
            assert!(s + l <= self.c, "channel slice out of range");
            for &(s2, l2) in &ranges[i + 1..] {
                assert!(s + l <= s2 || s2 + l2 <= s, "channel slices overlap");
            }
        }
        let (n, h, w, stride, len) = (self.n, self.h, self.w, self.c, self.data.len());
        let ptr = self.data.as_mut_ptr();
        ranges
            .iter()
            .map(|&(offset, c)| Slot {
                ptr,
                len,
                n,
                h,
                w,
                c,
                stride,
                offset,
                _borrow: std::marker::PhantomData,
            })
            .collect()
    }
}

/// Read access to `c` channels starting at `offset` of every pixel of a buffer whose
/// pixels are `stride` floats apart.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub stride: usize,
    pub offset: usize,
}

impl<'a> View<'a> {
    /// The channels of pixel `(b, y, x)`.
    #[inline]
    pub fn pixel(&self, b: usize, y: usize, x: usize) -> &'a [f32] {
        let p = ((b * self.h + y) * self.w + x) * self.stride + self.offset;
        &self.data[p..p + self.c]
    }

    pub(crate) fn check(&self) {
        assert!(
            self.offset + self.c <= self.stride,
            "view channels exceed stride"
        );
        let pixels = self.n * self.h * self.w;
        assert!(
            pixels == 0 || (pixels - 1) * self.stride + self.offset + self.c <= self.data.len(),
            "view larger than its buffer"
        );
    }
}

/// Write access to `c` channels starting at `offset` of every pixel (see [`View`]).
/// Slots of one tensor made by [`Nhwc::slots`] cover disjoint channels, so they may be
/// written from different threads; a slot never touches other channels.
#[derive(Debug)]
pub struct Slot<'a> {
    ptr: *mut f32,
    len: usize,
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub stride: usize,
    pub offset: usize,
    _borrow: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: a slot is an exclusive borrow of its channels of every pixel; shared access
// only hands out pixels through the unsafe `pixel_shared`.
unsafe impl Send for Slot<'_> {}
unsafe impl Sync for Slot<'_> {}

impl Slot<'_> {
    pub(crate) fn check(&self) {
        assert!(
            self.offset + self.c <= self.stride,
            "slot channels exceed stride"
        );
        let pixels = self.n * self.h * self.w;
        assert!(
            pixels == 0 || (pixels - 1) * self.stride + self.offset + self.c <= self.len,
            "slot larger than its buffer"
        );
    }

    /// Channels `start .. start + len` of this slot as a slot of its own.
    pub fn sub(&mut self, start: usize, len: usize) -> Slot<'_> {
        assert!(start + len <= self.c, "channel slice out of range");
        Slot {
            ptr: self.ptr,
            len: self.len,
            n: self.n,
            h: self.h,
            w: self.w,
            c: len,
            stride: self.stride,
            offset: self.offset + start,
            _borrow: std::marker::PhantomData,
        }
    }

    /// Pointer to the first channel of the slot in pixel 0.
    pub(crate) fn base(&mut self) -> *mut f32 {
        // SAFETY: offset < len (checked by `check`) or the slot is empty.
        unsafe { self.ptr.add(self.offset) }
    }

    /// The slot's channels of pixel `p` (flattened `(b, y, x)`).
    #[inline]
    pub fn pixel_mut(&mut self, p: usize) -> &mut [f32] {
        // SAFETY: `&mut self` is exclusive.
        unsafe { self.pixel_shared(p) }
    }

    /// Like [`Slot::pixel_mut`] through a shared reference, for threads filling
    /// different pixels.
    ///
    /// # Safety
    /// No two live results may be for the same pixel.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn pixel_shared(&self, p: usize) -> &mut [f32] {
        assert!(p < self.n * self.h * self.w, "pixel out of range");
        std::slice::from_raw_parts_mut(self.ptr.add(p * self.stride + self.offset), self.c)
    }
}
