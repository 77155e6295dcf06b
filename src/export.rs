//! `grokstack export DIR --run ID --out FILE.safetensors`: one run's final weights under
//! PyTorch's names and layout, with its configuration as metadata; with `--logits`, also the
//! logits the trainer's own evaluation pass computes from them on the run's rows.
//!
//! The MLP of a run, as PyTorch would write it (no biases):
//!   x = concat(embedding.weight[a], embedding.weight[b])      (two_hot: concat(onehot(a), onehot(b)))
//!   x = act(x @ layers.i.weight.T)  for every Linear layer but the last
//!   logits = alpha · (x @ layers.K.weight.T)
//! A transformer's names are listed in `crate::models::transformer`. Every Linear weight is
//! written `[out, in]` (our `[in, out]` transposed); embeddings (`embedding.weight` `[V, d]`,
//! `position.weight` `[T, d]`), gains and biases keep their layout.

use crate::config::{RunSpec, Sweep, Value};
use crate::data;
use crate::files::{self, write_atomic};
use crate::metrics::Status;
use crate::models::{Model, PassOptions};
use crate::output::{self, Plan, PLAN_FILE, RUNS_FILE, SWEEP_FILE};
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use polars::prelude::*;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "grokstack-run-1";

/// What was exported.
pub struct Exported {
    pub path: PathBuf,
    /// Tensor names and shapes, as written.
    pub tensors: Vec<(String, Vec<usize>)>,
    pub status: String,
    pub final_test_acc: f64,
}

/// Export run `run_id` of the sweep in `dir` to `out`, and its logits to `logits` if asked.
pub fn export_run(dir: &Path, run_id: usize, out: &Path, logits: Option<&Path>) -> Result<Exported> {
    let sweep_path = dir.join(SWEEP_FILE);
    let text = fs::read_to_string(&sweep_path)
        .with_context(|| format!("{} holds no sweep: cannot read {}", dir.display(), sweep_path.display()))?;
    let sweep = Sweep::parse(&text, &sweep_path.display().to_string(), &[])?;
    let runs = sweep.runs()?;
    let spec = runs.get(run_id).with_context(|| {
        format!(
            "the sweep in {} has runs 0 to {}; there is no run {run_id}",
            dir.display(),
            runs.len().saturating_sub(1)
        )
    })?;

    let plan_path = dir.join(PLAN_FILE);
    let plan = Plan::read(&plan_path)?;
    let part = plan
        .parts
        .iter()
        .position(|ids| ids.contains(&run_id))
        .with_context(|| format!("{} does not list run {run_id}", plan_path.display()))?;
    let weights_path = dir.join(output::WEIGHTS_DIR).join(output::part_name(part, "safetensors"));
    if run_status(&dir.join(RUNS_FILE), run_id)?.as_deref() == Some(Status::Skipped.as_str()) {
        bail!("run {run_id} was skipped by seed waves (its setting could no longer qualify) and has no weights");
    }
    if !weights_path.exists() {
        bail!(
            "run {run_id} has not finished yet: {} does not exist (continue the sweep with `grokstack train ... \
            --resume`)",
            weights_path.display()
        );
    }
    let bytes = fs::read(&weights_path).with_context(|| format!("cannot read {}", weights_path.display()))?;
    let corrupted = |e: &dyn std::fmt::Display| anyhow!("{} is corrupted: {e}", weights_path.display());
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| corrupted(&e))?;
    let info: serde_json::Value = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("grokstack"))
        .map(|s| serde_json::from_str(s))
        .transpose()
        .map_err(|e| corrupted(&e))?
        .ok_or_else(|| corrupted(&"no grokstack metadata"))?;
    let row = info["run_ids"]
        .as_array()
        .and_then(|ids| ids.iter().position(|id| id.as_u64() == Some(run_id as u64)))
        .ok_or_else(|| corrupted(&format!("it does not hold run {run_id}")))?;
    let stacked = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| corrupted(&e))?;

    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut names: Vec<&String> = stacked.keys().collect();
    names.sort();
    for name in names {
        let t = stacked[name].get(row).map_err(|e| corrupted(&e))?;
        // PyTorch's Linear stores [out, in]; embeddings are [rows, d] in both.
        let linear = t.rank() == 2
            && name.ends_with(".weight")
            && !matches!(name.as_str(), "embedding.weight" | "position.weight");
        let t = if linear { t.t()?.contiguous()? } else { t };
        tensors.push((name.clone(), t));
    }

    let summary = run_summary(&dir.join(RUNS_FILE), run_id)?;
    let config: serde_json::Map<String, serde_json::Value> =
        spec.values.iter().map(|(k, v)| (k.to_string(), json_value(v))).collect();
    let mut metadata: HashMap<String, String> = HashMap::from([
        ("format".into(), FORMAT.into()),
        ("run_id".into(), run_id.to_string()),
        ("setting_id".into(), spec.setting_id.to_string()),
        ("seed".into(), spec.seed.to_string()),
        ("config".into(), serde_json::Value::Object(config).to_string()),
        ("architecture".into(), spec.config.arch().export_description().into()),
    ]);
    metadata.extend(summary);
    let status = metadata.get("status").cloned().unwrap_or_default();
    let final_test_acc = metadata.get("final_test_acc").and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
    let out_bytes = safetensors::tensor::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
        .map_err(|e| anyhow!("cannot serialize run {run_id}: {e}"))
        .and_then(metadata_in_key_order)?;
    write_atomic(out, |f| Ok(std::io::Write::write_all(f, &out_bytes)?))?;
    if let Some(logits) = logits {
        let tensors = run_logits(spec, &stacked, row).with_context(|| format!("the logits of run {run_id}"))?;
        let bytes = safetensors::tensor::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None)
            .map_err(|e| anyhow!("cannot serialize the logits of run {run_id}: {e}"))?;
        write_atomic(logits, |f| Ok(std::io::Write::write_all(f, &bytes)?))?;
    }
    Ok(Exported {
        path: out.to_path_buf(),
        tensors: tensors.iter().map(|(n, t)| (n.clone(), t.dims().to_vec())).collect(),
        status,
        final_test_acc,
    })
}

