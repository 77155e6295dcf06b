//! Sweep files: grid expansion, overrides, the resolved sweep, and bad input.

mod common;

use grokstack::config::{Sweep, Value};

#[test]
fn grid_is_the_cross_product_times_the_seeds() {
    let text = r#"
name = "g"
seeds = 3
[grid]
"task.op" = ["add", "mul"]
"train.lr" = [0.001, 0.01, 0.1]
"#;
    let sweep = Sweep::parse(text, "g.toml", &[]).unwrap();
    let runs = sweep.runs().unwrap();
    assert_eq!(runs.len(), 2 * 3 * 3);
    assert_eq!(sweep.setting_count(), 6);
    // The first axis varies slowest, the seeds fastest.
    assert_eq!(runs[0].values["task.op"], Value::Str("add".into()));
    assert_eq!(runs[3].values["train.lr"], Value::Float(0.01));
    assert_eq!(runs[9].values["task.op"], Value::Str("mul".into()));
    assert_eq!((runs[4].setting_id, runs[4].seed), (1, 1));
    assert!(runs.iter().enumerate().all(|(i, r)| r.run_id == i));
}

#[test]
fn overrides_set_values_and_make_axes() {
    let sweep = Sweep::parse(
        "[train]\nlr = 0.1\n",
        "o.toml",
        &["train.lr=0.02".into(), "model.hidden=[[8], [8, 8]]".into(), "task.op=mul".into(), "seeds=[5, 6]".into()],
    )
    .unwrap();
    assert_eq!(sweep.base["train.lr"], Value::Float(0.02));
    assert_eq!(sweep.base["task.op"], Value::Str("mul".into()));
    // (name, keys, cases) of every grid axis.
    type Axis<'a> = (&'a str, &'a [&'a str], &'a [Vec<Value>]);
    let axes: Vec<Axis> = sweep.grid.iter().map(|a| (a.name.as_str(), a.keys.as_slice(), a.cases.as_slice())).collect();
    assert_eq!(
        axes,
        [(
            "model.hidden",
            &["model.hidden"][..],
            &[vec![Value::IntList(vec![8])], vec![Value::IntList(vec![8, 8])]][..]
        )]
    );
    assert_eq!(sweep.seeds, vec![5, 6]);
    assert_eq!(sweep.runs().unwrap().len(), 4);
}

#[test]
fn resolved_sweep_reads_back_identically() {
    let sweep = Sweep::parse(include_str!("../sweeps/quick.toml"), "quick.toml", &[]).unwrap();
    let again = Sweep::parse(&sweep.to_toml(), "resolved", &[]).unwrap();
    assert_eq!(sweep, again);
    assert!(sweep.to_toml().contains("beta2 = 0.99"), "defaults are written out");
}

/// Each malformed sweep must be refused with its key and the file named.
#[test]
fn malformed_sweeps_name_the_key_and_the_file() {
    let cases = [
        ("[task]\nmodulus = 7\n", "task.modulus"),
        ("[train]\nlr = \"fast\"\n", "train.lr"),
        ("[task]\np = 1\n", "task.p"),
        ("[task]\ntrain_fraction = 1.0\n", "task.train_fraction"),
        ("[task]\ntrain_fraction = 0.0\n", "task.train_fraction"),
        ("[train]\nlr = -0.1\n", "train.lr"),
        ("[train]\nweight_decay = -1\n", "train.weight_decay"),
        ("[grid]\n\"train.lrr\" = [0.1]\n", "train.lrr"),
        ("[grid]\n\"train.lr\" = [0.1, -2.0]\n", "train.lr"),
        ("[model]\nhidden = []\n", "model.hidden"),
        ("[model]\nactivation = \"swish\"\n", "model.activation"),
        ("[task]\nop = \"div\"\np = 12\n", "task.p"),
        ("seeds = 0\n", "seeds"),
        ("speed = 3\n", "speed"),
        ("[train]\nepochs = 1.5\n", "train.epochs"),
        ("[task]\np = 7\ntrain_fraction = 0.01\n", "task.train_fraction"),
    ];
    for (text, key) in cases {
        let error = Sweep::parse(text, "bad.toml", &[]).expect_err(text).to_string();
        assert!(error.contains(key), "error for {text:?} does not name `{key}`: {error}");
        assert!(error.contains("bad.toml"), "error for {text:?} does not name the file: {error}");
    }
    let error = Sweep::parse("", "ok.toml", &["train.lr=-1".into()]).unwrap_err().to_string();
    assert!(error.contains("train.lr"), "{error}");
}

