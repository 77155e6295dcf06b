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
        let chars: Vec<char> = text.chars().take(MAX_LENGTH + 1).collect();
        if chars.len() > MAX_LENGTH {
            let message = format!("the expression is longer than {MAX_LENGTH} characters");
            return Err(ParseError::at(MAX_LENGTH + 1, message));
        }
        let body = &chars[..body_length(&chars)];
        let parser = Parser { tokens: tokenize(body)?, position: 0, nodes: Vec::new(), depth: 0 };
        let (nodes, root) = parser.parse_all()?;
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

/// The value of `left operator right` for two constants, folded at parse time with Python's
/// integer arithmetic; `Ok(None)` for `/`, which is modular division and depends on p.
fn fold(operator: Operator, left: i64, right: i64, column: usize) -> Result<Option<i64>, ParseError> {
    let folded = match operator {
        Operator::Divide => return Ok(None),
        Operator::Add => left.checked_add(right),
        Operator::Subtract => left.checked_sub(right),
        Operator::Multiply => left.checked_mul(right),
        Operator::FloorDivide | Operator::Remainder if right == 0 => {
            let message = format!("`{left} {} 0`: division by zero among constants", operator.text());
            return Err(ParseError::at(column, message));
        }
        Operator::FloorDivide => floor_divide(left, right),
        Operator::Remainder => python_remainder(left, right),
        Operator::Power if right < 0 => {
            let message = format!("`{left} ** {right}`: a negative exponent among constants is not an integer");
            return Err(ParseError::at(column, message));
        }
        Operator::Power => constant_power(left, right),
    };
    folded.map(Some).ok_or_else(|| too_large(column))
}

/// The error for a constant outside the 64-bit signed range.
fn too_large(column: usize) -> ParseError {
    ParseError::at(column, "constant too large: constants must fit in 64-bit signed integers")
}

/// The length of the text without openai/grok's trailing `_mod_<digits>` (and the whitespace
/// after it), or the whole length when there is none.
fn body_length(chars: &[char]) -> usize {
    let end = chars.iter().rposition(|c| !c.is_whitespace()).map_or(0, |last| last + 1);
    let digits_start = chars[..end].iter().rposition(|c| !c.is_ascii_digit()).map_or(0, |last| last + 1);
    if digits_start < end && chars[..digits_start].ends_with(&GROK_MODULUS_PREFIX) {
        digits_start - GROK_MODULUS_PREFIX.len()
    } else {
        chars.len()
    }
}

/// A token of the text and its 1-based column.
#[derive(Clone, Copy, Debug)]
struct Token {
    symbol: Symbol,
    column: usize,
}

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Symbol {
    X,
    Y,
    Integer(i64),
    Open,
    Close,
    Plus,
    Minus,
    Star,
    Slash,
    SlashSlash,
    Percent,
    StarStar,
    Compare(Comparison),
    If,
    Else,
    And,
    Or,
    Not,
    /// `._value`.
    Value,
    /// After the last token, so that the parser always has one to look at.
    End,
}

/// How a token is written, for error messages.
fn describe(symbol: Symbol) -> String {
    let text = match symbol {
        Symbol::Integer(value) => return format!("`{value}`"),
        Symbol::End => return "the end of the expression".to_string(),
        Symbol::X => "x",
        Symbol::Y => "y",
        Symbol::Open => "(",
        Symbol::Close => ")",
        Symbol::Plus => "+",
        Symbol::Minus => "-",
        Symbol::Star => "*",
        Symbol::Slash => "/",
        Symbol::SlashSlash => "//",
        Symbol::Percent => "%",
        Symbol::StarStar => "**",
        Symbol::Compare(comparison) => comparison.text(),
        Symbol::If => "if",
        Symbol::Else => "else",
        Symbol::And => "and",
        Symbol::Or => "or",
        Symbol::Not => "not",
        Symbol::Value => "._value",
    };
    format!("`{text}`")
}

