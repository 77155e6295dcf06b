//! Every task's rows and labels against computations written separately here, and the
//! per-seed splits and epoch orders.

mod common;

use grokstack::config::{Op, RunConfig, Sweep};
use grokstack::data::{all_examples, epoch_order, split, Examples};
use grokstack::tasks::{compose, invert, s5_element, s5_index, S5_ORDER};
use std::collections::HashSet;

/// The run config of a one-run sweep with `task` keys set by `overrides`.
fn config(overrides: &[&str]) -> RunConfig {
    common::runs("[model]\ninput = \"two_hot\"\n", overrides)[0].config.clone()
}

/// Integer power with checked arithmetic: no modular tricks, so it checks mod_pow.
fn power_mod(a: u64, b: u64, p: u64) -> u64 {
    (0..b).fold(1 % p, |acc, _| acc * a % p)
}

fn euclid(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        euclid(b, a % b)
    }
}

/// x with x·b ≡ a (mod p), by search.
fn divide(a: u64, b: u64, p: u64) -> u64 {
    (0..p).find(|x| x * b % p == a).expect("b is invertible mod a prime")
}

/// The label of every binary operation for (a, b), computed the plain way, or None if the
/// pair is not a row.
fn expected(name: &str, a: u64, b: u64, p: u64) -> Option<u64> {
    let (sa, sb, sp) = (a as i128, b as i128, p as i128);
    let poly = |v: i128| Some(v.rem_euclid(sp) as u64);
    match name {
        "add" => poly(sa + sb),
        "sub" => poly(sa - sb),
        "mul" => poly(sa * sb),
        "div" => (b != 0).then(|| divide(a, b, p)),
        "exp" => Some(power_mod(a, b, p)),
        "gcd" => Some(euclid(a, b)),
        "x**2+y" => poly(sa * sa + sb),
        "x**3+y" => poly(sa * sa * sa + sb),
        "x**2+y**2" => poly(sa * sa + sb * sb),
        "x**2+x*y+y**2" => poly(sa * sa + sa * sb + sb * sb),
        "x**2+x*y+y**2+x" => poly(sa * sa + sa * sb + sb * sb + sa),
        "x**3+x*y" => poly(sa * sa * sa + sa * sb),
        "x**3+x*y**2+y" => poly(sa * sa * sa + sa * sb * sb + sb),
        "x/y if y%2==1 else x-y" => Some(if b % 2 == 1 { divide(a, b, p) } else { (sa - sb).rem_euclid(sp) as u64 }),
        _ => unreachable!("{name}"),
    }
}

#[test]
fn every_binary_operation_labels_and_row_counts() {
    let p = 13;
    for name in [
        "add",
        "sub",
        "mul",
        "div",
        "exp",
        "gcd",
        "x**2+y",
        "x**3+y",
        "x**2+y**2",
        "x**2+x*y+y**2",
        "x**2+x*y+y**2+x",
        "x**3+x*y",
        "x**3+x*y**2+y",
        "x/y if y%2==1 else x-y",
    ] {
        let c = config(&[&format!("task.op={name:?}"), &format!("task.p={p}")]);
        let examples = all_examples(&c, 0);
        let mut rows = 0;
        for a in 0..p {
            for b in 0..p {
                if let Some(label) = expected(name, a, b, p) {
                    assert_eq!(examples.row(rows), [a as u32, b as u32], "{name}: rows in row-major order");
                    assert_eq!(examples.labels[rows] as u64, label, "{name}: ({a}, {b})");
                    rows += 1;
                }
            }
        }
        assert_eq!(examples.len(), rows, "{name}");
        assert_eq!(c.n_examples(), rows, "{name}: the config counts the rows");
        assert!(examples.labels.iter().all(|&l| (l as usize) < c.classes()), "{name}: labels are classes");
    }
    // The facts the README states: 0^0 = 1, gcd(0, 0) = 0, div leaves out b = 0.
    let exp = all_examples(&config(&["task.op=\"exp\"", "task.p=13"]), 0);
    assert_eq!(exp.labels[0], 1, "0^0 = 1");
    let gcd = all_examples(&config(&["task.op=\"gcd\"", "task.p=13"]), 0);
    assert_eq!(gcd.labels[0], 0, "gcd(0, 0) = 0");
    assert_eq!(config(&["task.op=\"div\"", "task.p=97"]).n_examples(), 9_312, "div mod 97 has 97·96 rows");
    assert_eq!(config(&["task.op=\"mul\"", "task.p=97"]).n_examples(), 9_409);
}

