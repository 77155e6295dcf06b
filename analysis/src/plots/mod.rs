//! Plots, each drawn once per backend so the PNG and the SVG show the same thing.

pub(crate) mod accuracy_curves;
pub(crate) mod box_plot;
pub(crate) mod key_frequency_histogram;
pub(crate) mod lr_wd_heatmap;
pub(crate) mod pareto_scatter;
pub(crate) mod phase_epochs;
pub(crate) mod phase_losses;

use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::{col, lit, DataFrame, IntoLazy};

use crate::columns::SETTING_ID;
use crate::staging::Staging;
use crate::tables::format_value;

/// DejaVu Sans (assets/DejaVuSans-LICENSE.txt): plotters' ab_glyph text
/// rendering has no system font lookup, so the font travels in the binary.
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const FONT_FAMILY: &str = "sans-serif";

/// The ring drawn around Pareto-front points; no other circle in the scatter
/// plot has this stroke, so the front can be read back from the SVG.
pub const PARETO_RING_COLOUR: (u8, u8, u8) = (0, 0, 0);

/// Tableau 10: distinguishable series colours.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub(crate) fn series_colour(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

pub(crate) fn font(size: f64) -> TextStyle<'static> {
    (FONT_FAMILY, size).into_font().color(&BLACK)
}

/// Something drawable on any plotters backend.
pub(crate) trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Writes `stem.png` and `stem.svg` of `figure` into the staging folder.
pub(crate) fn render(stage: &mut Staging, stem: &str, figure: &impl Figure) -> Result<()> {
    register_font()?;
    let png = stage.path_for(&format!("{stem}.png"));
    {
        let root = BitMapBackend::new(&png, figure.size()).into_drawing_area();
        root.fill(&WHITE).or_plot_error()?;
        figure.draw(&root)?;
        root.present().or_plot_error()?;
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, figure.size()).into_drawing_area();
        root.fill(&WHITE).or_plot_error()?;
        figure.draw(&root)?;
        root.present().or_plot_error()?;
    }
    stage.write_svg(&format!("{stem}.svg"), &svg)
}

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(anyhow!("the embedded DejaVu Sans font could not be loaded"))
    }
}

/// plotters' errors are generic over the backend; this turns them into anyhow's.
pub(crate) trait OrPlotError<T> {
    fn or_plot_error(self) -> Result<T>;
}

impl<T, E: std::fmt::Display> OrPlotError<T> for std::result::Result<T, E> {
    fn or_plot_error(self) -> Result<T> {
        self.map_err(|e| anyhow!("drawing a plot failed: {e}"))
    }
}

/// (rows, columns) of a near-square grid holding `panels` panels.
pub(crate) fn panel_grid(panels: usize) -> (usize, usize) {
    let columns = (panels as f64).sqrt().ceil().max(1.0) as usize;
    (panels.div_ceil(columns).max(1), columns)
}

/// Padded axis range covering `values`, so no marker sits on the frame.
pub(crate) fn padded_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = if hi > lo { (hi - lo) * 0.08 } else { lo.abs().max(1.0) * 0.1 };
    (lo - pad)..(hi + pad)
}

/// The last part of a dotted column name (`train.lr` -> `lr`), for compact labels.
pub(crate) fn short_name(column: &str) -> &str {
    column.rsplit('.').next().unwrap_or(column)
}

/// "#3 lr=0.01 weight_decay=4": the setting's values on the sweep's axes (`settings`: a frame
/// with `setting_id` and those columns).
pub(crate) fn panel_title(settings: &DataFrame, varying: &[String], id: i64) -> Result<String> {
    let row = settings.clone().lazy().filter(col(SETTING_ID).eq(lit(id))).collect()?;
    let mut title = format!("#{id}");
    for name in varying {
        title.push_str(&format!(" {}={}", short_name(name), format_value(&row.column(name)?.get(0)?)));
    }
    Ok(title)
}
