//! The tasks of the grokking literature: what a row's input symbols are and what its label is.
//!
//! Binary operations take every pair (a, b) in [0, p)² (a row's symbols are [a, b]); bit tasks
//! take strings of bits (a row's symbols are its bits, 0 or 1). Which model input the
//! symbols become (table rows for the MLP, tokens for a transformer) is the model's business.
//!
//! Besides the named operations, `task.op` takes any expression in x and y mod p
//! ([`expression`]), and `task.table` a file of rows ([`table`]); both become [`PairRows`].

pub mod expression;
pub mod pair_rows;
pub mod table;

use crate::rng::{Rng, Stream};
pub use expression::Expression;
pub use pair_rows::PairRows;
use std::sync::Arc;
pub use table::TableFile;

/// The task: a binary operation over [0, p)² (S5's over its 120 elements), a bit task, an
/// expression of the user's, or a table file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Add,
    Sub,
    Mul,
    /// a·b⁻¹, b ≠ 0.
    Div,
    /// a^b.
    Exp,
    Gcd,
    /// x**2+y (openai/grok's `**2+`).
    SquarePlusY,
    /// x**3+y (`**3+`).
    CubePlusY,
    /// x**2+y**2.
    SquareSum,
    /// x**2+x*y+y**2.
    SquareSumCross,
    /// x**2+x*y+y**2+x.
    SquareSumCrossPlusX,
    /// x**3+x*y.
    CubeCross,
    /// x**3+x*y**2+y.
    CubeCrossSquare,
    /// x/y if y is odd, else x−y.
    Mix1,
    S5Compose,
    S5Conjugate,
    S5Aba,
    /// The parity of all `task.bits` bits.
    Parity,
    /// The parity of the first `task.parity_bits` of `parity_bits + noise_bits` bits.
    SparseParity,
    /// Any other `task.op`: an expression in x and y mod p, parsed once per sweep.
    Expression(Arc<Expression>),
    /// `task.table`: the rows of a file, read once per sweep.
    Table(Arc<TableFile>),
}

/// Every string `task.op` accepts and its operation: the names, and openai/grok's own
/// operator strings so that they can be pasted (its `_mod_97` names mean mod `task.p`).
pub const OP_NAMES: &[(&str, Op)] = &[
    ("add", Op::Add),
    ("sub", Op::Sub),
    ("mul", Op::Mul),
    ("div", Op::Div),
    ("exp", Op::Exp),
    ("gcd", Op::Gcd),
    ("x**2+y", Op::SquarePlusY),
    ("x**3+y", Op::CubePlusY),
    ("x**2+y**2", Op::SquareSum),
    ("x**2+x*y+y**2", Op::SquareSumCross),
    ("x**2+x*y+y**2+x", Op::SquareSumCrossPlusX),
    ("x**3+x*y", Op::CubeCross),
    ("x**3+x*y**2+y", Op::CubeCrossSquare),
    ("x/y if y%2==1 else x-y", Op::Mix1),
    ("mix1", Op::Mix1),
    ("s5_compose", Op::S5Compose),
    ("s5_conjugate", Op::S5Conjugate),
    ("s5_aba", Op::S5Aba),
    ("parity", Op::Parity),
    ("sparse_parity", Op::SparseParity),
    // openai/grok's strings.
    ("+", Op::Add),
    ("-", Op::Sub),
    ("*", Op::Mul),
    ("/", Op::Div),
    ("**2+", Op::SquarePlusY),
    ("**3+", Op::CubePlusY),
    ("x**2+y**2_mod_97", Op::SquareSum),
    ("x**2+y**2+x*y_mod_97", Op::SquareSumCross),
    ("x**2+y**2+x*y+x_mod_97", Op::SquareSumCrossPlusX),
    ("x**3+x*y_mod_97", Op::CubeCross),
    ("x**3+x*y**2+y_mod_97", Op::CubeCrossSquare),
    ("(x._value//y)if(y._value%2==1)else(x-y)_mod_97", Op::Mix1),
    ("s5", Op::S5Compose),
    ("s5conj", Op::S5Conjugate),
    ("s5aba", Op::S5Aba),
];