#[test]
fn openai_grok_operator_strings_are_aliases() {
    for (alias, name) in [
        ("+", "add"),
        ("/", "div"),
        ("**2+", "x**2+y"),
        ("x**2+y**2+x*y_mod_97", "x**2+x*y+y**2"),
        ("x**3+x*y**2+y_mod_97", "x**3+x*y**2+y"),
        ("(x._value//y)if(y._value%2==1)else(x-y)_mod_97", "mix1"),
        ("s5conj", "s5_conjugate"),
    ] {
        assert_eq!(Op::named(alias), Op::named(name), "{alias}");
        assert!(Op::named(alias).is_some(), "{alias}");
    }
}

/// Each named operation written as an expression (spaced, so that it is parsed rather than
/// looked up by name) gives the named operation's rows and labels, in the same order, on every
/// pair for several p, with and without operands 0: so an expression task of a named
/// operation trains as that operation.
#[test]
fn expressions_equal_their_named_operations_on_every_pair() {
    let forms = [
        ("add", "x + y"),
        ("sub", "x - y"),
        ("mul", "x * y"),
        ("div", "x / y"),
        ("exp", "x ** y"),
        ("x**2+y", "x**2 + y"),
        ("x**3+y", "x ** 3 + y"),
        ("x**2+y**2", "x*x + y*y"),
        ("x**2+x*y+y**2", "x**2 + x*y + y**2"),
        ("x**2+x*y+y**2+x", "(x + y)**2 - x*y + x"),
        ("x**3+x*y", "x * (x**2 + y)"),
        ("x**3+x*y**2+y", "x**3 + x*y**2 + y"),
        ("mix1", "x / y if y % 2 == 1 else x - y"),
        ("mix1", "(x._value // y) if (y._value % 2 == 1) else (x - y)"),
    ];
    for p in [2u64, 3, 5, 7, 13, 97] {
        // p = 2 without operands 0 has a single row: no split.
        for skip_zero in [false, true].into_iter().filter(|&skip| !(skip && p == 2)) {
            for (name, expression) in forms {
                let keys = |op: &str| {
                    [format!("task.op={op:?}"), format!("task.p={p}"), format!("task.skip_zero={skip_zero}")]
                };
                let [op, p_key, skip] = keys(expression);
                let parsed = config(&[&op, &p_key, &skip, "task.train_fraction=0.5"]);
                assert!(matches!(parsed.op, Op::Expression(_)), "{expression} is parsed, not named");
                let [op, p_key, skip] = keys(name);
                let named = config(&[&op, &p_key, &skip, "task.train_fraction=0.5"]);
                assert_eq!(all_examples(&parsed, 0), all_examples(&named, 0), "{expression} vs {name}, p = {p}");
                assert_eq!(parsed.n_examples(), named.n_examples(), "{expression}: the config counts the rows");
                assert_eq!(parsed.task_shape(), named.task_shape(), "{expression}");
            }
        }
    }
}

/// openai/grok's `+*` and `+-` (even x: addition; odd x: multiplication or subtraction), and
/// division mod a composite p, which leaves out the divisors without an inverse.
#[test]
fn expression_tasks_leave_out_the_pairs_without_a_value() {
    let p = 11u64;
    for (alias, multiplies) in [("+*", true), ("+-", false)] {
        let odd = |a: u64, b: u64| if multiplies { a * b } else { a + p - b };
        let examples = all_examples(&config(&[&format!("task.op={alias:?}"), &format!("task.p={p}")]), 0);
        for (i, (a, b)) in (0..p).flat_map(|a| (0..p).map(move |b| (a, b))).enumerate() {
            let label = if a % 2 == 0 { a + b } else { odd(a, b) } % p;
            assert_eq!((examples.row(i), examples.labels[i] as u64), (&[a as u32, b as u32][..], label), "{alias}");
        }
    }
    // Division mod 15: b must be coprime to 15 (8 of the 15 residues).
    let div15 = config(&["task.op=\"x / y\"", "task.p=15"]);
    let examples = all_examples(&div15, 0);
    assert_eq!(div15.n_examples(), 15 * 8);
    for i in 0..examples.len() {
        let [a, b] = [examples.row(i)[0] as u64, examples.row(i)[1] as u64];
        assert_eq!(euclid(b, 15), 1, "({a}, {b}) has no inverse of b");
        assert_eq!(examples.labels[i] as u64 * b % 15, a, "({a}, {b}): label · b = a");
    }
}

