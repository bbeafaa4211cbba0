//! Asset file names come from `saved_model.pb` and are hostile: only plain relative names of
//! regular files inside `assets/` are accepted; anything else is an error naming the file.

use prost::Message;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/savedmodel")
        .join(name)
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

/// The tf1 fixture with one more asset named `name` in its meta graph.
fn with_asset(dir: &Path, name: &str) {
    copy_dir(&fixture("tf1"), dir);
    let pb = dir.join("saved_model.pb");
    let mut sm = savedmodel::parse_saved_model_bytes(&std::fs::read(&pb).unwrap()).unwrap();
    for mg in &mut sm.meta_graphs {
        mg.asset_file_def.push(savedmodel::proto::AssetFileDef {
            tensor_info: None,
            filename: name.to_string(),
        });
    }
    std::fs::write(&pb, sm.encode_to_vec()).unwrap();
}

fn read_err(dir: &Path) -> String {
    match savedmodel::read(dir) {
        Ok(_) => panic!("{} was accepted", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn escaping_or_absolute_asset_names_are_refused() {
    for name in [
        "../../etc/passwd",
        "/dev/zero",
        "a/../../x",
        "./tokens.txt",
        "a\\..\\b",
        "x\0y",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("m");
        with_asset(&dir, name);
        let e = read_err(&dir);
        assert!(e.contains("saved_model.pb"), "{name}: {e}");
        assert!(e.contains("not a plain relative name"), "{name}: {e}");
    }
}

#[test]
fn plain_names_still_work_and_a_rewritten_pb_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    with_asset(&dir, "extra.txt");
    std::fs::write(dir.join("assets/extra.txt"), b"x").unwrap();
    let sm = savedmodel::read(&dir).unwrap();
    let names: Vec<&str> = sm.assets().iter().map(|a| a.filename.as_str()).collect();
    assert_eq!(names, vec!["extra.txt", "tokens.txt"]);
    assert_eq!(sm.assets()[0].path, dir.join("assets/extra.txt"));
}

#[cfg(unix)]
#[test]
fn symlinks_devices_and_fifos_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // A symbolic link to a device.
    let dir = tmp.path().join("link");
    with_asset(&dir, "zero");
    std::os::unix::fs::symlink("/dev/zero", dir.join("assets/zero")).unwrap();
    let e = read_err(&dir);
    assert!(e.contains("symbolic link"), "{e}");
    // assets/ itself a link out of the model.
    let dir = tmp.path().join("linkdir");
    with_asset(&dir, "passwd");
    std::fs::remove_dir_all(dir.join("assets")).unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("assets")).unwrap();
    assert!(read_err(&dir).contains("symbolic link"));
    // A FIFO (reading it would hang).
    let dir = tmp.path().join("fifo");
    with_asset(&dir, "pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(dir.join("assets/pipe"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if made {
        let e = read_err(&dir);
        assert!(e.contains("not a regular file"), "{e}");
    } else {
        eprintln!("SKIPPED: the FIFO case: mkfifo is not available");
    }
    // A folder where a file is expected.
    let dir = tmp.path().join("folder");
    with_asset(&dir, "sub");
    std::fs::create_dir(dir.join("assets/sub")).unwrap();
    assert!(read_err(&dir).contains("not a regular file"));
}