/// openai/grok's two operators that are not expressions in x and y, and the expressions they
/// stand for (its "even-addition_odd-multiplication" and "even-addition_odd-subtraction").
pub const OP_ALIASES: &[(&str, &str)] = &[("+*", "x+y if x%2==0 else x*y"), ("+-", "x+y if x%2==0 else x-y")];

/// openai/grok's list tasks: not binary operations, so refused by name rather than parsed.
const LIST_TASKS: &[&str] = &["sort", "reverse", "copy"];

impl Op {
    /// Its canonical name (the first of its strings in [`OP_NAMES`]), the expression as
    /// written, or `table:FILE` (the table file's name).
    pub fn name(&self) -> &str {
        match self {
            Op::Expression(expression) => expression.source(),
            Op::Table(table) => &table.name,
            named => OP_NAMES.iter().find(|(_, op)| op == named).map_or("?", |(name, _)| name),
        }
    }

    /// A named operation (one of [`OP_NAMES`]).
    pub fn named(name: &str) -> Option<Op> {
        OP_NAMES.iter().find(|(n, _)| *n == name).map(|(_, op)| op.clone())
    }

    /// `task.op`: a named operation, or else an expression (openai/grok's `+*` and `+-`
    /// stand for theirs). The error says why the text is neither, pointing at the column.
    pub fn parse(text: &str) -> Result<Op, String> {
        if let Some(op) = Op::named(text) {
            return Ok(op);
        }
        if LIST_TASKS.contains(&text) {
            return Err(format!("\"{text}\" is one of openai/grok's list tasks, not an operation on pairs (x, y)"));
        }
        let source = OP_ALIASES.iter().find(|(alias, _)| *alias == text).map_or(text, |(_, expression)| expression);
        pair_rows::parse_shared(source).map(Op::Expression).map_err(|error| {
            format!(
                "\"{text}\" is neither a named operation (add, sub, mul, div, exp, gcd, …: the README's table) nor an \
                 expression in x and y: {error}\n    {text}\n    {}^",
                " ".repeat(error.column.saturating_sub(1))
            )
        })
    }

    /// A task over bit strings rather than operand pairs.
    pub fn is_bits(&self) -> bool {
        matches!(self, Op::Parity | Op::SparseParity)
    }

    pub fn is_s5(&self) -> bool {
        matches!(self, Op::S5Compose | Op::S5Conjugate | Op::S5Aba)
    }

    /// The operation divides by b, so p must be prime.
    pub fn divides(&self) -> bool {
        matches!(self, Op::Div | Op::Mix1)
    }
}

/// What a model sees of its task: the symbols of a row and the classes of its label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskShape {
    pub symbols: Symbols,
    pub classes: usize,
}

/// What a row's symbols are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Symbols {
    /// Operands a, b in [0, p).
    Operands { p: usize },
    /// A string of n bits.
    Bits { n: usize },
}

/// The largest modulus `task.p`, and a table's largest vocabulary and class count.
pub const MAX_P: usize = 4096;

/// Whether `n` is prime (trial division: p ≤ MAX_P).
pub fn is_prime(n: usize) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| !n.is_multiple_of(d))
}

/// Number of elements of S5, the permutations of five elements.
pub const S5_ORDER: usize = 120;

/// The label of (a, b) under a binary operation mod p, or `None` for a pair the task leaves
/// out (b = 0 for division). Every intermediate stays below 2^64: a, b < p ≤ 4096.
/// Expressions and tables have their rows in [`PairRows`] instead.
pub fn binary_label(op: &Op, a: u64, b: u64, p: u64) -> Option<u64> {
    Some(match op {
        Op::Add => (a + b) % p,
        Op::Sub => (a + p - b) % p,
        Op::Mul => (a * b) % p,
        Op::Div if b == 0 => return None,
        Op::Div => a * inverse(b, p) % p,
        // 0^0 = 1, as Python's pow(0, 0, p).
        Op::Exp => mod_pow(a, b, p),
        // gcd(0, 0) = 0, as math.gcd.
        Op::Gcd => gcd(a, b),
        Op::SquarePlusY => (a * a + b) % p,
        Op::CubePlusY => (a * a % p * a + b) % p,
        Op::SquareSum => (a * a + b * b) % p,
        Op::SquareSumCross => (a * a + a * b + b * b) % p,
        Op::SquareSumCrossPlusX => (a * a + a * b + b * b + a) % p,
        Op::CubeCross => (a * a % p * a + a * b) % p,
        Op::CubeCrossSquare => (a * a % p * a + a * (b * b % p) + b) % p,
        // y odd: x / y (y ≠ 0, so the inverse exists for a prime p); y even: x − y.
        Op::Mix1 if b % 2 == 1 => a * inverse(b, p) % p,
        Op::Mix1 => (a + p - b) % p,
        Op::S5Compose | Op::S5Conjugate | Op::S5Aba => s5_label(op, a as usize, b as usize) as u64,
        Op::Parity | Op::SparseParity | Op::Expression(_) | Op::Table(_) => {
            unreachable!("{} has no labels by formula", op.name())
        }
    })
}

