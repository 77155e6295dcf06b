//! Writing the outputs so that a failed analysis never leaves half-written or
//! mixed old/new files: everything goes to a staging folder inside
//! `DIR/analysis/` first and is renamed into place only when all of it exists.
//! The tables, Markdown documents and SVGs are also kept in memory, in the
//! order they were staged, for report.html (`crate::report`), written last.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use polars::prelude::DataFrame;

use crate::report;
use crate::tables::csv_bytes;

pub(crate) struct Staging {
    out_dir: PathBuf,
    stage_dir: PathBuf,
    /// Whether `out_dir` is ours to remove again if the analysis fails.
    created_out_dir: bool,
    staged: Vec<String>,
    committed: bool,
    report: report::Contents,
}

impl Staging {
    pub fn create(out_dir: &Path) -> Result<Self> {
        let created_out_dir = !out_dir.exists();
        fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        // Unique per process and call, so concurrent analyses cannot collide.
        let stage_dir = out_dir.join(format!(".staging-{}-{nanos}", std::process::id()));
        let stage = Self {
            out_dir: out_dir.to_path_buf(),
            stage_dir,
            created_out_dir,
            staged: Vec::new(),
            committed: false,
            report: report::Contents::default(),
        };
        fs::create_dir(&stage.stage_dir).with_context(|| format!("creating {}", stage.stage_dir.display()))?;
        Ok(stage)
    }

    /// Where a writer that needs a path (the PNG encoder) should put `name`.
    pub fn path_for(&mut self, name: &str) -> PathBuf {
        self.staged.push(name.to_string());
        self.stage_dir.join(name)
    }

    pub fn write(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path_for(name);
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    }

    /// `frame` as the CSV file `name`; `what` says what its rows are (the report's caption).
    pub fn write_csv(&mut self, name: &str, what: &str, frame: &DataFrame) -> Result<()> {
        self.write(name, &csv_bytes(frame)?)?;
        self.report.add_table(name, what, frame)
    }

    pub fn write_markdown(&mut self, name: &str, markdown: &str) -> Result<()> {
        self.write(name, markdown.as_bytes())?;
        self.report.add_document(name, markdown);
        Ok(())
    }

    pub fn write_svg(&mut self, name: &str, svg: &str) -> Result<()> {
        self.write(name, svg.as_bytes())?;
        self.report.add_plot(name, svg);
        Ok(())
    }

    /// What report.html shows: everything staged through the three writers above.
    pub fn report_contents(&self) -> &report::Contents {
        &self.report
    }

    /// Moves every staged file into place and removes those of `known_outputs`
    /// that this analysis did not produce, so no stale result survives.
    pub fn commit(mut self, known_outputs: &[&str]) -> Result<()> {
        for name in &self.staged {
            let target = self.out_dir.join(name);
            fs::rename(self.stage_dir.join(name), &target)
                .with_context(|| format!("moving {} into place", target.display()))?;
        }
        for name in known_outputs.iter().filter(|n| !self.staged.iter().any(|s| s == *n)) {
            let stale = self.out_dir.join(name);
            if stale.exists() {
                fs::remove_file(&stale).with_context(|| format!("removing the stale {}", stale.display()))?;
            }
        }
        self.committed = true;
        fs::remove_dir_all(&self.stage_dir).with_context(|| format!("removing {}", self.stage_dir.display()))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Best effort: an error is already on its way to the caller.
        let _ = fs::remove_dir_all(&self.stage_dir);
        if self.created_out_dir {
            let _ = fs::remove_dir(&self.out_dir);
        }
    }
}
