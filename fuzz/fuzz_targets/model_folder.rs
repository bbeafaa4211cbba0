//! Loading a converted model folder: `config.json`, `model.safetensors` and the vocabulary
//! come from the input (`[u32 len][config.json][u32 len][model.safetensors][rest: tokens.txt]`).
//! Sizes in config.json must be checked against the weights before anything is allocated,
//! and `vocab_file` must stay inside the folder.
#![no_main]
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let p = common::parts(data, 3);
    let tmp = common::TempDir::new("folder");
    let dir = tmp.0.join("m");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("config.json"), p[0]).unwrap();
    std::fs::write(dir.join("model.safetensors"), p[1]).unwrap();
    std::fs::write(dir.join("tokens.txt"), p[2]).unwrap();
    let _ = model_folder::safetensors_shapes(&dir.join("model.safetensors"));
    let device = burn::tensor::Device::flex();
    let _ = models::text_embedding::TextEmbedding::load(&dir, &device);
});
