//! The phase epochs against learning rate and against weight decay: one panel per axis, each
//! value of the axis a column, and in it every setting's median epoch of each phase (one colour
//! per phase, side by side) with its interquartile range as a whisker.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::{DataFrame, DataType};

use super::phase_losses::phase_colour;
use super::{font, padded_range, render, short_name, Figure, OrPlotError};
use crate::columns::{LR, WEIGHT_DECAY};
use crate::phases::{stat_columns, PHASES, PHASE_NAMES};
use crate::staging::Staging;
use crate::tables::format_number;

/// Horizontal distance between the phases' points within a column.
const PHASE_SPACING: f64 = 0.18;

/// One point: the median with its quartiles.
struct Point {
    column: usize,
    phase: usize,
    median: f64,
    q25: f64,
    q75: f64,
}

struct Panel {
    axis: String,
    values: Vec<f64>,
    points: Vec<Point>,
}

struct PhaseEpochs {
    panels: Vec<Panel>,
}

/// Writes phase_epochs.png/.svg from the per-setting phase frame: a panel for each of
/// `train.lr` and `train.weight_decay` it has.
pub(crate) fn draw(stage: &mut Staging, settings: &DataFrame) -> Result<()> {
    let numbers = |name: &str| -> Result<Vec<Option<f64>>> {
        Ok(settings.column(name)?.cast(&DataType::Float64)?.f64()?.iter().collect())
    };
    let mut panels = Vec::new();
    for axis in [LR, WEIGHT_DECAY] {
        if settings.column(axis).is_err() {
            continue;
        }
        let at = numbers(axis)?;
        let mut values: Vec<f64> = at.iter().flatten().copied().collect();
        values.sort_by(f64::total_cmp);
        values.dedup();
        let mut points = Vec::new();
        for (phase, column) in PHASES.iter().enumerate() {
            let [_, median, q25, q75] = stat_columns(column);
            let (median, q25, q75) = (numbers(&median)?, numbers(&q25)?, numbers(&q75)?);
            for row in 0..settings.height() {
                if let (Some(x), Some(median), Some(q25), Some(q75)) = (at[row], median[row], q25[row], q75[row]) {
                    let column = values.partition_point(|v| *v < x);
                    points.push(Point { column, phase, median, q25, q75 });
                }
            }
        }
        panels.push(Panel { axis: axis.to_string(), values, points });
    }
    render(stage, "phase_epochs", &PhaseEpochs { panels })
}

impl Figure for PhaseEpochs {
    fn size(&self) -> (u32, u32) {
        (self.panels.len().max(1) as u32 * 560, 480)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let root = root
            .titled("Phase epochs per setting: median over seeds, whiskers the interquartile range", font(18.0))
            .or_plot_error()?;
        for (area, panel) in root.split_evenly((1, self.panels.len().max(1))).iter().zip(&self.panels) {
            let columns = panel.values.len().max(1);
            let epochs = padded_range(panel.points.iter().flat_map(|p| [p.q25, p.q75]));
            let mut chart = ChartBuilder::on(area)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(55)
                .build_cartesian_2d(
                    -0.5..columns as f64 - 0.5,
                    // The top third is left to the legend.
                    epochs.start.min(0.0)..epochs.end * 1.4,
                )
                .or_plot_error()?;
            // Only the column centres (whole numbers) are labelled, with the axis value there.
            let label_of = |v: &f64| {
                let at = v.round();
                match panel.values.get(at as usize) {
                    Some(value) if (v - at).abs() < 1e-9 && at >= 0.0 => format_number(*value),
                    _ => String::new(),
                }
            };
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_desc(short_name(&panel.axis))
                .y_desc("epoch")
                .x_labels(columns + 1)
                .x_label_formatter(&label_of)
                .y_label_formatter(&|v| format_number(*v))
                .label_style(font(12.0))
                .axis_desc_style(font(13.0))
                .draw()
                .or_plot_error()?;
            for (phase, name) in PHASE_NAMES.iter().enumerate() {
                let colour = phase_colour(phase);
                let offset = (phase as f64 - 1.5) * PHASE_SPACING;
                let ours = || panel.points.iter().filter(|p| p.phase == phase);
                chart
                    .draw_series(ours().map(|p| {
                        let x = p.column as f64 + offset;
                        PathElement::new(vec![(x, p.q25), (x, p.q75)], colour.stroke_width(2))
                    }))
                    .or_plot_error()?;
                chart
                    .draw_series(ours().map(|p| Circle::new((p.column as f64 + offset, p.median), 4, colour.filled())))
                    .or_plot_error()?
                    .label(*name)
                    .legend(move |(x, y)| Circle::new((x, y), 4, colour.filled()));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(font(12.0))
                .draw()
                .or_plot_error()?;
        }
        Ok(())
    }
}
