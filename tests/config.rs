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
    let sweep = Sweep::parse("[train]\nlr = 0.1\n", "o.toml", &["train.lr=0.02".into(), "model.hidden=[[8], [8, 8]]".into(), "task.op=mul".into(), "seeds=[5, 6]".into()]).unwrap();
    assert_eq!(sweep.base["train.lr"], Value::Float(0.02));
    assert_eq!(sweep.base["task.op"], Value::Str("mul".into()));
    assert_eq!(sweep.grid, vec![("model.hidden", vec![Value::IntList(vec![8]), Value::IntList(vec![8, 8])])]);
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
