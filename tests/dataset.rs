//! The modular-arithmetic dataset and the per-seed splits.

mod common;

use grokstack::config::Op;
use grokstack::data::{all_examples, split};
use std::collections::HashSet;

#[test]
fn sizes_and_labels() {
    let p = 113;
    for op in [Op::Add, Op::Sub, Op::Mul] {
        let examples = all_examples(op, p);
        assert_eq!(examples.len(), 12_769);
        for e in &examples {
            let (a, b, l) = (e.a as i64, e.b as i64, e.label as i64);
            let expected = match op {
                Op::Add => (a + b) % 113,
                Op::Sub => (a - b).rem_euclid(113),
                _ => (a * b) % 113,
            };
            assert_eq!(l, expected, "{op:?} {a} {b}");
        }
    }
    let div = all_examples(Op::Div, 13);
    assert_eq!(div.len(), 13 * 12);
    for e in &div {
        assert_ne!(e.b, 0);
        assert_eq!((e.label * e.b) % 13, e.a, "label · b must give a back: {e:?}");
    }
}

#[test]
fn splits_are_disjoint_covering_and_seeded() {
    let runs = common::runs("[task]\np = 113\ntrain_fraction = 0.4\n", &["seeds=[0, 1]"]);
    let config = &runs[0].config;
    let first = split(config, 0);
    assert_eq!(first.train.len(), 5_107, "floor(0.4 · 12769)");
    assert_eq!(first.test.len(), 12_769 - 5_107);
    let key = |e: &grokstack::data::Example| (e.a, e.b);
    let train: HashSet<_> = first.train.iter().map(key).collect();
    let test: HashSet<_> = first.test.iter().map(key).collect();
    assert_eq!(train.len(), 5_107);
    assert!(train.is_disjoint(&test));
    assert_eq!(train.len() + test.len(), 12_769);

    let again = split(config, 0);
    assert_eq!(again.train, first.train, "the same seed gives the same split");
    let other: HashSet<_> = split(config, 1).train.iter().map(key).collect();
    assert_ne!(other, train, "another seed gives another split");
    assert!(other.intersection(&train).count() > 1000, "but both are random subsets of the same pairs");
}
