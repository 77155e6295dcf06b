//! Reading a sweep file: sections, seeds, grid axes and `--set` overrides, resolved into
//! the list of runs. Every error names the file and the dotted key.

use super::run::{Op, RunConfig, TABLE_KEY};
use super::schema::{check_value, spec, Value, LISTED_WHEN_SET, SCHEMA};
use crate::tasks::TableFile;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SECTIONS: &[&str] = &["task", "model", "train", "metrics"];
/// More runs than any grid of the papers (8,960) by far; listing them takes ~2 KiB each.
pub const MAX_RUNS: usize = 1_000_000;
/// Seeds per wave (`crate::waves`): a property of the sweep, not of a run, so it is neither in
/// the schema's per-run table nor a grid axis.
pub const SEED_WAVES_KEY: &str = "train.seed_waves";

/// A sweep with every default filled in: the base setting, the grid axes and the seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    pub name: String,
    pub seeds: Vec<u64>,
    /// Every schema key's value before the grid is applied (the keys of [`LISTED_WHEN_SET`] only once set).
    pub base: BTreeMap<&'static str, Value>,
    /// Grid axes in file order. The first axis varies slowest.
    pub grid: Vec<Axis>,
    /// `train.seed_waves`: seeds per wave, summing to the seeds; empty for one wave of all
    /// seeds (a single wave is stored so too, so that both write the same sweep.toml).
    pub seed_waves: Vec<usize>,
    /// The SHA-256 of every `task.table` file by its absolute path, written to the resolved
    /// sweep's `[tables]` so that a resume, merge or export refuses a file that changed.
    pub tables: BTreeMap<String, String>,
}

/// A `task.table` file whose bytes differ from the hash its sweep recorded.
#[derive(Debug)]
pub struct TableChanged {
    pub source: String,
    pub path: String,
    pub recorded: String,
    pub now: String,
}

impl std::fmt::Display for TableChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: the table file {} has changed since the sweep was resolved (sha256 {} recorded in [tables], {} now)",
            self.source, self.path, self.recorded, self.now
        )
    }
}

impl std::error::Error for TableChanged {}

/// One grid axis: a key and its values, or a linked axis, whose every case sets several keys
/// together (each task with its own train fraction, each optimizer with its own learning rates):
///
/// ```toml
/// [grid]
/// "train.loss" = ["softmax", "stablemax"]
/// task = [{ "task.op" = "gcd", "task.train_fraction" = 0.5 }, { "task.op" = "add", "task.train_fraction" = 0.8 }]
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// The key, or a linked axis's own name (any name that is not a key).
    pub name: String,
    /// The keys every case sets, in the order of the first case.
    pub keys: Vec<&'static str>,
    /// One value per key for each case.
    pub cases: Vec<Vec<Value>>,
}

impl Axis {
    fn is_linked(&self) -> bool {
        self.keys.len() != 1 || self.keys[0] != self.name
    }
}

/// One run of the sweep: its ids, seed and every resolved key.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub run_id: usize,
    pub setting_id: usize,
    pub seed: u64,
    pub values: BTreeMap<&'static str, Value>,
    pub config: RunConfig,
}

