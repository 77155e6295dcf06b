//! The expression module against formulas written here, hostile text, and random trees
//! evaluated by an independent evaluator.

use super::*;
use crate::rng::{Rng, Stream};

/// The primes (and 2) the formula tests sweep.
const PRIMES: [u64; 7] = [2, 3, 5, 7, 11, 13, 97];

/// The inverse of b mod p by search: independent of the module's Euclid.
fn inverse_by_search(b: i128, p: i128) -> Option<i128> {
    (0..p).find(|&z| (b.rem_euclid(p) * z).rem_euclid(p) == 1 % p)
}

/// b^e mod p by repeated multiplication, e ≥ 0.
fn power_by_repetition(b: i128, e: i128, p: i128) -> i128 {
    (0..e).fold(1 % p, |acc, _| (acc * b).rem_euclid(p))
}

/// Asserts that `text` labels every pair like `formula(x, y, p)` (None: undefined) for
/// every prime p in [`PRIMES`].
fn assert_formula(text: &str, formula: impl Fn(i128, i128, i128) -> Option<i128>) {
    let expression = Expression::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
    for p in PRIMES {
        for x in 0..p {
            for y in 0..p {
                let expected = formula(i128::from(x), i128::from(y), i128::from(p)).map(|v| v.rem_euclid(p.into()));
                let got = expression.label(x, y, p).ok().map(i128::from);
                assert_eq!(got, expected, "{text} at x={x} y={y} p={p}");
            }
        }
    }
}

/// x·y⁻¹ mod p, or None.
fn divide(x: i128, y: i128, p: i128) -> Option<i128> {
    inverse_by_search(y, p).map(|inverse| x * inverse)
}

#[test]
fn simple_operations_equal_their_formulas() {
    assert_formula("x+y", |x, y, _| Some(x + y));
    assert_formula("x-y", |x, y, _| Some(x - y));
    assert_formula("x*y", |x, y, _| Some(x * y));
    assert_formula("x/y", divide);
    assert_formula("x**y", |x, y, p| Some(power_by_repetition(x, y, p)));
    assert_formula("x**2+y", |x, y, _| Some(x * x + y));
    assert_formula("x**3+y", |x, y, _| Some(x * x * x + y));
    assert_formula("x**2+y**2", |x, y, _| Some(x * x + y * y));
    assert_formula("x**2+x*y+y**2", |x, y, _| Some(x * x + x * y + y * y));
    assert_formula("x**2+x*y+y**2+x", |x, y, _| Some(x * x + x * y + y * y + x));
    assert_formula("x**3+x*y", |x, y, _| Some(x * x * x + x * y));
    assert_formula("x**3+x*y**2+y", |x, y, _| Some(x * x * x + x * y * y + y));
}

/// openai/grok's mixed operation: x/y for odd y, else x−y.
fn mix(x: i128, y: i128, p: i128) -> Option<i128> {
    if y % 2 == 1 {
        divide(x, y, p)
    } else {
        Some(x - y)
    }
}

#[test]
fn conditional_operations_equal_their_formulas() {
    assert_formula("x/y if y%2==1 else x-y", mix);
    assert_formula("x+y if x%2==0 else x*y", |x, y, _| Some(if x % 2 == 0 { x + y } else { x * y }));
    assert_formula("x+y if x%2==0 else x-y", |x, y, _| Some(if x % 2 == 0 { x + y } else { x - y }));
    assert_formula("x/y if y != 0 else 0", |x, y, p| if y == 0 { Some(0) } else { divide(x, y, p) });
}

#[test]
fn grok_operator_strings_equal_their_formulas() {
    assert_formula("x**2+y**2_mod_97", |x, y, _| Some(x * x + y * y));
    assert_formula("x**2+y**2+x*y_mod_97", |x, y, _| Some(x * x + y * y + x * y));
    assert_formula("x**2+y**2+x*y+x_mod_97", |x, y, _| Some(x * x + y * y + x * y + x));
    assert_formula("x**3+x*y_mod_97", |x, y, _| Some(x * x * x + x * y));
    assert_formula("x**3+x*y**2+y_mod_97", |x, y, _| Some(x * x * x + x * y * y + y));
    assert_formula("(x._value//y)if(y._value%2==1)else(x-y)_mod_97", mix);
}

