//! `grokstack merge DIR`: the shards in `DIR/shards/K-of-N/` combined into the ordinary layout
//! of `DIR` (runs.parquet sorted by run id, the metrics and weights parts, plan.json and
//! progress.json), so that `analyze` and `export` read it as a sweep trained in one process.
//!
//! The shards are read, never changed. Each run is taken from the first shard that lists it
//! (shards ordered by N, then K); runs no shard lists are missing, runs listed by two shards
//! (shards of two different N) duplicated, and both are reported with the shards named.
//! A new merge replaces the previous one: every file is written atomically, runs.parquet
//! last, then the parts of the previous merge that this one does not have are removed.

use crate::config::Sweep;
use crate::files::{read_parquet, write_atomic, write_parquet};
use crate::output::{self, OutputDir, Plan, PLAN_FILE, RUNS_FILE, SWEEP_FILE};
use crate::runs_file;
use crate::shard::{self, Shard, SHARDS_DIR};
use crate::waves::Waves;
use anyhow::{anyhow, bail, Context, Result};
use polars::prelude::{BooleanChunked, DataFrame, SortMultipleOptions};
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

/// What a merge wrote and what it found missing or duplicated.
pub struct MergeReport {
    pub shards: usize,
    pub runs: usize,
    pub total_runs: usize,
    pub parts: usize,
    /// One line per group of missing runs, naming the shard(s) that should have them.
    pub missing: Vec<String>,
    /// One line per pair of shards that list the same runs.
    pub duplicated: Vec<String>,
}

impl MergeReport {
    pub fn complete(&self) -> bool {
        self.missing.is_empty() && self.duplicated.is_empty()
    }
}

/// One shard folder as found.
struct Found {
    shard: Shard,
    dir: PathBuf,
    started: bool,
    plan: Option<Plan>,
    runs: Option<DataFrame>,
    listed: HashSet<usize>,
}

impl Found {
    fn label(&self) -> String {
        format!("{SHARDS_DIR}/{}", self.shard.name())
    }
}

/// Merge the shards of `dir` into `dir`.
pub fn merge(dir: &Path) -> Result<MergeReport> {
    let sweep_path = dir.join(SWEEP_FILE);
    let text = fs::read_to_string(&sweep_path).with_context(|| {
        format!(
            "{} holds no sweep: cannot read {} (train \
        shards into it with `grokstack train SWEEP --out {} --shard K/N`)",
            dir.display(),
            sweep_path.display(),
            dir.display()
        )
    })?;
    let sweep = Sweep::parse(&text, &sweep_path.display().to_string(), &[])?;
    let found = find_shards(dir, &text)?;
    refuse_trained_results(dir)?;
    let (owner, doubled) = owners(&found, sweep.run_count())?;
    if owner.is_empty() {
        bail!(
            "nothing to merge: no shard in {} has finished a stack yet ({})",
            dir.join(SHARDS_DIR).display(),
            found.iter().map(Found::label).collect::<Vec<_>>().join(", ")
        );
    }
    let duplicated = doubled
        .iter()
        .map(|((a, b), ids)| {
            format!(
                "{} listed by both {} and {} (taken from {})",
                runs_text(ids),
                found[*a].label(),
                found[*b].label(),
                found[*a].label()
            )
        })
        .collect();
    let missing = describe_missing(&sweep, &found, &owner)?;

    let (output, _) = OutputDir::open(dir, &sweep, true)?;
    let parts = write_parts(&output, &found, &owner, &Waves::of(&sweep))?;
    let plan = Plan {
        format: 1,
        parts,
        seed_waves: sweep.seed_waves.clone(),
        merged_from: found.iter().map(Found::label).collect(),
    };
    output.start(&sweep, &plan)?;
    let mut runs = merged_runs(&found, &owner, dir)?;
    output.write_progress(sweep.run_count(), runs.height())?;
    output.write_runs(&mut runs)?; // the commit point, as in a trained directory
    for folder in [output::METRICS_DIR, output::WEIGHTS_DIR] {
        remove_parts_after(&dir.join(folder), plan.parts.len())?;
    }
    output.remove_stale_temporaries()?;
    Ok(MergeReport {
        shards: found.len(),
        runs: runs.height(),
        total_runs: sweep.run_count(),
        parts: plan.parts.len(),
        missing,
        duplicated,
    })
}

/// Results trained in `dir` itself are never replaced, only a previous merge's.
fn refuse_trained_results(dir: &Path) -> Result<()> {
    let path = dir.join(PLAN_FILE);
    if !path.exists() {
        return Ok(());
    }
    let previous = Plan::read(&path)?;
    if previous.merged_from.is_empty() {
        bail!(
            "{} holds a sweep trained there, not a merge of its shards ({}); merge into a directory of shards only",
            dir.display(),
            path.display()
        );
    }
    Ok(())
}

