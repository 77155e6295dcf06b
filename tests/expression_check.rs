//! task.op expressions, Rust against Python: the rows grokstack builds from ~200 random
//! expressions mod p against those python/grokstack/_data.py (which `Sweep.split` uses)
//! computes with its own evaluator over Python's syntax tree. Either may be wrong where they
//! differ; the failure prints the expression, p, pair and both labels to judge by
//! src/tasks/expression/mod.rs's documentation.
//!
//! Needs a python3 with numpy (or $GROKSTACK_PYTHON); skipped when there is none.

mod common;

use grokstack::config::Sweep;
use grokstack::data::all_examples;
use grokstack::rng::{Rng, Stream};
use std::io::Write;
use std::process::{Command, Stdio};

/// How many expressions each modulus is checked on.
const EXPRESSIONS: usize = 200;

/// The moduli and whether pairs start at 1 (`task.skip_zero`): primes, a composite (12, where
/// division needs a unit), and 2, where few pairs are defined.
const CASES: [(u64, bool); 7] = [(2, false), (7, false), (7, true), (12, false), (13, false), (13, true), (97, false)];

/// Python that loads _data.py by path (so the package need not be installed), reads
/// {"p", "first", "expressions"} on stdin and prints a line per expression: `error <why>`,
/// or its rows as `a b label` triples, flattened.
const PYTHON: &str = r#"
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("grokstack_data_module", sys.argv[1])
data = importlib.util.module_from_spec(spec)
spec.loader.exec_module(data)
request = json.load(sys.stdin)
for text in request["expressions"]:
    try:
        symbols, labels = data.expression_rows(text, request["p"], request["first"])
    except ValueError as error:
        print("error", str(error).replace("\n", " "))
        continue
    print(" ".join(f"{a} {b} {label}" for (a, b), label in zip(symbols.tolist(), labels.tolist())))
"#;

/// python3 (or $GROKSTACK_PYTHON) with numpy, if there is one.
fn numpy_python() -> Option<String> {
    let python = std::env::var("GROKSTACK_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python).args(["-c", "import numpy"]).output().ok()?;
    probe.status.success().then_some(python)
}

/// Random expressions in x and y over the whole grammar, parenthesised often enough that most
/// are well-typed (a condition where a value is needed is an error on both sides).
struct Generator {
    rng: Rng,
}

impl Generator {
    fn pick<'a>(&mut self, choices: &[&'a str]) -> &'a str {
        choices[self.rng.below(choices.len())]
    }

    /// A small constant (negative sometimes: `%` and comparisons see its sign; with a leading
    /// zero sometimes, which Python's own syntax refuses), a variable, or one with openai/grok's
    /// `._value`.
    fn leaf(&mut self) -> String {
        match self.rng.below(9) {
            0 | 1 => "x".into(),
            2 | 3 => "y".into(),
            4 => format!("{}._value", self.pick(&["x", "y"])),
            5 => format!("-{}", 1 + self.rng.below(12)),
            6 => format!("0{}", self.rng.below(13)),
            _ => self.rng.below(13).to_string(),
        }
    }

    /// Spaces around an operator, or none.
    fn space(&mut self) -> &'static str {
        if self.rng.below(2) == 0 {
            " "
        } else {
            ""
        }
    }

    fn value(&mut self, depth: usize) -> String {
        if depth == 0 || self.rng.below(4) == 0 {
            return self.leaf();
        }
        let s = self.space();
        match self.rng.below(10) {
            0..=3 => {
                let operator = self.pick(&["+", "-", "*", "/", "//", "%", "%", "*"]);
                let (left, right) = (self.value(depth - 1), self.value(depth - 1));
                if self.rng.below(3) == 0 {
                    format!("{left}{s}{operator}{s}{right}")
                } else {
                    format!("({left}{s}{operator}{s}{right})")
                }
            }
            4 => {
                let exponent = match self.rng.below(6) {
                    0 => format!("-{}", 1 + self.rng.below(3)),
                    1 => self.leaf(),
                    _ => self.rng.below(6).to_string(),
                };
                format!("({}){s}**{s}{exponent}", self.value(depth - 1))
            }
            5 => format!("-{}", self.value(depth - 1)),
            6 => format!("({})._value", self.value(depth - 1)),
            7 | 8 => {
                let (chosen, condition, otherwise) =
                    (self.value(depth - 1), self.condition(depth - 1), self.value(depth - 1));
                format!("({chosen} if {condition} else {otherwise})")
            }
            _ => format!("({})", self.value(depth - 1)),
        }
    }

    /// A comparison (chained sometimes), `not`, `and`/`or`, `._value` of a condition, or a value
    /// used as a condition.
    fn condition(&mut self, depth: usize) -> String {
        let comparisons = ["==", "!=", "<", "<=", ">", ">="];
        let s = self.space();
        match self.rng.below(if depth == 0 { 2 } else { 6 }) {
            0 => format!("{}{s}{}{s}{}", self.leaf(), self.pick(&comparisons), self.leaf()),
            1 => self.leaf(),
            2 => {
                let (a, b, c) = (self.value(depth - 1), self.value(depth - 1), self.value(depth - 1));
                format!("{a} {} {b} {} {c}", self.pick(&comparisons), self.pick(&comparisons))
            }
            3 if self.rng.below(2) == 0 => format!("not {}", self.condition(depth - 1)),
            3 => format!("({})._value", self.condition(depth - 1)),
            4 => {
                let keyword = self.pick(&["and", "or"]);
                format!("({} {keyword} {})", self.condition(depth - 1), self.condition(depth - 1))
            }
            _ => format!("{}{s}{}{s}{}", self.value(depth - 1), self.pick(&comparisons), self.value(depth - 1)),
        }
    }
}