#[test]
fn division_by_a_composite_modulus_needs_a_unit() {
    let expression = Expression::parse("x/y").unwrap();
    for x in 0..15_u64 {
        for y in 0..15_u64 {
            let shares_factor = y % 3 == 0 || y % 5 == 0;
            match expression.label(x, y, 15) {
                Ok(label) => assert!(!shares_factor && (label * y) % 15 == x, "x={x} y={y}"),
                Err(undefined) => assert!(shares_factor && undefined.column == 2, "x={x} y={y}"),
            }
        }
    }
}

#[test]
fn constants_fold_with_python_arithmetic() {
    let cases = [
        ("7//2", 3),
        ("-7//2", -4),
        ("7//-2", -4),
        ("-7%3", 2),
        ("7%-3", -2),
        ("2**10", 1024),
        ("-2**2", -4),
        ("(-2)**3", -8),
        ("2**3**2", 512),
        ("1**123456789012", 1),
        ("(-1)**123456789013", -1),
        ("0**0", 1),
        ("10-3-2", 5),
    ];
    for (text, value) in cases {
        let expression = Expression::parse(text).unwrap();
        let p: i64 = 1_000_003;
        let expected = u64::try_from(i64::rem_euclid(value, p)).unwrap();
        assert_eq!(expression.label(0, 0, 1_000_003), Ok(expected), "{text}");
    }
}

#[test]
fn runtime_operations_follow_the_semantics() {
    let label = |text: &str, x, y, p| Expression::parse(text).unwrap().label(x, y, p);
    assert_eq!(label("7/2", 0, 0, 11), Ok(9), "/ is modular even on constants");
    assert_eq!(label("x//2", 7, 0, 11), Ok(9), "// is modular on residues");
    assert_eq!(label("x % 5", 6, 0, 7), Ok(1));
    assert_eq!(label("1 if x % -3 + 0 == 0 else 0", 3, 0, 7), Ok(1), "x%-3 is 0 at x=3, + 0 is a residue");
    assert_eq!(label("1 if (x % -3) < 0 else 0", 4, 0, 7), Ok(1), "x%-3 is -2 at x=4");
    assert_eq!(label("x % -3", 4, 0, 7), Ok(5), "-2 mod 7");
    assert_eq!(label("x % y", 4, 0, 7), Err(Undefined { column: 3 }));
    assert_eq!(label("1 if x - 1 < 0 else 0", 0, 0, 7), Ok(0), "x-1 is a residue");
    assert_eq!(label("x**-1", 3, 0, 7), Ok(5));
    assert_eq!(label("x**-1", 0, 0, 7), Err(Undefined { column: 2 }));
    assert_eq!(label("x**-2", 3, 0, 7), Ok(4));
    assert_eq!(label("x**0", 0, 0, 7), Ok(1));
    assert_eq!(label("x**123456789012", 3, 0, 7), Ok(power_by_repetition(3, 123456789012 % 6, 7) as u64));
    assert_eq!(label("-x", 3, 0, 7), Ok(4));
    assert_eq!(label("-x**2", 3, 0, 7), Ok(5));
    assert_eq!(label("x - 10", 3, 0, 7), Ok(0));
    assert_eq!(label("x._value._value", 3, 0, 7), Ok(3));
    assert_eq!(label("1 if x < y < 5 else 0", 1, 3, 7), Ok(1));
    assert_eq!(label("1 if x < y < 2 else 0", 1, 3, 7), Ok(0));
    assert_eq!(label("1 if x < y < 2 > 0 != 1 else 0", 0, 1, 7), Ok(1), "0<1, 1<2, 2>0, 0!=1");
    assert_eq!(label("1 if x < y < 2 > 0 != 0 else 0", 0, 1, 7), Ok(0), "0!=0 fails");
    assert_eq!(label("1 if 0 < x < 1/x else 2", 0, 1, 7), Ok(2), "a failed link stops the chain");
    assert_eq!(label("1 if (x < y if x else y < x) else 2", 0, 1, 7), Ok(2), "branches that are conditions");
    assert_eq!(label("1 if (x < y if x else y < x) else 2", 1, 2, 7), Ok(1));
    assert_eq!(label("5 if not x and y or x == 2 else 6", 0, 1, 7), Ok(5));
    assert_eq!(label("5 if not x and y or x == 2 else 6", 1, 1, 7), Ok(6));
    assert_eq!(label("5 if x or 1/x else 6", 0, 1, 7), Err(Undefined { column: 12 }));
    assert_eq!(label("5 if x or 1/x else 6", 1, 1, 7), Ok(5), "or stops at a true left side");
    assert_eq!(label("x+y_mod_97", 5, 6, 7), Ok(4));
    assert_eq!(label("  x+y   _mod_13  ", 5, 6, 7), Ok(4));
    assert_eq!(label("3", 0, 0, 2), Ok(1));
    assert_eq!(label("-3", 0, 0, 7), Ok(4));
}

