//! Denormal floats flushed to zero while a model runs, as TensorFlow does on its threads.
//!
//! A multiply or add whose input or result is denormal (below ~1.2e-38) takes a microcode
//! assist on x86: about a hundred times the normal cost. Networks make such values: a
//! sigmoid gate of a very negative input (EfficientNet's squeeze-and-excitation) is
//! ~1e-40, and the whole channel it scales then runs at a tenth of the speed (measured:
//! EfficientNetB0 at batch 16, 27 -> 53 img/s). TensorFlow sets the CPU's
//! flush-to-zero and denormals-are-zero modes on its threads for the same reason, so
//! flushing also keeps the results where TensorFlow's are.
//!
//! [`flush_denormals`] sets both modes on the calling thread and on every thread of
//! rayon's current pool (where the kernels run) until the returned guard drops; guards
//! nest and may be held by several threads at once (the pool's threads go back to the
//! default modes when the last one drops). On other CPUs than x86-64 it does nothing.

use std::sync::Mutex;

/// Guards alive, over all threads.
static HELD: Mutex<usize> = Mutex::new(0);

/// Keeps denormals flushed to zero (see the module docs) until dropped.
#[must_use = "denormals are flushed only while the guard lives"]
pub struct FlushDenormals {
    /// The calling thread's modes before, restored on drop.
    before: u32,
    /// Not `Send`: the guard restores the thread it was made on.
    _thread: std::marker::PhantomData<*const ()>,
}

/// Flushes denormals to zero on this thread and rayon's pool until the guard drops.
pub fn flush_denormals() -> FlushDenormals {
    let before = mode::get();
    {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if *held == 0 {
            rayon::broadcast(|_| mode::set(mode::get() | mode::FLUSH));
        }
        *held += 1;
    }
    mode::set(before | mode::FLUSH);
    FlushDenormals {
        before,
        _thread: std::marker::PhantomData,
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        {
            let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
            *held -= 1;
            if *held == 0 {
                rayon::broadcast(|_| mode::set(mode::get() & !mode::FLUSH));
            }
        }
        mode::set(self.before);
    }
}

/// Whether this thread flushes denormals now.
pub fn denormals_flushed() -> bool {
    mode::FLUSH != 0 && mode::get() & mode::FLUSH == mode::FLUSH
}

#[cfg(target_arch = "x86_64")]
mod mode {
    /// MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6) bits.
    pub const FLUSH: u32 = 0x8040;

    pub fn get() -> u32 {
        let mut v = 0u32;
        // SAFETY: stores MXCSR into a local.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack, preserves_flags))
        };
        v
    }

    pub fn set(v: u32) {
        // SAFETY: loads MXCSR from a value read from it with only the FTZ / DAZ bits
        // changed (no exception is unmasked).
        unsafe {
            std::arch::asm!("ldmxcsr [{}]", in(reg) &v, options(nostack, readonly, preserves_flags))
        };
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod mode {
    pub const FLUSH: u32 = 0;
    pub fn get() -> u32 {
        0
    }
    pub fn set(_: u32) {}
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    fn tiny_product() -> f32 {
        // 1e-20 * 1e-20 = 1e-40: denormal, or zero when flushed.
        std::hint::black_box(1e-20f32) * std::hint::black_box(1e-20f32)
    }

    #[test]
    fn denormals_are_flushed_on_every_pool_thread_while_the_guard_lives() {
        assert!(!denormals_flushed());
        assert!(tiny_product() > 0.0);
        {
            let _outer = flush_denormals();
            let _inner = flush_denormals();
            assert!(denormals_flushed());
            assert_eq!(tiny_product(), 0.0);
            let on_pool = rayon::broadcast(|_| (denormals_flushed(), tiny_product()));
            assert!(on_pool.iter().all(|&(f, p)| f && p == 0.0), "{on_pool:?}");
            // A denormal input counts as zero too.
            let denormal = std::hint::black_box(f32::from_bits(1));
            assert_eq!(denormal * std::hint::black_box(2.0f32), 0.0);
        }
        assert!(!denormals_flushed());
        assert!(tiny_product() > 0.0);
        let on_pool = rayon::broadcast(|_| denormals_flushed());
        assert!(on_pool.iter().all(|f| !f));
    }
}