/// What grokstack makes of `expression` mod p: its rows (a, b, label), or why it refuses the
/// config, as "parse" (not an expression), "none" (no pair defined) or "one" (one pair
/// defined, which `task.train_fraction` cannot split).
fn rust_rows(expression: &str, p: u64, skip_zero: bool) -> Result<Vec<[u32; 3]>, &'static str> {
    let overrides = [format!("task.op={expression:?}"), format!("task.p={p}"), format!("task.skip_zero={skip_zero}")];
    let sweep = "[model]\ninput = \"two_hot\"\n[task]\ntrain_fraction = 0.5\n";
    let runs = Sweep::parse(sweep, "expression check", &overrides).and_then(|sweep| sweep.runs());
    match runs {
        Ok(runs) => {
            let examples = all_examples(&runs[0].config, 0);
            Ok((0..examples.len()).map(|i| [examples.row(i)[0], examples.row(i)[1], examples.labels[i]]).collect())
        }
        Err(error) => {
            let error = format!("{error:#}");
            if error.contains("nor an expression in x and y") {
                Err("parse")
            } else if error.contains("has no value at any pair") {
                Err("none")
            } else if error.contains("task.train_fraction") && error.contains(" of 1 rows") {
                Err("one")
            } else {
                panic!("{expression:?} mod {p}: refused for another reason: {error}")
            }
        }
    }
}

/// Python's answer per expression, one process for them all: its rows, or its error.
fn python_rows(python: &str, expressions: &[String], p: u64, skip_zero: bool) -> Vec<Result<Vec<[u32; 3]>, String>> {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/python/grokstack/_data.py");
    let mut child = Command::new(python)
        .args(["-c", PYTHON, data])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    let request = serde_json::json!({"p": p, "first": u64::from(skip_zero), "expressions": expressions});
    child.stdin.take().expect("stdin").write_all(request.to_string().as_bytes()).expect("write the expressions");
    let output = child.wait_with_output().expect("python's output");
    assert!(output.status.success(), "python failed: {}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Result<Vec<[u32; 3]>, String>> = String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| match line.strip_prefix("error ") {
            Some(why) => Err(why.to_string()),
            None => {
                let numbers: Vec<u32> = line.split_whitespace().map(|n| n.parse().expect("an integer")).collect();
                Ok(numbers.chunks(3).map(|row| [row[0], row[1], row[2]]).collect())
            }
        })
        .collect();
    assert_eq!(lines.len(), expressions.len(), "a line per expression");
    lines
}

/// The first pair where two row lists differ, for the failure message: (a, b, Rust's label,
/// Python's label), a missing label meaning undefined.
fn first_difference(rust: &[[u32; 3]], python: &[[u32; 3]]) -> String {
    let label = |rows: &[[u32; 3]], a: u32, b: u32| rows.iter().find(|r| r[0] == a && r[1] == b).map(|r| r[2]);
    for [a, b, _] in rust.iter().chain(python) {
        let (in_rust, in_python) = (label(rust, *a, *b), label(python, *a, *b));
        if in_rust != in_python {
            return format!("at (x, y) = ({a}, {b}): Rust {in_rust:?}, Python {in_python:?} (None: undefined)");
        }
    }
    "the same pairs in a different order".into()
}

#[test]
fn random_expressions_have_the_same_rows_in_rust_and_python() {
    let Some(python) = numpy_python() else {
        eprintln!("skipping: no python3 with numpy (set GROKSTACK_PYTHON)");
        return;
    };
    let mut generator = Generator { rng: Rng::new(25, Stream::Synthetic) };
    let expressions: Vec<String> = (0..EXPRESSIONS).map(|_| generator.value(4)).collect();
    let mut disagreements = Vec::new();
    let mut compared = [0_usize; 2]; // [expressions with rows, expressions refused by both]
    for (p, skip_zero) in CASES {
        let python_answers = python_rows(&python, &expressions, p, skip_zero);
        for (expression, python_answer) in expressions.iter().zip(python_answers) {
            let case = format!("{expression:?} mod {p} (skip_zero = {skip_zero})");
            match (rust_rows(expression, p, skip_zero), python_answer) {
                (Ok(rust), Ok(python)) if rust == python => compared[0] += 1,
                (Ok(rust), Ok(python)) => disagreements.push(format!("{case}: {}", first_difference(&rust, &python))),
                (Err("parse"), Err(_)) => compared[1] += 1,
                (Err("none"), Ok(python)) if python.is_empty() => compared[1] += 1,
                (Err("one"), Ok(python)) if python.len() == 1 => compared[1] += 1,
                (Err(why), Ok(python)) => {
                    disagreements.push(format!("{case}: Rust refuses ({why}), Python has {} rows", python.len()))
                }
                (Ok(rust), Err(why)) => {
                    disagreements.push(format!("{case}: Rust has {} rows, Python refuses: {why}", rust.len()))
                }
                (Err(why), Err(python_why)) => {
                    disagreements.push(format!("{case}: Rust refuses ({why}), Python refuses: {python_why}"))
                }
            }
        }
    }
    println!("{} expression/modulus cases agree on their rows, {} refused by both", compared[0], compared[1]);
    assert!(compared[0] > CASES.len() * EXPRESSIONS / 2, "most random expressions should have rows: {compared:?}");
    assert!(disagreements.is_empty(), "{} disagreements:\n{}", disagreements.len(), disagreements.join("\n"));
}