#[test]
fn large_moduli_do_not_overflow() {
    let p = (1_u64 << 63) - 25; // a prime below 2^63
    let expression = Expression::parse("x*y + x**3 - y/x").unwrap();
    let (x, y) = (p - 2, p - 3);
    let p128 = i128::from(p);
    let (x128, y128) = (i128::from(x), i128::from(y));
    // x ≡ −2, y ≡ −3: x*y = 6, x**3 = −8, y/x = 3/2.
    let half = (p128 + 1) / 2;
    let expected = (6 - 8 - 3 * half).rem_euclid(p128);
    assert_eq!(i128::from(expression.label(x, y, p).unwrap()), expected, "{x128} {y128}");
    assert_eq!(Expression::parse("x*y").unwrap().label((1 << 31) - 2, (1 << 31) - 3, (1 << 31) - 1), Ok(2));
}

#[test]
fn equality_and_hash_follow_the_source() {
    use std::collections::HashSet;
    let a = Expression::parse("x+y").unwrap();
    let b = Expression::parse("x + y").unwrap();
    assert_ne!(a, b);
    assert_eq!(a, Expression::parse("x+y").unwrap());
    assert_eq!(b.source(), "x + y");
    let set: HashSet<Expression> = [a.clone(), a, b].into_iter().collect();
    assert_eq!(set.len(), 2);
}

/// The column of the error `text` gives, and its message.
fn error_of(text: &str) -> (usize, String) {
    match Expression::parse(text) {
        Ok(_) => panic!("{text:?} parsed"),
        Err(error) => (error.column, error.message),
    }
}

/// Asserts that `text` is refused at `column` with a message containing `words`.
fn assert_error(text: &str, column: usize, words: &str) {
    let (got_column, message) = error_of(text);
    assert_eq!(got_column, column, "{text:?}: {message}");
    assert!(message.contains(words), "{text:?}: {message:?} lacks {words:?}");
}

#[test]
fn errors_name_their_column() {
    assert_error("(x+y", 1, "unmatched `(`");
    assert_error("  ((x+y)", 3, "unmatched `(`");
    assert_error("x+y)", 4, "unmatched `)`");
    assert_error("(x+y))", 6, "unmatched `)`");
    assert_error("x +", 4, "found the end");
    assert_error("x + * y", 5, "found `*`");
    assert_error("x + z", 5, "unknown name `z`");
    assert_error("x + y_mod_", 5, "unknown name `y_mod_`");
    assert_error("  foo(x)", 3, "unknown name `foo`");
    assert_error("x y", 3, "two values with no operator");
    assert_error("(x y)", 4, "two values with no operator");
    assert_error("2x", 2, "two values with no operator");
    assert_error("", 1, "empty");
    assert_error("   ", 1, "empty");
    assert_error("_mod_97", 1, "empty");
    assert_error("x if y", 3, "`if` without `else`");
    assert_error("x if y x", 3, "`if` without `else`");
    assert_error("x else y", 3, "`else` without `if`");
    assert_error("x $ y", 3, "unexpected character `$`");
    assert_error("x + é", 5, "unexpected character `é`");
    assert_error("é + z", 1, "unexpected character");
    assert_error("x = y", 3, "compare with `==`");
    assert_error("x ! y", 3, "`!=` or `not`");
    assert_error("x.value", 2, "`._value`");
    assert_error("x < y", 1, "a condition, not a value");
    assert_error("  not x", 3, "a condition, not a value");
    assert_error("(x < y) + 1", 9, "needs values");
    assert_error("1 - (x < y)", 3, "needs values");
    assert_error("-(x < y)", 1, "needs values");
    assert_error("(x < y) ** 2", 9, "needs values");
    assert_error("(x < y) == 1", 9, "needs values");
    assert_error("x if y else x < y", 3, "both be values");
    assert_error("x < )", 5, "found `)`");
    assert_error("x not y", 3, "two values");
    assert_error("x ==", 5, "found the end");
}

