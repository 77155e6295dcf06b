//! Text to nodes: the tokenizer, the recursive-descent parser (one method per grammar rule),
//! type checks, and the folding of constant sub-expressions, every error with its column.

use super::*;

/// `text` compiled: the node list and its root's index, or where and why it is not an
/// expression.
pub(super) fn compile(text: &str) -> Result<(Vec<Node>, usize), ParseError> {
    let chars: Vec<char> = text.chars().take(MAX_LENGTH + 1).collect();
    if chars.len() > MAX_LENGTH {
        let message = format!("the expression is longer than {MAX_LENGTH} characters");
        return Err(ParseError::at(MAX_LENGTH + 1, message));
    }
    let body = &chars[..body_length(&chars)];
    let parser = Parser { tokens: tokenize(body)?, position: 0, nodes: Vec::new(), depth: 0 };
    parser.parse_all()
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
