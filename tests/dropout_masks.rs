//! The dropout masks' generator: Philox4x32-10 against Random123's known answers, every mask
//! bit against an independent computation of its definition (src/models/transformer/mask_bits.rs),
//! one unit's bit against the whole mask (what a kernel computing one unit at a time must
//! match), and the masks' statistics.

use grokstack::models::transformer::{
    Dropout, DropoutPlace, DropoutSite, FfnKind, NormKind, NormPlacement, Position, RunMasks, StepDropout,
    TransformerArch,
};
use grokstack::rng::philox::{self, philox4x32};
use grokstack::rng::Stream;

/// Random123's known-answer vectors for Philox4x32-10 (github.com/DEShawResearch/random123,
/// tests/kat_vectors, the three `philox4x32 10` lines: counter, key, expected output), as quoted
/// by several independent implementations' tests.
const KNOWN_ANSWERS: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
    ([0, 0, 0, 0], [0, 0], [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]),
    ([u32::MAX; 4], [u32::MAX; 2], [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]),
    (
        // The hexadecimal digits of π.
        [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
        [0xa409_3822, 0x299f_31d0],
        [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1],
    ),
];

#[test]
fn philox4x32_10_gives_random123s_known_answers() {
    for (counter, key, expected) in KNOWN_ANSWERS {
        assert_eq!(philox4x32(counter, key), expected, "counter {counter:08x?} key {key:08x?}");
    }
}

/// The key of a seed's dropout: SplitMix64's first output from seed ⊕ 7·0xA0761D6478BD642F,
/// written out here from its published formula, low word first.
#[test]
fn the_dropout_key_is_the_first_splitmix64_output_of_the_seeds_stream() {
    for seed in [0u64, 1, 42, u64::MAX] {
        let z = (seed ^ 7u64.wrapping_mul(0xA076_1D64_78BD_642F)).wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let z = z ^ (z >> 31);
        assert_eq!(philox::key(seed, Stream::Dropout), [z as u32, (z >> 32) as u32], "seed {seed}");
    }
}

/// Whether unit `element` of a site is kept, computed from the definition: the word e mod 4 of
/// the draw at counter [lo32(e/4), hi32(e/4), 4·layer + place, step], as a uniform in f64
/// (exact: w·2⁻³² has at most 32 significant bits), compared with p.
fn kept_by_definition(seed: u64, step: u32, layer: u32, place: u32, p: f64, element: u64) -> bool {
    let group = element / 4;
    let counter = [group as u32, (group >> 32) as u32, 4 * layer + place, step];
    let word = philox4x32(counter, philox::key(seed, Stream::Dropout))[(element % 4) as usize];
    f64::from(word) / 4_294_967_296.0 >= p
}

/// Two layers, 2 heads, T = 3, d = 4, F = 6, dropout at all four places.
fn arch() -> TransformerArch {
    TransformerArch {
        layers: 2,
        d_model: 4,
        heads: 2,
        vocab: 7,
        seq_len: 3,
        classes: 7,
        ffn: FfnKind::Relu,
        ffn_width: 6,
        norm: NormKind::Rms,
        placement: NormPlacement::Pre,
        position: Position::Learned,
        causal: true,
        bias: false,
        dropout: Dropout { attn_weights: 0.2, attn_out: 0.1, ffn_hidden: 0.3, ffn_out: 0.5 },
    }
}

const PLACES: [DropoutPlace; 4] =
    [DropoutPlace::AttnWeights, DropoutPlace::AttnOut, DropoutPlace::FfnHidden, DropoutPlace::FfnOut];

#[test]
fn every_mask_bit_is_its_definition_and_each_unit_can_be_drawn_alone() {
    let arch = arch();
    let (seed, step, rows) = (11, 7, 37);
    let dropout = StepDropout::new(seed, step).unwrap();
    let masks = RunMasks::draw(&arch, &dropout, rows);
    let p = arch.dropout;
    let (h, t, d, f) = (arch.heads, arch.seq_len, arch.d_model, arch.ffn_width);
    assert_eq!(masks.layers.len(), 2);
    for (layer, masks) in masks.layers.iter().enumerate() {
        let sites = [
            (&masks.attn_weights, p.attn_weights, rows * h * t * t),
            (&masks.attn_out, p.attn_out, rows * t * d),
            (&masks.ffn_hidden, p.ffn_hidden, rows * t * f),
            (&masks.ffn_out, p.ffn_out, rows * t * d),
        ];
        for ((mask, prob, units), place) in sites.into_iter().zip(PLACES) {
            let mask = mask.as_ref().unwrap();
            assert_eq!(mask.len(), units);
            let site = dropout.site(layer, place, prob);
            for (element, &bit) in mask.iter().enumerate() {
                let element = element as u64;
                let expected = kept_by_definition(seed, step as u32, layer as u32, place as u32, prob, element);
                assert_eq!(bit == 1, expected, "layer {layer} {place:?} unit {element}");
                assert_eq!(site.keeps(element), expected, "layer {layer} {place:?} unit {element} alone");
            }
        }
    }
}

