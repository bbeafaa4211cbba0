//! Per-thread scratch buffers for work that overwrites every element it later reads (a
//! transpose's destination, gathered columns), so that a chunk of a training step does not
//! allocate and zero-fill megabytes only to overwrite them: the filter gradient of
//! Inception's 7x1 192 -> 192 gathered 1.4 MB of columns and transposed a chunk of 0.2 MB
//! for each of its 16 chunks, and zeroed both first.

use std::cell::RefCell;

/// Slots: buffers one computation holds at the same time (the filter gradients: 0 gathered
/// columns or transformed inputs, 1 output-gradient rows, 2 and 3 a product's packed
/// operands).
pub(crate) const SLOTS: usize = 4;

thread_local! {
    static BUFFERS: RefCell<[Vec<f32>; SLOTS]> = const { RefCell::new([const { Vec::new() }; SLOTS]) };
}

/// Runs `f` on `len` floats of this thread's buffer `slot`, holding whatever an earlier
/// user left there (zeros when freshly grown): `f` must write every element before it
/// reads it. The buffer is taken out of its slot for the call, so a nested call (rayon
/// runs another task on a thread that waits inside `f`) gets a fresh one, never the same.
pub(crate) fn with_scratch<R>(slot: usize, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = BUFFERS.with(|b| std::mem::take(&mut b.borrow_mut()[slot]));
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    BUFFERS.with(|b| {
        let kept = &mut b.borrow_mut()[slot];
        // Keep the larger of this buffer and one a nested call may have put back.
        if kept.len() < buf.len() {
            *kept = buf;
        }
    });
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_calls_get_their_own_buffer() {
        with_scratch(0, 4, |a| {
            a.copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
            with_scratch(0, 3, |b| {
                assert_eq!(b, [0.0; 3], "a fresh buffer while the slot's is lent");
                b.fill(9.0);
            });
            assert_eq!(a, [1.0, 2.0, 3.0, 4.0], "the outer buffer untouched");
        });
        // The larger buffer was kept: its first elements are the outer call's.
        with_scratch(0, 2, |a| assert_eq!(a, [1.0, 2.0]));
        with_scratch(1, 2, |a| assert_eq!(a, [0.0; 2]));
    }
}
