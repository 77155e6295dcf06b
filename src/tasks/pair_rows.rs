//! The rows of a task given pair by pair: an expression's defined pairs mod p, or a table
//! file's rows. Each is built once per process and shared by every run that trains it.

use super::expression::{Expression, ParseError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Rows of operand pairs and their labels.
#[derive(Debug, PartialEq, Eq)]
pub struct PairRows {
    /// `[N]`: operands (a, b).
    pub operands: Vec<[u32; 2]>,
    /// `[N]`: labels in [0, classes).
    pub labels: Vec<u32>,
    /// `[N]`: the train rows, when the table fixes the split; otherwise each run draws it.
    pub train: Option<Vec<bool>>,
    /// How many of `train` are true: a stack's key and plan ask for every run.
    fixed_train_count: Option<usize>,
}

impl PairRows {
    pub fn new(operands: Vec<[u32; 2]>, labels: Vec<u32>, train: Option<Vec<bool>>) -> PairRows {
        let fixed_train_count = train.as_ref().map(|train| train.iter().filter(|&&t| t).count());
        PairRows { operands, labels, train, fixed_train_count }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Train rows of a fixed split (`None` when the run's seed draws the split).
    pub fn fixed_train_count(&self) -> Option<usize> {
        self.fixed_train_count
    }
}

/// The key of an expression's rows: its text, p, and whether operands 0 are left out.
type RowsKey = (String, usize, bool);

/// Parsed expressions by text, and their rows per (p, skip_zero): a sweep's settings and runs
/// all ask for the same few, so each is parsed and evaluated once.
struct Memo {
    expressions: HashMap<String, Arc<Expression>>,
    rows: HashMap<RowsKey, Arc<PairRows>>,
}

fn memo() -> &'static Mutex<Memo> {
    static MEMO: OnceLock<Mutex<Memo>> = OnceLock::new();
    MEMO.get_or_init(|| Mutex::new(Memo { expressions: HashMap::new(), rows: HashMap::new() }))
}

/// `text` parsed, or the expression parsed before from the same text.
pub fn parse_shared(text: &str) -> Result<Arc<Expression>, ParseError> {
    let mut memo = memo().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(expression) = memo.expressions.get(text) {
        return Ok(expression.clone());
    }
    let expression = Arc::new(Expression::parse(text)?);
    memo.expressions.insert(text.to_string(), expression.clone());
    Ok(expression)
}

/// Every pair (a, b) mod p where `expression` has a value, in row-major order (from 1 with
/// `skip_zero`), as the named operations list theirs. An expression defined nowhere is an
/// error naming the column of the operation that fails.
pub fn expression_rows(expression: &Expression, p: usize, skip_zero: bool) -> Result<Arc<PairRows>, String> {
    let key = (expression.source().to_string(), p, skip_zero);
    if let Some(rows) = memo().lock().unwrap_or_else(|poisoned| poisoned.into_inner()).rows.get(&key) {
        return Ok(rows.clone());
    }
    // Evaluated outside the lock: p = 4096 is 16.7 million pairs.
    let first = u32::from(skip_zero);
    let (mut operands, mut labels) = (Vec::new(), Vec::new());
    let mut first_failure = None;
    for a in first..p as u32 {
        for b in first..p as u32 {
            match expression.label(u64::from(a), u64::from(b), p as u64) {
                Ok(label) => {
                    operands.push([a, b]);
                    labels.push(label as u32);
                }
                Err(undefined) => {
                    first_failure.get_or_insert(undefined.column);
                }
            }
        }
    }
    if labels.is_empty() {
        return Err(format!(
            "\"{}\" has no value at any pair (x, y) mod {p}: the operation at column {} is undefined everywhere",
            expression.source(),
            first_failure.unwrap_or(1)
        ));
    }
    let rows = Arc::new(PairRows::new(operands, labels, None));
    memo().lock().unwrap_or_else(|poisoned| poisoned.into_inner()).rows.insert(key, rows.clone());
    Ok(rows)
}
