//! Nanda et al.'s figure for each setting: train, test, restricted and excluded loss of the
//! setting's median seed per logged epoch on a log scale, with that run's phase epochs as dashed
//! vertical lines; one panel per setting for the first settings.

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::{col, DataFrame, DataType, Float64Chunked, IntoLazy, JoinArgs, JoinType, SortMultipleOptions};

use super::{font, panel_grid, panel_title, render, series_colour, Figure, OrPlotError};
use crate::columns::*;
use crate::phases::{MEDIAN_SEED_RUN_ID, PHASES, PHASE_NAMES};
use crate::staging::Staging;
use crate::sweep_dir::SweepDir;

/// Settings shown at most, so the panels stay readable.
const SETTINGS_SHOWN: usize = 12;
/// The loss columns drawn, with their legend names; colours 0–3 of the palette.
const LOSSES: [(&str, &str); 4] =
    [(TRAIN_LOSS, "train"), (TEST_LOSS, "test"), (RESTRICTED_LOSS, "restricted"), (EXCLUDED_LOSS, "excluded")];

/// A phase's colour in every plot: the palette's colours after the losses'.
pub(crate) fn phase_colour(phase: usize) -> RGBColor {
    series_colour(LOSSES.len() + phase)
}

/// The losses per logged epoch of the median seed (`median_seed_run_id`) of each of the first
/// settings of `settings` ([`crate::phases`]' per-setting frame), sorted by setting and epoch.
pub(crate) fn curves(sweep: &SweepDir, settings: &DataFrame) -> Result<DataFrame> {
    let shown = settings
        .clone()
        .lazy()
        .sort([SETTING_ID], SortMultipleOptions::default())
        .limit(SETTINGS_SHOWN as u32)
        .select([col(SETTING_ID), col(MEDIAN_SEED_RUN_ID).alias(RUN_ID)]);
    let mut columns = vec![col(SETTING_ID), col(RUN_ID), col(EPOCH)];
    columns.extend(LOSSES.iter().map(|(name, _)| col(*name).cast(DataType::Float64)));
    sweep
        .metrics()?
        .join(shown, [col(RUN_ID)], [col(RUN_ID)], JoinArgs::new(JoinType::Inner))
        .select(columns)
        .sort([SETTING_ID, EPOCH], SortMultipleOptions::default())
        .collect()
        .with_context(|| format!("reading the median seeds' losses from {}", sweep.describe_inputs()))
}

struct Panel {
    title: String,
    /// Per loss, (epoch, loss) where the loss is positive and finite (a log scale shows no other).
    losses: [Vec<(f64, f64)>; 4],
    /// Per phase, its epoch in this run (None: never reached).
    phases: [Option<f64>; 4],
}

struct PhaseLosses {
    title: String,
    panels: Vec<Panel>,
}

/// Writes phase_losses.png/.svg. `runs` and `settings`: the per-run and per-setting phase frames.
pub(crate) fn draw(
    stage: &mut Staging,
    curves: &DataFrame,
    runs: &DataFrame,
    settings: &DataFrame,
    varying: &[String],
) -> Result<()> {
    let numbers = |frame: &DataFrame, name: &str| -> Result<Float64Chunked> {
        Ok(frame.column(name)?.cast(&DataType::Float64)?.f64()?.clone())
    };
    let setting_of = curves.column(SETTING_ID)?.i64()?;
    let run_of = curves.column(RUN_ID)?.i64()?;
    let epochs = numbers(curves, EPOCH)?;
    let losses: Vec<Float64Chunked> = LOSSES.iter().map(|(name, _)| numbers(curves, name)).collect::<Result<_>>()?;
    let phase_runs = runs.column(RUN_ID)?.i64()?;
    let phase_epochs: Vec<Float64Chunked> = PHASES.iter().map(|phase| numbers(runs, phase)).collect::<Result<_>>()?;

    let mut panels: Vec<(i64, Panel)> = Vec::new();
    for i in 0..curves.height() {
        let (Some(id), Some(run), Some(epoch)) = (setting_of.get(i), run_of.get(i), epochs.get(i)) else {
            continue;
        };
        if panels.last().map(|(last, _)| *last) != Some(id) {
            let row = (0..runs.height()).find(|&r| phase_runs.get(r) == Some(run));
            let phases = std::array::from_fn(|p| row.and_then(|r| phase_epochs[p].get(r)));
            let title = format!("{} (run {run})", panel_title(settings, varying, id)?);
            panels.push((id, Panel { title, losses: Default::default(), phases }));
        }
        let panel = &mut panels.last_mut().expect("pushed above").1;
        for (curve, loss) in panel.losses.iter_mut().zip(&losses) {
            if let Some(value) = loss.get(i).filter(|v| v.is_finite() && *v > 0.0) {
                curve.push((epoch, value));
            }
        }
    }
    let figure = PhaseLosses {
        title: format!(
            "Losses of each setting's median seed (by grok epoch), log scale, with its phase epochs dashed: \
             first {} of {} settings",
            panels.len(),
            settings.height()
        ),
        panels: panels.into_iter().map(|(_, p)| p).collect(),
    };
    render(stage, "phase_losses", &figure)
}