/// Per pair of shards (indices into the shards found), the runs both list.
type Doubled = BTreeMap<(usize, usize), Vec<usize>>;

/// Per run listed by some shard, the first shard (by N, then K; an index into `found`) that
/// lists it; and per pair of shards, the runs the second lists too.
fn owners(found: &[Found], run_count: usize) -> Result<(BTreeMap<usize, usize>, Doubled)> {
    let mut owner: BTreeMap<usize, usize> = BTreeMap::new();
    let mut doubled = Doubled::new();
    for (index, shard) in found.iter().enumerate() {
        let mut ids: Vec<usize> = shard.listed.iter().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if id >= run_count {
                bail!("{} lists run {id}, but the sweep has {run_count} runs", shard.dir.join(RUNS_FILE).display());
            }
            match owner.get(&id) {
                Some(&first) => doubled.entry((first, index)).or_default().push(id),
                None => {
                    owner.insert(id, index);
                }
            }
        }
    }
    Ok((owner, doubled))
}

/// Copy the finished parts of every shard that hold runs it owns into `output`, the waves in
/// order (as a trained directory's plan has them), else by shard and part; a part with runs
/// another shard owns keeps only its own metric rows. Returns the merged plan's parts.
fn write_parts(
    output: &OutputDir,
    found: &[Found],
    owner: &BTreeMap<usize, usize>,
    waves: &Waves,
) -> Result<Vec<Vec<usize>>> {
    let mut parts: Vec<(usize, usize, Vec<usize>)> = Vec::new();
    for (index, shard) in found.iter().enumerate() {
        let Some(plan) = &shard.plan else { continue };
        for (part, ids) in plan.parts.iter().enumerate() {
            // Empty for a part not finished: its runs are not in runs.parquet.
            let own: Vec<usize> = ids.iter().copied().filter(|id| owner.get(id) == Some(&index)).collect();
            if !own.is_empty() {
                parts.push((index, part, own));
            }
        }
    }
    parts.sort_by_key(|(_, _, ids)| waves.of_run(ids[0]));
    let weights_dir = output.root().join(output::WEIGHTS_DIR);
    fs::create_dir_all(&weights_dir).with_context(|| format!("cannot create {}", weights_dir.display()))?;
    for (merged, (index, part, own)) in parts.iter().enumerate() {
        let shard = &found[*index];
        // A part whose runs were all skipped (seed waves) has no metrics or weights.
        let metrics = shard.dir.join(output::METRICS_DIR).join(output::part_name(*part, "parquet"));
        if metrics.exists() {
            let all_own = shard.plan.as_ref().is_some_and(|p| p.parts[*part].len() == own.len());
            if all_own {
                copy(&metrics, &output.metrics_part_path(merged))?;
            } else {
                write_parquet(
                    &output.metrics_part_path(merged),
                    &mut only_runs(read_parquet(&metrics)?, own, &metrics)?,
                )?;
            }
        }
        let weights = shard.dir.join(output::WEIGHTS_DIR).join(output::part_name(*part, "safetensors"));
        if weights.exists() {
            copy(&weights, &output.weights_part_path(merged))?;
        }
    }
    Ok(parts.into_iter().map(|(_, _, ids)| ids).collect())
}

/// The rows of the shards' runs.parquet files, each run from its owner, sorted by run id.
fn merged_runs(found: &[Found], owner: &BTreeMap<usize, usize>, dir: &Path) -> Result<DataFrame> {
    let mut frames = found.iter().enumerate().filter_map(|(index, shard)| {
        let own: Vec<usize> = shard.listed.iter().copied().filter(|id| owner[id] == index).collect();
        shard.runs.clone().map(|df| only_runs(df, &own, &shard.dir.join(RUNS_FILE)))
    });
    let mut runs = frames.next().context("internal: no shard frame")??;
    for frame in frames {
        runs.vstack_mut(&frame?).with_context(|| {
            format!("the runs.parquet files of the shards in {} have different columns", dir.display())
        })?;
    }
    Ok(runs.sort(["run_id"], SortMultipleOptions::default())?)
}

