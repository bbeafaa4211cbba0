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
        assert!(start + len <= self.c, "channel slice out of range");
        let (n, h, w, stride) = (self.n, self.h, self.w, self.c);
        Slot {
            data: &mut self.data,
            n,
            h,
            w,
            c: len,
            stride,
            offset: start,
        }
    }

    /// The whole tensor as an output slot.
    pub fn slot_all(&mut self) -> Slot<'_> {
        let c = self.c;
        self.slot(0, c)
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
#[derive(Debug)]
pub struct Slot<'a> {
    pub data: &'a mut [f32],
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub stride: usize,
    pub offset: usize,
}

impl Slot<'_> {
    pub(crate) fn check(&self) {
        assert!(
            self.offset + self.c <= self.stride,
            "slot channels exceed stride"
        );
        let pixels = self.n * self.h * self.w;
        assert!(
            pixels == 0 || (pixels - 1) * self.stride + self.offset + self.c <= self.data.len(),
            "slot larger than its buffer"
        );
    }
}
