//! Tensor decoding through a whole SavedModel: the input is `[u32 len][variables.index]`
//! `[rest: variables.data-00000-of-00001]`, next to the tf1 fixture's saved_model.pb; every
//! variable is decoded (plain, string and sliced paths). The index's block checksums are
//! recomputed first, so that mutations reach the entries (the tensors' own CRC32C still apply).
#![no_main]
use libfuzzer_sys::fuzz_target;

mod common;

const PB: &[u8] = include_bytes!("../../tests/fixtures/savedmodel/tf1/saved_model.pb");

fuzz_target!(|data: &[u8]| {
    let p = common::parts(data, 2);
    let tmp = common::TempDir::new("tensor");
    let vars = tmp.0.join("variables");
    std::fs::create_dir(&vars).unwrap();
    std::fs::write(tmp.0.join("saved_model.pb"), PB).unwrap();
    let mut index = p[0].to_vec();
    common::fix_sstable_crcs(&mut index);
    std::fs::write(vars.join("variables.index"), &index).unwrap();
    std::fs::write(vars.join("variables.data-00000-of-00001"), p[1]).unwrap();
    let Ok(sm) = savedmodel::read(&tmp.0) else {
        return;
    };
    for v in sm.variables() {
        if let Ok(t) = sm.tensor(&v.name) {
            assert_eq!(t.shape, v.shape);
            let n = t.shape.iter().product::<usize>();
            assert_eq!(t.len(), n, "{}", v.name);
        }
    }
});
