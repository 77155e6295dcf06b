//! Box plots of grok epochs, one box per group: the quartiles as the box, the extremes as
//! whiskers, the median as a line with its value printed above ("median 123"), and the runs
//! that grokked under the box ("12/16"). A group whose runs never grokked has no box, only its
//! count.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{font, padded_range, render, series_colour, Figure, OrPlotError};
use crate::staging::Staging;
use crate::tables::format_number;

/// One box.
#[derive(Clone, Debug)]
pub(crate) struct BoxStats {
    pub label: String,
    pub grokked: usize,
    pub runs: usize,
    /// min, q25, median, q75, max of the grokked runs' epochs; None when none grokked.
    pub quartiles: Option<[f64; 5]>,
}

struct BoxPlot<'a> {
    title: &'a str,
    boxes: &'a [BoxStats],
}

/// Writes `stem.png` and `stem.svg`.
pub(crate) fn draw(stage: &mut Staging, stem: &str, title: &str, boxes: &[BoxStats]) -> Result<()> {
    render(stage, stem, &BoxPlot { title, boxes })
}

/// The text printed above a box, which tests read back from the SVG.
pub(crate) fn median_label(median: f64) -> String {
    format!("median {}", format_number(median))
}

impl Figure for BoxPlot<'_> {
    fn size(&self) -> (u32, u32) {
        let title_width = self.title.chars().count() as u32 * 10;
        ((self.boxes.len() as u32 * 110 + 120).max(title_width).max(480), 520)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let root = root.titled(self.title, font(18.0)).or_plot_error()?;
        let epochs = padded_range(self.boxes.iter().flat_map(|b| b.quartiles.into_iter().flatten()));
        // Room under zero for each box's label and count, and above the top for the median.
        let (top, bottom) = (epochs.end * 1.1, -epochs.end * 0.14);
        let n = self.boxes.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .margin(15)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5..n - 0.5, bottom..top)
            .or_plot_error()?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_label_formatter(&|v| if *v < 0.0 { String::new() } else { format_number(*v) })
            .y_desc("grok epoch")
            .label_style(font(12.0))
            .axis_desc_style(font(13.0))
            .draw()
            .or_plot_error()?;
        let area = chart.plotting_area();
        let above = Pos::new(HPos::Center, VPos::Bottom);
        for (i, b) in self.boxes.iter().enumerate() {
            let x = i as f64;
            let colour = series_colour(i);
            area.draw(&Text::new(b.label.clone(), (x, bottom * 0.45), font(12.0).pos(above))).or_plot_error()?;
            area.draw(&Text::new(
                format!("{}/{} grokked", b.grokked, b.runs),
                (x, bottom * 0.9),
                font(11.0).pos(above),
            ))
            .or_plot_error()?;
            let Some([lo, q25, median, q75, hi]) = b.quartiles else { continue };
            let half = 0.3;
            area.draw(&Rectangle::new([(x - half, q25), (x + half, q75)], colour.mix(0.35).filled()))
                .or_plot_error()?;
            area.draw(&Rectangle::new([(x - half, q25), (x + half, q75)], colour.stroke_width(2))).or_plot_error()?;
            area.draw(&PathElement::new(vec![(x - half, median), (x + half, median)], BLACK.stroke_width(3)))
                .or_plot_error()?;
            for (from, to) in [(q75, hi), (q25, lo)] {
                area.draw(&PathElement::new(vec![(x, from), (x, to)], colour.stroke_width(2))).or_plot_error()?;
                area.draw(&PathElement::new(vec![(x - half / 2.0, to), (x + half / 2.0, to)], colour.stroke_width(2)))
                    .or_plot_error()?;
            }
            area.draw(&Text::new(median_label(median), (x, hi + (top - hi) * 0.1), font(12.0).pos(above)))
                .or_plot_error()?;
        }
        Ok(())
    }
}
