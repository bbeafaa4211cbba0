//! The `convert` binary on the SavedModel fixtures of `tools/make_savedmodel_fixtures.py`:
//! `inspect` (text and JSON) against TensorFlow's description, `--raw` round trip against
//! TensorFlow's values, and error cases (one-paragraph error, non-zero exit, no output left).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/savedmodel")
        .join(name)
}

fn expected(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("expected.json")).unwrap())
        .unwrap()
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("convert-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn convert(args: &[&str], cwd: &Path) -> Output {
    test_support::program!("convert")
        .args(args)
        .current_dir(cwd)
        .env("TFHUB_OFFLINE", "1")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn inspect_json_matches_tensorflow() {
    for model in ["tf1", "tf2"] {
        let dir = fixture(model);
        let out = convert(
            &["inspect", dir.to_str().unwrap(), "--json"],
            &std::env::temp_dir(),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let exp = expected(model);
        assert_eq!(doc["op_types"], exp["op_types"]);
        assert_eq!(doc["tags"], exp["tags"]);
        let assets: Vec<Value> = doc["assets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["filename"].clone())
            .collect();
        assert_eq!(Value::Array(assets), exp["assets"]);
        let vars = exp["variables"].as_object().unwrap();
        let ours = doc["variables"].as_array().unwrap();
        assert_eq!(ours.len(), vars.len());
        for v in ours {
            let e = &vars[v["name"].as_str().unwrap()];
            assert_eq!(v["dtype"], e["dtype"]);
            assert_eq!(v["shape"], e["shape"]);
        }
        let sigs = exp["signatures"].as_object().unwrap();
        for s in doc["signatures"].as_array().unwrap() {
            let es = &sigs[s["key"].as_str().unwrap()];
            for io in ["inputs", "outputs"] {
                for t in s[io].as_array().unwrap() {
                    let et = &es[io][t["name"].as_str().unwrap()];
                    assert_eq!(t["dtype"], et["dtype"]);
                    assert_eq!(t["shape"], et["shape"]);
                    assert_eq!(t["tensor_name"], et["name"]);
                }
            }
        }
    }
}

#[test]
fn inspect_text_lists_everything() {
    let out = convert(
        &["inspect", fixture("tf1").to_str().unwrap()],
        &std::env::temp_dir(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for needle in [
        "serving_default",
        "x: float32 [?, 3] (x:0)",
        "emb  float32 [10, 3]  120 bytes in 3 slices",
        "strings  string [4]",
        "tokens.txt (18 bytes)",
        "MergeV2Checkpoints",
        "bf16var  bfloat16 [2, 2]  8 bytes",
    ] {
        assert!(s.contains(needle), "missing `{needle}` in:\n{s}");
    }
}

#[test]
fn raw_conversion_round_trips_tensorflow_values() {
    for model in ["tf1", "tf2"] {
        let work = scratch(&format!("raw-{model}"));
        let dir = fixture(model);
        let out = convert(&[dir.to_str().unwrap(), "--raw"], &work);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let last = stdout.lines().last().unwrap();
        assert_eq!(last, format!("weights/{model}"));
        let folder = work.join(last);
        let st = std::fs::read(folder.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&st).unwrap();
        let exp = expected(model);
        let strings: Value =
            serde_json::from_slice(&std::fs::read(folder.join("strings.json")).unwrap()).unwrap();
        let mut n_tensors = 0;
        for (name, e) in exp["variables"].as_object().unwrap() {
            let dtype = e["dtype"].as_str().unwrap();
            let shape: Vec<usize> = e["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let values = e["values"].as_array().unwrap();
            if dtype == "string" {
                // In strings.json: UTF-8 text, or {"hex"} for other bytes.
                let got = &strings[name];
                assert_eq!(got["shape"], serde_json::json!(shape), "{name}");
                for (g, want) in got["values"].as_array().unwrap().iter().zip(values) {
                    let want: Vec<u8> = want
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|b| b.as_u64().unwrap() as u8)
                        .collect();
                    let bytes = match g.as_str() {
                        Some(s) => s.as_bytes().to_vec(),
                        None => {
                            let h = g["hex"].as_str().unwrap();
                            (0..h.len())
                                .step_by(2)
                                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                                .collect()
                        }
                    };
                    assert_eq!(bytes, want, "{model}/{name}");
                }
                continue;
            }
            n_tensors += 1;
            let t = st
                .tensor(name)
                .unwrap_or_else(|_| panic!("{name} missing from {model}"));
            assert_eq!(t.shape(), shape.as_slice(), "{name}");
            use safetensors::Dtype as D;
            let d = t.data();
            // Every value exactly as TensorFlow stored it, in its own dtype.
            let ours: Vec<f64> = match (dtype, t.dtype()) {
                ("float32", D::F32) => d
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                ("float64", D::F64) => d
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                ("float16", D::F16) => d
                    .chunks_exact(2)
                    .map(|c| {
                        half::f16::from_bits(u16::from_le_bytes(c.try_into().unwrap())).to_f64()
                    })
                    .collect(),
                ("bfloat16", D::BF16) => d
                    .chunks_exact(2)
                    .map(|c| {
                        half::bf16::from_bits(u16::from_le_bytes(c.try_into().unwrap())).to_f64()
                    })
                    .collect(),
                ("int32", D::I32) => d
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                ("int64", D::I64) => d
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                ("uint8", D::U8) => d.iter().map(|&b| b as f64).collect(),
                ("bool", D::BOOL) => d.iter().map(|&b| b as f64).collect(),
                (want, got) => panic!("{model}/{name}: {want} written as {got:?}"),
            };
            let theirs: Vec<f64> = values
                .iter()
                .map(|v| {
                    v.as_f64()
                        .or_else(|| v.as_bool().map(|b| b as u8 as f64))
                        .unwrap()
                })
                .collect();
            if dtype == "float32" {
                let theirs: Vec<f64> = theirs.iter().map(|&v| v as f32 as f64).collect();
                assert_eq!(ours, theirs, "{model}/{name}");
            } else if dtype == "float64" {
                // serde_json's default float parsing may round the last bit differently: one
                // ulp of slack (a float32 narrowing would be off by ~1e-8).
                for (o, t) in ours.iter().zip(&theirs) {
                    assert!(
                        (o - t).abs() <= t.abs() * 2.3e-16,
                        "{model}/{name}: {o} vs {t}"
                    );
                }
            } else {
                assert_eq!(ours, theirs, "{model}/{name}");
            }
        }
        assert_eq!(st.names().len(), n_tensors);
        let cfg: Value =
            serde_json::from_slice(&std::fs::read(folder.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["kind"], "raw");
        assert_eq!(cfg["source"], dir.to_str().unwrap());
        // Every source file's SHA-256, as `sha256sum` gives it.
        for rel in ["saved_model.pb", "variables/variables.index"] {
            use sha2::Digest;
            let want = hex::encode(sha2::Sha256::digest(std::fs::read(dir.join(rel)).unwrap()));
            assert_eq!(
                cfg["source_sha256"][rel].as_str(),
                Some(want.as_str()),
                "{rel}"
            );
        }
        for a in exp["assets"].as_array().unwrap() {
            let a = a.as_str().unwrap();
            assert_eq!(
                std::fs::read(folder.join(a)).unwrap(),
                std::fs::read(dir.join("assets").join(a)).unwrap()
            );
        }
        std::fs::remove_dir_all(&work).unwrap();
    }
}

#[test]
fn out_and_name_options_choose_the_folder() {
    let work = scratch("out");
    let out = convert(
        &[fixture("tf2").to_str().unwrap(), "--raw", "--name", "mine"],
        &work,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(work.join("weights/mine/model.safetensors").is_file());
    let target = work.join("elsewhere/x");
    let out = convert(
        &[
            fixture("tf2").to_str().unwrap(),
            "--raw",
            "--out",
            target.to_str().unwrap(),
        ],
        &work,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().last().unwrap(),
        target.to_str().unwrap()
    );
    assert!(target.join("config.json").is_file());
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn out_onto_an_unrelated_folder_is_refused_unless_forced() {
    let work = scratch("foreign");
    let target = work.join("photos");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("holiday.jpg"), b"jpg").unwrap();
    let args = [
        fixture("tf2").to_str().unwrap().to_string(),
        "--raw".into(),
        "--out".into(),
        target.to_str().unwrap().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = convert(&args, &work);
    assert_clean_failure(&out, &["photos", "not written by tfhub-rs", "--force"]);
    assert_eq!(std::fs::read(target.join("holiday.jpg")).unwrap(), b"jpg");
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        1,
        "left something beside it"
    );
    // Our own output is replaced without --force; an unrelated one with it.
    let ours = work.join("ours");
    let mut a = args.clone();
    a[3] = ours.to_str().unwrap();
    assert!(convert(&a, &work).status.success());
    assert!(convert(&a, &work).status.success());
    let mut a = args.clone();
    a.push("--force");
    let out = convert(&a, &work);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!target.join("holiday.jpg").exists() && target.join("config.json").is_file());
    std::fs::remove_dir_all(&work).unwrap();
}

fn assert_clean_failure(out: &Output, needles: &[&str]) {
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    // Notes may come first; the error is one line starting with `error: `, the last one.
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert_eq!(err.trim_end().lines().last(), Some(errors[0]), "{err}");
    assert!(
        !errors[0].contains("(os error 17): File exists"),
        "duplicated cause: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "missing `{n}` in: {err}");
    }
}

#[test]
fn unrecognised_model_without_raw_is_a_clear_error_and_writes_nothing() {
    let work = scratch("unrec");
    let out = convert(&[fixture("tf1").to_str().unwrap()], &work);
    assert_clean_failure(&out, &["unrecognised model", "--raw", "tf1"]);
    assert!(!work.join("weights/tf1").exists());
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn corrupt_model_fails_naming_the_tensor_and_leaves_no_output() {
    let work = scratch("corrupt");
    let model = work.join("model");
    for sub in ["", "variables", "assets"] {
        std::fs::create_dir_all(model.join(sub)).unwrap();
    }
    let src = fixture("tf1");
    for f in [
        "saved_model.pb",
        "variables/variables.index",
        "assets/tokens.txt",
    ] {
        std::fs::copy(src.join(f), model.join(f)).unwrap();
    }
    for i in 0..3 {
        let f = format!("variables/variables.data-0000{i}-of-00003");
        let mut b = std::fs::read(src.join(&f)).unwrap();
        if i == 0 {
            b[16] ^= 1; // inside dense/kernel
        }
        std::fs::write(model.join(&f), b).unwrap();
    }
    let out = convert(&[model.to_str().unwrap(), "--raw"], &work);
    assert_clean_failure(&out, &["dense/kernel", "checksum"]);
    assert!(!work.join("weights").join("model").exists());
    let leftovers = std::fs::read_dir(&work)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != "model")
        .count();
    assert!(leftovers <= 1, "left files in {}", work.display());
    if work.join("weights").exists() {
        assert_eq!(std::fs::read_dir(work.join("weights")).unwrap().count(), 0);
    }
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn not_a_model_and_missing_paths_fail_cleanly() {
    let work = scratch("missing");
    let out = convert(&[work.join("nope").to_str().unwrap(), "--raw"], &work);
    assert_clean_failure(&out, &["nope"]);
    let out = convert(&["inspect", work.to_str().unwrap()], &work);
    assert_clean_failure(&out, &["not a SavedModel"]);
    assert!(!work.join("weights").exists());
    std::fs::remove_dir_all(&work).unwrap();
}

#[cfg(unix)]
#[test]
fn unwritable_output_folder_fails_and_leaves_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let work = scratch("ro");
    let ro = work.join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root ignores permissions; only assert when the folder really is read-only.
    let probe = std::fs::write(ro.join("probe"), b"x").is_err();
    let target = ro.join("out");
    let out = convert(
        &[
            fixture("tf2").to_str().unwrap(),
            "--raw",
            "--out",
            target.to_str().unwrap(),
        ],
        &work,
    );
    if probe {
        assert_clean_failure(&out, &[ro.to_str().unwrap()]);
        assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0);
    } else {
        // Root writes through permissions; sysfs refuses new folders even to root.
        let _ = std::fs::remove_file(ro.join("probe"));
        let sys = Path::new("/sys/tfhub-rs-convert-out");
        if std::fs::create_dir(sys).is_ok() {
            let _ = std::fs::remove_dir(sys);
            eprintln!("SKIPPED: the read-only folder check (root, and /sys takes new folders)");
        } else {
            let out = convert(
                &[
                    fixture("tf2").to_str().unwrap(),
                    "--raw",
                    "--out",
                    sys.to_str().unwrap(),
                ],
                &work,
            );
            assert_clean_failure(&out, &["/sys"]);
            assert!(!sys.exists());
        }
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn output_path_under_a_file_fails_cleanly() {
    // Works even as root: the parent of --out is a regular file.
    let work = scratch("file-parent");
    std::fs::write(work.join("afile"), b"x").unwrap();
    let target = work.join("afile/out");
    let out = convert(
        &[
            fixture("tf2").to_str().unwrap(),
            "--raw",
            "--out",
            target.to_str().unwrap(),
        ],
        &work,
    );
    assert_clean_failure(&out, &["afile"]);
    assert_eq!(std::fs::read(work.join("afile")).unwrap(), b"x");
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 1);
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn tflite_files_go_to_the_tflite_converter() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/magenta-tflite/style_predict_quantized_256.tflite");
    if !f.is_file() {
        eprintln!("SKIPPED: {} absent", f.display());
        return;
    }
    let work = scratch("tflite");
    let out = convert(&["inspect", f.to_str().unwrap()], &work);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("TF Lite"),
        "{}",
        text(&out.stdout)
    );
    let out = convert(&[f.to_str().unwrap()], &work);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().last().unwrap(),
        "weights/style_predict_quantized_256"
    );
    let cfg: Value = serde_json::from_slice(
        &std::fs::read(work.join("weights/style_predict_quantized_256/config.json")).unwrap(),
    )
    .unwrap();
    assert_ne!(cfg["kind"], "raw");
    assert_eq!(cfg["source_sha256"].as_object().unwrap().len(), 1);
    std::fs::remove_dir_all(&work).unwrap();
}
