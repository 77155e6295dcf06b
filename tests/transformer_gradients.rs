//! The stacked transformer's explicit backward pass (src/transformer) against finite
//! differences (f64) over configurations that together cover every option; a run of a stack
//! against the same run alone; the last block's shortcut against the full computation; and
//! candle's own autograd on the same forward pass.

use candle_core::{DType, Device, Tensor, Var};
use grokstack::config::Loss;
use grokstack::kernels::loss;
use grokstack::models::transformer::{
    Dropout, FfnKind, Masks, NormKind, NormPlacement, Position, StepDropout, Transformer, TransformerArch,
};
use grokstack::rng::{Rng, Stream};

const DROPOUT: Dropout = Dropout { attn_weights: 0.2, attn_out: 0.1, ffn_hidden: 0.3, ffn_out: 0.15 };
const ROWS: usize = 3;

/// d = 8, V = C = 5, F = 12; the options under test vary.
#[allow(clippy::too_many_arguments)]
fn arch(
    norm: NormKind,
    placement: NormPlacement,
    position: Position,
    ffn: FfnKind,
    causal: bool,
    heads: usize,
    layers: usize,
    bias: bool,
    seq_len: usize,
    dropout: bool,
) -> TransformerArch {
    TransformerArch {
        layers,
        d_model: 8,
        heads,
        vocab: 5,
        seq_len,
        classes: 5,
        ffn,
        ffn_width: 12,
        norm,
        placement,
        position,
        causal,
        bias,
        dropout: if dropout { DROPOUT } else { Dropout::default() },
    }
}

/// Ten configurations that together cover every norm × placement, every position, every FFN,
/// causal or not, 1 and 4 heads, 1 and 2 layers, biases or not, T = 2, 3, 4, dropout or not.
fn configurations() -> Vec<(&'static str, TransformerArch)> {
    use FfnKind::*;
    use NormKind::{Layer, None as NoNorm, Rms};
    use NormPlacement::*;
    let rope = Position::Rope { base: grokstack::models::transformer::DEFAULT_ROPE_BASE };
    let rope_small = Position::Rope { base: 10.0 }; // turns far enough for every pair to matter
    vec![
        ("rms/pre/rope/swiglu/causal/h4/L2", arch(Rms, Pre, rope_small, SwiGlu, true, 4, 2, false, 3, false)),
        (
            "layer/pre/learned/relu/h1/L1/bias/drop",
            arch(Layer, Pre, Position::Learned, Relu, false, 1, 1, true, 2, true),
        ),
        (
            "none/pre/nopos/gelu/causal/h4/L2/bias/drop",
            arch(NoNorm, Pre, Position::None, Gelu, true, 4, 2, true, 4, true),
        ),
        (
            "rms/post/learned/gelu/causal/h1/L2/bias/drop",
            arch(Rms, Post, Position::Learned, Gelu, true, 1, 2, true, 3, true),
        ),
        ("layer/post/rope/swiglu/h1/L2/bias/drop", arch(Layer, Post, rope_small, SwiGlu, false, 1, 2, true, 4, true)),
        ("none/post/rope/relu/causal/h4/L1", arch(NoNorm, Post, rope, Relu, true, 4, 1, false, 2, false)),
        ("layer/pre/rope/gelu/causal/h4/L2/bias/drop", arch(Layer, Pre, rope_small, Gelu, true, 4, 2, true, 3, true)),
        ("rms/pre/nopos/relu/h1/L2/drop", arch(Rms, Pre, Position::None, Relu, false, 1, 2, false, 4, true)),
        (
            "layer/post/nopos/swiglu/causal/h1/L1",
            arch(Layer, Post, Position::None, SwiGlu, true, 1, 1, false, 3, false),
        ),
        (
            "rms/pre/learned/swiglu/h4/L1/bias/drop",
            arch(Rms, Pre, Position::Learned, SwiGlu, false, 4, 1, true, 2, true),
        ),
    ]
}

/// A stack of runs (seeds given), random tokens and labels, and dropout masks when the
/// architecture has dropout.
struct Setup {
    model: Transformer,
    tokens: Tensor,
    labels: Tensor,
    masks: Option<Masks>,
    loss: Loss,
}

