//! Hostile input: no sweep file, `--set` override or command line makes grokstack panic.
//! Property tests (proptest) generate sweep tables of every key with values of every type,
//! mutate the shipped sweep files byte by byte, and throw token soup at the command line;
//! every error must name its source. Failures proptest finds are kept in
//! `tests/fuzz.proptest-regressions` (replayed first on every run) and as the plain tests at
//! the end of this file. `GROKSTACK_FUZZ_CASES=100000 cargo test --release --test fuzz` fuzzes
//! longer (the default, 400 cases per property, takes a fraction of a second).

mod common;

use candle_core::Device;
use clap::Parser;
use grokstack::cli::{Cli, Command, TrainArgs};
use grokstack::config::schema::{Kind, SCHEMA};
use grokstack::config::Sweep;
use grokstack::device::parse_device;
use grokstack::size::parse_bytes;
use grokstack::sweep::{describe_plan, plan_chunks};
use proptest::prelude::*;

const CHOICES: &[&str] = &[
    "add",
    "sub",
    "mul",
    "div",
    "two_hot",
    "embedding",
    "relu",
    "gelu",
    "tanh",
    "adamw",
    "ortho_adamw",
    "sgd",
    "muon",
    "f32",
    "f64",
    "bf16",
    "bf16_mixed",
    "auto",
    "softmax",
    "stablemax",
    "sparsemax",
    "none",
    "diverged",
    "grok",
    "solve",
];

fn leaf() -> impl Strategy<Value = toml::Value> {
    prop_oneof![
        any::<i64>().prop_map(toml::Value::Integer),
        (-3i64..200).prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        prop::sample::select(vec![0.0, -0.0, 5e-324, 0.4, 0.999, 1.0, 1e6, f64::INFINITY, f64::NEG_INFINITY, f64::NAN])
            .prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
        ".{0,12}".prop_map(toml::Value::String),
        prop::sample::select(CHOICES).prop_map(|s| toml::Value::String(s.to_string())),
    ]
}

