//! Binary operations written as expressions in x and y over the integers mod p.
//!
//! `task.op` may be any such expression, e.g. `x**2 + 3*x*y - y` or `x/y if y%2==1 else x-y`,
//! and openai/grok's operator strings paste as they are (`x**2+y**2+x*y_mod_97`,
//! `(x._value//y)if(y._value%2==1)else(x-y)_mod_97`). Each pair (x, y) in [0, p)² is labelled
//! with the expression's value mod p, or left out of the task where the expression has no value
//! (a division by a residue with no inverse mod p, a `%` by zero).
//!
//! # Grammar
//!
//! Python's syntax and precedence, loosest first; whitespace is ignored:
//!
//! ```text
//! expr       := or_expr [ 'if' or_expr 'else' expr ]        A if COND else B
//! or_expr    := and_expr ('or' and_expr)*
//! and_expr   := not_expr ('and' not_expr)*
//! not_expr   := 'not' not_expr | comparison
//! comparison := arith (('=='|'!='|'<'|'<='|'>'|'>=') arith)*   a < b < c means a<b and b<c
//! arith      := term (('+'|'-') term)*
//! term       := unary (('*'|'/'|'//'|'%') unary)*
//! unary      := ('-'|'+') unary | power
//! power      := postfix [ '**' unary ]                        right-associative; -x**2 is -(x**2)
//! postfix    := atom ('._value')*
//! atom       := 'x' | 'y' | INTEGER | '(' expr ')'
//! ```
//!
//! INTEGER is a run of decimal digits. A trailing `_mod_<digits>` (openai/grok's names carry
//! their modulus that way) is accepted and ignored: the modulus is always `task.p`. Any other
//! name is an error. The text may be at most 1000 characters long and nest at most 100 levels
//! deep (each `(`, unary `-`/`+`, `**` exponent, `not` and `else` branch opens a level), so that
//! hostile input is refused rather than exhausting the stack.
//!
//! # Values and conditions
//!
//! Comparisons and `and`/`or`/`not` produce a *condition*; everything else produces a *value*.
//! An `if` condition and the operands of `and`/`or`/`not` may be either (a value is true when it
//! is not 0, as in Python). Arithmetic and comparison operands must be values, both branches of
//! an `if` must be of the same kind, and the whole expression must be a value. These are checked
//! when the text is parsed, and every error names the 1-based column (in characters, leading
//! spaces included) where it is.
//!
//! # Semantics
//!
//! - `x` and `y` are residues in [0, p). A constant is the integer it is (negative after unary
//!   minus).
//! - A sub-expression made only of constants and `+ - * ** // %` is folded when the text is
//!   parsed, with Python's exact integer arithmetic (floor division, and a remainder with the
//!   divisor's sign). A folded result, or a literal, outside the 64-bit signed range is an
//!   error, as are a negative exponent, `//` by 0 and `% 0` among constants. So `7//2` is 3
//!   while `x//2` is a modular division, as with openai/grok's `Mod` class.
//! - Otherwise `+`, `-`, `*` and unary `-` take their operands mod p (a negative constant to its
//!   non-negative residue) and give the residue in [0, p).
//! - `/` and `//` are modular division a·b⁻¹ mod p (this is never folded: `1/2` is the inverse
//!   of 2 mod p), undefined when b has no inverse mod p (b ≡ 0, or gcd(b, p) > 1 for a
//!   composite p).
//! - `a ** e` raises a mod p to the integer e (a residue's representative, a constant as
//!   written). 0**0 = 1, as Python's `pow(0, 0, p)`. A negative e (such as `x**-1`) raises the
//!   inverse of a to |e| and is undefined where a has no inverse.
//! - `a % b` is Python's remainder of the two values as integers, not reduced mod p further
//!   (`x % 2` is 0 or 1, `x % -3` is in (-3, 0]); undefined where b is 0 (so `x % 0` and
//!   `x / 0` parse, and have no value at any pair).
//! - `._value` and unary `+` are the value itself (`._value` is openai/grok's way to get the
//!   integer out of a `Mod`).
//! - Comparisons compare the values as integers: residues by their representatives in [0, p),
//!   constants as written, so `x - 1 < 0` is never true. Conditions are not folded.
//! - `A if C else B` evaluates only the chosen branch, so `x/y if y != 0 else 0` is defined at
//!   y = 0; `and` and `or` evaluate their right side only when the left one does not decide
//!   the result.
//! - The label is the final value mod p, in [0, p). Where an operator has no value, the label
//!   is [`Undefined`] with that operator's column.