#[test]
fn constant_errors_name_their_column() {
    assert_error("x + 9223372036854775808", 5, "too large");
    assert!(Expression::parse("x + 9223372036854775807").is_ok());
    assert_error("x + (-9223372036854775807 - 2)", 27, "too large");
    assert_error("x + 2**63", 6, "too large");
    assert_error("x + 2**100000", 6, "too large");
    assert_error("x + 3037000500*3037000500", 15, "too large");
    assert_error("x + 2**-1", 6, "negative exponent");
    assert_error("x + 7//(3-3)", 6, "division by zero");
    assert_error("x + 7%0", 6, "division by zero");
    assert!(Expression::parse("x % 0").is_ok(), "undefined at every pair, not an error");
    assert!(Expression::parse("x + 2**62").is_ok());
    assert!(Expression::parse("x**123456789012").is_ok());
}

#[test]
fn hostile_input_is_refused() {
    let long = "(".repeat(100_000);
    assert_error(&long, 1001, "longer than 1000");
    let long_sum = vec!["x"; 501].join("+");
    assert_error(&long_sum, 1001, "longer than 1000");
    let longest_sum = vec!["x"; 500].join("-");
    assert_eq!(Expression::parse(&longest_sum).unwrap().label(3, 0, 7), Ok((3 - 499 * 3_i64).rem_euclid(7) as u64));
    let longest_chain = format!("1 if 0{} else 5", "<x".repeat(493));
    assert_eq!(Expression::parse(&longest_chain).unwrap().label(3, 0, 7), Ok(5), "3 < 3 fails");
    let deep = format!("{}x{}", "(".repeat(101), ")".repeat(101));
    assert_error(&deep, 101, "more than 100 levels");
    let deepest = format!("{}x{}", "(".repeat(100), ")".repeat(100));
    assert_eq!(Expression::parse(&deepest).unwrap().label(3, 0, 7), Ok(3));
    assert_error(&format!("{}x", "-".repeat(101)), 101, "more than 100 levels");
    assert_error(&format!("{}1", "not ".repeat(101)), 401, "more than 100 levels");
    assert_error(&format!("x{}", "**x".repeat(101)), 302, "more than 100 levels");
    let else_chain = format!("{}0", "x if y else ".repeat(83));
    assert_eq!(Expression::parse(&else_chain).unwrap().label(3, 0, 7), Ok(0));
    // Each repetition opens two levels: its `else` and its `(`.
    let else_chain = |count| format!("{}0{}", "1if y else(".repeat(count), ")".repeat(count));
    assert_eq!(Expression::parse(&else_chain(50)).unwrap().label(3, 1, 7), Ok(1));
    assert_error(&else_chain(51), 50 * 11 + 7, "more than 100 levels");
}

/// One of `items`, drawn by `random` (the crate's generator, on its stream for tests).
fn pick<T: Copy>(random: &mut Rng, items: &[T]) -> T {
    items[random.below(items.len())]
}

