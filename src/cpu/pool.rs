//! Buffers kept from one pass to the next.
//!
//! A pass needs the same buffers every epoch: the blocks' activations and each chunk's
//! partial gradients. Allocated afresh, they come from the operating system as zero pages,
//! and faulting those in (with the TLB shootdowns that freeing them causes) cost about a
//! tenth of the pass. Kept here, they are reused as they are.

use crate::kernels::Real;
use std::sync::Mutex;

/// The float types with a pool of their own.
pub trait Pooled: Real + 'static {
    fn pool() -> &'static Mutex<Vec<Vec<Vec<Self>>>>;
}

static POOL_F32: Mutex<Vec<Vec<Vec<f32>>>> = Mutex::new(Vec::new());
static POOL_F64: Mutex<Vec<Vec<Vec<f64>>>> = Mutex::new(Vec::new());

impl Pooled for f32 {
    fn pool() -> &'static Mutex<Vec<Vec<Vec<f32>>>> {
        &POOL_F32
    }
}

impl Pooled for f64 {
    fn pool() -> &'static Mutex<Vec<Vec<Vec<f64>>>> {
        &POOL_F64
    }
}

/// A set of zeroed buffers of the given lengths, reused from the pool when one of the same
/// lengths was given back.
pub fn take<T: Pooled>(lengths: &[usize]) -> Vec<Vec<T>> {
    let reused = {
        let mut pool = T::pool().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let found = pool
            .iter()
            .rposition(|set| set.len() == lengths.len() && set.iter().zip(lengths).all(|(b, &len)| b.len() == len));
        found.map(|i| pool.swap_remove(i))
    };
    match reused {
        Some(mut set) => {
            set.iter_mut().for_each(|b| b.fill(T::zero()));
            set
        }
        None => lengths.iter().map(|&len| vec![T::zero(); len]).collect(),
    }
}

/// Return sets for later passes. The pool keeps at most `keep` sets in all: enough for the
/// largest pass of the current stack, so a stack that shrinks (retired runs) frees memory.
pub fn give_back<T: Pooled>(sets: impl IntoIterator<Item = Vec<Vec<T>>>, keep: usize) {
    let mut pool = T::pool().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    pool.extend(sets);
    if pool.len() > keep {
        let excess = pool.len() - keep;
        pool.drain(..excess);
    }
}
