//! The cyclic group a task's answer lives in, so that one Fourier basis describes it.
//!
//! add and sub: the pair (a, b) ∈ Z_p² has the answer s = a ± b in Z_p, and residue v is
//! group element v. mul and div: Z_p^* is cyclic of order p − 1; with a primitive root g every
//! non-zero v = g^i, so a·b = g^(i+j) and a·b⁻¹ = g^(i−j): residue v is group element
//! log_g v in Z_{p−1}, and the pairs with a zero operand have no element (they are left out).

use crate::tasks::mod_pow;
use crate::tasks::{is_prime, Op};
use anyhow::{bail, Result};

/// The reindexing of one task's residues and pairs onto Z_n.
#[derive(Clone, Debug, PartialEq)]
pub struct CyclicIndex {
    /// The group's order: p (add, sub), p − 1 (mul, div).
    pub n: usize,
    /// Per residue v in [0, p): its element of Z_n (None for 0 under mul and div).
    element: Vec<Option<usize>>,
    /// Per element s of Z_n: its residue, which is also the class of an answer s.
    residue: Vec<usize>,
    /// The answer is i − j rather than i + j (sub, div).
    subtract: bool,
}

impl CyclicIndex {
    /// The index of `op` mod prime `p`; other operations have no such structure.
    pub fn new(op: &Op, p: usize) -> Result<CyclicIndex> {
        let (subtract, logarithm) = match op {
            Op::Add => (false, false),
            Op::Sub => (true, false),
            Op::Mul => (false, true),
            Op::Div => (true, true),
            _ => bail!("the progress measures need add, sub, mul or div"),
        };
        if !is_prime(p) {
            bail!("the progress measures need a prime p, {p} is not prime");
        }
        let (n, residue): (usize, Vec<usize>) = if logarithm {
            let g = primitive_root(p);
            (p - 1, (0..p - 1).map(|i| mod_pow(g as u64, i as u64, p as u64) as usize).collect())
        } else {
            (p, (0..p).collect())
        };
        let mut element = vec![None; p];
        for (s, &v) in residue.iter().enumerate() {
            element[v] = Some(s);
        }
        Ok(CyclicIndex { n, element, residue, subtract })
    }

    /// The element of residue `v` (a token's row of the embedding in group order).
    pub fn element(&self, v: usize) -> Option<usize> {
        self.element[v]
    }

    /// The residue of element `s`: the token whose embedding row comes s-th, and the class
    /// of the answer s.
    pub fn residue(&self, s: usize) -> usize {
        self.residue[s]
    }

    /// The answer of the pair (a, b) as an element of Z_n; None for a pair left out.
    pub fn answer(&self, a: usize, b: usize) -> Option<usize> {
        let (i, j) = (self.element[a]?, self.element[b]?);
        Some(if self.subtract { (i + self.n - j) % self.n } else { (i + j) % self.n })
    }
}

/// The smallest g whose powers reach every non-zero residue mod prime p: g^((p−1)/q) ≠ 1 for
/// every prime q dividing p − 1.
fn primitive_root(p: usize) -> usize {
    let order = p - 1;
    let factors: Vec<usize> = (2..=order).filter(|&q| order.is_multiple_of(q) && is_prime(q)).collect();
    (1..p).find(|&g| factors.iter().all(|&q| mod_pow(g as u64, (order / q) as u64, p as u64) != 1)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitive_roots_generate_every_nonzero_residue() {
        for p in [2, 3, 5, 7, 11, 13, 97, 113] {
            let g = primitive_root(p);
            let mut seen: Vec<usize> = (0..p - 1).map(|i| mod_pow(g as u64, i as u64, p as u64) as usize).collect();
            seen.sort_unstable();
            assert_eq!(seen, (1..p).collect::<Vec<_>>(), "p = {p}, g = {g}");
        }
        assert_eq!(primitive_root(7), 3);
        assert_eq!(primitive_root(113), 3);
    }

    #[test]
    fn answers_are_the_operation_in_the_group() {
        let p = 13;
        for (op, label) in [
            (Op::Add, (|a, b| (a + b) % 13) as fn(usize, usize) -> usize),
            (Op::Sub, |a, b| (a + 13 - b) % 13),
            (Op::Mul, |a, b| a * b % 13),
        ] {
            let index = CyclicIndex::new(&op, p).unwrap();
            for a in 0..p {
                for b in 0..p {
                    match index.answer(a, b) {
                        Some(s) => assert_eq!(index.residue(s), label(a, b), "{op:?} {a} {b}"),
                        None => assert!(op == Op::Mul && (a == 0 || b == 0)),
                    }
                }
            }
        }
        let div = CyclicIndex::new(&Op::Div, p).unwrap();
        for a in 1..p {
            for b in 1..p {
                let s = div.answer(a, b).unwrap();
                assert_eq!(div.residue(s) * b % p, a, "{a} / {b}");
            }
        }
    }

    #[test]
    fn other_tasks_and_composite_moduli_are_refused() {
        assert!(CyclicIndex::new(&Op::Gcd, 13).is_err());
        assert!(CyclicIndex::new(&Op::Add, 15).unwrap_err().to_string().contains("prime"));
    }
}
