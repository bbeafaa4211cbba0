//! The `stylize` program end to end on Magenta's TF Lite files (skipped when
//! ../shared/data is absent) and its error paths.

use std::path::PathBuf;
use std::process::Command;

use test_support as common;

fn data() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if p.join("magenta-tflite").is_dir() {
        Some(p)
    } else {
        eprintln!("SKIPPED: {} not found (shared data absent)", p.display());
        None
    }
}

/// The stylize binary; SavedModels are converted into a cache under the test target folder
/// (never the user's).
fn stylize() -> test_support::Program {
    test_support::program!("stylize")
}

/// Unpacks the committed small Magenta SavedModel fixture into `dir`; returns its folder.
fn unpack_fixture(dir: &std::path::Path) -> PathBuf {
    let tgz = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/stylization/saved_model.tar.gz");
    assert!(tgz.is_file(), "{} not found", tgz.display());
    assert!(Command::new("tar")
        .arg("xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(dir)
        .status()
        .unwrap()
        .success());
    dir.join("saved_model")
}

fn read_npy(p: &std::path::Path) -> (String, Vec<f32>) {
    let b = std::fs::read(p).unwrap();
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = String::from_utf8_lossy(&b[10..10 + hlen]).to_string();
    (
        header,
        b[10 + hlen..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

#[test]
fn style_vector_round_trip_strength_and_several_contents() {
    let Some(d) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let pred = d.join("magenta-tflite/style_predict_quantized_256.tflite");
    let tran = d.join("magenta-tflite/style_transfer_quantized_384.tflite");
    let vec = tmp.path().join("style.npy");
    let out1 = tmp.path().join("a.npy");
    let st = stylize()
        .args([
            "--predictor".as_ref(),
            pred.as_os_str(),
            "--transfer".as_ref(),
            tran.as_os_str(),
        ])
        .arg("--content")
        .arg(d.join("images/YellowLabradorLooking_new.jpg"))
        .arg("--style")
        .arg(d.join("images/skrik.jpg"))
        .args(["--content-size", "64"])
        .arg("--save-style")
        .arg(&vec)
        .arg("-o")
        .arg(&out1)
        .status()
        .unwrap();
    assert!(st.success());
    let (h, v) = read_npy(&vec);
    assert!(h.contains("(1, 100)"), "{h}");
    assert_eq!(v.len(), 100);
    let (h, img) = read_npy(&out1);
    assert!(h.contains("(64, 64, 3)"), "{h}");
    assert!(img.iter().all(|x| (0.0..=1.0).contains(x)));
    // The saved vector reproduces the same picture without a predictor.
    let out2 = tmp.path().join("b.npy");
    let st = stylize()
        .arg("--transfer")
        .arg(&tran)
        .arg("--content")
        .arg(d.join("images/YellowLabradorLooking_new.jpg"))
        .arg("--style-vector")
        .arg(&vec)
        .args(["--content-size", "64"])
        .arg("-o")
        .arg(&out2)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(read_npy(&out2).1, img);
    // Strength 0 = the content's own style: a different picture.
    let out3 = tmp.path().join("c.npy");
    let st = stylize()
        .args([
            "--predictor".as_ref(),
            pred.as_os_str(),
            "--transfer".as_ref(),
            tran.as_os_str(),
        ])
        .arg("--content")
        .arg(d.join("images/YellowLabradorLooking_new.jpg"))
        .arg("--style")
        .arg(d.join("images/skrik.jpg"))
        .args(["--content-size", "64", "--strength", "0"])
        .arg("-o")
        .arg(&out3)
        .status()
        .unwrap();
    assert!(st.success());
    let c = read_npy(&out3).1;
    let diff: f32 = c.iter().zip(&img).map(|(a, b)| (a - b).abs()).sum::<f32>() / c.len() as f32;
    assert!(
        diff > 0.02,
        "strength 0 should change the picture, mean |diff| {diff}"
    );
    // Several content images -> a folder of PNGs.
    let dir = tmp.path().join("many");
    let st = stylize()
        .arg("--model")
        .arg(format!("{},{}", pred.display(), tran.display()))
        .arg("--content")
        .arg(d.join("images/YellowLabradorLooking_new.jpg"))
        .arg(d.join("images/grace_hopper.jpg"))
        .arg("--style")
        .arg(d.join("images/skrik.jpg"))
        .args(["--content-size", "48"])
        .arg("-o")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    let png = image::open(dir.join("grace_hopper_stylized.png")).unwrap();
    assert_eq!((png.width(), png.height()), (48, 48));
    assert!(dir.join("YellowLabradorLooking_new_stylized.png").is_file());
}

#[test]
fn bad_inputs_fail_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.jpg");
    std::fs::write(&bad, b"not a jpeg").unwrap();
    let fake = tmp.path().join("fake.tflite");
    std::fs::write(&fake, b"xxxxxxxxTFL3 truncated").unwrap();
    let out = stylize()
        .arg("--predictor")
        .arg(&fake)
        .arg("--transfer")
        .arg(&fake)
        .arg("--content")
        .arg(&bad)
        .arg("--style")
        .arg(&bad)
        .arg("-o")
        .arg(tmp.path().join("o.png"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fake.tflite"), "{err}");
    assert!(!tmp.path().join("o.png").exists());
    let Some(d) = data() else { return };
    let tran = d.join("magenta-tflite/style_transfer_f16_384.tflite");
    let pred = d.join("magenta-tflite/style_predict_quantized_256.tflite");
    let out = stylize()
        .arg("--predictor")
        .arg(&pred)
        .arg("--transfer")
        .arg(&tran)
        .arg("--content")
        .arg(&bad)
        .arg("--style")
        .arg(d.join("images/skrik.jpg"))
        .arg("-o")
        .arg(tmp.path().join("o.png"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.jpg") && err.contains("cannot decode"),
        "{err}"
    );
    let out = stylize()
        .arg("--predictor")
        .arg(&pred)
        .arg("--transfer")
        .arg(&tran)
        .arg("--content")
        .arg(d.join("images/skrik.jpg"))
        .arg("--style")
        .arg(d.join("images/skrik.jpg"))
        .args(["--content-size", "4"])
        .arg("-o")
        .arg(tmp.path().join("o.png"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 5x5"));
}

/// `--model` with a SavedModel folder (H6's small Magenta-structured fixture,
/// converted in memory) and a TF Lite predictor mixed with that SavedModel's transformer.
#[test]
fn saved_model_and_mixed_halves() {
    let Some(d) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sm = unpack_fixture(tmp.path());
    let out = tmp.path().join("sm.npy");
    let st = stylize()
        .arg("--model")
        .arg(&sm)
        .arg("--content")
        .arg(d.join("images/tuebingen.jpg"))
        .arg("--style")
        .arg(d.join("images/starry_night.jpg"))
        .args(["--content-size", "50", "--style-size", "64"])
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let (h, v) = read_npy(&out);
    assert!(h.contains("(52, 52, 3)"), "{h}"); // 4 * ceil(50 / 4)
    assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
    let out = tmp.path().join("mix.png");
    let st = stylize()
        .arg("--predictor")
        .arg(d.join("magenta-tflite/style_predict_quantized_256.tflite"))
        .arg("--transfer")
        .arg(&sm)
        .arg("--content")
        .arg(d.join("images/tuebingen.jpg"))
        .arg("--style")
        .arg(d.join("images/starry_night.jpg"))
        .args(["--content-size", "32"])
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(image::open(&out).unwrap().width(), 32);
}

/// The SavedModel fixture through `--engine cpu` (models::cpu) and `--engine burn`: the
/// same float image.
#[test]
fn cpu_kernels_and_burn_engines_agree() {
    let Some(d) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sm = unpack_fixture(tmp.path());
    let run = |engine: &str| {
        let out = tmp.path().join(format!("{engine}.npy"));
        let st = stylize()
            .arg("--model")
            .arg(&sm)
            .arg("--content")
            .arg(d.join("images/tuebingen.jpg"))
            .arg("--style")
            .arg(d.join("images/starry_night.jpg"))
            .args([
                "--content-size",
                "64",
                "--style-size",
                "64",
                "--strength",
                "0.7",
            ])
            .args(["--engine", engine])
            .arg("-o")
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success(), "--engine {engine}");
        read_npy(&out)
    };
    let ((hc, cpu), (hb, burn)) = (run("cpu"), run("burn"));
    assert!(
        hc.contains("(64, 64, 3)") && hb.contains("(64, 64, 3)"),
        "{hc} {hb}"
    );
    let diff = cpu
        .iter()
        .zip(&burn)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff <= 1e-4, "engines differ by {diff}");
}

/// `stylize` with no arguments runs the bundled example (examples/stylize: Magenta's TF Lite
/// networks, two public-domain pictures) into ./stylized.png, the same image as the explicit
/// command line gives.
#[test]
fn no_arguments_runs_the_bundled_demo() {
    let ex = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/stylize");
    let tmp = tempfile::tempdir().unwrap();
    let o = stylize().current_dir(tmp.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("running the demo"), "{stderr}");
    let demo = tmp.path().join("stylized.png");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "stylized.png");
    let explicit = tmp.path().join("explicit.png");
    let st = stylize()
        .arg("--model")
        .arg(&ex)
        .arg("--content")
        .arg(ex.join("grace_hopper.jpg"))
        .arg("--style")
        .arg(ex.join("great_wave.jpg"))
        .arg("-o")
        .arg(&explicit)
        .status()
        .unwrap();
    assert!(st.success());
    let (a, b) = (image::open(&demo).unwrap(), image::open(&explicit).unwrap());
    assert_eq!((a.width(), a.height()), (384, 384));
    assert_eq!(a.to_rgb8().into_raw(), b.to_rgb8().into_raw());
    // Half a demo is refused: content without an output, a model without content.
    let o = stylize()
        .current_dir(tmp.path())
        .arg("--content")
        .arg(ex.join("grace_hopper.jpg"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--output"));
    let o = stylize()
        .current_dir(tmp.path())
        .arg("--style")
        .arg(ex.join("great_wave.jpg"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--content"));
}

/// `--model` takes the SavedModel as an archive, a folder or a handle, as every program does:
/// converted once into the cache and found there afterwards (said on stderr), the same image
/// each time; a model of another kind is refused, naming it.
#[test]
fn savedmodel_archive_folder_and_handle_are_converted_once() {
    let tmp = tempfile::tempdir().unwrap();
    let tgz = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/stylization/saved_model.tar.gz");
    let sm = unpack_fixture(tmp.path());
    let (_server, url) = common::serve_folder(&sm, "/m/magenta.tar.gz");
    let ex = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/stylize");
    let cache = tmp.path().join("cache");
    let run = |model: &std::ffi::OsStr, out: &std::path::Path| {
        let stderr = stylize()
            .arg("--model")
            .arg(model)
            .arg("--content")
            .arg(ex.join("grace_hopper.jpg"))
            .arg("--style")
            .arg(ex.join("great_wave.jpg"))
            .args(["--content-size", "40", "--style-size", "48"])
            .arg("-o")
            .arg(out)
            .cache(&cache)
            .online()
            .run_ok()
            .1;
        (read_npy(out).1, stderr)
    };
    let (a, first) = run(tgz.as_os_str(), &tmp.path().join("a.npy"));
    assert!(first.contains("converted once into"), "{first}");
    for (i, m) in [sm.as_os_str(), url.as_ref()].into_iter().enumerate() {
        let (b, said) = run(m, &tmp.path().join(format!("{i}.npy")));
        assert!(said.contains("using the conversion cached at"), "{said}");
        assert_eq!(a, b);
    }
    let text = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/text_embedding/tf2_f32_oov1");
    let o = stylize()
        .arg("--model")
        .arg(&text)
        .arg("--content")
        .arg(ex.join("grace_hopper.jpg"))
        .arg("--style")
        .arg(ex.join("great_wave.jpg"))
        .arg("-o")
        .arg(tmp.path().join("x.png"))
        .env("TFHUB_CACHE_DIR", &cache)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("expected `stylization`"), "{stderr}");
}