impl Sweep {
    /// Parse `path`, apply `overrides` (`KEY=VALUE` strings), and check every run.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Sweep> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read sweep file {}", path.display()))?;
        Self::parse(&text, &path.display().to_string(), overrides)
    }

    /// Parse sweep text; `source` names it in errors.
    pub fn parse(text: &str, source: &str, overrides: &[String]) -> Result<Sweep> {
        let table: toml::Table = toml::from_str(text).map_err(|e| anyhow!("{source}: not valid TOML: {e}"))?;
        let mut sweep = Sweep {
            name: "sweep".into(),
            seeds: vec![0],
            base: SCHEMA.iter().filter(|s| !LISTED_WHEN_SET.contains(&s.key)).map(|s| (s.key, (s.default)())).collect(),
            grid: Vec::new(),
            seed_waves: Vec::new(),
            tables: BTreeMap::new(),
        };
        let mut recorded_tables = None;
        for (key, value) in &table {
            match key.as_str() {
                "name" => {
                    sweep.name =
                        value.as_str().ok_or_else(|| anyhow!("{source}: key `name`: expected a string"))?.to_string()
                }
                "seeds" => sweep.seeds = parse_seeds(value).map_err(|e| anyhow!("{source}: key `seeds`: {e}"))?,
                "tables" => recorded_tables = Some(value),
                "grid" => {
                    let axes = value.as_table().ok_or_else(|| anyhow!("{source}: `grid` must be a table"))?;
                    for (axis, values) in axes {
                        sweep.set_axis(axis, values).map_err(|e| anyhow!("{source}: grid key `{axis}`: {e}"))?;
                    }
                }
                section if SECTIONS.contains(&section) => {
                    let entries = value
                        .as_table()
                        .ok_or_else(|| anyhow!("{source}: `{section}` must be a table ([{section}])"))?;
                    for (name, raw) in entries {
                        let dotted = format!("{section}.{name}");
                        if dotted == SEED_WAVES_KEY {
                            sweep.seed_waves =
                                parse_seed_waves(raw).map_err(|e| anyhow!("{source}: key `{SEED_WAVES_KEY}`: {e}"))?;
                            continue;
                        }
                        sweep.set_base(&dotted, raw).map_err(|e| anyhow!("{source}: key `{dotted}`: {e}"))?;
                    }
                }
                other => {
                    bail!(
                        "{source}: unknown key `{other}` (expected name, seeds, grid, tables, {})",
                        SECTIONS.join(", ")
                    )
                }
            }
        }
        // Table paths are relative to the sweep file, and those of `--set` to the current directory.
        let sweep_dir = Path::new(source).parent().unwrap_or(Path::new(""));
        sweep.resolve_table_paths(sweep_dir).map_err(|e| anyhow!("{source}: {e}"))?;
        for assignment in overrides {
            sweep.apply_override(assignment).map_err(|e| anyhow!("--set {assignment}: {e}"))?;
        }
        sweep.resolve_table_paths(Path::new("")).map_err(|e| anyhow!("--set {TABLE_KEY}: {e}"))?;
        sweep.check_table_task().map_err(|e| anyhow!("{source}: {e}"))?;
        if sweep.seeds.is_empty() {
            bail!("{source}: key `seeds`: no seeds");
        }
        let in_waves: usize = sweep.seed_waves.iter().sum();
        if !sweep.seed_waves.is_empty() && in_waves != sweep.seeds.len() {
            bail!(
                "{source}: key `{SEED_WAVES_KEY}`: the waves {:?} hold {in_waves} seeds, but the sweep has {} (key \
                `seeds`); they must add up to all of them",
                sweep.seed_waves,
                sweep.seeds.len()
            );
        }
        if sweep.seed_waves.len() == 1 {
            sweep.seed_waves.clear();
        }
        let count = sweep.run_count();
        if count > MAX_RUNS {
            bail!("{source}: the grid has {count} runs, more than {MAX_RUNS}");
        }
        // Check the combinations now, before anything is written: e.g. div needs a prime p.
        // Per setting, not per run: the seeds change no key, and a million runs would take
        // gigabytes just to be listed.
        for setting_id in 0..sweep.setting_count() {
            RunConfig::from_values(&sweep.setting_values(setting_id)).map_err(|e| anyhow!("{source}: {e}"))?;
        }
        sweep.tables = sweep.table_hashes()?;
        if let Some(recorded) = recorded_tables {
            sweep.check_recorded_tables(recorded, source)?;
        }
        Ok(sweep)
    }

    /// Every `task.table` path (in the base and the grid) made absolute, relative to `dir`.
    fn resolve_table_paths(&mut self, dir: &Path) -> Result<()> {
        let absolute = |value: &mut Value| -> Result<()> {
            let Value::Str(path) = value else { return Ok(()) };
            if path.is_empty() {
                bail!("key `{TABLE_KEY}`: the path is empty");
            }
            let resolved = std::path::absolute(dir.join(&*path))
                .with_context(|| format!("key `{TABLE_KEY}`: cannot resolve the path {path}"))?;
            *path = resolved.to_string_lossy().into_owned();
            Ok(())
        };
        if let Some(value) = self.base.get_mut(TABLE_KEY) {
            absolute(value)?;
        }
        for axis in &mut self.grid {
            if let Some(index) = axis.keys.iter().position(|&key| key == TABLE_KEY) {
                axis.cases.iter_mut().try_for_each(|case| absolute(&mut case[index]))?;
            }
        }
        Ok(())
    }

    /// A table file is the whole task: `task.op` set beside it would be silently ignored.
    fn check_table_task(&self) -> Result<()> {
        let sets = |key: &str| self.grid.iter().any(|axis| axis.keys.contains(&key));
        let table_set = self.base.contains_key(TABLE_KEY) || sets(TABLE_KEY);
        let default_op = spec("task.op").map(|spec| (spec.default)());
        let op_set = sets("task.op") || self.base.get("task.op") != default_op.as_ref();
        if table_set && op_set {
            bail!("keys `task.op` and `{TABLE_KEY}`: a table file is its own task; leave task.op out");
        }
        Ok(())
    }

    /// The hash of every table file the sweep trains.
    fn table_hashes(&self) -> Result<BTreeMap<String, String>> {
        let mut paths: Vec<&Value> = self.base.get(TABLE_KEY).into_iter().collect();
        for axis in &self.grid {
            if let Some(index) = axis.keys.iter().position(|&key| key == TABLE_KEY) {
                paths.extend(axis.cases.iter().map(|case| &case[index]));
            }
        }
        let mut hashes = BTreeMap::new();
        for path in paths {
            if let Value::Str(path) = path {
                hashes.insert(path.clone(), TableFile::read_shared(&PathBuf::from(path))?.sha256.clone());
            }
        }
        Ok(hashes)
    }

    /// A `[tables]` section (a resolved sweep's) must match the files as they are now.
    fn check_recorded_tables(&self, recorded: &toml::Value, source: &str) -> Result<()> {
        let recorded = recorded.as_table().ok_or_else(|| anyhow!("{source}: `tables` must be a table ([tables])"))?;
        for (path, hash) in recorded {
            let hash = hash.as_str().ok_or_else(|| anyhow!("{source}: [tables] `{path}`: expected a sha256 string"))?;
            let now = self
                .tables
                .get(path)
                .ok_or_else(|| anyhow!("{source}: [tables] lists {path}, which no `{TABLE_KEY}` of the sweep names"))?;
            if now != hash {
                return Err(TableChanged {
                    source: source.to_string(),
                    path: path.clone(),
                    recorded: hash.to_string(),
                    now: now.clone(),
                }
                .into());
            }
        }
        Ok(())
    }

    fn set_base(&mut self, dotted: &str, raw: &toml::Value) -> Result<(), String> {
        let spec = spec(dotted).ok_or_else(|| "unknown key".to_string())?;
        let value = check_value(spec, raw)?;
        self.base.insert(spec.key, value);
        Ok(())
    }

    fn set_axis(&mut self, name: &str, raw: &toml::Value) -> Result<(), String> {
        if name == "seeds" {
            return Err("seeds are not a grid axis; set the top-level `seeds`".into());
        }
        if name == SEED_WAVES_KEY {
            return Err(format!(
                "seed waves are not a grid axis; set `seed_waves` in [train] (e.g. `--set \
                '{SEED_WAVES_KEY}=[8,16,40]'`)"
            ));
        }
        let items = raw.as_array().ok_or_else(|| "a grid axis must be a list of values".to_string())?;
        if items.is_empty() {
            return Err("a grid axis needs at least one value".into());
        }
        let axis = match spec(name) {
            Some(spec) => {
                let cases = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        check_value(spec, item).map(|v| vec![v]).map_err(|e| format!("value {}: {e}", i + 1))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Axis { name: spec.key.to_string(), keys: vec![spec.key], cases }
            }
            None if items.iter().all(|item| item.is_table()) => linked_axis(name, items)?,
            None => return Err("unknown key (a linked axis is a list of tables of keys)".into()),
        };
        self.grid.retain(|other| other.name != axis.name);
        if let Some((key, other)) =
            axis.keys.iter().find_map(|k| self.grid.iter().find(|o| o.keys.contains(k)).map(|o| (k, o)))
        {
            return Err(format!("key `{key}` is also set by the grid axis `{}`", other.name));
        }
        self.grid.push(axis);
        Ok(())
    }

    /// The linked grid axis that sets `key`, if any: a single value or a plain axis for that key
    /// would contradict it.
    fn linked_axis_of(&self, key: &str) -> Option<&Axis> {
        self.grid.iter().find(|axis| axis.is_linked() && axis.keys.contains(&key))
    }

    /// `KEY=VALUE`: VALUE is TOML (a bare word counts as a string). A list makes the key a grid
    /// axis; a single value replaces the base value and removes any grid axis of that key.
    fn apply_override(&mut self, assignment: &str) -> Result<()> {
        let (key, text) = assignment.split_once('=').ok_or_else(|| anyhow!("expected KEY=VALUE"))?;
        let (key, text) = (key.trim(), text.trim());
        let raw = parse_toml_value(text);
        if key == "seeds" {
            self.seeds = parse_seeds(&raw).map_err(|e| anyhow!("key `seeds`: {e}"))?;
            return Ok(());
        }
        if key == SEED_WAVES_KEY {
            self.seed_waves = parse_seed_waves(&raw).map_err(|e| anyhow!("key `{key}`: {e}"))?;
            return Ok(());
        }
        if key == "name" {
            self.name = text.trim_matches('"').to_string();
            return Ok(());
        }
        let spec = spec(key).ok_or_else(|| anyhow!("unknown key `{key}`"))?;
        if let Some(axis) = self.linked_axis_of(spec.key) {
            bail!("key `{key}` is set by the grid's linked axis `{}`; change that axis in the sweep file", axis.name);
        }
        let is_list_of_values = match &raw {
            toml::Value::Array(items) => match spec.kind {
                super::schema::Kind::IntList { .. } => items.iter().all(|i| i.is_array()),
                _ => true,
            },
            _ => false,
        };
        if is_list_of_values {
            self.set_axis(key, &raw).map_err(|e| anyhow!("key `{key}`: {e}"))
        } else {
            self.grid.retain(|axis| axis.name != spec.key);
            self.set_base(key, &raw).map_err(|e| anyhow!("key `{key}`: {e}"))
        }
    }

    pub fn setting_count(&self) -> usize {
        // Saturating: many long axes must be refused as too many runs, not wrap around.
        self.grid.iter().fold(1usize, |count, axis| count.saturating_mul(axis.cases.len()))
    }

    pub fn run_count(&self) -> usize {
        self.setting_count().saturating_mul(self.seeds.len())
    }

    /// Seeds per wave: `train.seed_waves`, or one wave of every seed.
    pub fn waves(&self) -> Vec<usize> {
        if self.seed_waves.is_empty() {
            vec![self.seeds.len()]
        } else {
            self.seed_waves.clone()
        }
    }

    /// Every key's value in setting `setting_id` (< [`Sweep::setting_count`]).
    fn setting_values(&self, setting_id: usize) -> BTreeMap<&'static str, Value> {
        let mut values = self.base.clone();
        let mut rest = setting_id;
        for axis in self.grid.iter().rev() {
            let case = &axis.cases[rest % axis.cases.len()];
            for (key, value) in axis.keys.iter().zip(case) {
                values.insert(key, value.clone());
            }
            rest /= axis.cases.len();
        }
        // A table is its own task, and its operands' range is its task.p (an unreadable file is
        // reported by the run's config).
        if let Some(Value::Str(path)) = values.get(TABLE_KEY) {
            if let Ok(table) = TableFile::read_shared(Path::new(path)) {
                values.insert("task.op", Value::Str(table.name.clone()));
                values.insert("task.p", Value::Int(table.vocab as i64));
            }
        }
        // S5's operations work on its 120 elements whatever task.p says, so that a grid over
        // task.op can mix them with operations mod p.
        if matches!(values.get("task.op"), Some(Value::Str(op)) if Op::named(op).is_some_and(|op| op.is_s5())) {
            values.insert("task.p", Value::Int(crate::tasks::S5_ORDER as i64));
        }
        values
    }

    /// Every run: the grid's cross product (first axis slowest), then the seeds.
    pub fn runs(&self) -> Result<Vec<RunSpec>> {
        let mut runs = Vec::with_capacity(self.run_count());
        for setting_id in 0..self.setting_count() {
            let values = self.setting_values(setting_id);
            let config = RunConfig::from_values(&values)?;
            for &seed in &self.seeds {
                runs.push(RunSpec {
                    run_id: runs.len(),
                    setting_id,
                    seed,
                    values: values.clone(),
                    config: config.clone(),
                });
            }
        }
        Ok(runs)
    }

    /// The resolved sweep as TOML: every key written out, the grid and the seeds as lists.
    pub fn to_toml(&self) -> String {
        // Quoted and escaped by the TOML writer, so any name reads back as itself.
        let mut out = format!("name = {}\n", toml::Value::String(self.name.clone()));
        let seeds: Vec<String> = self.seeds.iter().map(|s| s.to_string()).collect();
        out.push_str(&format!("seeds = [{}]\n", seeds.join(", ")));
        for section in SECTIONS {
            out.push_str(&format!("\n[{section}]\n"));
            for (key, value) in &self.base {
                if let Some(name) = key.strip_prefix(section).and_then(|k| k.strip_prefix('.')) {
                    out.push_str(&format!("{name} = {value}\n"));
                }
            }
            if *section == "train" && !self.seed_waves.is_empty() {
                out.push_str(&format!(
                    "seed_waves = {}\n",
                    Value::IntList(self.seed_waves.iter().map(|&n| n as i64).collect())
                ));
            }
        }
        if !self.grid.is_empty() {
            out.push_str("\n[grid]\n");
            for axis in &self.grid {
                let items: Vec<String> = axis
                    .cases
                    .iter()
                    .map(|case| match axis.is_linked() {
                        false => case[0].to_string(),
                        true => {
                            let pairs: Vec<String> =
                                axis.keys.iter().zip(case).map(|(k, v)| format!("\"{k}\" = {v}")).collect();
                            format!("{{ {} }}", pairs.join(", "))
                        }
                    })
                    .collect();
                out.push_str(&format!("{} = [{}]\n", toml::Value::String(axis.name.clone()), items.join(", ")));
            }
        }
        if !self.tables.is_empty() {
            out.push_str("\n[tables]\n");
            for (path, hash) in &self.tables {
                out.push_str(&format!("{} = \"{hash}\"\n", toml::Value::String(path.clone())));
            }
        }
        out
    }
}

