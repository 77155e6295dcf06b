//! Files written atomically (a temporary file, fsync, rename), so that a reader never sees a
//! half-written one and a killed process leaves the previous version whole; and whole Parquet
//! files, read and written. Errors name the file, and a full disk says so
//! ([`crate::disk::write_error`]).

use crate::faults;
use anyhow::{anyhow, Context, Result};
use polars::prelude::{DataFrame, ParquetReader, ParquetWriter, SerReader};
use std::fs::{self, File};
use std::path::Path;

/// Write `path` through a temporary file in the same directory, fsync it, then rename.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let name = path.file_name().context("output path has no file name")?.to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result: Result<()> = (|| {
        let mut file = File::create(&tmp)?;
        write(&mut file)?;
        file.sync_all()?;
        faults::point(&format!("write:{name}"))?;
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|error| crate::disk::write_error(path, error))
}

/// Read a whole Parquet file; errors name it.
pub fn read_parquet(path: &Path) -> Result<DataFrame> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    ParquetReader::new(file)
        .finish()
        .map_err(|e| anyhow!("{} is not a readable Parquet file (truncated or corrupted?): {e}", path.display()))
}

/// Write `df` as the Parquet file `path`, atomically.
pub fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<()> {
    write_atomic(path, |f| {
        ParquetWriter::new(f).finish(df)?;
        Ok(())
    })
}