/// A site's bits from any first unit, of any length, are those units' bits one at a time: so
/// a block of rows (or a GPU thread) can draw its part of a mask without the rest.
#[test]
fn a_part_of_a_mask_drawn_alone_is_that_part_of_the_whole() {
    let site = StepDropout::new(5, 3).unwrap().site(1, DropoutPlace::FfnHidden, 0.25);
    let mut whole = vec![0; 64];
    site.fill(0, &mut whole);
    for first in 0..12 {
        for len in [0, 1, 2, 3, 4, 5, 9, 30] {
            let mut part = vec![2; len];
            site.fill(first as u64, &mut part);
            assert_eq!(part, whole[first..first + len], "units {first}..{}", first + len);
        }
    }
    // Far units, where the counter's high word of e/4 is in use.
    let far = (1u64 << 40) + 3;
    let mut part = vec![0; 9];
    site.fill(far, &mut part);
    for (i, &bit) in part.iter().enumerate() {
        let element = far + i as u64;
        assert_eq!(bit == 1, kept_by_definition(5, 3, 1, 2, 0.25, element), "unit {element}");
        assert_eq!(bit == 1, site.keeps(element));
    }
}

/// The kept fraction over n units of a site.
fn kept_fraction(site: &DropoutSite, n: usize) -> f64 {
    let mut mask = vec![0; n];
    site.fill(0, &mut mask);
    mask.iter().map(|&b| f64::from(b)).sum::<f64>() / n as f64
}

#[test]
fn the_kept_fraction_is_one_minus_p_within_five_standard_deviations() {
    let n = 1 << 20;
    for (p, seed) in [(0.01, 1), (0.1, 2), (0.2, 3), (0.5, 4), (0.9, 5), (0.999, 6)] {
        let kept = kept_fraction(&StepDropout::new(seed, 0).unwrap().site(0, DropoutPlace::AttnOut, p), n);
        let sigma = (p * (1.0 - p) / n as f64).sqrt();
        assert!((kept - (1.0 - p)).abs() < 5.0 * sigma, "p {p}: kept {kept}, expected {} ± {sigma}", 1.0 - p);
    }
    // p = 0 keeps everything.
    assert_eq!(kept_fraction(&StepDropout::new(7, 0).unwrap().site(0, DropoutPlace::FfnOut, 0.0), 4096), 1.0);
}

/// Bits that agree between two masks of n units; independent masks agree at rate
/// p² + (1 − p)², identical ones at rate 1.
fn agreement(a: &DropoutSite, b: &DropoutSite, n: usize) -> f64 {
    let (mut x, mut y) = (vec![0; n], vec![0; n]);
    a.fill(0, &mut x);
    b.fill(0, &mut y);
    x.iter().zip(&y).filter(|(x, y)| x == y).count() as f64 / n as f64
}

#[test]
fn masks_of_other_runs_steps_and_sites_are_independent() {
    let (n, p) = (1 << 18, 0.3);
    let expected = p * p + (1.0 - p) * (1.0 - p);
    let sigma = (expected * (1.0 - expected) / n as f64).sqrt();
    let base = StepDropout::new(100, 10).unwrap();
    let site = base.site(1, DropoutPlace::FfnHidden, p);
    let others = [
        ("another run", StepDropout::new(101, 10).unwrap().site(1, DropoutPlace::FfnHidden, p)),
        ("another step", StepDropout::new(100, 11).unwrap().site(1, DropoutPlace::FfnHidden, p)),
        ("another place", base.site(1, DropoutPlace::FfnOut, p)),
        ("another layer", base.site(0, DropoutPlace::FfnHidden, p)),
    ];
    assert_eq!(agreement(&site, &base.site(1, DropoutPlace::FfnHidden, p), n), 1.0, "the same site");
    for (what, other) in others {
        let agree = agreement(&site, &other, n);
        assert!((agree - expected).abs() < 5.0 * sigma, "{what}: agreement {agree}, expected {expected} ± {sigma}");
    }
    // The four units of one draw are independent too: both kept at rate (1 − p)².
    let mut mask = vec![0; n];
    site.fill(0, &mut mask);
    let both = mask.chunks(4).map(|g| f64::from(g[0] & g[1]) + f64::from(g[2] & g[3])).sum::<f64>() / (n / 2) as f64;
    let rate = (1.0 - p) * (1.0 - p);
    let sigma = (rate * (1.0 - rate) / (n / 2) as f64).sqrt();
    assert!((both - rate).abs() < 5.0 * sigma, "pairs of one draw both kept at {both}, expected {rate} ± {sigma}");
}

#[test]
fn steps_past_the_counters_word_are_an_error_naming_the_step() {
    assert!(StepDropout::new(1, u32::MAX as usize).is_ok());
    let error = StepDropout::new(1, u32::MAX as usize + 1).unwrap_err().to_string();
    assert!(error.contains("4294967296"), "{error}");
}