/// candle's CPU matmul hands every GEMM to rayon unless RAYON_NUM_THREADS is 1 (it reads the
/// variable at each matmul); on these tiny products that costs several times the product.
fn single_threaded_matmuls() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::env::set_var("RAYON_NUM_THREADS", "1"));
}

fn setup(arch: &TransformerArch, seeds: &[u64], dtype: DType) -> Setup {
    single_threaded_matmuls();
    let device = Device::Cpu;
    let model = Transformer::init(arch, seeds, dtype, &device).unwrap();
    let mut data_rngs: Vec<Rng> = seeds.iter().map(|&s| Rng::new(s, Stream::Synthetic)).collect();
    let tokens: Vec<u32> = data_rngs
        .iter_mut()
        .flat_map(|rng| (0..ROWS * arch.seq_len).map(|_| rng.below(arch.vocab) as u32).collect::<Vec<_>>())
        .collect();
    let labels: Vec<u32> = data_rngs
        .iter_mut()
        .flat_map(|rng| (0..ROWS).map(|_| rng.below(arch.classes) as u32).collect::<Vec<_>>())
        .collect();
    let r = seeds.len();
    let masks = arch.dropout.any().then(|| {
        let runs: Vec<StepDropout> = seeds.iter().map(|&s| StepDropout::new(s, 0).unwrap()).collect();
        Masks::sample(arch, &runs, ROWS, dtype, &device).unwrap()
    });
    Setup {
        model,
        tokens: Tensor::from_vec(tokens, (r, ROWS, arch.seq_len), &device).unwrap(),
        labels: Tensor::from_vec(labels, (r, ROWS), &device).unwrap(),
        masks,
        loss: Loss::Softmax,
    }
}

impl Setup {
    /// Σ over runs of each run's mean loss: the scalar the backward pass differentiates.
    fn loss(&self) -> f64 {
        let (logits, _) = self.model.forward(&self.tokens, self.masks.as_ref()).unwrap();
        let stats = loss::stats(self.loss, &logits, &self.labels, false).unwrap();
        stats.narrow(1, 0, 1).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
    }

