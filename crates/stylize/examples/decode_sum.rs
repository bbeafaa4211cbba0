//! Prints the size, pixel sum and per-channel mean of a decoded image
//! (compare with TensorFlow's `tf.io.decode_jpeg`).
fn main() {
    let Some(p) = std::env::args().nth(1) else {
        eprintln!("usage: decode_sum IMAGE");
        std::process::exit(2);
    };
    let img = match stylize::open_image(std::path::Path::new(&p)) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let s: f64 = img.data.iter().map(|v| *v as f64).sum();
    let mut m = [0f64; 3];
    for (i, v) in img.data.iter().enumerate() {
        m[i % 3] += *v as f64 * 255.0;
    }
    let n = (img.data.len() / 3) as f64;
    println!(
        "{}x{} sum {s} mean {:?}",
        img.width,
        img.height,
        m.map(|v| v / n)
    );
}
