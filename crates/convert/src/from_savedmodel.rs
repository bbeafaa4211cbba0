//! Filling a [`Source`] from a SavedModel read by the `savedmodel` crate.

use crate::{F32Tensor, Source};
use savedmodel::SavedModel;

/// Errors while building a [`Source`]; each names the file or tensor.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    SavedModel(#[from] savedmodel::Error),
    #[error("{path}: cannot read asset: {source}")]
    Asset {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Reads every variable of `sm` (float32/float64/float16/bfloat16 into `tensors` as f32,
/// other dtypes into `other_variables`), its op types and its asset files' contents.
pub fn source_from_savedmodel(sm: &SavedModel, handle: &str) -> Result<Source, SourceError> {
    let mut src = Source {
        handle: handle.to_string(),
        op_types: sm.op_types().clone(),
        ..Source::default()
    };
    for v in sm.variables() {
        if v.dtype.is_float() {
            let t = sm.tensor(&v.name)?;
            src.float_dtypes.insert(v.name.clone(), v.dtype.name());
            src.tensors.insert(
                v.name.clone(),
                F32Tensor {
                    shape: t.shape.clone(),
                    data: t.to_f32()?,
                },
            );
        } else {
            src.other_variables
                .insert(v.name.clone(), (v.dtype.name(), v.shape.clone()));
        }
    }
    src.regex_rewrites = regex_rewrites(sm);
    src.assets = assets_of(sm)?;
    Ok(src)
}

/// The attributes of every `StaticRegexReplace` in `sm`'s graph and function library.
fn regex_rewrites(sm: &SavedModel) -> Vec<crate::RegexRewrite> {
    let Some(g) = sm.meta_graph().graph_def.as_ref() else {
        return Vec::new();
    };
    let functions = g.library.iter().flat_map(|l| l.function.iter());
    let nodes = g
        .node
        .iter()
        .chain(functions.flat_map(|f| f.node_def.iter()));
    let text = |n: &savedmodel::proto::NodeDef, k: &str| {
        n.attr
            .get(k)
            .and_then(|a| a.s.as_ref())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .unwrap_or_default()
    };
    nodes
        .filter(|n| n.op == "StaticRegexReplace")
        .map(|n| crate::RegexRewrite {
            pattern: text(n, "pattern"),
            rewrite: text(n, "rewrite"),
            global: n
                .attr
                .get("replace_global")
                .and_then(|a| a.b)
                .unwrap_or(true),
        })
        .collect()
}

/// The asset files of `sm` by file name, each read with [`read_asset`].
pub fn assets_of(
    sm: &SavedModel,
) -> Result<std::collections::BTreeMap<String, Vec<u8>>, SourceError> {
    let mut assets = std::collections::BTreeMap::new();
    for a in sm.assets() {
        let bytes = read_asset(&a.path, MAX_ASSET_BYTES).map_err(|e| SourceError::Asset {
            path: a.path.clone(),
            source: e,
        })?;
        assets.insert(a.filename.clone(), bytes);
    }
    Ok(assets)
}

/// Largest asset file read (vocabularies of the largest hub text embeddings are ~20 MB).
pub const MAX_ASSET_BYTES: u64 = 256 << 20;

/// Reads an asset: not a symbolic link, a regular file of at most `cap` bytes
/// ([`model_folder::read_capped`]).
pub fn read_asset(path: &std::path::Path, cap: u64) -> std::io::Result<Vec<u8>> {
    if !std::fs::symlink_metadata(path)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    model_folder::read_capped(path, cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_capped_and_regular_files_only() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("tokens.txt");
        std::fs::write(&p, b"abcdef").unwrap();
        assert_eq!(read_asset(&p, 6).unwrap(), b"abcdef");
        let e = read_asset(&p, 5).unwrap_err().to_string();
        assert!(e.contains("5-byte limit"), "{e}");
        let e = read_asset(tmp.path(), 100).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        #[cfg(unix)]
        {
            let e = read_asset(std::path::Path::new("/dev/zero"), 100).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
    }
}