#[test]
fn random_strings_never_panic() {
    let pieces = [
        "x",
        "y",
        "0",
        "1",
        "2",
        "97",
        "9223372036854775807",
        "99999999999999999999",
        "(",
        ")",
        "+",
        "-",
        "*",
        "/",
        "//",
        "%",
        "**",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "if",
        "else",
        "and",
        "or",
        "not",
        "._value",
        "_mod_97",
        " ",
        "z",
        "=",
        "!",
        ".",
        "é",
        "\t",
        "2**100000",
        "**-1",
        "x**123456789012",
        "_",
        "mod",
    ];
    let seeds = [
        "x/y if y%2==1 else x-y",
        "(x._value//y)if(y._value%2==1)else(x-y)_mod_97",
        "x**3+x*y**2+y",
        "not x < y <= 3 and (x or y) if x**-1 else -x//2 % 5",
    ];
    let bytes: Vec<u8> = (0..=255).collect();
    let mut random = Rng::new(7, Stream::Synthetic);
    let mut parsed = 0;
    for round in 0..10_000 {
        // Half the strings are random pieces, half are valid expressions with a few edits.
        let mut text: Vec<char> = if round % 2 == 0 { Vec::new() } else { pick(&mut random, &seeds).chars().collect() };
        let edits = if round % 2 == 0 { 1 + random.below(12) } else { 1 + random.below(2) };
        for _ in 0..edits {
            let at = random.below(text.len() + 1);
            match random.below(16) {
                0 => text.insert(at, char::from(pick(&mut random, &bytes))),
                1..=4 if at < text.len() => {
                    text.remove(at);
                }
                _ if round % 2 == 0 => text.extend(pick(&mut random, &pieces).chars()),
                _ => text.splice(at..at, pick(&mut random, &pieces).chars()).for_each(drop),
            }
        }
        let text: String = text.into_iter().collect();
        let Ok(expression) = Expression::parse(&text) else { continue };
        parsed += 1;
        for p in [2_u64, 7, 97, 4096] {
            for _ in 0..8 {
                let (x, y) = (random.next_u64() % p, random.next_u64() % p);
                if let Ok(label) = expression.label(x, y, p) {
                    assert!(label < p, "{text:?} at x={x} y={y} p={p}");
                }
            }
        }
    }
    assert!(parsed > 300, "only {parsed} random strings parsed");
}

/// An arithmetic operator of the test's own trees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Rem,
    Pow,
}

/// An expression tree of the property test, with a unique id to find its operator's column.
#[derive(Debug)]
struct Tree {
    id: usize,
    shape: Shape,
}

/// What a tree node is; only type-correct trees are built.
#[derive(Debug)]
enum Shape {
    X,
    Y,
    Constant(i128),
    Negate(Box<Tree>),
    Binary(Arith, Box<Tree>, Box<Tree>),
    Compare(&'static str, Box<Tree>, Box<Tree>),
    And(Box<Tree>, Box<Tree>),
    Or(Box<Tree>, Box<Tree>),
    Not(Box<Tree>),
    /// chosen if condition else otherwise.
    Choose {
        condition: Box<Tree>,
        chosen: Box<Tree>,
        otherwise: Box<Tree>,
    },
}

/// Builds random type-correct trees.
struct Generator {
    random: Rng,
    next_id: usize,
}

impl Generator {
    /// A node with a fresh id.
    fn make(&mut self, shape: Shape) -> Box<Tree> {
        self.next_id += 1;
        Box::new(Tree { id: self.next_id, shape })
    }

    /// x, y or a constant, some too large to fold with others.
    fn leaf(&mut self) -> Box<Tree> {
        let constants = [0, 1, 2, 3, 5, 7, 12, 96, 97, 100, 3_037_000_500, 4_611_686_018_427_387_904];
        let shape = match self.random.below(5) {
            0 | 1 => Shape::X,
            2 => Shape::Y,
            _ => Shape::Constant(pick(&mut self.random, &constants)),
        };
        self.make(shape)
    }

    /// An exponent small enough for the reference's repeated multiplication: a small
    /// constant (negative ones too), x or y.
    fn exponent(&mut self) -> Box<Tree> {
        match self.random.below(5) {
            0 => self.make(Shape::X),
            1 => self.make(Shape::Y),
            2 => {
                let one_or_two = 1 + self.random.below(2) as i128;
                let one_or_two = self.make(Shape::Constant(one_or_two));
                self.make(Shape::Negate(one_or_two))
            }
            _ => {
                let small = self.random.below(5) as i128;
                self.make(Shape::Constant(small))
            }
        }
    }