fn value() -> impl Strategy<Value = toml::Value> {
    leaf().prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::btree_map("[a-z_.]{1,10}", inner, 0..3)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

/// A value `kind` accepts (near its limits, sometimes), or any value at all.
fn value_for(kind: Kind) -> BoxedStrategy<toml::Value> {
    let valid: BoxedStrategy<toml::Value> = match kind {
        Kind::Choice(options) => prop::sample::select(options).prop_map(|s| toml::Value::String(s.to_string())).boxed(),
        Kind::Int { min } => prop_oneof![(min..min + 40), Just(min)].prop_map(toml::Value::Integer).boxed(),
        Kind::Float { low, high, .. } => {
            let top = if high.is_finite() { high } else { low + 10.0 };
            prop_oneof![
                (low..top).prop_map(toml::Value::Float),
                Just(toml::Value::Float(low)),
                Just(toml::Value::Float(high))
            ]
            .boxed()
        }
        // task.op's names and expressions (mostly malformed), task.table's paths (unreadable).
        Kind::Text => prop_oneof![
            prop::sample::select(CHOICES).prop_map(|s| s.to_string()),
            "[xy0-9+*/%() <=!._]{1,16}",
            "(x|y|[0-9]{1,3})( ?([-+*/%]|//|\\*\\*) ?(x|y|[0-9]{1,3})){0,4}",
        ]
        .prop_map(toml::Value::String)
        .boxed(),
        Kind::Bool => any::<bool>().prop_map(toml::Value::Boolean).boxed(),
        Kind::IntList { min } => prop::collection::vec(min..min + 40, 1..4)
            .prop_map(|v| toml::Value::Array(v.into_iter().map(toml::Value::Integer).collect()))
            .boxed(),
    };
    prop_oneof![6 => valid, 1 => value()].boxed()
}

/// A schema key with a value (mostly one it accepts), or any dotted name with any value.
fn entry() -> impl Strategy<Value = (String, toml::Value)> {
    let known = (0..SCHEMA.len())
        .prop_flat_map(|i| value_for(SCHEMA[i].kind).prop_map(move |v| (SCHEMA[i].key.to_string(), v)));
    let unknown = ("[a-z_]{1,8}(\\.[a-z_]{1,8})?", value());
    prop_oneof![12 => known, 1 => unknown]
}

/// A grid axis: a schema key (mostly) and a few values.
fn axis() -> impl Strategy<Value = (String, toml::Value)> {
    let known = (0..SCHEMA.len()).prop_flat_map(|i| {
        prop::collection::vec(value_for(SCHEMA[i].kind), 1..4)
            .prop_map(move |v| (SCHEMA[i].key.to_string(), toml::Value::Array(v)))
    });
    prop_oneof![12 => known, 1 => ("seeds|[a-z_.]{1,10}", value())]
}

/// A key for `--set`: a schema key (mostly) or any name.
fn key() -> impl Strategy<Value = String> {
    let keys: Vec<String> =
        SCHEMA.iter().map(|s| s.key.to_string()).chain(["seeds", "name", "grid", "task"].map(String::from)).collect();
    prop_oneof![6 => prop::sample::select(keys), 1 => "[a-z_]{1,8}(\\.[a-z_]{1,8})?"]
}

/// A sweep as a TOML table: entries under their sections, a grid, seeds and a name.
fn sweep_table() -> impl Strategy<Value = toml::Table> {
    let entries = prop::collection::vec(entry(), 0..8);
    let axes = prop::collection::vec(axis(), 0..3);
    let seeds = prop::option::of(prop_oneof![4 => (1i64..4).prop_map(toml::Value::Integer), 1 => value()]);
    let name = prop::option::of(prop_oneof![".{0,12}".prop_map(toml::Value::String), value()]);
    (entries, axes, seeds, name).prop_map(|(entries, axes, seeds, name)| {
        let mut table = toml::Table::new();
        for (key, value) in entries {
            match key.split_once('.') {
                Some((section, name)) => {
                    let section =
                        table.entry(section.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    if let toml::Value::Table(section) = section {
                        section.insert(name.to_string(), value);
                    }
                }
                None => {
                    table.insert(key, value);
                }
            }
        }
        if !axes.is_empty() {
            table.insert("grid".into(), toml::Value::Table(axes.into_iter().collect()));
        }
        if let Some(seeds) = seeds {
            table.insert("seeds".into(), seeds);
        }
        if let Some(name) = name {
            table.insert("name".into(), name);
        }
        table
    })
}

/// What must hold for any parse: no panic; an error names its source; a sweep reads back as
/// itself from its resolved TOML, and small ones list their runs and plan their stacks.
fn check_parse(text: &str, overrides: &[String]) {
    match Sweep::parse(text, "fuzz.toml", overrides) {
        Err(e) => {
            let message = format!("{e:#}");
            assert!(message.contains("fuzz.toml") || message.contains("--set"), "the error names no source: {message}");
        }
        Ok(sweep) => {
            let resolved = sweep.to_toml();
            let again = Sweep::parse(&resolved, "resolved.toml", &[])
                .unwrap_or_else(|e| panic!("the resolved sweep does not parse: {e:#}\n{resolved}"));
            assert_eq!(sweep, again, "the resolved sweep reads back differently:\n{resolved}");
            if sweep.run_count() <= 64 {
                let runs = sweep.runs().expect("a parsed sweep lists its runs");
                assert_eq!(runs.len(), sweep.run_count());
                let _ = describe_plan(&sweep, 8 << 30, grokstack::plan::Pass::Cpu, None);
                let _ = plan_chunks(&sweep, runs, 1 << 20, &candle_core::Device::Cpu);
            }
        }
    }
}

const SHIPPED: &[&str] = &[
    include_str!("../sweeps/quick.toml"),
    include_str!("../sweeps/lipschitz.toml"),
    include_str!("../sweeps/arch.toml"),
    include_str!("../sweeps/wd.toml"),
];

/// One edit of a text: replace, insert or delete a few bytes.
fn mutate(text: &str, position: usize, kind: u8, insert: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let at = position % (bytes.len() + 1);
    match kind % 3 {
        0 => bytes.splice(at..(at + insert.len()).min(bytes.len()), insert.bytes()).for_each(drop),
        1 => bytes.splice(at..at, insert.bytes()).for_each(drop),
        _ => bytes.splice(at..(at + 1 + insert.len()).min(bytes.len()), []).for_each(drop),
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn token() -> impl Strategy<Value = String> {
    let fixed: Vec<String> = [
        "train",
        "analyze",
        "bench",
        "export",
        "--out",
        "--set",
        "--resume",
        "--device",
        "--max-memory",
        "--dry-run",
        "--run",
        "--threshold",
        "--group-by",
        "--grok-rule",
        "after-train",
        "near-max",
        "--runs",
        "--epochs",
        "--json",
        "--single",
        "cpu",
        "cuda",
        "cuda:1",
        "cuda:x",
        "8GiB",
        "1e3",
        "-1",
        "0",
        "nan",
        "train.lr=0.1",
        "seeds=3",
        "train.lr=[1,2]",
        "=",
        "sweeps/quick.toml",
        "",
    ]
    .map(String::from)
    .to_vec();
    prop_oneof![3 => prop::sample::select(fixed), 1 => ".{0,10}"]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("GROKSTACK_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(400),
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_sweeps_never_panic(table in sweep_table()) {
        if let Ok(text) = toml::to_string(&table) {
            check_parse(&text, &[]);
        }
    }

    #[test]
    fn mutated_sweep_files_never_panic(
        file in 0..SHIPPED.len(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), ".{0,6}"), 1..4),
    ) {
        let mut text = SHIPPED[file].to_string();
        for (position, kind, insert) in &edits {
            text = mutate(&text, *position, *kind, insert);
        }
        check_parse(&text, &[]);
    }

    #[test]
    fn overrides_never_panic(sets in prop::collection::vec(prop_oneof![
        4 => entry().prop_map(|(k, v)| format!("{k}={v}")),
        1 => axis().prop_map(|(k, v)| format!("{k}={v}")),
        1 => (key(), ".{0,10}").prop_map(|(k, v)| format!("{k}={v}")),
        1 => ".{0,12}",
    ], 1..4)) {
        let overrides = sets;
        check_parse(include_str!("../sweeps/quick.toml"), &overrides);
    }

    #[test]
    fn command_lines_never_panic(tokens in prop::collection::vec(token(), 0..8)) {
        let args = std::iter::once("grokstack".to_string()).chain(tokens);
        if let Ok(cli) = Cli::try_parse_from(args) {
            if let Command::Train(TrainArgs { overrides, device, max_memory, .. }) = cli.command {
                let _ = parse_bytes(max_memory.as_deref().unwrap_or("1GiB"));
                if let Ok(Device::Cpu) = parse_device(&device) {
                    assert_eq!(device, "cpu");
                }
                let _ = Sweep::parse(include_str!("../sweeps/quick.toml"), "quick.toml", &overrides);
            }
        }
    }
}

// Regressions, as plain tests.

/// `seeds = <huge>` was collected into a list before the run limit was checked.
#[test]
fn a_huge_seed_count_is_refused_without_listing_the_seeds() {
    for text in ["seeds = 9223372036854775807\n", "seeds = 1000001\n"] {
        let error = Sweep::parse(text, "fuzz.toml", &[]).unwrap_err().to_string();
        assert!(error.contains("seeds") && error.contains("fuzz.toml"), "{error}");
    }
    let error = Sweep::parse("", "fuzz.toml", &["seeds=4000000000".into()]).unwrap_err().to_string();
    assert!(error.contains("seeds"), "{error}");
}

/// A million runs were listed (gigabytes) just to validate them; now each setting is
/// checked once.
#[test]
fn a_large_valid_grid_is_validated_per_setting() {
    let start = std::time::Instant::now();
    let sweep = Sweep::parse("seeds = 1000000\n", "fuzz.toml", &[]).unwrap();
    assert_eq!(sweep.run_count(), 1_000_000);
    assert!(start.elapsed().as_secs_f64() < 5.0);
}

/// Many long axes overflowed the run count.
#[test]
fn a_grid_with_too_many_settings_is_refused() {
    let axes: Vec<String> = [
        "train.lr",
        "train.weight_decay",
        "train.beta1",
        "train.beta2",
        "train.eps",
        "train.momentum",
        "train.muon_momentum",
        "train.muon_adam_lr",
        "model.alpha",
        "task.train_fraction",
    ]
    .iter()
    .map(|k| {
        format!("\"{k}\" = [{}]", (1..=90).map(|i| format!("{}", 0.001 * i as f64)).collect::<Vec<_>>().join(", "))
    })
    .collect();
    let text = format!("[grid]\n{}\n", axes.join("\n"));
    let error = Sweep::parse(&text, "fuzz.toml", &[]).unwrap_err().to_string();
    assert!(error.contains("runs"), "{error}");
}

/// A name with a quote, a backslash or a newline was written into sweep.toml unescaped.
#[test]
fn any_sweep_name_reads_back() {
    for name in ["a\"b", "back\\slash", "line\nbreak", "tab\tand 'single'", "ünï€ødé", ""] {
        let sweep = Sweep::parse("", "fuzz.toml", &[format!("name={name}")]).unwrap();
        let again = Sweep::parse(&sweep.to_toml(), "resolved", &[]).unwrap();
        assert_eq!(again.name, sweep.name);
    }
}

/// A `--set` list made a new grid axis at the end, but TOML tables came back sorted, so the
/// resolved sweep.toml listed another run order (and `export` would label runs wrongly).
/// Grid axes now keep the file's order everywhere.
#[test]
fn grid_axes_keep_their_order_through_the_resolved_sweep() {
    let sweep =
        Sweep::parse(include_str!("../sweeps/quick.toml"), "quick.toml", &["task.op=[\"add\"]".into()]).unwrap();
    let again = Sweep::parse(&sweep.to_toml(), "resolved", &[]).unwrap();
    assert_eq!(sweep, again);
    let lipschitz = Sweep::parse(include_str!("../sweeps/lipschitz.toml"), "lipschitz.toml", &[]).unwrap();
    let axes: Vec<&str> = lipschitz.grid.iter().map(|axis| axis.name.as_str()).collect();
    assert_eq!(axes, ["task.op", "model.activation", "train.lr", "train.weight_decay"], "the file's order");
}

/// `extra_epochs` near i64::MAX overflowed `grok epoch + extra_epochs`.
#[test]
fn a_huge_extra_epochs_does_not_overflow() {
    let runs =
        common::runs(common::TINY, &["train.stop=grok", "train.extra_epochs=9223372036854775807", "train.epochs=4"]);
    grokstack::train::Stack::new(runs, &Device::Cpu).unwrap().train(|_, _| {}).unwrap();
}

/// Thousands of hidden layers made the memory estimate overflow.
#[test]
fn absurdly_deep_models_are_refused() {
    let hidden = vec!["65536"; 300].join(", ");
    let error = Sweep::parse(&format!("[model]\nhidden = [{hidden}]\n"), "fuzz.toml", &[]).unwrap_err().to_string();
    assert!(error.contains("model.hidden"), "{error}");
}
