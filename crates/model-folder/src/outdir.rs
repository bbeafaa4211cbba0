//! Replacing an output folder (`--out`) safely: only a folder this project wrote (a
//! `config.json` with a `"kind"` in it) or an empty one is replaced, unless forced; the new
//! folder is renamed in from a sibling temporary folder, and the old one is restored if that
//! fails. (`convert::write` has the same rules for `convert`, which does not depend on Burn.)

use std::path::{Path, PathBuf};

/// Largest `config.json` read to recognise a folder.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Whether `dir` holds a `config.json` written by this project: a regular file, at most 1 MiB,
/// a JSON object with a string `"kind"`.
pub fn written_by_us(dir: &Path) -> bool {
    let cfg = dir.join("config.json");
    let Ok(meta) = std::fs::symlink_metadata(&cfg) else {
        return false;
    };
    if !meta.is_file() || meta.len() > MAX_CONFIG_BYTES {
        return false;
    }
    std::fs::read(&cfg)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v.get("kind").is_some_and(|k| k.is_string()))
}

/// `Ok` when `dir` may be replaced: it does not exist, is an empty folder, or was written by
/// this project; anything else only with `force`. The error names the folder.
pub fn check_replaceable(dir: &Path, force: bool) -> Result<(), String> {
    let meta = match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
        Ok(m) => m,
    };
    if force {
        return Ok(());
    }
    if meta.is_dir() {
        let empty = std::fs::read_dir(dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if empty || written_by_us(dir) {
            return Ok(());
        }
    }
    Err(format!(
        "{}: already exists and was not written by tfhub-rs (no config.json of ours in it); \
         refusing to replace it. Choose another output folder, or pass --force to replace it",
        dir.display()
    ))
}

/// Renames `tmp` onto `dir`. An existing `dir` (checked with [`check_replaceable`] first) is
/// renamed aside, deleted only once the new folder is in place, and renamed back if that fails.
pub fn swap_in(tmp: &Path, dir: &Path, force: bool) -> Result<(), String> {
    check_replaceable(dir, force)?;
    let exists = std::fs::symlink_metadata(dir).is_ok();
    if !exists {
        return std::fs::rename(tmp, dir).map_err(|e| format!("{}: {e}", dir.display()));
    }
    let old = sibling(dir, "old");
    std::fs::rename(dir, &old).map_err(|e| {
        format!(
            "{}: cannot move the previous folder aside: {e}",
            dir.display()
        )
    })?;
    if let Err(e) = std::fs::rename(tmp, dir) {
        return Err(match std::fs::rename(&old, dir) {
            Ok(()) => format!(
                "{}: {e} (the previous folder was left in place)",
                dir.display()
            ),
            Err(e2) => format!(
                "{}: {e}; restoring the previous folder also failed ({e2}): it is at {}",
                dir.display(),
                old.display()
            ),
        });
    }
    let removed = if std::fs::symlink_metadata(&old).is_ok_and(|m| m.is_dir()) {
        std::fs::remove_dir_all(&old)
    } else {
        std::fs::remove_file(&old)
    };
    // The new folder is in place; a leftover old copy is only reported.
    if let Err(e) = removed {
        eprintln!(
            "warning: cannot remove the previous folder {}: {e}",
            old.display()
        );
    }
    Ok(())
}

/// A fresh, empty hidden sibling folder of `dir` (created with `dir`'s parent if that is
/// missing) to write new contents into before [`swap_in`]. The error names the folder.
pub fn stage(dir: &Path) -> Result<PathBuf, StageError> {
    let tmp = sibling(dir, "tmp");
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StageError { path, source }
    };
    if let Some(parent) = tmp.parent() {
        std::fs::create_dir_all(parent).map_err(failed(parent))?;
    }
    std::fs::create_dir(&tmp).map_err(failed(&tmp))?;
    Ok(tmp)
}

/// A folder [`stage`] could not create.
#[derive(Debug)]
pub struct StageError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl std::fmt::Display for StageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: cannot create: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for StageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A fresh hidden sibling path of `dir`: `.<name>.<what>-<pid>-<nanos>`.
pub fn sibling(dir: &Path, what: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parent.join(format!(".{name}.{what}-{}-{stamp}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(dir: &Path, tag: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.json"), format!(r#"{{"kind": "{tag}"}}"#)).unwrap();
    }

    #[test]
    fn only_our_folders_are_replaced_and_a_failed_rename_restores_the_previous_one() {
        let base = tempfile::tempdir().unwrap();
        let out = base.path().join("m");
        ours(&out, "first");
        // The staged folder vanished: the rename fails and the old folder comes back.
        let e = swap_in(&base.path().join(".gone"), &out, false).unwrap_err();
        assert!(e.contains("m") && e.contains("left in place"), "{e}");
        assert!(std::fs::read_to_string(out.join("config.json"))
            .unwrap()
            .contains("first"));
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 1);
        // A staged folder replaces ours; nothing is left beside it.
        let tmp = stage(&out).unwrap();
        ours(&tmp, "second");
        swap_in(&tmp, &out, false).unwrap();
        assert!(std::fs::read_to_string(out.join("config.json"))
            .unwrap()
            .contains("second"));
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 1);
        // A folder that is not ours is refused unless forced.
        let photos = base.path().join("photos");
        std::fs::create_dir(&photos).unwrap();
        std::fs::write(photos.join("a.jpg"), b"jpg").unwrap();
        let e = check_replaceable(&photos, false).unwrap_err();
        assert!(e.contains("--force"), "{e}");
        assert!(!written_by_us(&photos));
        check_replaceable(&photos, true).unwrap();
    }
}