/// A linked axis `name` from its cases, tables of dotted keys that must all set the same keys.
fn linked_axis(name: &str, items: &[toml::Value]) -> Result<Axis, String> {
    let mut keys: Vec<&'static str> = Vec::new();
    let mut cases = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let table = item.as_table().ok_or_else(|| format!("case {}: expected a table of keys", i + 1))?;
        let mut case = Vec::with_capacity(table.len());
        let mut case_keys = Vec::with_capacity(table.len());
        for (dotted, raw) in table {
            let spec = spec(dotted).ok_or_else(|| format!("case {}: unknown key `{dotted}`", i + 1))?;
            case.push(check_value(spec, raw).map_err(|e| format!("case {}: key `{dotted}`: {e}", i + 1))?);
            case_keys.push(spec.key);
        }
        if i == 0 {
            if case_keys.is_empty() {
                return Err("case 1 sets no key".into());
            }
            keys = case_keys;
        } else if case_keys != keys {
            return Err(format!(
                "case {} sets the keys [{}], case 1 [{}]: every case must set the same keys",
                i + 1,
                case_keys.join(", "),
                keys.join(", ")
            ));
        }
        cases.push(case);
    }
    Ok(Axis { name: name.to_string(), keys, cases })
}

fn parse_toml_value(text: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {text}")) {
        Ok(mut table) => table.remove("v").unwrap_or(toml::Value::String(text.into())),
        Err(_) => toml::Value::String(text.to_string()),
    }
}

