//! JPEG decoding (`jpeg_tf::decode_rgb`, what `models::imageops::decode_rgb8` uses) must never
//! panic, hang or allocate by an unchecked size; what it returns has the size it says.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A pixel cap like imageops' MAX_PIXELS, scaled down so each input stays fast.
    let check = |w: u32, h: u32| {
        if u64::from(w) * u64::from(h) > 1 << 20 {
            Err(format!("{w} x {h}"))
        } else {
            Ok(())
        }
    };
    if let Ok(img) = jpeg_tf::decode_rgb(data, check) {
        assert_eq!(img.data.len(), img.width as usize * img.height as usize * 3);
        assert!(img.width > 0 && img.height > 0);
    }
});