mod parse;

use std::fmt;
use std::hash::{Hash, Hasher};

/// The longest text accepted, in characters: task names are short, and a bound keeps parsing
/// and evaluation cheap whatever a sweep file holds.
const MAX_LENGTH: usize = 1000;

/// The deepest nesting accepted: the parser recurses once per level, so a bound keeps hostile
/// input such as 100 000 `(` from overflowing the stack.
const MAX_DEPTH: usize = 100;

/// openai/grok's operator strings end in `_mod_<digits>`; the modulus is `task.p` instead.
const GROK_MODULUS_PREFIX: [char; 5] = ['_', 'm', 'o', 'd', '_'];

/// An expression in x and y, kept as its source text and as a flat list of nodes that
/// [`Expression::label`] evaluates without allocating.
#[derive(Clone, Debug)]
pub struct Expression {
    source: String,
    /// Every node's operands come before it in the list.
    nodes: Vec<Node>,
    /// The index of the node whose value is the label.
    root: usize,
}

/// Why a string is not an expression: the 1-based character column in the string as written
/// (leading spaces count), and what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}

/// The expression has no value at a pair: `column` is the 1-based column of the operator that
/// failed (e.g. the `/` whose divisor has no inverse mod p).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Undefined {
    pub column: usize,
}

impl fmt::Display for ParseError {
    /// The form a sweep file's error report quotes.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    /// An error at a column; a short constructor keeps the parser's error paths readable.
    fn at(column: usize, message: impl Into<String>) -> ParseError {
        ParseError { column, message: message.into() }
    }
}

/// Two runs with the same `task.op` text run the same operation.
impl PartialEq for Expression {
    fn eq(&self, other: &Expression) -> bool {
        self.source == other.source
    }
}

impl Eq for Expression {}

/// Hashes the source text, consistently with equality.
impl Hash for Expression {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

impl Expression {
    /// Parses, type-checks and compiles `text` (see the module documentation for the grammar).
    pub fn parse(text: &str) -> Result<Expression, ParseError> {
        let (nodes, root) = parse::compile(text)?;
        Ok(Expression { source: text.to_string(), nodes, root })
    }

    /// The text as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The label of (x, y) mod p: x, y < p, 2 <= p <= 4096 in the tasks (any p from 1 to
    /// 2^63 − 1 is computed without overflow; x and y are taken mod p).
    ///
    /// # Panics
    ///
    /// If p is 0 or 2^63 or more: the configuration's check keeps p in [2, 4096].
    pub fn label(&self, x: u64, y: u64, p: u64) -> Result<u64, Undefined> {
        let modulus = match i64::try_from(p) {
            Ok(modulus) if modulus >= 1 => modulus,
            _ => panic!("an expression's modulus must be in [1, 2^63), not {p}"),
        };
        // Both residues are below p, which fits in i64.
        let pair = Pair { x: (x % p) as i64, y: (y % p) as i64, modulus };
        let value = self.evaluate(self.root, pair)?;
        Ok(value.rem_euclid(modulus).unsigned_abs())
    }

