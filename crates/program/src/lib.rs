//! What every program (`convert`, `classify`, `stylize`, `embed`, `finetune`, `train-imdb`)
//! shares on its command line: the error and exit-code convention (`docs/cli.md`: exit 0 on
//! success; on failure one paragraph on stderr naming the file or URL and the problem, and a
//! non-zero exit) and the `--engine` choice. No Burn.

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
