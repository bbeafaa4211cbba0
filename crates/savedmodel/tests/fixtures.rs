//! The reader against TensorFlow's own view of the fixtures written by
//! `tools/make_savedmodel_fixtures.py` (`tests/fixtures/savedmodel/{tf1,tf2}/expected.json`).

use savedmodel::{DType, TensorData};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/savedmodel")
        .join(name)
}

fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn check_all_variables(name: &str) {
    let dir = fixture(name);
    let sm = savedmodel::read(&dir).unwrap();
    let exp = expected(name);
    let vars = exp["variables"].as_object().unwrap();
    let names: Vec<&str> = sm.variables().iter().map(|v| v.name.as_str()).collect();
    let mut exp_names: Vec<&str> = vars.keys().map(|s| s.as_str()).collect();
    exp_names.sort();
    assert_eq!(names, exp_names, "variable names of {name}");
    for (vname, ev) in vars {
        let t = sm
            .tensor(vname)
            .unwrap_or_else(|e| panic!("{name}/{vname}: {e}"));
        assert_eq!(
            t.dtype.name(),
            ev["dtype"].as_str().unwrap(),
            "{vname} dtype"
        );
        let shape: Vec<usize> = ev["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.shape, shape, "{vname} shape");
        let info = sm.variable(vname).unwrap();
        assert_eq!(info.shape, shape);
        assert_eq!(info.dtype, t.dtype);
        let values = ev["values"].as_array().unwrap();
        assert_eq!(t.len(), values.len(), "{vname} element count");
        match &t.data {
            TensorData::String(s) => {
                let exp: Vec<Vec<u8>> = values
                    .iter()
                    .map(|v| {
                        v.as_array()
                            .unwrap()
                            .iter()
                            .map(|b| b.as_u64().unwrap() as u8)
                            .collect()
                    })
                    .collect();
                assert_eq!(s, &exp, "{vname} strings");
                assert!(t.to_f32().is_err());
            }
            TensorData::Bool(b) => {
                let exp: Vec<bool> = values.iter().map(|v| v.as_bool().unwrap()).collect();
                assert_eq!(b, &exp, "{vname}");
            }
            TensorData::I64(x) => {
                let exp: Vec<i64> = values.iter().map(|v| v.as_i64().unwrap()).collect();
                assert_eq!(x, &exp, "{vname}");
            }
            TensorData::F64(x) => {
                // JSON parsing may be off by an ulp; everything else must match.
                let exp: Vec<f64> = values.iter().map(|v| v.as_f64().unwrap()).collect();
                assert_eq!(x.len(), exp.len());
                for (a, b) in x.iter().zip(&exp) {
                    assert!((a - b).abs() <= 1e-15 * b.abs(), "{vname}: {a} vs {b}");
                }
            }
            _ => {
                // f32/f16/bf16/ints: TF's value is an f32 (or small int), so it must match exactly.
                let exp: Vec<f32> = values.iter().map(|v| v.as_f64().unwrap() as f32).collect();
                assert_eq!(t.to_f32().unwrap(), exp, "{vname}");
                let ours64: Vec<f32> = t.to_f64().unwrap().iter().map(|&x| x as f32).collect();
                assert_eq!(ours64, exp, "{vname} to_f64");
            }
        }
    }
}

fn check_metadata(name: &str) {
    let sm = savedmodel::read(&fixture(name)).unwrap();
    let exp = expected(name);
    let tags: Vec<&str> = exp["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(sm.tags(), tags.as_slice());
    let ops: Vec<&str> = exp["op_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let ours: Vec<&str> = sm.op_types().iter().map(|s| s.as_str()).collect();
    assert_eq!(ours, ops, "op types of {name}");
    let assets: Vec<&str> = exp["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let ours: Vec<&str> = sm.assets().iter().map(|a| a.filename.as_str()).collect();
    assert_eq!(ours, assets);
    for a in sm.assets() {
        assert!(a.path.is_file(), "{} exists", a.path.display());
    }
    let sigs = exp["signatures"].as_object().unwrap();
    assert_eq!(sm.signatures().len(), sigs.len());
    for s in sm.signatures() {
        let es = &sigs[&s.key];
        assert_eq!(s.method_name, es["method_name"].as_str().unwrap());
        for (ours, theirs) in [(&s.inputs, &es["inputs"]), (&s.outputs, &es["outputs"])] {
            let theirs = theirs.as_object().unwrap();
            assert_eq!(ours.len(), theirs.len(), "signature {}", s.key);
            for spec in ours {
                let t = &theirs[&spec.name];
                assert_eq!(spec.tensor_name, t["name"].as_str().unwrap());
                assert_eq!(
                    spec.dtype.name(),
                    t["dtype"].as_str().unwrap(),
                    "{}",
                    spec.name
                );
                let shape = t["shape"]
                    .as_array()
                    .map(|a| a.iter().map(|d| d.as_i64().unwrap()).collect::<Vec<_>>());
                assert_eq!(spec.shape, shape, "{}", spec.name);
            }
        }
    }
    let shards = std::fs::read_dir(fixture(name).join("variables"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".data-")
        })
        .count();
    assert_eq!(shards as u64, exp["num_shards"].as_u64().unwrap());
    assert!(shards > 1, "fixture {name} should have several shards");
}

#[test]
fn tf1_every_tensor_matches_tensorflow() {
    check_all_variables("tf1");
}

#[test]
fn tf2_every_tensor_matches_tensorflow() {
    check_all_variables("tf2");
}

#[test]
fn tf1_signatures_ops_assets_match_tensorflow() {
    check_metadata("tf1");
}

#[test]
fn tf2_signatures_ops_assets_match_tensorflow() {
    check_metadata("tf2");
}

#[test]
fn tf1_keys_are_names_and_partitioned_variable_is_reassembled() {
    let sm = savedmodel::read(&fixture("tf1")).unwrap();
    for v in sm.variables() {
        assert_eq!(v.name, v.key);
    }
    let emb = sm.variable("emb").unwrap();
    assert_eq!(emb.slices, 3);
    assert_eq!(emb.shape, vec![10, 3]);
    assert_eq!(emb.stored_bytes, 10 * 3 * 4);
    let keys: Vec<String> = expected("tf1")["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let mut ours: Vec<String> = sm.variables().iter().map(|v| v.key.clone()).collect();
    ours.sort();
    assert_eq!(ours, keys);
}

#[test]
fn tf2_object_keys_map_to_variable_names() {
    let sm = savedmodel::read(&fixture("tf2")).unwrap();
    let k = sm.variable("dense/kernel").unwrap();
    assert_eq!(k.key, "kernel/.ATTRIBUTES/VARIABLE_VALUE");
    assert_eq!(k.dtype, DType::F32);
    assert_eq!(
        sm.variable("block1/weights").unwrap().key,
        "layers/1/.ATTRIBUTES/VARIABLE_VALUE"
    );
    // Lookup by checkpoint key works too.
    assert_eq!(
        sm.tensor("kernel/.ATTRIBUTES/VARIABLE_VALUE").unwrap(),
        sm.tensor("dense/kernel").unwrap()
    );
    let keys: Vec<String> = expected("tf2")["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .filter(|k| k != "_CHECKPOINTABLE_OBJECT_GRAPH")
        .collect();
    let mut ours: Vec<String> = sm.variables().iter().map(|v| v.key.clone()).collect();
    ours.sort();
    assert_eq!(ours, keys);
}

#[test]
fn unknown_variable_is_an_error_naming_it() {
    let sm = savedmodel::read(&fixture("tf2")).unwrap();
    let e = sm.tensor("nope/kernel").unwrap_err().to_string();
    assert!(e.contains("nope/kernel"), "{e}");
}

#[test]
fn a_folder_without_saved_model_pb_is_not_a_savedmodel() {
    let e = savedmodel::read(&fixture("tf1").join("variables")).unwrap_err();
    assert!(matches!(e, savedmodel::Error::NotSavedModel(_)), "{e}");
    assert!(e.to_string().contains("not a SavedModel"), "{e}");
}

/// `write_with_variables`: the copy holds the new values of the updated variables and every
/// other variable and asset unchanged, all checksums valid (TensorFlow's own reading of such a
/// copy is checked by `tools/check_rewritten_savedmodel.py` through the finetune tests).
#[test]
fn rewritten_copy_keeps_everything_else() {
    for name in ["tf1", "tf2"] {
        let sm = savedmodel::read(&fixture(name)).unwrap();
        let target = sm
            .variables()
            .iter()
            .find(|v| {
                v.dtype == DType::F32 && v.slices == 0 && v.shape.iter().product::<usize>() > 1
            })
            .unwrap_or_else(|| panic!("{name}: no float variable"))
            .clone();
        let n: usize = target.shape.iter().product();
        let new: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 3.0).collect();
        let bytes: Vec<u8> = new.iter().flat_map(|v| v.to_le_bytes()).collect();
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("copy");
        let updates = [(target.name.clone(), bytes)].into_iter().collect();
        sm.write_with_variables(&dst, &updates).unwrap();
        let copy = savedmodel::read(&dst).unwrap();
        copy.verify().unwrap();
        assert_eq!(copy.variables().len(), sm.variables().len(), "{name}");
        for v in sm.variables() {
            let got = copy.tensor(&v.name).unwrap();
            if v.name == target.name {
                assert_eq!(got.data, TensorData::F32(new.clone()), "{name}/{}", v.name);
            } else {
                assert_eq!(got, sm.tensor(&v.name).unwrap(), "{name}/{}", v.name);
            }
        }
        assert_eq!(copy.assets().len(), sm.assets().len(), "{name} assets");
        for (a, b) in sm.assets().iter().zip(copy.assets()) {
            assert_eq!(
                std::fs::read(&a.path).unwrap(),
                std::fs::read(&b.path).unwrap()
            );
        }
        // Wrong sizes, unknown names and the model's own folder are refused.
        let short = [(target.name.clone(), vec![0u8; 4])].into_iter().collect();
        let e = sm
            .write_with_variables(&dir.path().join("bad"), &short)
            .unwrap_err();
        assert!(e.to_string().contains("new bytes"), "{e}");
        let unknown = [("no/such".to_string(), vec![0u8; 4])]
            .into_iter()
            .collect();
        let e = sm
            .write_with_variables(&dir.path().join("bad"), &unknown)
            .unwrap_err();
        assert!(e.to_string().contains("no/such"), "{e}");
        let e = copy
            .write_with_variables(&dst, &Default::default())
            .unwrap_err();
        assert!(e.to_string().contains("own folder"), "{e}");
    }
}