    /// The value of the node at `index` (a condition's is 0 or 1): a recursion over the node
    /// list, as deep as the expression is, which the length limit bounds.
    fn evaluate(&self, index: usize, pair: Pair) -> Result<i64, Undefined> {
        match self.nodes[index] {
            Node::X => Ok(pair.x),
            Node::Y => Ok(pair.y),
            Node::Constant(value) => Ok(value),
            Node::Negate(operand) => {
                let operand = residue(self.evaluate(operand, pair)?, pair.modulus);
                Ok(subtract_mod(0, operand, pair.modulus))
            }
            Node::Arithmetic { operator, left, right, column } => {
                let left = self.evaluate(left, pair)?;
                let right = self.evaluate(right, pair)?;
                apply(operator, left, right, pair.modulus).ok_or(Undefined { column })
            }
            Node::Compare { comparison, left, right } => {
                let left = self.evaluate(left, pair)?;
                let right = self.evaluate(right, pair)?;
                Ok(i64::from(comparison.holds(left, right)))
            }
            Node::And(left, right) => {
                Ok(i64::from(self.evaluate(left, pair)? != 0 && self.evaluate(right, pair)? != 0))
            }
            Node::Or(left, right) => Ok(i64::from(self.evaluate(left, pair)? != 0 || self.evaluate(right, pair)? != 0)),
            Node::Not(operand) => Ok(i64::from(self.evaluate(operand, pair)? == 0)),
            Node::Choose { condition, chosen, otherwise } => {
                if self.evaluate(condition, pair)? != 0 {
                    self.evaluate(chosen, pair)
                } else {
                    self.evaluate(otherwise, pair)
                }
            }
        }
    }
}

/// The inputs of one evaluation, passed down the recursion by value (three words).
#[derive(Clone, Copy, Debug)]
struct Pair {
    x: i64,
    y: i64,
    modulus: i64,
}

/// One step of the compiled expression; operands are indices of earlier nodes.
#[derive(Clone, Copy, Debug)]
enum Node {
    X,
    Y,
    /// A constant that an operator needs as an operand, already folded.
    Constant(i64),
    /// Unary minus of a run-time value: a residue.
    Negate(usize),
    /// A binary operator on values; `column` is where it is written, for [`Undefined`].
    Arithmetic {
        operator: Operator,
        left: usize,
        right: usize,
        column: usize,
    },
    Compare {
        comparison: Comparison,
        left: usize,
        right: usize,
    },
    And(usize, usize),
    Or(usize, usize),
    Not(usize),
    /// `chosen if condition else otherwise`.
    Choose {
        condition: usize,
        chosen: usize,
        otherwise: usize,
    },
}

/// The binary arithmetic operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    Add,
    Subtract,
    Multiply,
    Divide,
    FloorDivide,
    Remainder,
    Power,
}

impl Operator {
    /// How the operator is written, for error messages.
    fn text(self) -> &'static str {
        match self {
            Operator::Add => "+",
            Operator::Subtract => "-",
            Operator::Multiply => "*",
            Operator::Divide => "/",
            Operator::FloorDivide => "//",
            Operator::Remainder => "%",
            Operator::Power => "**",
        }
    }
}

/// The comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Comparison {
    Equal,
    NotEqual,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
}

impl Comparison {
    /// Whether `left` compares to `right` this way, as integers.
    fn holds(self, left: i64, right: i64) -> bool {
        match self {
            Comparison::Equal => left == right,
            Comparison::NotEqual => left != right,
            Comparison::Less => left < right,
            Comparison::LessEqual => left <= right,
            Comparison::Greater => left > right,
            Comparison::GreaterEqual => left >= right,
        }
    }

    /// How the comparison is written, for error messages.
    fn text(self) -> &'static str {
        match self {
            Comparison::Equal => "==",
            Comparison::NotEqual => "!=",
            Comparison::Less => "<",
            Comparison::LessEqual => "<=",
            Comparison::Greater => ">",
            Comparison::GreaterEqual => ">=",
        }
    }
}

/// A binary operator's run-time value on two values mod `modulus`, or `None` where it has none.
fn apply(operator: Operator, left: i64, right: i64, modulus: i64) -> Option<i64> {
    match operator {
        Operator::Add => Some(add_mod(residue(left, modulus), residue(right, modulus), modulus)),
        Operator::Subtract => Some(subtract_mod(residue(left, modulus), residue(right, modulus), modulus)),
        Operator::Multiply => Some(multiply_mod(residue(left, modulus), residue(right, modulus), modulus)),
        Operator::Divide | Operator::FloorDivide => {
            let inverse = inverse_mod(residue(right, modulus), modulus)?;
            Some(multiply_mod(residue(left, modulus), inverse, modulus))
        }
        Operator::Remainder => python_remainder(left, right),
        Operator::Power => power_mod(residue(left, modulus), right, modulus),
    }
}