/// b^e mod m by squaring.
pub fn mod_pow(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut result = 1 % m;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            result = result * base % m;
        }
        base = base * base % m;
        exp >>= 1;
    }
    result
}

/// b⁻¹ mod a prime p (Fermat: b^(p−2)).
fn inverse(b: u64, p: u64) -> u64 {
    mod_pow(b, p - 2, p)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A permutation of {0, …, 4} in one-line notation: `perm[i]` is the image of i.
pub type Perm = [u8; 5];

/// The `rank`-th permutation of S5 in lexicographic order of the one-line notation: element
/// 0 is the identity [0, 1, 2, 3, 4], element 1 is [0, 1, 2, 4, 3], …, element 119 is
/// [4, 3, 2, 1, 0]. Operand a of an S5 task is the a-th permutation of this order.
pub fn s5_element(mut rank: usize) -> Perm {
    // Inverse of the Lehmer code: place i takes the (rank / (4 − i)!)-th smallest unused value.
    let mut unused: Vec<u8> = (0..5).collect();
    let mut perm = [0u8; 5];
    for (i, slot) in perm.iter_mut().enumerate() {
        let weight: usize = (1..5 - i).product();
        *slot = unused.remove(rank / weight);
        rank %= weight;
    }
    perm
}

/// (f ∘ g)(i) = f(g(i)): apply g first.
pub fn compose(f: &Perm, g: &Perm) -> Perm {
    std::array::from_fn(|i| f[g[i] as usize])
}

pub fn invert(f: &Perm) -> Perm {
    let mut inv = [0u8; 5];
    for (i, &image) in f.iter().enumerate() {
        inv[image as usize] = i as u8;
    }
    inv
}

/// The index in [`s5_elements`] of a permutation: its rank in lexicographic order (Lehmer code).
pub fn s5_index(f: &Perm) -> usize {
    let mut rank = 0;
    for i in 0..5 {
        let smaller_later = f[i + 1..].iter().filter(|&&x| x < f[i]).count();
        rank = rank * (5 - i) + smaller_later;
    }
    rank
}

/// a∘b, a∘b∘a⁻¹ or a∘b∘a for the a-th and b-th elements of S5.
fn s5_label(op: &Op, a: usize, b: usize) -> usize {
    let (f, g) = (s5_element(a), s5_element(b));
    let result = match op {
        Op::S5Compose => compose(&f, &g),
        Op::S5Conjugate => compose(&compose(&f, &g), &invert(&f)),
        _ => compose(&compose(&f, &g), &f),
    };
    s5_index(&result)
}

/// The parity of a bit string's bits.
pub fn parity(bits: u64) -> u32 {
    bits.count_ones() % 2
}

/// `samples` distinct random strings of `n` bits (n ≤ 64) for a seed, in the order drawn.
/// Their labels are the parity of the first `relevant` bits (bit i of the string is bit i of
/// the u64, and the relevant bits are bits 0..relevant); the rest are noise.
pub fn sparse_parity_strings(n: usize, samples: usize, seed: u64) -> Vec<u64> {
    let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    let mut rng = Rng::new(seed, Stream::Data);
    let mut seen = std::collections::HashSet::with_capacity(samples);
    let mut out = Vec::with_capacity(samples);
    while out.len() < samples {
        let bits = rng.next_u64() & mask;
        if seen.insert(bits) {
            out.push(bits);
        }
    }
    out
}
