//! Train and test accuracy per logged epoch, median over seeds with an
//! interquartile band, one panel per setting for the first settings.

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::{
    col, lit, DataFrame, DataType, Float64Chunked, JoinArgs, JoinType, LazyFrame, QuantileMethod, SortMultipleOptions,
};

use super::{font, panel_grid, panel_title, render, series_colour, Figure, OrPlotError};
use crate::columns::*;
use crate::staging::Staging;
use crate::sweep_dir::SweepDir;

/// Settings shown at most, so the panels stay readable.
const CURVE_SETTINGS_SHOWN: usize = 12;
/// Per-epoch quantile columns: (median, q25, q75) for train and test accuracy.
const CURVES: [(&str, [&str; 3]); 2] =
    [(TRAIN_ACC, ["train_median", "train_q25", "train_q75"]), (TEST_ACC, ["test_median", "test_q25", "test_q75"])];

/// Median and quartiles over seeds of train and test accuracy, per setting and
/// epoch, for the first `CURVE_SETTINGS_SHOWN` settings by setting_id.
pub(crate) fn curve_quantiles(sweep: &SweepDir, runs: LazyFrame, settings: &DataFrame) -> Result<DataFrame> {
    let shown = settings.column(SETTING_ID)?.i64()?;
    let last_shown = shown.get(CURVE_SETTINGS_SHOWN.min(shown.len()).saturating_sub(1));
    let shown_runs =
        runs.filter(col(SETTING_ID).lt_eq(lit(last_shown.unwrap_or(i64::MIN)))).select([col(RUN_ID), col(SETTING_ID)]);
    let mut stats = Vec::new();
    for (metric, [median, q25, q75]) in CURVES {
        stats.push(col(metric).median().alias(median));
        stats.push(col(metric).quantile(lit(0.25), QuantileMethod::Linear).alias(q25));
        stats.push(col(metric).quantile(lit(0.75), QuantileMethod::Linear).alias(q75));
    }
    sweep
        .metrics()?
        .select([col(RUN_ID), col(EPOCH), col(TRAIN_ACC), col(TEST_ACC)])
        .join(shown_runs, [col(RUN_ID)], [col(RUN_ID)], JoinArgs::new(JoinType::Inner))
        .group_by([col(SETTING_ID), col(EPOCH)])
        .agg(stats)
        .sort([SETTING_ID, EPOCH], SortMultipleOptions::default())
        .collect()
        .with_context(|| format!("computing accuracy curves from {}", sweep.describe_inputs()))
}

/// One curve: (epoch, median, q25, q75) per logged epoch.
type Curve = Vec<(f64, f64, f64, f64)>;

struct Panel {
    title: String,
    curves: [Curve; 2],
}

struct AccuracyCurves {
    title: String,
    panels: Vec<Panel>,
}

pub(crate) fn draw(stage: &mut Staging, quantiles: &DataFrame, settings: &DataFrame, varying: &[String]) -> Result<()> {
    let ids = quantiles.column(SETTING_ID)?.i64()?;
    let epochs = quantiles.column(EPOCH)?.cast(&DataType::Float64)?;
    let epochs = epochs.f64()?;
    let stat =
        |name: &str| -> Result<Float64Chunked> { Ok(quantiles.column(name)?.cast(&DataType::Float64)?.f64()?.clone()) };
    let columns: Vec<[Float64Chunked; 3]> = CURVES
        .iter()
        .map(|(_, names)| Ok([stat(names[0])?, stat(names[1])?, stat(names[2])?]))
        .collect::<Result<_>>()?;

    let mut panels: Vec<(i64, Panel)> = Vec::new();
    for i in 0..quantiles.height() {
        let (Some(id), Some(epoch)) = (ids.get(i), epochs.get(i)) else {
            continue;
        };
        if panels.last().map(|(last, _)| *last) != Some(id) {
            panels.push((id, Panel { title: panel_title(settings, varying, id)?, curves: [Vec::new(), Vec::new()] }));
        }
        let panel = &mut panels.last_mut().expect("pushed above").1;
        for (curve, [median, q25, q75]) in panel.curves.iter_mut().zip(&columns) {
            if let (Some(m), Some(lo), Some(hi)) = (median.get(i), q25.get(i), q75.get(i)) {
                curve.push((epoch, m, lo, hi));
            }
        }
    }
    let figure = AccuracyCurves {
        title: format!(
            "Train (blue) and test (orange) accuracy, median over seeds with interquartile band: \
             first {} of {} settings",
            panels.len(),
            settings.height()
        ),
        panels: panels.into_iter().map(|(_, p)| p).collect(),
    };
    render(stage, "accuracy_curves", &figure)
}

impl Figure for AccuracyCurves {
    fn size(&self) -> (u32, u32) {
        let (rows, columns) = panel_grid(self.panels.len());
        (columns as u32 * 420, rows as u32 * 300 + 50)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let root = root.titled(&self.title, font(18.0)).or_plot_error()?;
        let (rows, columns) = panel_grid(self.panels.len());
        for (area, panel) in root.split_evenly((rows, columns)).iter().zip(&self.panels) {
            let last_epoch = panel.curves.iter().flatten().map(|p| p.0).fold(1.0, f64::max);
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, font(13.0))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(40)
                .build_cartesian_2d(0.0..last_epoch, 0.0..1.02)
                .or_plot_error()?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_labels(5)
                .y_labels(6)
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| format!("{v:.1}"))
                .label_style(font(11.0))
                .axis_desc_style(font(11.0))
                .draw()
                .or_plot_error()?;
            for (c, curve) in panel.curves.iter().enumerate() {
                let colour = series_colour(c);
                let band: Vec<(f64, f64)> =
                    curve.iter().map(|p| (p.0, p.3)).chain(curve.iter().rev().map(|p| (p.0, p.2))).collect();
                chart.draw_series(std::iter::once(Polygon::new(band, colour.mix(0.25).filled()))).or_plot_error()?;
                chart
                    .draw_series(LineSeries::new(curve.iter().map(|p| (p.0, p.1)), colour.stroke_width(2)))
                    .or_plot_error()?;
            }
        }
        Ok(())
    }
}
