//! The leaf modules that the rest of the crate builds on: byte sizes, atomic files, runs.parquet
//! read back, and selection along the run axis.

mod common;

use candle_core::{DType, Device, Tensor};
use common::temp_path;
use grokstack::files::{read_parquet, write_atomic, write_parquet};
use grokstack::run_axis::{per_run, pick_runs, run_index};
use grokstack::runs_file;
use grokstack::size::{human_bytes, parse_bytes};
use polars::prelude::{Column, DataFrame};
use std::collections::HashSet;
use std::io::Write;

#[test]
fn sizes_parse_in_binary_units_and_print_in_the_largest_that_keeps_one() {
    assert_eq!(parse_bytes("512MiB").unwrap(), 512 * 1024 * 1024);
    assert_eq!(parse_bytes(" 8 gib ").unwrap(), 8 * 1024 * 1024 * 1024);
    assert_eq!(parse_bytes("2.5G").unwrap(), 5 * 512 * 1024 * 1024);
    assert_eq!(parse_bytes("1000000").unwrap(), 1_000_000);
    assert_eq!(parse_bytes("3k").unwrap(), 3072);
    let refusals = [("0", "must be positive"), ("8XB", "unknown unit `XB`"), ("lots", "expected a size like 8GiB")];
    for (text, says) in refusals {
        let error = parse_bytes(text).unwrap_err().to_string();
        assert!(error.starts_with(&format!("--max-memory {text}: ")) && error.contains(says), "{text}: {error}");
    }
    assert_eq!(human_bytes(0.0), "0.0 B");
    assert_eq!(human_bytes(1023.0), "1023.0 B");
    assert_eq!(human_bytes(1024.0), "1.0 KiB");
    assert_eq!(human_bytes(1.5 * 1024.0 * 1024.0 * 1024.0), "1.5 GiB");
    // TiB is the largest unit: larger sizes stay in it.
    assert_eq!(human_bytes(2048.0 * 1024f64.powi(4)), "2048.0 TiB");
}

#[test]
fn an_atomic_write_replaces_the_file_whole_or_leaves_it_as_it_was() {
    let dir = temp_path("leaf-atomic");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("plan.json");
    write_atomic(&path, |f| Ok(f.write_all(b"first")?)).unwrap();
    write_atomic(&path, |f| Ok(f.write_all(b"second")?)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"second");
    let failed = write_atomic(&path, |f| {
        f.write_all(b"half")?;
        anyhow::bail!("the writer gave up")
    });
    let error = format!("{:#}", failed.unwrap_err());
    let names_the_file = error.contains(&format!("cannot write {}", path.display()));
    assert!(names_the_file && error.contains("the writer gave up"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), b"second", "a failed write keeps the previous file");
    let entries = std::fs::read_dir(&dir).unwrap();
    let names: Vec<String> = entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["plan.json"], "no temporary file is left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn runs_file_lists_the_runs_of_a_status_and_names_a_damaged_file() {
    let dir = temp_path("leaf-runs-file");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("runs.parquet");
    assert!(runs_file::read(&path).unwrap().is_none(), "no runs.parquet: nothing committed");
    assert!(runs_file::listed_run_ids(None, &path, None).unwrap().is_empty());

    let frame = |ids: Vec<i64>, statuses: Vec<&str>| {
        let height = ids.len();
        DataFrame::new(height, vec![Column::new("run_id".into(), ids), Column::new("status".into(), statuses)]).unwrap()
    };
    write_parquet(&path, &mut frame(vec![4, 0, 7, 2], vec!["done", "skipped", "diverged", "skipped"])).unwrap();
    let read = runs_file::read(&path).unwrap().expect("a runs.parquet");
    assert_eq!(read, read_parquet(&path).unwrap());
    let all = runs_file::listed_run_ids(Some(&read), &path, None).unwrap();
    assert_eq!(all, HashSet::from([0, 2, 4, 7]));
    let skipped = runs_file::listed_run_ids(Some(&read), &path, Some("skipped")).unwrap();
    assert_eq!(skipped, HashSet::from([0, 2]));

    let negative = frame(vec![1, -3], vec!["done", "done"]);
    let error = format!("{:#}", runs_file::listed_run_ids(Some(&negative), &path, None).unwrap_err());
    assert!(error.contains(&format!("{} has no valid run_id and status columns", path.display())), "{error}");
    let no_status = DataFrame::new(1, vec![Column::new("run_id".into(), vec![1i64])]).unwrap();
    assert!(runs_file::listed_run_ids(Some(&no_status), &path, None).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_run_axis_keeps_the_runs_at_the_positions_given() {
    assert_eq!(pick_runs(&["a", "b", "c", "d"], &[3, 1]), ["d", "b"]);
    let index = run_index(&[2, 0], &Device::Cpu).unwrap();
    assert_eq!(index.dtype(), DType::U32);
    assert_eq!(index.to_vec1::<u32>().unwrap(), [2, 0]);

    // [R = 2, 2, 3], each run scaled by its own value.
    let like = Tensor::ones((2, 2, 3), DType::F64, &Device::Cpu).unwrap();
    let scale = per_run(&[2.0, -0.5], &like).unwrap();
    assert_eq!(scale.dims(), [2, 1, 1]);
    assert_eq!(scale.dtype(), DType::F64);
    let scaled = like.broadcast_mul(&scale).unwrap().to_vec3::<f64>().unwrap();
    assert_eq!(scaled[0], [[2.0; 3]; 2]);
    assert_eq!(scaled[1], [[-0.5; 3]; 2]);
}