/// The tokens of `chars`, ending with [`Symbol::End`], or the first character that is not
/// part of the grammar.
fn tokenize(chars: &[char]) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut index = 0;
    while let Some(&first) = chars.get(index) {
        if first.is_whitespace() {
            index += 1;
            continue;
        }
        let (symbol, length) = if first.is_ascii_digit() {
            integer_token(chars, index)?
        } else if is_name_character(first) {
            name_token(chars, index)?
        } else if first == '.' {
            attribute_token(chars, index)?
        } else {
            operator_token(chars, index)?
        };
        tokens.push(Token { symbol, column: index + 1 });
        index += length;
    }
    tokens.push(Token { symbol: Symbol::End, column: chars.len() + 1 });
    Ok(tokens)
}

/// Whether `c` continues a name (and, not being a digit, starts one), as in Python's ASCII
/// identifiers.
fn is_name_character(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The characters from `start` on while `keep` holds.
fn run_from(chars: &[char], start: usize, keep: fn(char) -> bool) -> String {
    chars[start..].iter().take_while(|&&c| keep(c)).collect()
}

/// The integer literal at `start` and its length.
fn integer_token(chars: &[char], start: usize) -> Result<(Symbol, usize), ParseError> {
    let digits = run_from(chars, start, |c| c.is_ascii_digit());
    // A run of digits only fails to parse when it is too large.
    let value = digits.parse::<i64>().map_err(|_| too_large(start + 1))?;
    Ok((Symbol::Integer(value), digits.len()))
}

/// The variable or keyword at `start` and its length; any other name is an error.
fn name_token(chars: &[char], start: usize) -> Result<(Symbol, usize), ParseError> {
    let name = run_from(chars, start, is_name_character);
    let symbol = match name.as_str() {
        "x" => Symbol::X,
        "y" => Symbol::Y,
        "if" => Symbol::If,
        "else" => Symbol::Else,
        "and" => Symbol::And,
        "or" => Symbol::Or,
        "not" => Symbol::Not,
        _ => {
            let message = format!(
                "unknown name `{name}`: an expression uses x, y, integer constants, \
                 + - * / // % **, comparisons, and/or/not, `A if C else B` and `._value`"
            );
            return Err(ParseError::at(start + 1, message));
        }
    };
    Ok((symbol, name.len()))
}

/// `._value` at `start` (the only attribute, openai/grok's) and its length.
fn attribute_token(chars: &[char], start: usize) -> Result<(Symbol, usize), ParseError> {
    let name = run_from(chars, start + 1, is_name_character);
    if name == "_value" {
        Ok((Symbol::Value, 1 + name.len()))
    } else {
        let message = format!("`.{name}` is not understood: the only attribute is `._value`");
        Err(ParseError::at(start + 1, message))
    }
}

/// The operator or parenthesis at `start` and its length.
fn operator_token(chars: &[char], start: usize) -> Result<(Symbol, usize), ParseError> {
    let first = chars[start];
    let doubled = |second: char, double: Symbol, single: Symbol| {
        if chars.get(start + 1) == Some(&second) {
            (double, 2)
        } else {
            (single, 1)
        }
    };
    let error = |message: String| Err(ParseError::at(start + 1, message));
    Ok(match first {
        '(' => (Symbol::Open, 1),
        ')' => (Symbol::Close, 1),
        '+' => (Symbol::Plus, 1),
        '-' => (Symbol::Minus, 1),
        '%' => (Symbol::Percent, 1),
        '*' => doubled('*', Symbol::StarStar, Symbol::Star),
        '/' => doubled('/', Symbol::SlashSlash, Symbol::Slash),
        '<' => doubled('=', Symbol::Compare(Comparison::LessEqual), Symbol::Compare(Comparison::Less)),
        '>' => doubled('=', Symbol::Compare(Comparison::GreaterEqual), Symbol::Compare(Comparison::Greater)),
        '=' if chars.get(start + 1) == Some(&'=') => (Symbol::Compare(Comparison::Equal), 2),
        '!' if chars.get(start + 1) == Some(&'=') => (Symbol::Compare(Comparison::NotEqual), 2),
        '=' => return error("`=` is not an operator: compare with `==`".to_string()),
        '!' => return error("`!` is not an operator: use `!=` or `not`".to_string()),
        other => return error(format!("unexpected character `{other}`")),
    })
}

/// A parsed sub-expression: a constant (folded, entering the node list only when an operator
/// needs it) or the index of the node that computes it at run time.
#[derive(Clone, Copy, Debug)]
enum Parsed {
    Constant(i64),
    Value(usize),
    Condition(usize),
}

/// A recursive-descent parser over the tokens, one method per grammar rule, building the
/// node list as it goes.
struct Parser {
    tokens: Vec<Token>,
    position: usize,
    nodes: Vec<Node>,
    /// How many levels of nesting enclose the current position.
    depth: usize,
}

impl Parser {
    /// The whole text as a value: the compiled nodes and the root's index.
    fn parse_all(mut self) -> Result<(Vec<Node>, usize), ParseError> {
        let first = self.peek();
        if first.symbol == Symbol::End {
            return Err(ParseError::at(1, "the expression is empty"));
        }
        let parsed = self.expression()?;
        let next = self.peek();
        if next.symbol != Symbol::End {
            return Err(unexpected_after_value(next));
        }
        if let Parsed::Condition(_) = parsed {
            let message = "the expression is a condition, not a value: a label must be a number";
            return Err(ParseError::at(first.column, message));
        }
        let root = self.node_of(parsed);
        Ok((self.nodes, root))
    }

    /// The current token (the last one, `End`, once all are consumed).
    fn peek(&self) -> Token {
        self.tokens[self.position.min(self.tokens.len() - 1)]
    }

    /// The current token, moving past it.
    fn advance(&mut self) -> Token {
        let token = self.peek();
        self.position += 1;
        token
    }

    /// Appends a node, returning its index.
    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The index of the node computing `parsed`, adding a constant's node when it has none.
    fn node_of(&mut self, parsed: Parsed) -> usize {
        match parsed {
            Parsed::Constant(value) => self.push(Node::Constant(value)),
            Parsed::Value(index) | Parsed::Condition(index) => index,
        }
    }

    /// Runs `parse` one nesting level deeper, refusing to go past [`MAX_DEPTH`]: the level is
    /// opened by the token at `column`.
    fn nested<T>(
        &mut self,
        column: usize,
        parse: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        if self.depth >= MAX_DEPTH {
            let message = format!("the expression nests more than {MAX_DEPTH} levels deep");
            return Err(ParseError::at(column, message));
        }
        self.depth += 1;
        let parsed = parse(self);
        self.depth -= 1;
        parsed
    }

    /// `expr := or_expr [ 'if' or_expr 'else' expr ]`.
    fn expression(&mut self) -> Result<Parsed, ParseError> {
        let chosen = self.or_expression()?;
        if self.peek().symbol != Symbol::If {
            return Ok(chosen);
        }
        let if_column = self.advance().column;
        let condition = self.or_expression()?;
        let else_token = self.advance();
        if else_token.symbol != Symbol::Else {
            let message = format!("`if` without `else`: expected `else`, found {}", describe(else_token.symbol));
            return Err(ParseError::at(if_column, message));
        }
        let otherwise = self.nested(else_token.column, Self::expression)?;
        self.choose(condition, chosen, otherwise, if_column)
    }

    /// The node of `chosen if condition else otherwise`, whose branches must be of one kind.
    fn choose(
        &mut self,
        condition: Parsed,
        chosen: Parsed,
        otherwise: Parsed,
        column: usize,
    ) -> Result<Parsed, ParseError> {
        let is_condition = |parsed| matches!(parsed, Parsed::Condition(_));
        if is_condition(chosen) != is_condition(otherwise) {
            let message = "the branches of `if` must both be values or both be conditions";
            return Err(ParseError::at(column, message));
        }
        let node = Node::Choose {
            condition: self.node_of(condition),
            chosen: self.node_of(chosen),
            otherwise: self.node_of(otherwise),
        };
        let index = self.push(node);
        Ok(if is_condition(chosen) { Parsed::Condition(index) } else { Parsed::Value(index) })
    }

    /// `or_expr := and_expr ('or' and_expr)*`.
    fn or_expression(&mut self) -> Result<Parsed, ParseError> {
        self.logical(Symbol::Or, Self::and_expression, Node::Or)
    }

    /// `and_expr := not_expr ('and' not_expr)*`.
    fn and_expression(&mut self) -> Result<Parsed, ParseError> {
        self.logical(Symbol::And, Self::not_expression, Node::And)
    }

    /// A left-associative chain of `and` or `or`, whose operands may be values or conditions.
    fn logical(
        &mut self,
        keyword: Symbol,
        operand: fn(&mut Self) -> Result<Parsed, ParseError>,
        node: fn(usize, usize) -> Node,
    ) -> Result<Parsed, ParseError> {
        let mut left = operand(self)?;
        while self.peek().symbol == keyword {
            self.advance();
            let right = operand(self)?;
            let operands = node(self.node_of(left), self.node_of(right));
            left = Parsed::Condition(self.push(operands));
        }
        Ok(left)
    }

    /// `not_expr := 'not' not_expr | comparison`.
    fn not_expression(&mut self) -> Result<Parsed, ParseError> {
        if self.peek().symbol != Symbol::Not {
            return self.comparison();
        }
        let column = self.advance().column;
        let operand = self.nested(column, Self::not_expression)?;
        let operand = self.node_of(operand);
        Ok(Parsed::Condition(self.push(Node::Not(operand))))
    }

    /// `comparison := arith (op arith)*`, a chain `a < b < c` meaning `a < b and b < c` with b
    /// computed by one node.
    fn comparison(&mut self) -> Result<Parsed, ParseError> {
        let first = self.arithmetic()?;
        let mut left = first;
        let mut chain = None;
        while let Symbol::Compare(comparison) = self.peek().symbol {
            let column = self.advance().column;
            let right = self.arithmetic()?;
            let left_node = self.value_node(left, comparison.text(), column)?;
            let right_node = self.value_node(right, comparison.text(), column)?;
            let test = self.push(Node::Compare { comparison, left: left_node, right: right_node });
            chain = Some(match chain {
                None => test,
                Some(previous) => self.push(Node::And(previous, test)),
            });
            left = Parsed::Value(right_node);
        }
        Ok(chain.map_or(first, Parsed::Condition))
    }

    /// `arith := term (('+'|'-') term)*`.
    fn arithmetic(&mut self) -> Result<Parsed, ParseError> {
        let operator_of = |symbol| match symbol {
            Symbol::Plus => Some(Operator::Add),
            Symbol::Minus => Some(Operator::Subtract),
            _ => None,
        };
        self.binary_chain(operator_of, Self::term)
    }

    /// `term := unary (('*'|'/'|'//'|'%') unary)*`.
    fn term(&mut self) -> Result<Parsed, ParseError> {
        let operator_of = |symbol| match symbol {
            Symbol::Star => Some(Operator::Multiply),
            Symbol::Slash => Some(Operator::Divide),
            Symbol::SlashSlash => Some(Operator::FloorDivide),
            Symbol::Percent => Some(Operator::Remainder),
            _ => None,
        };
        self.binary_chain(operator_of, Self::unary)
    }

    /// A left-associative chain of the arithmetic operators that `operator_of` recognises.
    fn binary_chain(
        &mut self,
        operator_of: fn(Symbol) -> Option<Operator>,
        operand: fn(&mut Self) -> Result<Parsed, ParseError>,
    ) -> Result<Parsed, ParseError> {
        let mut left = operand(self)?;
        while let Some(operator) = operator_of(self.peek().symbol) {
            let column = self.advance().column;
            let right = operand(self)?;
            left = self.binary(operator, left, right, column)?;
        }
        Ok(left)
    }

    /// `unary := ('-'|'+') unary | power`.
    fn unary(&mut self) -> Result<Parsed, ParseError> {
        let token = self.peek();
        if !matches!(token.symbol, Symbol::Minus | Symbol::Plus) {
            return self.power();
        }
        self.advance();
        let operand = self.nested(token.column, Self::unary)?;
        let operand = require_value(operand, describe(token.symbol), token.column)?;
        if token.symbol == Symbol::Plus {
            return Ok(operand);
        }
        match operand {
            Parsed::Constant(value) => value.checked_neg().map(Parsed::Constant).ok_or_else(|| too_large(token.column)),
            Parsed::Value(index) | Parsed::Condition(index) => Ok(Parsed::Value(self.push(Node::Negate(index)))),
        }
    }

    /// `power := postfix [ '**' unary ]`.
    fn power(&mut self) -> Result<Parsed, ParseError> {
        let base = self.postfix()?;
        if self.peek().symbol != Symbol::StarStar {
            return Ok(base);
        }
        let column = self.advance().column;
        let exponent = self.nested(column, Self::unary)?;
        self.binary(Operator::Power, base, exponent, column)
    }

    /// `postfix := atom ('._value')*`: `._value` is the value itself.
    fn postfix(&mut self) -> Result<Parsed, ParseError> {
        let atom = self.atom()?;
        while self.peek().symbol == Symbol::Value {
            self.advance();
        }
        Ok(atom)
    }

    /// `atom := 'x' | 'y' | INTEGER | '(' expr ')'`.
    fn atom(&mut self) -> Result<Parsed, ParseError> {
        let token = self.advance();
        match token.symbol {
            Symbol::X => Ok(Parsed::Value(self.push(Node::X))),
            Symbol::Y => Ok(Parsed::Value(self.push(Node::Y))),
            Symbol::Integer(value) => Ok(Parsed::Constant(value)),
            Symbol::Open => self.nested(token.column, |parser| parser.parenthesized(token.column)),
            other => {
                let message = format!("expected x, y, a number or `(`, found {}", describe(other));
                Err(ParseError::at(token.column, message))
            }
        }
    }

    /// The expression after the `(` at `open_column`, through its `)`.
    fn parenthesized(&mut self, open_column: usize) -> Result<Parsed, ParseError> {
        let inner = self.expression()?;
        let next = self.advance();
        match next.symbol {
            Symbol::Close => Ok(inner),
            Symbol::End => Err(ParseError::at(open_column, "unmatched `(`")),
            _ => Err(unexpected_after_value(next)),
        }
    }

    /// `left operator right` on two values: folded when both are constants, else a node.
    fn binary(&mut self, operator: Operator, left: Parsed, right: Parsed, column: usize) -> Result<Parsed, ParseError> {
        let written = format!("`{}`", operator.text());
        let left = require_value(left, written.clone(), column)?;
        let right = require_value(right, written, column)?;
        if let (Parsed::Constant(left), Parsed::Constant(right)) = (left, right) {
            if let Some(folded) = fold(operator, left, right, column)? {
                return Ok(Parsed::Constant(folded));
            }
        }
        let (left, right) = (self.node_of(left), self.node_of(right));
        Ok(Parsed::Value(self.push(Node::Arithmetic { operator, left, right, column })))
    }

    /// The node of an operand that must be a value, for the comparison written `operator`.
    fn value_node(&mut self, parsed: Parsed, operator: &str, column: usize) -> Result<usize, ParseError> {
        let parsed = require_value(parsed, format!("`{operator}`"), column)?;
        Ok(self.node_of(parsed))
    }
}

/// `parsed` if it is a value; a condition is an error at the operator (`written`, at `column`)
/// that needs a value.
fn require_value(parsed: Parsed, written: String, column: usize) -> Result<Parsed, ParseError> {
    if let Parsed::Condition(_) = parsed {
        let message =
            format!("{written} needs values, but an operand is a condition (a comparison, `and`, `or` or `not`)");
        return Err(ParseError::at(column, message));
    }
    Ok(parsed)
}

/// The error for a token that follows a complete expression where none may.
fn unexpected_after_value(token: Token) -> ParseError {
    let message = match token.symbol {
        Symbol::Close => "unmatched `)`".to_string(),
        Symbol::X | Symbol::Y | Symbol::Integer(_) | Symbol::Open | Symbol::Not => {
            format!("two values with no operator between them: expected an operator before {}", describe(token.symbol))
        }
        Symbol::Else => "`else` without `if`".to_string(),
        other => format!("unexpected {}", describe(other)),
    };
    ParseError::at(token.column, message)
}

#[cfg(test)]
mod tests {
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
            let mut text: Vec<char> =
                if round % 2 == 0 { Vec::new() } else { pick(&mut random, &seeds).chars().collect() };
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
        let defined =
            (0..p).flat_map(|x| (0..p).map(move |y| (x, y))).filter(|&(x, y)| mix.label(x, y, p).is_ok()).count();
        println!("{defined} defined of {} by the mixed operation in {:?}", p * p, start.elapsed());
    }
}