impl Figure for PhaseLosses {
    fn size(&self) -> (u32, u32) {
        let (rows, columns) = panel_grid(self.panels.len());
        let title_width = self.title.chars().count() as u32 * 10;
        ((columns as u32 * 460).max(title_width), rows as u32 * 340 + 50)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let root = root.titled(&self.title, font(18.0)).or_plot_error()?;
        let (rows, columns) = panel_grid(self.panels.len());
        for (p, (area, panel)) in root.split_evenly((rows, columns)).iter().zip(&self.panels).enumerate() {
            let points = || panel.losses.iter().flatten();
            let last_epoch = points().map(|p| p.0).fold(1.0, f64::max);
            let (low, high) =
                points().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
            // A decade's margin is too much on a log axis; a factor of 1.5 keeps curves off the frame.
            let (low, high) = if low <= high { (low / 1.5, high * 1.5) } else { (1e-3, 10.0) };
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, font(13.0))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(0.0..last_epoch, (low..high).log_scale())
                .or_plot_error()?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_labels(5)
                .y_labels(6)
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| format!("{v:.0e}"))
                .label_style(font(11.0))
                .axis_desc_style(font(11.0))
                .draw()
                .or_plot_error()?;
            for (c, (curve, (_, name))) in panel.losses.iter().zip(LOSSES).enumerate() {
                let colour = series_colour(c);
                chart
                    .draw_series(LineSeries::new(curve.iter().copied(), colour.stroke_width(2)))
                    .or_plot_error()?
                    .label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
            }
            for (c, (epoch, name)) in panel.phases.iter().zip(PHASE_NAMES).enumerate() {
                let Some(epoch) = *epoch else { continue };
                let colour = phase_colour(c);
                chart
                    .draw_series(
                        vertical_dashes(epoch, low, high).map(|dash| PathElement::new(dash, colour.stroke_width(2))),
                    )
                    .or_plot_error()?
                    .label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
            }
            // One legend, in the first panel: every panel uses the same colours.
            if p == 0 {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font(font(11.0))
                    .draw()
                    .or_plot_error()?;
            }
        }
        Ok(())
    }
}

/// Dashes of the vertical line at `epoch` from `low` to `high` (> 0), evenly spaced on the log
/// axis. Drawn as plain paths: plotters' `DashedLineSeries` measures its dashes with `f32::hypot`,
/// whose glibc 2.35 symbol the manylinux_2_34 wheel refuses.
fn vertical_dashes(epoch: f64, low: f64, high: f64) -> impl Iterator<Item = Vec<(f64, f64)>> {
    const DASHES: i32 = 15;
    // Dash k spans steps 2k and 2k + 1 of the 2·DASHES − 1 equal steps of log(y).
    let step = (high / low).powf(1.0 / f64::from(2 * DASHES - 1));
    (0..DASHES).map(move |k| vec![(epoch, low * step.powi(2 * k)), (epoch, low * step.powi(2 * k + 1))])
}
