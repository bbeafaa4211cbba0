//! One way to run a program under test.

use std::ffi::OsStr;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A program of the workspace under test: `program!("classify")` in an integration test of
/// the crate that builds it.
///
/// Its hub cache is a folder of the test target directory (never the user's), and it runs
/// offline (`TFHUB_OFFLINE=1`); [`Program::online`] lifts that for tests against the
/// loopback server. It derefs to [`Command`] for what it does not wrap (stdin, ...).
#[macro_export]
macro_rules! program {
    ($name:literal) => {
        $crate::Program::new(
            env!(concat!("CARGO_BIN_EXE_", $name)),
            env!("CARGO_TARGET_TMPDIR"),
        )
    };
}

/// See [`program!`].
#[derive(Debug)]
pub struct Program {
    cmd: Command,
}

impl Program {
    /// `bin` with its cache under `tmp` (the test's `CARGO_TARGET_TMPDIR`).
    pub fn new(bin: impl AsRef<OsStr>, tmp: impl AsRef<Path>) -> Program {
        let mut cmd = Command::new(bin);
        cmd.env("TFHUB_CACHE_DIR", tmp.as_ref().join("tfhub-cache"))
            .env("TFHUB_OFFLINE", "1");
        Program { cmd }
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Program {
        self.cmd.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Program
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Sets an environment variable.
    pub fn env(&mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> &mut Program {
        self.cmd.env(key, val);
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Program {
        self.cmd.env_remove(key);
        self
    }

    /// Runs it in `dir`.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Program {
        self.cmd.current_dir(dir);
        self
    }

    /// Uses `cache` as the hub cache.
    pub fn cache(&mut self, cache: impl AsRef<Path>) -> &mut Program {
        self.cmd.env("TFHUB_CACHE_DIR", cache.as_ref());
        self
    }

    /// Allows the network (the tests' loopback server).
    pub fn online(&mut self) -> &mut Program {
        self.cmd.env_remove("TFHUB_OFFLINE");
        self
    }

    /// Runs it to the end.
    pub fn run(&mut self) -> Output {
        self.cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", self.cmd))
    }

    /// Runs it, asserts that it succeeded, and returns its stdout and stderr.
    pub fn run_ok(&mut self) -> (String, String) {
        let o = self.run();
        let (out, err) = (text(&o.stdout), text(&o.stderr));
        assert!(o.status.success(), "{:?} failed: {err}", self.cmd);
        (out, err)
    }

    /// Runs it, asserts that it failed the way every program fails (exit code 1, stderr
    /// starting with `error: `, no panic), and returns the error message.
    pub fn run_err(&mut self) -> String {
        let o = self.run();
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{:?}: {err}", self.cmd);
        assert!(err.starts_with("error: "), "{:?}: {err}", self.cmd);
        assert!(!err.contains("panicked"), "{:?}: {err}", self.cmd);
        err
    }

    /// [`Program::run_err`], then asserts that the message holds every needle and that
    /// nothing under `dir` was created, removed or renamed; returns the message.
    pub fn refused_in(&mut self, dir: &Path, needles: &[&str]) -> String {
        let before = listing(dir);
        let err = self.run_err();
        for n in needles {
            assert!(err.contains(n), "missing `{n}` in: {err}");
        }
        assert_eq!(listing(dir), before, "something was written: {err}");
        err
    }
}

impl Deref for Program {
    type Target = Command;
    fn deref(&self) -> &Command {
        &self.cmd
    }
}

impl DerefMut for Program {
    fn deref_mut(&mut self) -> &mut Command {
        &mut self.cmd
    }
}

/// Lossy UTF-8.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every path under `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A `&str` as a command-line argument.
pub fn os(s: &str) -> &OsStr {
    s.as_ref()
}