    /// A tree of at most `depth` levels that is a value.
    fn value(&mut self, depth: usize) -> Box<Tree> {
        if depth == 0 || self.random.below(5) == 0 {
            return self.leaf();
        }
        let shape = match self.random.below(10) {
            0..=4 => {
                let operator = pick(
                    &mut self.random,
                    &[Arith::Add, Arith::Sub, Arith::Mul, Arith::Div, Arith::FloorDiv, Arith::Rem],
                );
                Shape::Binary(operator, self.value(depth - 1), self.value(depth - 1))
            }
            5 => Shape::Binary(Arith::Pow, self.value(depth - 1), self.exponent()),
            6 => Shape::Negate(self.value(depth - 1)),
            7 => {
                let divisor = self.random.below(7) as i128 - 3;
                let divisor = self.make(Shape::Constant(divisor));
                Shape::Binary(Arith::Rem, self.value(depth - 1), divisor)
            }
            _ => Shape::Choose {
                condition: self.any(depth - 1),
                chosen: self.value(depth - 1),
                otherwise: self.value(depth - 1),
            },
        };
        self.make(shape)
    }

    /// A tree of at most `depth` levels that is a condition.
    fn condition(&mut self, depth: usize) -> Box<Tree> {
        let next = depth.saturating_sub(1);
        let shape = match self.random.below(6) {
            _ if depth == 0 => Shape::Compare("<", self.leaf(), self.leaf()),
            0 | 1 => {
                let comparison = pick(&mut self.random, &["==", "!=", "<", "<=", ">", ">="]);
                Shape::Compare(comparison, self.value(next), self.value(next))
            }
            2 => Shape::And(self.any(next), self.any(next)),
            3 => Shape::Or(self.any(next), self.any(next)),
            4 => Shape::Not(self.any(next)),
            _ => Shape::Choose {
                condition: self.any(next),
                chosen: self.condition(next),
                otherwise: self.condition(next),
            },
        };
        self.make(shape)
    }