/// A host program around src/models/transformer/dropout.cuh: each input line `philox c0 c1 c2 c3
/// k0 k1` prints the draw's four words, `keeps key0 key1 site step element threshold` prints 0/1.
const CUH_HARNESS: &str = r#"
#include <cstdio>
#include <cstring>
#include "dropout.cuh"
int main() {
    char what[16];
    while (std::scanf("%15s", what) == 1) {
        if (std::strcmp(what, "philox") == 0) {
            unsigned int c[4], k[2];
            if (std::scanf("%u %u %u %u %u %u", &c[0], &c[1], &c[2], &c[3], &k[0], &k[1]) != 6) return 2;
            grokstack_philox_words w = grokstack_philox4x32_10(c[0], c[1], c[2], c[3], k[0], k[1]);
            std::printf("%u %u %u %u\n", w.w[0], w.w[1], w.w[2], w.w[3]);
        } else {
            unsigned int key0, key1, site, step;
            unsigned long long element, threshold;
            if (std::scanf("%u %u %u %u %llu %llu", &key0, &key1, &site, &step, &element, &threshold) != 6) return 2;
            std::printf("%d\n", grokstack_dropout_keeps(key0, key1, site, step, element, threshold) ? 1 : 0);
        }
    }
    return 0;
}
"#;

/// The CUDA source's Philox and keep bits, compiled as C++ for the host ($CXX, else c++), give
/// Random123's known answers and the Rust definition's bits, at the threshold's edges too.
#[test]
fn the_cuda_source_draws_the_same_bits_on_the_host() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    if Command::new(&compiler).arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        eprintln!("skipped the CUDA source's host check: no C++ compiler `{compiler}` (set CXX to one)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("grokstack-test-dropout-cuh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (source, program) = (dir.join("harness.cpp"), dir.join("harness"));
    std::fs::write(&source, CUH_HARNESS).unwrap();
    let cuh_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/models/transformer");
    let mut build = Command::new(&compiler);
    build.args(["-std=c++11", "-O2", "-Wall", "-Werror", "-I", cuh_dir]).arg(&source).arg("-o").arg(&program);
    let build = build.output().unwrap();
    assert!(build.status.success(), "{compiler} failed on dropout.cuh: {}", String::from_utf8_lossy(&build.stderr));

    // Inputs, and what the Rust side gives for each.
    let (mut input, mut expected) = (String::new(), Vec::new());
    for (counter, key, answer) in KNOWN_ANSWERS {
        input += &format!("philox {} {} {} {} {} {}\n", counter[0], counter[1], counter[2], counter[3], key[0], key[1]);
        expected.push(format!("{} {} {} {}", answer[0], answer[1], answer[2], answer[3]));
    }
    for (seed, step, layer) in [(0u64, 0usize, 0usize), (3, 17, 1), (u64::MAX, u32::MAX as usize, 5)] {
        let key = philox::key(seed, Stream::Dropout);
        for (place, p) in PLACES.into_iter().zip([0.0, 0.1, 0.5, 0.97]) {
            let site = StepDropout::new(seed, step).unwrap().site(layer, place, p);
            let site_number = 4 * layer as u32 + place as u32;
            for element in (0..40u64).chain([(1 << 34) + 1, (1 << 40) + 6, u64::MAX]) {
                let threshold = (p * 4_294_967_296.0).ceil() as u64;
                input += &format!("keeps {} {} {site_number} {step} {element} {threshold}\n", key[0], key[1]);
                expected.push(u8::from(site.keeps(element)).to_string());
                // At the edge: a uniform exactly at p is kept, one just below it dropped.
                let group = element / 4;
                let counter = [group as u32, (group >> 32) as u32, site_number, step as u32];
                let word = u64::from(philox4x32(counter, key)[(element % 4) as usize]);
                for (p_edge, kept) in [(word, true), (word + 1, false)] {
                    let p_edge_uniform = p_edge as f64 / 4_294_967_296.0;
                    let edge = StepDropout::new(seed, step).unwrap().site(layer, place, p_edge_uniform);
                    assert_eq!(edge.keeps(element), kept, "unit {element} at p = {p_edge}·2^-32");
                    input += &format!("keeps {} {} {site_number} {step} {element} {p_edge}\n", key[0], key[1]);
                    expected.push(u8::from(kept).to_string());
                }
            }
        }
    }
    let mut child = Command::new(&program).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(output.status.success(), "the harness failed: {:?}", output.status);
    let lines: Vec<String> = String::from_utf8(output.stdout).unwrap().lines().map(String::from).collect();
    assert_eq!(lines.len(), expected.len());
    for ((got, want), line) in lines.iter().zip(&expected).zip(input.lines()) {
        assert_eq!(got, want, "dropout.cuh on `{line}`");
    }
}