/// A linked axis: each case sets several keys together, crossed with the other axes.
const LINKED: &str = r#"
[task]
p = 11
[grid]
task = [{ "task.op" = "add", "task.train_fraction" = 0.5 }, { "task.op" = "mul", "task.train_fraction" = 0.8 }]
"train.loss" = ["softmax", "stablemax"]
optimizer = [
  { "train.optimizer" = "adamw", "train.lr" = 0.001 },
  { "train.optimizer" = "adamw", "train.lr" = 0.003 },
  { "train.optimizer" = "muon", "train.lr" = 0.02 },
]
"#;

#[test]
fn a_linked_axis_sets_its_keys_together() {
    let sweep = Sweep::parse(LINKED, "linked.toml", &[]).unwrap();
    let runs = sweep.runs().unwrap();
    assert_eq!(runs.len(), 2 * 2 * 3);
    let setting = |r: &grokstack::config::RunSpec| {
        (
            r.values["task.op"].to_string(),
            r.values["task.train_fraction"].to_string(),
            r.values["train.loss"].to_string(),
            r.values["train.optimizer"].to_string(),
            r.values["train.lr"].to_string(),
        )
    };
    // The first axis slowest, the keys of a case always together.
    assert_eq!(
        setting(&runs[0]),
        ("\"add\"".into(), "0.5".into(), "\"softmax\"".into(), "\"adamw\"".into(), "0.001".into())
    );
    assert_eq!(
        setting(&runs[2]),
        ("\"add\"".into(), "0.5".into(), "\"softmax\"".into(), "\"muon\"".into(), "0.02".into())
    );
    assert_eq!(
        setting(&runs[11]),
        ("\"mul\"".into(), "0.8".into(), "\"stablemax\"".into(), "\"muon\"".into(), "0.02".into())
    );
    assert!(runs.iter().all(|r| (r.values["task.op"] == Value::Str("add".into())) == (r.config.train_fraction == 0.5)));
    // The resolved sweep writes it back as a linked axis.
    let again = Sweep::parse(&sweep.to_toml(), "resolved", &[]).unwrap();
    assert_eq!(sweep, again);
}

#[test]
fn linked_axes_are_checked() {
    let refused = |toml: &str, overrides: &[&str], says: &[&str]| {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let text = format!("{:#}", Sweep::parse(toml, "linked.toml", &overrides).expect_err("refused"));
        for part in says {
            assert!(text.contains(part), "{text:?} should say {part:?}");
        }
    };
    refused(
        "[grid]\nt = [{ \"task.op\" = \"add\" }, { \"task.p\" = 7 }]\n",
        &[],
        &["linked.toml", "`t`", "case 2", "same keys"],
    );
    refused("[grid]\nt = [{ \"task.opp\" = \"add\" }]\n", &[], &["linked.toml", "`t`", "unknown key `task.opp`"]);
    refused("[grid]\nt = [{ \"train.lr\" = -1.0 }]\n", &[], &["linked.toml", "`t`", "`train.lr`"]);
    refused(
        "[grid]\nt = [{ \"train.lr\" = 0.1 }]\n\"train.lr\" = [0.1, 0.2]\n",
        &[],
        &["`train.lr`", "also set by the grid axis `t`"],
    );
    refused("[grid]\nt = [1, 2]\n", &[], &["`t`", "unknown key"]);
    refused(LINKED, &["train.lr=0.1"], &["train.lr", "linked axis `optimizer`"]);
    refused(LINKED, &["train.lr=[0.1, 0.2]"], &["train.lr", "linked axis `optimizer`"]);
}
