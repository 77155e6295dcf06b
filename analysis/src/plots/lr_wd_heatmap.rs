//! Median grok epoch over the learning-rate × weight-decay grid, one panel per
//! combination of the sweep's other axes; unqualified cells are grey with "×".

use std::collections::BTreeMap;

use anyhow::Result;
use plotters::coord::ranged1d::SegmentValue;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use polars::prelude::*;

use super::{font, panel_grid, render, short_name, Figure, OrPlotError};
use crate::columns::*;
use crate::grok_rule::GrokCriterion;
use crate::staging::Staging;
use crate::tables::{format_number, format_value};

/// Panels shown at most, to keep the figure readable.
const MAX_PANELS: usize = 12;
const UNQUALIFIED: RGBColor = RGBColor(200, 200, 200);
/// Viridis at 0, 1/4, 1/2, 3/4 and 1, interpolated linearly in between.
const VIRIDIS: [(f64, f64, f64); 5] =
    [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];

#[derive(Clone, Copy)]
enum Cell {
    Qualified(f64),
    Unqualified,
}

struct Heatmap {
    title: String,
    lrs: Vec<f64>,
    weight_decays: Vec<f64>,
    /// Panel label -> (lr index, weight-decay index) -> cell.
    panels: BTreeMap<String, BTreeMap<(usize, usize), Cell>>,
    /// Range of the qualified medians, which the colour scale spans.
    scale: (f64, f64),
}

pub(crate) fn draw(stage: &mut Staging, settings: &DataFrame, varying: &[String], grok: GrokCriterion) -> Result<()> {
    let numbers = |name: &str| -> Result<Vec<Option<f64>>> {
        Ok(settings.column(name)?.cast(&DataType::Float64)?.f64()?.iter().collect())
    };
    let lr_of = numbers(LR)?;
    let wd_of = numbers(WEIGHT_DECAY)?;
    let median = numbers(MEDIAN_GROK_EPOCH)?;
    let qualified: Vec<Option<bool>> = settings.column(QUALIFIED)?.bool()?.iter().collect();
    let lrs = sorted_distinct(&lr_of);
    let weight_decays = sorted_distinct(&wd_of);
    let others: Vec<&String> = varying.iter().filter(|c| *c != LR && *c != WEIGHT_DECAY).collect();

    let mut panels: BTreeMap<String, BTreeMap<(usize, usize), Cell>> = BTreeMap::new();
    let mut scale = (f64::INFINITY, f64::NEG_INFINITY);
    for i in 0..settings.height() {
        let (Some(lr), Some(wd)) = (lr_of[i], wd_of[i]) else {
            continue;
        };
        let label = others
            .iter()
            .map(|c| Ok(format!("{}={}", short_name(c), format_value(&settings.column(c)?.get(i)?))))
            .collect::<Result<Vec<_>>>()?
            .join(" ");
        let cell = match (qualified[i], median[i]) {
            (Some(true), Some(m)) => {
                scale = (scale.0.min(m), scale.1.max(m));
                Cell::Qualified(m)
            }
            _ => Cell::Unqualified,
        };
        let at = (position(&lrs, lr), position(&weight_decays, wd));
        panels.entry(label).or_default().insert(at, cell);
    }
    let total_panels = panels.len();
    let panels: BTreeMap<_, _> = panels.into_iter().take(MAX_PANELS).collect();
    let shown = if total_panels > panels.len() {
        format!(" (first {} of {total_panels} panels)", panels.len())
    } else {
        String::new()
    };
    let figure = Heatmap {
        title: format!(
            "Median epoch per learning rate × weight decay ({}); grey ×: not every seed got there{shown}",
            grok.meaning()
        ),
        lrs,
        weight_decays,
        panels,
        scale,
    };
    render(stage, "lr_wd_heatmap", &figure)
}

fn sorted_distinct(values: &[Option<f64>]) -> Vec<f64> {
    let mut distinct: Vec<f64> = values.iter().flatten().copied().collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    distinct
}

fn position(sorted: &[f64], value: f64) -> usize {
    sorted.partition_point(|v| *v < value)
}

fn viridis(fraction: f64) -> RGBColor {
    let scaled = fraction.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f64;
    let low = (scaled.floor() as usize).min(VIRIDIS.len() - 2);
    let t = scaled - low as f64;
    let (a, b) = (VIRIDIS[low], VIRIDIS[low + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * t).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

impl Heatmap {
    fn colour(&self, median: f64) -> RGBColor {
        let (lo, hi) = self.scale;
        viridis(if hi > lo { (median - lo) / (hi - lo) } else { 0.5 })
    }
}

impl Figure for Heatmap {
    fn size(&self) -> (u32, u32) {
        let (rows, columns) = panel_grid(self.panels.len());
        // Wide enough for the title too (about 10 px per character at 18 pt): one panel
        // alone is narrower than the title.
        let title_width = self.title.chars().count() as u32 * 10;
        ((columns as u32 * 560).max(title_width), rows as u32 * 420 + 50)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let root = root.titled(&self.title, font(18.0)).or_plot_error()?;
        let (rows, columns) = panel_grid(self.panels.len());
        let (n_lr, n_wd) = (self.lrs.len() as i32, self.weight_decays.len() as i32);
        for (area, (label, cells)) in root.split_evenly((rows, columns)).iter().zip(&self.panels) {
            let mut chart = ChartBuilder::on(area)
                .caption(label, font(14.0))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(50)
                // An integer range a..b has b - a + 1 values, hence one segment per value.
                .build_cartesian_2d((0..n_lr - 1).into_segmented(), (0..n_wd - 1).into_segmented())
                .or_plot_error()?;
            let value_at = |axis: &[f64], v: &SegmentValue<i32>| match v {
                SegmentValue::CenterOf(i) => axis.get(*i as usize).map(|x| format_number(*x)).unwrap_or_default(),
                _ => String::new(),
            };
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("learning rate")
                .y_desc("weight decay")
                .x_labels(self.lrs.len())
                .y_labels(self.weight_decays.len())
                .x_label_formatter(&|v| value_at(&self.lrs, v))
                .y_label_formatter(&|v| value_at(&self.weight_decays, v))
                .label_style(font(12.0))
                .axis_desc_style(font(13.0))
                .draw()
                .or_plot_error()?;
            for (&(x, y), cell) in cells {
                let (x, y) = (x as i32, y as i32);
                let corners = [
                    (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                    (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                ];
                let centre = (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y));
                let (fill, text, text_colour) = match *cell {
                    Cell::Qualified(m) => {
                        let fill = self.colour(m);
                        // Dark text on the bright end of the scale, white on the dark end.
                        let luminance = 0.299 * fill.0 as f64 + 0.587 * fill.1 as f64 + 0.114 * fill.2 as f64;
                        (fill, format!("{m:.0}"), if luminance > 140.0 { BLACK } else { WHITE })
                    }
                    Cell::Unqualified => (UNQUALIFIED, "×".to_string(), BLACK),
                };
                chart.draw_series(std::iter::once(Rectangle::new(corners, fill.filled()))).or_plot_error()?;
                let style = font(13.0).color(&text_colour).pos(Pos::new(HPos::Center, VPos::Center));
                chart.draw_series(std::iter::once(Text::new(text, centre, style))).or_plot_error()?;
            }
        }
        Ok(())
    }
}
