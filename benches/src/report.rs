//! The suite's figures and their JSON file.

use serde::Serialize;
use std::path::Path;

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// What was measured, e.g. `inception_v3.cpu.batch_1`.
    pub name: String,
    pub value: f64,
    /// `img/s`, `ms`, `s/epoch`, ...
    pub unit: String,
    /// How: sizes, engine, data.
    pub detail: String,
}

/// Every figure of one run, with the machine it ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub figures: Vec<Figure>,
    /// Areas that did not run, and why.
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub logical_cpus: usize,
    pub profile: &'static str,
}

impl Machine {
    pub fn here() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        Machine {
            cpu,
            logical_cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            profile: if cfg!(debug_assertions) {
                "dev (dependencies at opt-level 3)"
            } else {
                "release"
            },
        }
    }
}

impl Report {
    pub fn new() -> Report {
        Report {
            machine: Machine::here(),
            figures: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Records and prints a figure.
    pub fn add(&mut self, name: &str, value: f64, unit: &str, detail: impl Into<String>) {
        let detail = detail.into();
        println!("{name:<44} {value:>10.2} {unit:<8} {detail}");
        self.figures.push(Figure {
            name: name.into(),
            value,
            unit: unit.into(),
            detail,
        });
    }

    /// Records and prints why an area did not run.
    pub fn skip(&mut self, why: impl Into<String>) {
        let why = why.into();
        println!("SKIPPED: {why}");
        self.skipped.push(why);
    }

    /// Writes the JSON file (through a temporary sibling).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path)
    }
}

impl Default for Report {
    fn default() -> Self {
        Report::new()
    }
}