/// `seed_waves = [8, 16, 40]`: a non-empty list of seed counts, each at least 1 (their sum is
/// checked against the seeds once the whole sweep is read).
fn parse_seed_waves(value: &toml::Value) -> Result<Vec<usize>, String> {
    let toml::Value::Array(items) = value else {
        return Err(format!("expected a list of seed counts such as [8, 16, 40], found {}", value.type_str()));
    };
    if items.is_empty() {
        return Err("the list is empty; leave the key out for one wave of all seeds".into());
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            toml::Value::Integer(n) if *n >= 1 && *n <= MAX_RUNS as i64 => Ok(*n as usize),
            toml::Value::Integer(n) => {
                Err(format!("wave {} has {n} seeds; every wave needs at least 1 (and at most {MAX_RUNS})", i + 1))
            }
            other => Err(format!("wave {}: expected a seed count (an integer), found {}", i + 1, other.type_str())),
        })
        .collect()
}

/// `seeds = 4` means seeds 0..4; `seeds = [3, 7]` lists them.
fn parse_seeds(value: &toml::Value) -> Result<Vec<u64>, String> {
    match value {
        // Refused before the list is built: a count of 10¹⁸ would never fit in memory.
        toml::Value::Integer(n) if *n > MAX_RUNS as i64 => {
            Err(format!("{n} seeds are more than the {MAX_RUNS} runs a sweep may have"))
        }
        toml::Value::Integer(n) if *n >= 1 => Ok((0..*n as u64).collect()),
        toml::Value::Integer(n) => Err(format!("a seed count must be at least 1, found {n}")),
        toml::Value::Array(items) => {
            let seeds = items
                .iter()
                .map(|item| match item {
                    toml::Value::Integer(s) if *s >= 0 => Ok(*s as u64),
                    other => Err(format!("seeds must be non-negative integers, found {other}")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut unique = seeds.clone();
            unique.sort_unstable();
            unique.dedup();
            if unique.len() != seeds.len() {
                return Err("a seed is listed twice".into());
            }
            Ok(seeds)
        }
        other => Err(format!("expected a count or a list of integers, found {}", other.type_str())),
    }
}