/// A sweep whose task.op is not an expression names the file, the key and the column; one
/// that has no value anywhere names the operation that fails.
#[test]
fn bad_expressions_are_refused_with_the_file_the_key_and_the_column() {
    for (op, column) in [
        ("x + * y", "column 5"),
        ("(x + y", "column 1"),
        ("x + z", "column 5"),
        ("x ** 99999999999999999999999", "column 6"),
    ] {
        let text = format!("[task]\nop = {op:?}\np = 13\n");
        let error = Sweep::parse(&text, "sweeps/bad.toml", &[]).expect_err(op).to_string();
        for part in ["sweeps/bad.toml", "task.op", column] {
            assert!(error.contains(part), "{op}: {part} missing from: {error}");
        }
    }
    let error = Sweep::parse("[task]\nop = \"x / (y - y)\"\np = 13\n", "sweeps/bad.toml", &[]).unwrap_err().to_string();
    assert!(error.contains("no value at any pair") && error.contains("column 3"), "{error}");
    let error = Sweep::parse("[task]\nop = \"sort\"\n", "sweeps/bad.toml", &[]).unwrap_err().to_string();
    assert!(error.contains("list tasks"), "{error}");
}

/// Every permutation of 0..5, built by insertion, independently of the crate's Lehmer code.
fn all_permutations() -> Vec<[u8; 5]> {
    let mut perms: Vec<Vec<u8>> = vec![vec![]];
    for value in 0..5u8 {
        perms = perms
            .iter()
            .flat_map(|p| {
                (0..=p.len()).map(move |at| {
                    let mut q = p.clone();
                    q.insert(at, value);
                    q
                })
            })
            .collect();
    }
    let mut out: Vec<[u8; 5]> = perms.into_iter().map(|p| p.try_into().expect("5 elements")).collect();
    out.sort();
    out
}

#[test]
fn s5_order_and_group_laws() {
    let perms = all_permutations();
    assert_eq!(perms.len(), S5_ORDER);
    for (i, perm) in perms.iter().enumerate() {
        assert_eq!(s5_element(i), *perm, "element {i} is the {i}-th permutation in lexicographic order");
        assert_eq!(s5_index(perm), i);
    }
    let identity = [0, 1, 2, 3, 4];
    assert_eq!(s5_element(0), identity);
    // Hand-checked: (a∘b)(i) = a(b(i)).
    assert_eq!(compose(&[1, 2, 0, 3, 4], &[0, 1, 2, 4, 3]), [1, 2, 0, 4, 3]);
    assert_eq!(compose(&[1, 0, 2, 3, 4], &[0, 2, 1, 3, 4]), [1, 2, 0, 3, 4]);
    assert_eq!(compose(&[0, 2, 1, 3, 4], &[1, 0, 2, 3, 4]), [2, 0, 1, 3, 4], "S5 does not commute");
    for (i, f) in perms.iter().enumerate() {
        assert_eq!(compose(f, &identity), *f);
        assert_eq!(compose(&identity, f), *f);
        assert_eq!(compose(f, &invert(f)), identity, "inverse of element {i}");
        for g in perms.iter().skip(i % 7).step_by(7) {
            for h in perms.iter().skip(i % 11).step_by(11) {
                assert_eq!(compose(&compose(f, g), h), compose(f, &compose(g, h)), "associativity");
            }
        }
    }

    let p = S5_ORDER.to_string();
    let compose_rows = all_examples(&config(&["task.op=\"s5_compose\"", &format!("task.p={p}")]), 0);
    let conjugate_rows = all_examples(&config(&["task.op=\"s5_conjugate\"", &format!("task.p={p}")]), 0);
    let aba_rows = all_examples(&config(&["task.op=\"s5_aba\"", &format!("task.p={p}")]), 0);
    assert_eq!(compose_rows.len(), 14_400);
    for row in 0..compose_rows.len() {
        let [a, b] = [compose_rows.row(row)[0] as usize, compose_rows.row(row)[1] as usize];
        let (f, g) = (perms[a], perms[b]);
        let label_of = |x: [u8; 5]| perms.iter().position(|q| *q == x).expect("a permutation") as u32;
        assert_eq!(compose_rows.labels[row], label_of(compose(&f, &g)));
        assert_eq!(conjugate_rows.labels[row], label_of(compose(&compose(&f, &g), &invert(&f))));
        assert_eq!(aba_rows.labels[row], label_of(compose(&compose(&f, &g), &f)));
    }
}

