//! The graph executor's loader (entry points from the object graph, function inlining,
//! output resolution, pruning, the unsupported-op report) must never panic, overflow the
//! stack or hang on a crafted `saved_model.pb`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(sm) = savedmodel::parse_saved_model_bytes(data) else {
        return;
    };
    for mg in sm.meta_graphs.iter().take(2) {
        if let Ok(entries) = tfgraph_core::entry_points_of(mg, Path::new("fuzz")) {
            for e in entries.iter().take(8) {
                if let Ok(g) = tfgraph_core::build_graph_of(mg, e) {
                    let _ = tfgraph_core::unsupported_ops(&g, true);
                    let _ = tfgraph_core::op_histogram(&g);
                }
            }
        }
        // Every library function as an entry, with nothing bound.
        let lib = tfgraph_core::graph::Library::new(mg);
        let names: Vec<String> = mg
            .graph_def
            .iter()
            .flat_map(|g| g.library.iter())
            .flat_map(|l| l.function.iter())
            .filter_map(|f| f.signature.as_ref().map(|s| s.name.clone()))
            .take(8)
            .collect();
        for n in names {
            let _ = tfgraph_core::graph::build(&lib, &n, &[]);
        }
    }
});
