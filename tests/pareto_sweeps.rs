//! The Pareto comparison's sweeps (issue 13) parse and hold every family the issue names, with
//! Cesista's λ values, on the blog's configuration.

use grokstack::config::{Constraint, Optimizer, Precision, Sweep};
use grokstack::models::ModelConfig;
use std::collections::BTreeSet;

#[test]
fn the_pareto_sweeps_parse_and_hold_every_family() {
    for (file, text, seeds, settings, epochs) in [
        ("pareto.toml", include_str!("../sweeps/pareto.toml"), 64, 2 * 96, 1001),
        ("pareto-cpu.toml", include_str!("../sweeps/pareto-cpu.toml"), 3, 7, 401),
    ] {
        let sweep = Sweep::parse(text, file, &[]).unwrap();
        assert_eq!(sweep.setting_count(), settings, "{file}");
        let runs = sweep.runs().unwrap();
        assert_eq!(runs.len(), settings * seeds, "{file}");
        let mut families = BTreeSet::new();
        let mut lambdas = BTreeSet::new();
        for run in &runs {
            let c = &run.config;
            let ModelConfig::Mlp(mlp) = &c.model else { panic!("{file}: not an MLP") };
            assert_eq!(
                (c.p, mlp.embed_dim, mlp.hidden.as_slice(), c.epochs, c.all_reg),
                (113, 113, &[200, 200][..], epochs, true),
                "{file}"
            );
            assert!(c.lipschitz, "{file}");
            if file == "pareto.toml" {
                assert_eq!(c.precision, Precision::Bf16, "{file}");
            }
            if c.constraint == Constraint::SpectralClippedWd {
                lambdas.insert((c.constraint_lambda * 100.0).round() as i64);
            }
            // Muon runs carry Cesista's embedding cap; the others none.
            assert_eq!(c.embed_rms_cap, if c.optimizer == Optimizer::Muon { 1.0 } else { 0.0 }, "{file}");
            families.insert(format!(
                "{:?}/{:?}/{}",
                c.optimizer,
                c.constraint,
                c.optimizer == Optimizer::Scion && c.scion_constrained
            ));
        }
        if file == "pareto.toml" {
            assert_eq!(lambdas.into_iter().collect::<Vec<_>>(), [1, 10, 25, 50, 75, 90], "Cesista's λ values");
            assert_eq!(
                families.len(),
                1 + 5 + 2,
                "adamw, muon with none and each of four constraints, scion both ways: {families:?}"
            );
        } else {
            assert_eq!(families.len(), 5, "{families:?}");
        }
    }
}