#[test]
fn parity_has_every_string_once() {
    let c = config(&["task.op=\"parity\"", "task.bits=6"]);
    let examples = all_examples(&c, 3);
    assert_eq!(examples.len(), 64);
    assert_eq!(c.n_examples(), 64);
    assert_eq!(c.classes(), 2);
    let strings: HashSet<Vec<u32>> = (0..64).map(|i| examples.row(i).to_vec()).collect();
    assert_eq!(strings.len(), 64, "all 2^6 strings, each once");
    for i in 0..64 {
        let ones = examples.row(i).iter().filter(|&&b| b == 1).count() as u32;
        assert!(examples.row(i).iter().all(|&b| b <= 1));
        assert_eq!(examples.labels[i], ones % 2);
    }
    assert_eq!(all_examples(&c, 3), all_examples(&c, 4), "parity's rows do not depend on the seed");
}

#[test]
fn sparse_parity_samples_are_distinct_per_seed_and_labelled_by_the_relevant_bits() {
    let c = config(&["task.op=\"sparse_parity\"", "task.parity_bits=3", "task.noise_bits=9", "task.samples=500"]);
    let first = all_examples(&c, 0);
    assert_eq!(first.len(), 500);
    assert_eq!(first.width, 12);
    let strings: HashSet<Vec<u32>> = (0..500).map(|i| first.row(i).to_vec()).collect();
    assert_eq!(strings.len(), 500, "the samples are distinct strings");
    for i in 0..500 {
        let relevant = first.row(i)[..3].iter().sum::<u32>();
        assert_eq!(first.labels[i], relevant % 2, "label = parity of the first 3 bits");
    }
    assert_eq!(all_examples(&c, 0), first, "the same seed draws the same strings");
    let other = all_examples(&c, 1);
    let other_strings: HashSet<Vec<u32>> = (0..500).map(|i| other.row(i).to_vec()).collect();
    assert!(other_strings != strings, "another seed draws other strings");
    let noise_matters = (0..500).any(|i| first.row(i)[3..].iter().sum::<u32>() % 2 != first.labels[i]);
    assert!(noise_matters, "the noise bits do not decide the label");
}

#[test]
fn splits_are_disjoint_covering_and_seeded() {
    let runs = common::runs("[task]\np = 113\ntrain_fraction = 0.4\n", &["seeds=[0, 1]"]);
    let config = &runs[0].config;
    let first = split(config, 0);
    assert_eq!(first.train.len(), 5_107, "floor(0.4 · 12769)");
    assert_eq!(first.test.len(), 12_769 - 5_107);
    let rows = |e: &Examples| (0..e.len()).map(|i| e.row(i).to_vec()).collect::<HashSet<_>>();
    let (train, test) = (rows(&first.train), rows(&first.test));
    assert_eq!(train.len(), 5_107);
    assert!(train.is_disjoint(&test));
    assert_eq!(train.len() + test.len(), 12_769);

    let again = split(config, 0);
    assert_eq!(again.train, first.train, "the same seed gives the same split");
    let other = rows(&split(config, 1).train);
    assert_ne!(other, train, "another seed gives another split");
    assert!(other.intersection(&train).count() > 1000, "but both are random subsets of the same pairs");
}

#[test]
fn epoch_orders_are_permutations_fresh_per_epoch_and_seed() {
    let n = 1000;
    let order = epoch_order(5, 0, n);
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "every train row exactly once per epoch");
    assert_eq!(epoch_order(5, 0, n), order, "a pure function of (seed, epoch)");
    assert_ne!(epoch_order(5, 1, n), order, "a fresh shuffle every epoch");
    assert_ne!(epoch_order(6, 0, n), order, "shuffles differ by seed");
}