/// `value` mod `modulus` in [0, modulus); residues, the common case, pass without a division.
fn residue(value: i64, modulus: i64) -> i64 {
    if (0..modulus).contains(&value) {
        value
    } else {
        value.rem_euclid(modulus)
    }
}

/// (a + b) mod m for residues a, b, without overflow for any m up to 2^63 − 1.
fn add_mod(a: i64, b: i64, modulus: i64) -> i64 {
    subtract_mod(a, modulus - b, modulus)
}

/// (a − b) mod m for a in [0, m) and b in [0, m].
fn subtract_mod(a: i64, b: i64, modulus: i64) -> i64 {
    let difference = a - b;
    if difference < 0 {
        difference + modulus
    } else {
        difference
    }
}

/// (a · b) mod m for residues a, b: in 64 bits when the product fits (always for m ≤ 2^31),
/// else in 128.
fn multiply_mod(a: i64, b: i64, modulus: i64) -> i64 {
    match a.checked_mul(b) {
        Some(product) => product % modulus,
        // The remainder is below the modulus, which fits in i64.
        None => (i128::from(a) * i128::from(b) % i128::from(modulus)) as i64,
    }
}

/// The inverse of the residue `a` mod m by the extended Euclidean algorithm (which, unlike
/// Fermat's little theorem, is right for a composite m), or `None` when gcd(a, m) > 1.
fn inverse_mod(a: i64, modulus: i64) -> Option<i64> {
    let (mut remainder, mut next_remainder) = (modulus, a);
    let (mut coefficient, mut next_coefficient) = (0_i64, 1_i64);
    while next_remainder != 0 {
        let quotient = remainder / next_remainder;
        (remainder, next_remainder) = (next_remainder, remainder - quotient * next_remainder);
        // The coefficients stay within ±m, so this does not overflow.
        (coefficient, next_coefficient) = (next_coefficient, coefficient - quotient * next_coefficient);
    }
    (remainder == 1).then(|| coefficient.rem_euclid(modulus))
}

/// base^exponent mod m by square-and-multiply (so a 64-bit exponent costs 64 steps); a
/// negative exponent raises the inverse, and has no value when there is none.
fn power_mod(base: i64, exponent: i64, modulus: i64) -> Option<i64> {
    let mut square = if exponent < 0 { inverse_mod(base, modulus)? } else { base };
    let mut remaining = exponent.unsigned_abs();
    let mut power = 1 % modulus;
    while remaining > 0 {
        if remaining & 1 == 1 {
            power = multiply_mod(power, square, modulus);
        }
        square = multiply_mod(square, square, modulus);
        remaining >>= 1;
    }
    Some(power)
}

/// Python's `a % b`: the remainder with the divisor's sign; `None` for a zero divisor.
fn python_remainder(dividend: i64, divisor: i64) -> Option<i64> {
    if divisor == 0 {
        return None;
    }
    // wrapping_rem only wraps for i64::MIN % -1, whose remainder is 0 anyway.
    let remainder = dividend.wrapping_rem(divisor);
    if remainder != 0 && (remainder < 0) != (divisor < 0) {
        Some(remainder + divisor)
    } else {
        Some(remainder)
    }
}

/// Python's `a // b` for b ≠ 0 (rounding towards −∞), or `None` when it overflows i64.
fn floor_divide(dividend: i64, divisor: i64) -> Option<i64> {
    let quotient = dividend.checked_div(divisor)?;
    let remainder = dividend.wrapping_rem(divisor);
    if remainder != 0 && (remainder < 0) != (divisor < 0) {
        Some(quotient - 1)
    } else {
        Some(quotient)
    }
}

/// base^exponent exactly for exponent ≥ 0, or `None` when it overflows i64; bases 0 and ±1
/// are answered directly so that any exponent is fine for them.
fn constant_power(base: i64, exponent: i64) -> Option<i64> {
    match base {
        0 => Some(i64::from(exponent == 0)),
        1 => Some(1),
        -1 => Some(if exponent % 2 == 0 { 1 } else { -1 }),
        _ => u32::try_from(exponent).ok().and_then(|exponent| base.checked_pow(exponent)),
    }
}

#[cfg(test)]
mod tests;
