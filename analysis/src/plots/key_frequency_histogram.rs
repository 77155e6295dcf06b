//! How many runs end with each key frequency: one bar per frequency, one panel per task and
//! modulus (the frequencies of add mod 113 and of mul mod 97 are not the same thing).

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{font, panel_grid, render, series_colour, Figure, OrPlotError};
use crate::phases::TaskFrequencies;
use crate::staging::Staging;

struct Panel {
    title: String,
    /// (frequency, runs whose final key frequencies hold it).
    bars: Vec<(i64, i64)>,
}

struct KeyFrequencyHistogram {
    panels: Vec<Panel>,
}

/// Writes phase_key_frequencies.png/.svg.
pub(crate) fn draw(stage: &mut Staging, per_task: &[TaskFrequencies]) -> Result<()> {
    let panels = per_task
        .iter()
        .map(|TaskFrequencies { task, runs, counts }| {
            let mut bars = counts.clone();
            bars.sort();
            Panel { title: format!("{task}: final key frequencies of {runs} runs"), bars }
        })
        .collect();
    render(stage, "phase_key_frequencies", &KeyFrequencyHistogram { panels })
}

impl Figure for KeyFrequencyHistogram {
    fn size(&self) -> (u32, u32) {
        let (rows, columns) = panel_grid(self.panels.len());
        (columns as u32 * 560, rows as u32 * 360 + 50)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let root = root.titled("Key frequencies the runs end with", font(18.0)).or_plot_error()?;
        let (rows, columns) = panel_grid(self.panels.len());
        for (t, (area, panel)) in root.split_evenly((rows, columns)).iter().zip(&self.panels).enumerate() {
            let highest = panel.bars.iter().map(|b| b.0).max().unwrap_or(1).max(1) as f64;
            let tallest = panel.bars.iter().map(|b| b.1).max().unwrap_or(1).max(1) as f64;
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, font(13.0))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(45)
                .build_cartesian_2d(0.5..highest + 0.5, 0.0..tallest * 1.1)
                .or_plot_error()?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_desc("frequency k")
                .y_desc("runs")
                .x_label_formatter(&|v| format!("{v:.0}"))
                // Runs are whole numbers: the ticks between them stay unlabelled.
                .y_label_formatter(&|v| {
                    if v.fract() == 0.0 {
                        format!("{v:.0}")
                    } else {
                        String::new()
                    }
                })
                .label_style(font(11.0))
                .axis_desc_style(font(12.0))
                .draw()
                .or_plot_error()?;
            let colour = series_colour(t);
            chart
                .draw_series(panel.bars.iter().map(|&(k, runs)| {
                    let k = k as f64;
                    Rectangle::new([(k - 0.4, 0.0), (k + 0.4, runs as f64)], colour.filled())
                }))
                .or_plot_error()?;
        }
        Ok(())
    }
}