/// A safetensors file's bytes with its header's metadata in key order: the crate writes its
/// metadata `HashMap` in a random order, so the same run would export to different bytes.
/// Only the header's order changes; every tensor's offsets stay as they were.
fn metadata_in_key_order(bytes: Vec<u8>) -> Result<Vec<u8>> {
    let length = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + length])?;
    if let Some(serde_json::Value::Object(metadata)) = header.get_mut("__metadata__") {
        let mut sorted: Vec<(String, serde_json::Value)> = std::mem::take(metadata).into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        metadata.extend(sorted);
    }
    let mut text = serde_json::to_vec(&header)?;
    // The data starts 8-byte aligned, as the crate pads the header with spaces.
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - length);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + length..]);
    Ok(out)
}

/// The run's logits `[N, C]` on its train and test rows, as the trainer's evaluation pass
/// computes them from its final weights (row `row` of the part's `stacked` weights), with
/// each row's symbols `[N, K]` and label `[N]` (i64), in the order of the run's split. bf16
/// logits are written as f32, which holds them exactly.
fn run_logits(spec: &RunSpec, stacked: &HashMap<String, Tensor>, row: usize) -> Result<Vec<(String, Tensor)>> {
    let config = &spec.config;
    let arch = config.arch();
    let mut model = Model::init(&arch, &[spec.seed], config.precision, &Device::Cpu)?;
    for param in &mut model.params {
        let saved =
            stacked.get(&param.name).with_context(|| format!("it lacks `{}`", param.name))?.narrow(0, row, 1)?;
        if saved.dims() != param.value.dims() || saved.dtype() != param.value.dtype() {
            bail!(
                "`{}` is {:?} {:?}, the run's model has {:?} {:?}",
                param.name,
                saved.dtype(),
                saved.dims(),
                param.value.dtype(),
                param.value.dims()
            );
        }
        param.value = saved;
    }
    let split = data::split(config, spec.seed);
    let mut tensors = Vec::new();
    for (name, examples) in [("train", &split.train), ("test", &split.test)] {
        let n = examples.len();
        let inputs = arch.inputs(examples);
        let k = inputs.len() / n.max(1);
        let inputs = Tensor::from_vec(inputs, (1, n, k), &Device::Cpu)?; // [1, N, K]
        let labels = Tensor::from_vec(examples.labels.clone(), (1, n), &Device::Cpu)?; // [1, N]
        let group = model.runs_per_group(n);
        let options = PassOptions { keep_logits: true, ..PassOptions::new(config.loss, config.loss_bf16, group) };
        let (_, logits) = model.evaluate(&inputs, &labels, &options)?;
        let logits = logits.context("the evaluation kept no logits")?.squeeze(0)?; // [N, C]
        let logits = if logits.dtype() == DType::BF16 { logits.to_dtype(DType::F32)? } else { logits };
        let symbols: Vec<i64> = examples.symbols.iter().map(|&s| i64::from(s)).collect();
        let labels: Vec<i64> = examples.labels.iter().map(|&l| i64::from(l)).collect();
        tensors.push((format!("{name}.symbols"), Tensor::from_vec(symbols, (n, examples.width), &Device::Cpu)?));
        tensors.push((format!("{name}.labels"), Tensor::from_vec(labels, n, &Device::Cpu)?));
        tensors.push((format!("{name}.logits"), logits));
    }
    Ok(tensors)
}

