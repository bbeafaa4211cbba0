//! What every program (`convert`, `classify`, `stylize`, `embed`, `finetune`, `train-imdb`)
//! shares on its command line: the error and exit-code convention (`docs/cli.md`: exit 0 on
//! success; on failure one paragraph on stderr naming the file or URL and the problem, and a
//! non-zero exit) and the `--engine` choice. No Burn.

pub use cpu_kernels::{retain_heap, CachingAllocator};
use std::path::Path;
use std::process::ExitCode;

/// Runs a program's body: `Ok` exits 0; an error prints `error: <paragraph>` on stderr and
/// exits 1.
pub fn main(body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_paragraph(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, leaving out causes already quoted by their parent.
pub fn error_paragraph(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !msg.contains(&s) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&s);
        }
    }
    msg.replace('\n', " ")
}

/// Checks, before any work is done, that `path` (the value of `option`) can name an output
/// file: not an existing folder, and in a folder that exists. The error names both.
pub fn check_output_file(path: &Path, option: &str) -> anyhow::Result<()> {
    if path.is_dir() {
        anyhow::bail!("{option} {}: is a folder; give a file name", path.display());
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        anyhow::bail!(
            "{option} {}: the folder {} does not exist",
            path.display(),
            parent.display()
        );
    }
    Ok(())
}

/// `--engine`: how a network runs on the `flex` backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Engine {
    /// The fused CPU kernels (`models::cpu`: batch norms folded, NHWC, prepacked weights).
    #[default]
    Cpu,
    /// The Burn module's own forward pass.
    Burn,
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn output_files_need_an_existing_folder_and_are_no_folder() {
        let tmp = std::env::temp_dir();
        check_output_file(&tmp.join("out.npy"), "-o").unwrap();
        check_output_file(Path::new("out.npy"), "-o").unwrap();
        let e = check_output_file(&tmp, "-o").unwrap_err().to_string();
        assert!(e.starts_with("-o ") && e.contains("is a folder"), "{e}");
        let e = check_output_file(Path::new("/nonexistent/dir/x.npy"), "--features")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--features") && e.contains("/nonexistent/dir"),
            "{e}"
        );
    }

    #[test]
    fn one_paragraph_without_repeated_causes() {
        let e = Err::<(), _>(std::io::Error::other("disk on fire\nreally"))
            .context("/tmp/x: cannot write")
            .unwrap_err();
        assert_eq!(
            error_paragraph(&e),
            "/tmp/x: cannot write: disk on fire really"
        );
        let inner = anyhow::anyhow!("bad header");
        let e = inner.context("model.npy: bad header");
        assert_eq!(error_paragraph(&e), "model.npy: bad header");
    }
}