    /// A value or a condition, where either is allowed.
    fn any(&mut self, depth: usize) -> Box<Tree> {
        if self.random.below(2) == 0 {
            self.value(depth)
        } else {
            self.condition(depth)
        }
    }
}

/// How tightly a tree's top binds (Python's precedence): 1 if-else … 10 atom.
fn level(tree: &Tree) -> u8 {
    match &tree.shape {
        Shape::X | Shape::Y | Shape::Constant(_) => 10,
        Shape::Binary(Arith::Pow, _, _) => 9,
        Shape::Negate(_) => 8,
        Shape::Binary(Arith::Add | Arith::Sub, _, _) => 6,
        Shape::Binary(_, _, _) => 7,
        Shape::Compare(_, _, _) => 5,
        Shape::Not(_) => 4,
        Shape::And(_, _) => 3,
        Shape::Or(_, _) => 2,
        Shape::Choose { .. } => 1,
    }
}

/// Writes `tree` where a level of at least `required` binds tightly enough, with minimal
/// parentheses or (`full`) around every non-atom, recording each operator's column by id.
fn print(tree: &Tree, required: u8, full: bool, out: &mut String, columns: &mut [usize]) {
    let parenthesize = level(tree) < required || (full && level(tree) < 10);
    if parenthesize {
        out.push('(');
    }
    match &tree.shape {
        Shape::X => out.push('x'),
        Shape::Y => out.push('y'),
        Shape::Constant(value) => out.push_str(&value.to_string()),
        Shape::Negate(operand) => {
            out.push('-');
            print(operand, 8, full, out, columns);
        }
        Shape::Binary(operator, left, right) => {
            let (text, left_level, right_level) = match operator {
                Arith::Add => ("+", 6, 7),
                Arith::Sub => ("-", 6, 7),
                Arith::Mul => ("*", 7, 8),
                Arith::Div => ("/", 7, 8),
                Arith::FloorDiv => ("//", 7, 8),
                Arith::Rem => ("%", 7, 8),
                Arith::Pow => ("**", 10, 8),
            };
            print(left, left_level, full, out, columns);
            columns[tree.id] = out.len() + 1;
            out.push_str(text);
            print(right, right_level, full, out, columns);
        }
        Shape::Compare(text, left, right) => {
            print(left, 6, full, out, columns);
            out.push_str(text);
            print(right, 6, full, out, columns);
        }
        Shape::And(left, right) => {
            print(left, 3, full, out, columns);
            out.push_str(" and ");
            print(right, 4, full, out, columns);
        }
        Shape::Or(left, right) => {
            print(left, 2, full, out, columns);
            out.push_str(" or ");
            print(right, 3, full, out, columns);
        }
        Shape::Not(operand) => {
            out.push_str("not ");
            print(operand, 4, full, out, columns);
        }
        Shape::Choose { condition, chosen, otherwise } => {
            print(chosen, 2, full, out, columns);
            out.push_str(" if ");
            print(condition, 2, full, out, columns);
            out.push_str(" else ");
            print(otherwise, 1, full, out, columns);
        }
    }
    if parenthesize {
        out.push(')');
    }
}

/// Python's remainder, the divisor's sign: written from rem_euclid, unlike the module's.
fn python_remainder_reference(a: i128, b: i128) -> i128 {
    let remainder = a.rem_euclid(b);
    if b < 0 && remainder != 0 {
        remainder + b
    } else {
        remainder
    }
}

/// Python's floor division, from div_euclid.
fn floor_divide_reference(a: i128, b: i128) -> i128 {
    if b > 0 {
        a.div_euclid(b)
    } else {
        (-a).div_euclid(-b)
    }
}

/// The exact value of a tree made only of constants (and no `/`): `Some(Err)` where the
/// module must refuse it; `None` where the tree is not constant.
fn constant(tree: &Tree) -> Option<Result<i128, ()>> {
    let in_range = |value: i128| if i64::try_from(value).is_ok() { Ok(value) } else { Err(()) };
    match &tree.shape {
        Shape::Constant(value) => Some(in_range(*value)),
        Shape::Negate(operand) => constant(operand).map(|value| value.and_then(|value| in_range(-value))),
        Shape::Binary(operator, left, right) if *operator != Arith::Div => {
            let (left, right) = (constant(left)?, constant(right)?);
            let (Ok(a), Ok(b)) = (left, right) else { return Some(Err(())) };
            let exact = match operator {
                Arith::Add => Some(a + b),
                Arith::Sub => Some(a - b),
                Arith::Mul => Some(a * b),
                Arith::FloorDiv => (b != 0).then(|| floor_divide_reference(a, b)),
                Arith::Rem => (b != 0).then(|| python_remainder_reference(a, b)),
                _ => u32::try_from(b).ok().and_then(|e| a.checked_pow(e)),
            };
            Some(exact.ok_or(()).and_then(in_range))
        }
        _ => None,
    }
}

/// Whether the module must accept the tree: no constant sub-tree out of range.
fn valid(tree: &Tree) -> bool {
    if let Some(Err(())) = constant(tree) {
        return false;
    }
    match &tree.shape {
        Shape::X | Shape::Y | Shape::Constant(_) => true,
        Shape::Negate(operand) | Shape::Not(operand) => valid(operand),
        Shape::Binary(_, left, right)
        | Shape::Compare(_, left, right)
        | Shape::And(left, right)
        | Shape::Or(left, right) => valid(left) && valid(right),
        Shape::Choose { condition, chosen, otherwise } => valid(condition) && valid(chosen) && valid(otherwise),
    }
}

/// The tree's value at (x, y) mod p from the semantics, or the id of the operator that has
/// none.
fn reference(tree: &Tree, x: i128, y: i128, p: i128) -> Result<i128, usize> {
    if let Some(Ok(value)) = constant(tree) {
        return Ok(value);
    }
    let truth = |value: bool| Ok(i128::from(value));
    match &tree.shape {
        Shape::X => Ok(x),
        Shape::Y => Ok(y),
        Shape::Constant(value) => Ok(*value),
        Shape::Negate(operand) => Ok((-reference(operand, x, y, p)?).rem_euclid(p)),
        Shape::Binary(operator, left, right) => {
            let (a, b) = (reference(left, x, y, p)?, reference(right, x, y, p)?);
            let value = match operator {
                Arith::Add => Some(a + b),
                Arith::Sub => Some(a - b),
                Arith::Mul => Some(a.rem_euclid(p) * b.rem_euclid(p)),
                Arith::Div | Arith::FloorDiv => inverse_by_search(b, p).map(|inverse| a.rem_euclid(p) * inverse),
                Arith::Rem => (b != 0).then(|| python_remainder_reference(a, b)),
                Arith::Pow if b >= 0 => Some(power_by_repetition(a.rem_euclid(p), b, p)),
                Arith::Pow => inverse_by_search(a, p).map(|inverse| power_by_repetition(inverse, -b, p)),
            };
            let reduce = *operator != Arith::Rem;
            value.map(|value| if reduce { value.rem_euclid(p) } else { value }).ok_or(tree.id)
        }
        Shape::Compare(text, left, right) => {
            let (a, b) = (reference(left, x, y, p)?, reference(right, x, y, p)?);
            truth(match *text {
                "==" => a == b,
                "!=" => a != b,
                "<" => a < b,
                "<=" => a <= b,
                ">" => a > b,
                _ => a >= b,
            })
        }
        Shape::And(left, right) => truth(reference(left, x, y, p)? != 0 && reference(right, x, y, p)? != 0),
        Shape::Or(left, right) => truth(reference(left, x, y, p)? != 0 || reference(right, x, y, p)? != 0),
        Shape::Not(operand) => truth(reference(operand, x, y, p)? == 0),
        Shape::Choose { condition, chosen, otherwise } => {
            if reference(condition, x, y, p)? != 0 {
                reference(chosen, x, y, p)
            } else {
                reference(otherwise, x, y, p)
            }
        }
    }
}

#[test]
fn random_trees_evaluate_like_the_semantics() {
    let moduli = [2_u64, 3, 4, 6, 7, 9, 12, 15, 16, 97];
    let mut generator = Generator { random: Rng::new(2024, Stream::Synthetic), next_id: 0 };
    let (mut checked, mut refused, mut undefined) = (0, 0, 0);
    for _ in 0..4000 {
        generator.next_id = 0;
        let tree = generator.value(4);
        let must_parse = valid(&tree);
        for full in [false, true] {
            let mut text = String::new();
            let mut columns = vec![0; generator.next_id + 1];
            print(&tree, 0, full, &mut text, &mut columns);
            if text.len() > MAX_LENGTH {
                continue;
            }
            let parsed = Expression::parse(&text);
            let Ok(expression) = parsed else {
                assert!(!must_parse, "{text}: {:?}", parsed.err());
                refused += 1;
                continue;
            };
            assert!(must_parse, "{text} parsed but must not");
            for _ in 0..12 {
                let p = pick(&mut generator.random, &moduli);
                let (x, y) = (generator.random.next_u64() % p, generator.random.next_u64() % p);
                let p128 = i128::from(p);
                let expected = reference(&tree, i128::from(x), i128::from(y), p128)
                    .map(|value| u64::try_from(value.rem_euclid(p128)).unwrap_or(u64::MAX))
                    .map_err(|id| Undefined { column: columns[id] });
                undefined += usize::from(expected.is_err());
                assert_eq!(expression.label(x, y, p), expected, "{text} at x={x} y={y} p={p}");
                checked += 1;
            }
        }
    }
    println!("{checked} labels checked, {refused} texts refused, {undefined} undefined");
    assert!(checked > 50_000 && refused > 100 && undefined > 1000, "{checked} {refused} {undefined}");
}

/// Times every pair of p = 4096 (16.7 million labels) for a 10-node expression; run by hand
/// with `--ignored --nocapture` on a release build.
#[test]
#[ignore]
fn timing_of_every_pair_at_4096() {
    let expression = Expression::parse("x**2+x*y+y**2+x").unwrap();
    let p = 4096;
    let start = std::time::Instant::now();
    let mut checksum = 0_u64;
    for x in 0..p {
        for y in 0..p {
            checksum = checksum.wrapping_add(expression.label(x, y, p).unwrap_or(0));
        }
    }
    println!("{} labels in {:?} (checksum {checksum})", p * p, start.elapsed());
    let mix = Expression::parse("(x._value//y)if(y._value%2==1)else(x-y)_mod_97").unwrap();
    let start = std::time::Instant::now();
    let defined = (0..p).flat_map(|x| (0..p).map(move |y| (x, y))).filter(|&(x, y)| mix.label(x, y, p).is_ok()).count();
    println!("{defined} defined of {} by the mixed operation in {:?}", p * p, start.elapsed());
}