    /// Logits and every gradient of [`Setup::loss`], by the shortcut or the full pass.
    fn logits_and_grads(&self, full: bool) -> (Tensor, Vec<Tensor>) {
        let masks = self.masks.as_ref();
        let (logits, cache) =
            if full { self.model.forward_full(&self.tokens, masks) } else { self.model.forward(&self.tokens, masks) }
                .unwrap();
        let dlogits = loss::grad(self.loss, &logits, &self.labels).unwrap();
        let grads = self.model.backward(&self.tokens, &cache, &dlogits).unwrap();
        (logits, grads)
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

/// Largest |a − b| relative to the largest |a| (or absolute below 1).
fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (values(a), values(b));
    let scale = a.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale
}

/// Central differences (step 1e-6) of the loss at every entry of small tensors and 20 random
/// entries of larger ones, against the backward pass.
fn check_finite_differences(name: &str, arch: &TransformerArch, loss: Loss) {
    let mut s = setup(arch, &[3, 17], DType::F64);
    s.loss = loss;
    let (_, grads) = s.logits_and_grads(false);
    assert_eq!(grads.len(), s.model.params.len());
    let mut pick = Rng::new(99, Stream::Synthetic);
    let h = 1e-6;
    for (index, grad) in grads.iter().enumerate() {
        let param = s.model.params[index].name.clone();
        assert_eq!(grad.dims(), s.model.params[index].value.dims(), "{name}: {param}: gradient shape");
        let analytic = values(grad);
        let original = s.model.params[index].value.clone();
        let base = values(&original);
        let mut entries: Vec<usize> = (0..base.len()).collect();
        if entries.len() > 24 {
            pick.shuffle(&mut entries);
            entries.truncate(20);
        }
        let scale = analytic.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        for &i in &entries {
            let mut at = |delta: f64| {
                let mut shifted = base.clone();
                shifted[i] += delta;
                s.model.params[index].value = Tensor::from_vec(shifted, original.shape(), &Device::Cpu).unwrap();
                s.loss()
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            assert!(
                (analytic[i] - numeric).abs() <= 1e-6 * scale + 2e-9,
                "{name}: d/d {param}[{i}]: backward {:e}, finite difference {numeric:e} (tensor scale {scale:e})",
                analytic[i]
            );
        }
        s.model.params[index].value = original;
        // Without RoPE a key bias adds q·b to every score of a query alike, which the softmax
        // ignores: its gradient is zero. Every other gradient must be alive.
        let key_bias_inert = param.ends_with("attn.k.bias") && !matches!(arch.position, Position::Rope { .. });
        if !key_bias_inert {
            assert!(scale > 1e-6, "{name}: {param}: gradient is (nearly) all zero: {scale:e}");
        }
    }
}

#[test]
fn every_parameter_matches_finite_differences() {
    // The losses alternate over the configurations, so that each loss meets several options.
    let losses = [Loss::Softmax, Loss::StableMax, Loss::Sparsemax];
    for (i, (name, arch)) in configurations().into_iter().enumerate() {
        check_finite_differences(name, &arch, losses[i % losses.len()]);
    }
}

#[test]
fn a_run_of_a_stack_matches_the_run_alone() {
    let seeds = [5, 23, 41];
    for (name, arch) in configurations() {
        let stack = setup(&arch, &seeds, DType::F64);
        let (logits, grads) = stack.logits_and_grads(false);
        for (r, &seed) in seeds.iter().enumerate() {
            // Initialized alone, the run has the same weights it has in the stack.
            let alone = Setup {
                model: Transformer::init(&arch, &[seed], DType::F64, &Device::Cpu).unwrap(),
                tokens: stack.tokens.narrow(0, r, 1).unwrap(),
                labels: stack.labels.narrow(0, r, 1).unwrap(),
                masks: stack.masks.as_ref().map(|m| m.narrow_runs(r, 1).unwrap()),
                loss: Loss::Softmax,
            };
            for (a, b) in alone.model.params.iter().zip(&stack.model.params) {
                assert_eq!(
                    values(&a.value),
                    values(&b.value.narrow(0, r, 1).unwrap()),
                    "{name}: run {r}: {} init depends on the stack",
                    a.name
                );
            }
            let (logits_alone, grads_alone) = alone.logits_and_grads(false);
            let d = max_diff(&logits.narrow(0, r, 1).unwrap(), &logits_alone);
            assert!(d <= 1e-12, "{name}: run {r}: logits differ by {d:e}");
            for ((g, g_alone), p) in grads.iter().zip(&grads_alone).zip(&stack.model.params) {
                let d = max_diff(&g.narrow(0, r, 1).unwrap(), g_alone);
                assert!(d <= 1e-12, "{name}: run {r}: d/d {} differs by {d:e}", p.name);
            }
        }
    }
}

#[test]
fn the_last_block_shortcut_matches_the_full_computation() {
    for (name, arch) in configurations() {
        let s = setup(&arch, &[7, 8], DType::F64);
        let (logits, grads) = s.logits_and_grads(false);
        let (logits_full, grads_full) = s.logits_and_grads(true);
        let d = max_diff(&logits_full, &logits);
        assert!(d <= 1e-12, "{name}: logits differ by {d:e}");
        for ((g, g_full), p) in grads.iter().zip(&grads_full).zip(&s.model.params) {
            let d = max_diff(g_full, g);
            assert!(d <= 1e-12, "{name}: d/d {} differs by {d:e}", p.name);
        }
    }
}

/// candle's autograd through the same forward pass, on a random linear functional of the logits.
/// candle's GELU backward uses 0.398942 for 1/√(2π) (relative error 7e-7), so the GELU
/// configuration gets a looser tolerance.
#[test]
fn the_backward_pass_matches_candles_autograd() {
    let configs = configurations();
    for ((name, arch), tolerance) in
        [(&configs[0], 1e-10), (&configs[4], 1e-10), (&configs[7], 1e-10), (&configs[6], 1e-5)]
    {
        let s = setup(arch, &[2, 9], DType::F64);
        let vars: Vec<Var> = s.model.params.iter().map(|p| Var::from_tensor(&p.value).unwrap()).collect();
        let mut tracked = s.model.clone();
        for (p, v) in tracked.params.iter_mut().zip(&vars) {
            p.value = v.as_tensor().clone();
        }
        let (logits, cache) = tracked.forward(&s.tokens, s.masks.as_ref()).unwrap();
        let weights = Tensor::randn(0.0f64, 1.0, logits.shape(), &Device::Cpu).unwrap();
        let functional = (&logits * &weights).unwrap().sum_all().unwrap();
        let autograd = functional.backward().unwrap();
        let grads = s.model.backward(&s.tokens, &cache, &weights).unwrap();
        for ((g, v), p) in grads.iter().zip(&vars).zip(&s.model.params) {
            let expected =
                autograd.get(v.as_tensor()).unwrap_or_else(|| panic!("{name}: autograd gave {} no gradient", p.name));
            let d = max_diff(expected, g);
            assert!(d <= tolerance, "{name}: d/d {}: explicit backward and autograd differ by {d:e}", p.name);
        }
    }
}

/// The same code in f32: logits and gradients near f64's.
#[test]
fn f32_follows_f64() {
    let (name, arch) = &configurations()[6];
    let s64 = setup(arch, &[4, 6], DType::F64);
    let s32 = setup(arch, &[4, 6], DType::F32);
    let (logits64, grads64) = s64.logits_and_grads(false);
    let (logits32, grads32) = s32.logits_and_grads(false);
    assert_eq!(logits32.dtype(), DType::F32);
    let d = max_diff(&logits64, &logits32);
    assert!(d <= 1e-5, "{name}: f32 logits differ by {d:e}");
    for ((g64, g32), p) in grads64.iter().zip(&grads32).zip(&s64.model.params) {
        assert_eq!(g32.dtype(), DType::F32);
        let d = max_diff(g64, g32);
        assert!(d <= 1e-4, "{name}: f32 d/d {} differs by {d:e}", p.name);
    }
}

#[test]
fn parameter_names_follow_pytorch() {
    let a = arch(NormKind::Layer, NormPlacement::Pre, Position::Learned, FfnKind::SwiGlu, true, 2, 1, true, 3, false);
    let expected = [
        "embedding.weight",
        "position.weight",
        "layers.0.norm1.weight",
        "layers.0.norm1.bias",
        "layers.0.attn.q.weight",
        "layers.0.attn.q.bias",
        "layers.0.attn.k.weight",
        "layers.0.attn.k.bias",
        "layers.0.attn.v.weight",
        "layers.0.attn.v.bias",
        "layers.0.attn.o.weight",
        "layers.0.attn.o.bias",
        "layers.0.norm2.weight",
        "layers.0.norm2.bias",
        "layers.0.ffn.w1.weight",
        "layers.0.ffn.w1.bias",
        "layers.0.ffn.w3.weight",
        "layers.0.ffn.w3.bias",
        "layers.0.ffn.w2.weight",
        "layers.0.ffn.w2.bias",
        "norm.weight",
        "norm.bias",
        "unembed.weight",
        "unembed.bias",
    ];
    assert_eq!(Transformer::param_names(&a), expected);
    // Post-norm has no final norm; no norm, no biases and no learned positions leave only matrices.
    let b = arch(NormKind::None, NormPlacement::Post, Position::None, FfnKind::Relu, false, 1, 1, false, 2, false);
    let expected = [
        "embedding.weight",
        "layers.0.attn.q.weight",
        "layers.0.attn.k.weight",
        "layers.0.attn.v.weight",
        "layers.0.attn.o.weight",
        "layers.0.ffn.w1.weight",
        "layers.0.ffn.w2.weight",
        "unembed.weight",
    ];
    assert_eq!(Transformer::param_names(&b), expected);
    let model = Transformer::init(&a, &[1, 2], DType::F64, &Device::Cpu).unwrap();
    let d = 8usize;
    assert_eq!(model.params[0].value.dims(), [2, 5, d]);
    assert_eq!(model.params[1].value.dims(), [2, 3, d]);
    assert_eq!(model.params[14].value.dims(), [2, d, 12]); // w1 [R, d, F]
    assert_eq!(model.params[18].value.dims(), [2, 12, d]); // w2 [R, F, d]
    assert_eq!(model.params[22].value.dims(), [2, d, 5]); // unembed [R, d, C]
    assert!(values(&model.params[2].value).iter().all(|&g| g == 1.0), "gains start at 1");
    assert!(values(&model.params[3].value).iter().all(|&b| b == 0.0), "norm biases start at 0");
    let bound = 1.0 / (d as f64).sqrt();
    assert!(
        values(&model.params[5].value).iter().all(|&b| b.abs() <= bound && b != 0.0),
        "Linear biases are U(±1/√fan_in)"
    );
    // Parameters come back in (a checkpoint's, say) only under their own names and shapes.
    Transformer::from_params(&a, model.params.clone()).unwrap();
    let mut swapped = model.params.clone();
    swapped.swap(4, 6);
    assert!(Transformer::from_params(&a, swapped).is_err());
    assert_eq!(
        a.param_count(),
        5 * 8 + 3 * 8 + 3 * (8 + 8) + 4 * (64 + 8) + 2 * (8 * 12 + 12) + (12 * 8 + 8) + (8 * 5 + 5)
    ); // 3 LayerNorms
}

#[test]
fn bad_architectures_are_refused() {
    let mut a = arch(
        NormKind::Rms,
        NormPlacement::Pre,
        Position::Rope { base: 1e6 },
        FfnKind::Relu,
        true,
        3,
        1,
        false,
        3,
        false,
    );
    assert!(a.validate().is_err(), "3 heads do not divide d = 8");
    a.heads = 8; // d_head 1: RoPE needs pairs
    assert!(a.validate().is_err());
    a.heads = 4;
    a.validate().unwrap();
    a.dropout.ffn_out = 1.0;
    assert!(a.validate().is_err());
    // Dropout without masks is evaluation; masks missing where dropout is on are an error.
    let b = arch(NormKind::Rms, NormPlacement::Pre, Position::None, FfnKind::Relu, true, 1, 1, false, 2, true);
    let s = setup(&b, &[1], DType::F64);
    s.model.forward(&s.tokens, None).unwrap();
    let mut masks = s.masks.clone().unwrap();
    masks.layers[0].ffn_hidden = None;
    assert!(s.model.forward(&s.tokens, Some(&masks)).is_err());
}

/// One run's forward pass written out position by position with plain loops, from the
/// parameters looked up by name: an independent reading of the architecture (causal mask,
/// RoPE's pairs and angles, norm placement, where dropout acts) for the tensor code to match.
struct Reference<'a> {
    arch: &'a TransformerArch,
    /// name → run r's values.
    params: std::collections::HashMap<String, Vec<f64>>,
}

impl Reference<'_> {
    fn new<'a>(arch: &'a TransformerArch, model: &Transformer, r: usize) -> Reference<'a> {
        let params = model.params.iter().map(|p| (p.name.clone(), values(&p.value.narrow(0, r, 1).unwrap()))).collect();
        Reference { arch, params }
    }

    fn get(&self, name: &str) -> Option<&[f64]> {
        self.params.get(name).map(|v| v.as_slice())
    }

    /// y = x·W + b with W `[in, out]` row-major.
    fn linear(&self, name: &str, x: &[f64]) -> Vec<f64> {
        let w = self.get(&format!("{name}.weight")).unwrap();
        let out = w.len() / x.len();
        let mut y: Vec<f64> = match self.get(&format!("{name}.bias")) {
            Some(b) => b.to_vec(),
            None => vec![0.0; out],
        };
        for (i, xi) in x.iter().enumerate() {
            for (j, yj) in y.iter_mut().enumerate() {
                *yj += xi * w[i * out + j];
            }
        }
        y
    }

    fn norm(&self, name: &str, x: &[f64]) -> Vec<f64> {
        let d = x.len() as f64;
        let (mean, eps) = (x.iter().sum::<f64>() / d, grokstack::models::transformer::NORM_EPS);
        let (centered, inv) = match self.arch.norm {
            NormKind::None => return x.to_vec(),
            NormKind::Rms => (x.to_vec(), 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / d + eps).sqrt()),
            NormKind::Layer => {
                let c: Vec<f64> = x.iter().map(|v| v - mean).collect();
                let var = c.iter().map(|v| v * v).sum::<f64>() / d;
                (c, 1.0 / (var + eps).sqrt())
            }
        };
        let g = self.get(&format!("{name}.weight")).unwrap();
        let b = self.get(&format!("{name}.bias"));
        (0..x.len()).map(|i| centered[i] * inv * g[i] + b.map_or(0.0, |b| b[i])).collect()
    }

    fn rope(&self, x: &mut [f64], t: usize) {
        let Position::Rope { base } = self.arch.position else { return };
        let e = self.arch.d_head();
        for head in x.chunks_mut(e) {
            for i in 0..e / 2 {
                let angle = t as f64 * base.powf(-2.0 * i as f64 / e as f64);
                let (a, b) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = a * angle.cos() - b * angle.sin();
                head[2 * i + 1] = a * angle.sin() + b * angle.cos();
            }
        }
    }

    /// Logits of one row; `mask(layer, kind, index)` is the keep factor of a unit (1 without dropout).
    fn row(&self, tokens: &[u32], mask: &dyn Fn(usize, usize, &[usize]) -> f64) -> Vec<f64> {
        let a = self.arch;
        let (t_len, d, heads, e) = (tokens.len(), a.d_model, a.heads, a.d_head());
        let embedding = self.get("embedding.weight").unwrap();
        let mut x: Vec<Vec<f64>> = tokens
            .iter()
            .enumerate()
            .map(|(t, &tok)| {
                (0..d)
                    .map(|i| {
                        embedding[tok as usize * d + i] + self.get("position.weight").map_or(0.0, |p| p[t * d + i])
                    })
                    .collect()
            })
            .collect();
        let add = |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x + y).collect() };
        for l in 0..a.layers {
            let name = |s: &str| format!("layers.{l}.{s}");
            let attention = |h: &Vec<Vec<f64>>| -> Vec<Vec<f64>> {
                let mut q: Vec<Vec<f64>> = h.iter().map(|v| self.linear(&name("attn.q"), v)).collect();
                let mut k: Vec<Vec<f64>> = h.iter().map(|v| self.linear(&name("attn.k"), v)).collect();
                let v: Vec<Vec<f64>> = h.iter().map(|v| self.linear(&name("attn.v"), v)).collect();
                for t in 0..t_len {
                    self.rope(&mut q[t], t);
                    self.rope(&mut k[t], t);
                }
                (0..t_len)
                    .map(|i| {
                        let mut y = vec![0.0; d];
                        for hh in 0..heads {
                            let span = hh * e..(hh + 1) * e;
                            let keys = if a.causal { i + 1 } else { t_len };
                            let scores: Vec<f64> = (0..keys)
                                .map(|j| {
                                    q[i][span.clone()].iter().zip(&k[j][span.clone()]).map(|(x, y)| x * y).sum::<f64>()
                                        / (e as f64).sqrt()
                                })
                                .collect();
                            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                            let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                            for j in 0..keys {
                                let w = (scores[j] - max).exp() / total * mask(l, 0, &[hh, i, j]);
                                for c in span.clone() {
                                    y[c] += w * v[j][c];
                                }
                            }
                        }
                        let out = self.linear(&name("attn.o"), &y);
                        out.iter().enumerate().map(|(c, o)| o * mask(l, 1, &[i, c])).collect()
                    })
                    .collect()
            };
            let ffn = |t: usize, h: &[f64]| -> Vec<f64> {
                let pre = self.linear(&name("ffn.w1"), h);
                let hidden: Vec<f64> = match a.ffn {
                    FfnKind::Relu => pre.iter().map(|z| z.max(0.0)).collect(),
                    FfnKind::Gelu => {
                        pre.iter().map(|z| z * 0.5 * (1.0 + libm::erf(z / std::f64::consts::SQRT_2))).collect()
                    }
                    FfnKind::SwiGlu => {
                        let gate = self.linear(&name("ffn.w3"), h);
                        pre.iter().zip(&gate).map(|(z, g)| z / (1.0 + (-z).exp()) * g).collect()
                    }
                };
                let hidden: Vec<f64> = hidden.iter().enumerate().map(|(f, u)| u * mask(l, 2, &[t, f])).collect();
                let out = self.linear(&name("ffn.w2"), &hidden);
                out.iter().enumerate().map(|(c, o)| o * mask(l, 3, &[t, c])).collect()
            };
            match a.placement {
                NormPlacement::Pre => {
                    let h: Vec<Vec<f64>> = x.iter().map(|v| self.norm(&name("norm1"), v)).collect();
                    let attn = attention(&h);
                    x = x.iter().zip(&attn).map(|(x, a)| add(x, a)).collect();
                    x = x.iter().enumerate().map(|(t, v)| add(v, &ffn(t, &self.norm(&name("norm2"), v)))).collect();
                }
                NormPlacement::Post => {
                    let attn = attention(&x);
                    x = x.iter().zip(&attn).map(|(x, a)| self.norm(&name("norm1"), &add(x, a))).collect();
                    x = x.iter().enumerate().map(|(t, v)| self.norm(&name("norm2"), &add(v, &ffn(t, v)))).collect();
                }
            }
        }
        let last = &x[t_len - 1];
        let z = if a.placement == NormPlacement::Pre { self.norm("norm", last) } else { last.clone() };
        self.linear("unembed", &z)
    }
}