/// The shard folders of `dir`, ordered by N then K, each checked to hold the sweep `text`.
fn find_shards(dir: &Path, text: &str) -> Result<Vec<Found>> {
    let shards_dir = dir.join(SHARDS_DIR);
    let entries = fs::read_dir(&shards_dir)
        .with_context(|| format!("cannot list {} (train shards with --shard K/N first)", shards_dir.display()))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("cannot list {}", shards_dir.display()))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !path.is_dir() || name.starts_with('.') {
            continue;
        }
        let shard = Shard::from_name(&name)
            .with_context(|| format!("{} is not a shard folder (expected K-of-N, 0 <= K < N)", path.display()))?;
        let sweep_file = path.join(SWEEP_FILE);
        let started = sweep_file.exists();
        if started
            && fs::read_to_string(&sweep_file).with_context(|| format!("cannot read {}", sweep_file.display()))? != text
        {
            bail!(
                "{} holds a different sweep than {} ({} differs); it is not merged",
                path.display(),
                dir.display(),
                sweep_file.display()
            );
        }
        let runs_path = path.join(RUNS_FILE);
        let runs = runs_file::read(&runs_path)?;
        let listed = runs_file::listed_run_ids(runs.as_ref(), &runs_path, None)?;
        let plan_path = path.join(PLAN_FILE);
        let plan = match runs {
            Some(_) => Some(Plan::read(&plan_path)?),
            None => None,
        };
        found.push(Found { shard, dir: path, started, plan, runs, listed });
    }
    if found.is_empty() {
        bail!("{} holds no shard folders (K-of-N)", shards_dir.display());
    }
    found.sort_by_key(|f| f.shard);
    Ok(found)
}

/// The runs no shard lists, grouped by the shards that should have them (the shard of each N
/// found), with how far each of those got.
fn describe_missing(sweep: &Sweep, found: &[Found], owner: &BTreeMap<usize, usize>) -> Result<Vec<String>> {
    let runs = sweep.runs()?;
    let work = shard::setting_work(&runs);
    let mut counts: Vec<usize> = found.iter().map(|f| f.shard.count).collect();
    counts.dedup();
    // Per N: the shard of every setting; per shard, its runs.
    let mut shard_of_setting: Vec<Vec<usize>> = Vec::new();
    let mut shard_runs: BTreeMap<Shard, usize> = BTreeMap::new();
    for &count in &counts {
        let mut of = vec![0; work.len()];
        for (index, settings) in shard::assign(&work, count)?.iter().enumerate() {
            shard_runs.insert(Shard { index, count }, settings.len() * sweep.seeds.len());
            for &setting in settings {
                of[setting] = index;
            }
        }
        shard_of_setting.push(of);
    }
    let mut groups: BTreeMap<Vec<Shard>, Vec<usize>> = BTreeMap::new();
    for run in runs.iter().filter(|r| !owner.contains_key(&r.run_id)) {
        let shards = counts
            .iter()
            .zip(&shard_of_setting)
            .map(|(&count, of)| Shard { index: of[run.setting_id], count })
            .collect();
        groups.entry(shards).or_default().push(run.run_id);
    }
    Ok(groups
        .into_iter()
        .map(|(shards, ids)| {
            let states: Vec<String> = shards
                .iter()
                .map(|s| {
                    let total = shard_runs.get(s).copied().unwrap_or(0);
                    let state = match found.iter().find(|f| f.shard == *s) {
                        Some(f) if f.started => format!("unfinished: {} of {total} runs listed", f.listed.len()),
                        _ => "not started".to_string(),
                    };
                    format!("{SHARDS_DIR}/{} ({state})", s.name())
                })
                .collect();
            format!("{} missing: {}", runs_text(&ids), states.join(" or "))
        })
        .collect())
}

/// The rows of `df` (read from `path`) whose run is one of `ids`.
fn only_runs(df: DataFrame, ids: &[usize], path: &Path) -> Result<DataFrame> {
    let wanted: HashSet<i64> = ids.iter().map(|&id| id as i64).collect();
    let column = df
        .column("run_id")
        .and_then(|c| c.i64().cloned())
        .map_err(|e| anyhow!("{}: column run_id: {e}", path.display()))?;
    let mask: BooleanChunked = column.iter().map(|id| Some(id.is_some_and(|id| wanted.contains(&id)))).collect();
    df.filter(&mask).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Copy a shard's file into the merge, atomically.
fn copy(from: &Path, to: &Path) -> Result<()> {
    let bytes = fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    write_atomic(to, |f| Ok(std::io::Write::write_all(f, &bytes)?))
}

/// Remove the parts `part-NNNNN.*` of `dir` numbered `count` or more: a previous merge's that
/// this one does not have.
fn remove_parts_after(dir: &Path, count: usize) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let number =
            name.strip_prefix("part-").and_then(|rest| rest.split('.').next()).and_then(|n| n.parse::<usize>().ok());
        if number.is_some_and(|n| n >= count) {
            fs::remove_file(entry.path()).with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// `runs 0-5, 8, 10-12` (`run 3` for one).
fn runs_text(ids: &[usize]) -> String {
    let mut ranges: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        ranges.push(if i == j { ids[i].to_string() } else { format!("{}-{}", ids[i], ids[j]) });
        i = j + 1;
    }
    format!("{} {}", if ids.len() == 1 { "run" } else { "runs" }, ranges.join(", "))
}