/// The row of run `run_id` in runs.parquet (`df`, read from `path`), if it has finished.
fn find_row(df: &DataFrame, path: &Path, run_id: usize) -> Result<Option<usize>> {
    let ids: Vec<Option<i64>> = df
        .column("run_id")
        .and_then(|c| Ok(c.i64()?.iter().collect()))
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(ids.into_iter().position(|id| id == Some(run_id as i64)))
}

/// The run's status in runs.parquet; None while it has not finished.
fn run_status(path: &Path, run_id: usize) -> Result<Option<String>> {
    if !path.exists() {
        return Ok(None);
    }
    let df = files::read_parquet(path)?;
    let Some(row) = find_row(&df, path, run_id)? else { return Ok(None) };
    df.column("status")
        .and_then(|c| Ok(c.str()?.get(row).map(str::to_string)))
        .map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// The run's row of runs.parquet as metadata strings (floats written to round-trip).
fn run_summary(path: &Path, run_id: usize) -> Result<Vec<(String, String)>> {
    let df = files::read_parquet(path)?;
    let row =
        find_row(&df, path, run_id)?.with_context(|| format!("{} has no row for run {run_id}", path.display()))?;
    let mut out = Vec::new();
    for name in [
        "status",
        "epochs_trained",
        "grok_epoch",
        "solve_epoch",
        "final_train_acc",
        "final_test_acc",
        "final_train_loss",
        "final_test_loss",
    ] {
        let value =
            df.column(name).and_then(|c| c.get(row)).map_err(|e| anyhow!("{}: column {name}: {e}", path.display()))?;
        let text = match value {
            AnyValue::Null => "null".to_string(),
            AnyValue::Float64(x) => format!("{x:?}"),
            AnyValue::Int64(i) => i.to_string(),
            AnyValue::String(s) => s.to_string(),
            AnyValue::StringOwned(s) => s.to_string(),
            other => other.to_string(),
        };
        out.push((name.to_string(), text));
    }
    if let Some((_, epochs)) = out.iter().find(|(n, _)| n == "epochs_trained") {
        let epoch = epochs.parse::<usize>().ok().and_then(|e| e.checked_sub(1));
        out.push(("weights_epoch".into(), epoch.map_or("null".into(), |e| e.to_string())));
    }
    Ok(out)
}

fn json_value(value: &Value) -> serde_json::Value {
    match value {
        Value::Str(s) => s.clone().into(),
        Value::Int(i) => (*i).into(),
        Value::Float(x) => (*x).into(),
        Value::Bool(b) => (*b).into(),
        Value::IntList(list) => list.clone().into(),
    }
}