#[test]
fn the_forward_pass_matches_a_loop_by_loop_reference() {
    for (name, arch) in configurations() {
        let s = setup(&arch, &[12, 13], DType::F64);
        let (logits, _) = s.model.forward(&s.tokens, s.masks.as_ref()).unwrap();
        let logits = values(&logits);
        let tokens: Vec<u32> = s.tokens.flatten_all().unwrap().to_vec1().unwrap();
        let (t_len, c) = (arch.seq_len, arch.classes);
        let p = arch.dropout;
        for r in 0..2 {
            let reference = Reference::new(&arch, &s.model, r);
            // Run r's masks, `[N, ...]` flattened, and the factor 1/(1 − p) of each kind.
            let masks: Vec<[Option<Vec<f64>>; 4]> = match &s.masks {
                Some(m) => m
                    .layers
                    .iter()
                    .map(|l| {
                        [&l.attn_weights, &l.attn_out, &l.ffn_hidden, &l.ffn_out]
                            .map(|m| m.as_ref().map(|m| values(&m.narrow(0, r, 1).unwrap())))
                    })
                    .collect(),
                None => vec![[None, None, None, None]; arch.layers],
            };
            let probs = [p.attn_weights, p.attn_out, p.ffn_hidden, p.ffn_out];
            for n in 0..ROWS {
                // Per-row unit counts: [H, T, T], [T, d], [T, F], [T, d].
                let shapes = [
                    [arch.heads, t_len, t_len],
                    [1, t_len, arch.d_model],
                    [1, t_len, arch.ffn_width],
                    [1, t_len, arch.d_model],
                ];
                let mask = |layer: usize, kind: usize, index: &[usize]| -> f64 {
                    let Some(m) = &masks[layer][kind] else { return 1.0 };
                    let [a, b, c] = shapes[kind];
                    let flat =
                        if kind == 0 { (index[0] * b + index[1]) * c + index[2] } else { index[0] * c + index[1] };
                    m[n * a * b * c + flat] / (1.0 - probs[kind])
                };
                let row_tokens = &tokens[(r * ROWS + n) * t_len..][..t_len];
                let expected = reference.row(row_tokens, &mask);
                let got = &logits[(r * ROWS + n) * c..][..c];
                for (g, x) in got.iter().zip(&expected) {
                    assert!(
                        (g - x).abs() <= 1e-12 * x.abs().max(1.0),
                        "{name}: run {r}, row {n}: logits {got:?}, reference {expected:?}"
                    );
                }
            }
        }
    }
}
