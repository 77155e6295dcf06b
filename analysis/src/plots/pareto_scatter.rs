//! Median grok epoch vs median Lipschitz bound of the qualified settings, one
//! colour per optimizer family and one marker per task; each family's front per
//! task joined in its colour, the overall front per task joined in black and
//! ringed.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::*;

use super::{font, padded_range, render, series_colour, Figure, OrPlotError, PARETO_RING_COLOUR};
use crate::columns::*;
use crate::grok_rule::GrokCriterion;
use crate::settings::distinct_strings;
use crate::staging::Staging;
use crate::tables::format_number;

struct Point {
    task: usize,
    family: usize,
    x: f64,
    y: f64,
}

struct ParetoScatter {
    tasks: Vec<String>,
    /// Per family, its legend label: the name and how many of its settings qualified.
    labels: Vec<String>,
    points: Vec<Point>,
    /// The overall front's points, sorted along each task's front as pareto.csv is.
    front: Vec<Point>,
    /// Each family's front's points, likewise.
    family_fronts: Vec<Point>,
    x_label: String,
}

/// Writes grok_vs_lipschitz.png/.svg from settings.csv and pareto.csv's frames.
pub(crate) fn draw(stage: &mut Staging, settings: &DataFrame, fronts: &DataFrame, grok: GrokCriterion) -> Result<()> {
    let tasks = distinct_strings(settings, TASK_OP)?;
    let families = distinct_strings(settings, FAMILY)?;
    let qualified =
        settings.clone().lazy().filter(col(QUALIFIED).and(col(MEDIAN_LIPSCHITZ).is_not_null())).collect()?;
    let front_rows = |overall: bool| {
        let is_overall = col(FRONT).eq(lit(OVERALL_FRONT));
        fronts.clone().lazy().filter(if overall { is_overall } else { is_overall.not() }).collect()
    };
    let family_column = settings.column(FAMILY)?.str()?;
    let qualified_column = settings.column(QUALIFIED)?.bool()?;
    let labels = families
        .iter()
        .map(|family| {
            let rows = (0..settings.height()).filter(|&i| family_column.get(i) == Some(family.as_str()));
            let (total, grokked) =
                rows.fold((0, 0), |(t, q), i| (t + 1, q + usize::from(qualified_column.get(i) == Some(true))));
            format!("{family} ({grokked} of {total} settings qualified)")
        })
        .collect();
    let figure = ParetoScatter {
        labels,
        points: points(&qualified, &tasks, &families)?,
        front: points(&front_rows(true)?, &tasks, &families)?,
        family_fronts: points(&front_rows(false)?, &tasks, &families)?,
        tasks,
        x_label: format!("median epochs ({})", grok.meaning()),
    };
    render(stage, "grok_vs_lipschitz", &figure)
}

fn points(frame: &DataFrame, tasks: &[String], families: &[String]) -> Result<Vec<Point>> {
    let task = frame.column(TASK_OP)?.str()?;
    let family = frame.column(FAMILY)?.str()?;
    let x = frame.column(MEDIAN_GROK_EPOCH)?.f64()?;
    let y = frame.column(MEDIAN_LIPSCHITZ)?.f64()?;
    let index = |names: &[String], value: Option<&str>| names.iter().position(|t| Some(t.as_str()) == value);
    Ok((0..frame.height())
        .filter_map(|i| {
            Some(Point {
                task: index(tasks, task.get(i))?,
                family: index(families, family.get(i))?,
                x: x.get(i)?,
                y: y.get(i)?,
            })
        })
        .collect())
}

/// A task's marker at `at` (plot or legend coordinates): circles for the first
/// task, triangles for the second, crosses after.
fn marker<DB: DrawingBackend, C: Clone + 'static>(task: usize, at: C, style: ShapeStyle) -> DynElement<'static, DB, C> {
    match task {
        0 => Circle::new(at, 4, style).into_dyn(),
        1 => TriangleMarker::new(at, 6, style).into_dyn(),
        _ => Cross::new(at, 4, style).into_dyn(),
    }
}

impl Figure for ParetoScatter {
    fn size(&self) -> (u32, u32) {
        // Wide enough for the x label, which names the grok rule (about 9 px per
        // character at 16 pt), beside the y label area and margins.
        let label_width = self.x_label.chars().count() as u32 * 9 + 140;
        (label_width.max(1000), 750)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let mut chart = ChartBuilder::on(root)
            .caption("Qualified settings per optimizer family (black, ringed: the overall front)", font(20.0))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(
                padded_range(self.points.iter().map(|p| p.x)),
                padded_range(self.points.iter().map(|p| p.y)),
            )
            .or_plot_error()?;
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc("median Lipschitz upper bound at the grok epoch")
            .x_label_formatter(&|v| format_number(*v))
            .y_label_formatter(&|v| format_number(*v))
            .label_style(font(14.0))
            .axis_desc_style(font(16.0))
            .draw()
            .or_plot_error()?;

        let ring = RGBColor(PARETO_RING_COLOUR.0, PARETO_RING_COLOUR.1, PARETO_RING_COLOUR.2);
        let along = |front: &[Point], task: usize, family: Option<usize>| -> Vec<(f64, f64)> {
            front
                .iter()
                .filter(|p| p.task == task && family.is_none_or(|f| p.family == f))
                .map(|p| (p.x, p.y))
                .collect()
        };
        for (f, label) in self.labels.iter().enumerate() {
            let colour = series_colour(f);
            for t in 0..self.tasks.len() {
                chart
                    .draw_series(LineSeries::new(along(&self.family_fronts, t, Some(f)), colour.stroke_width(1)))
                    .or_plot_error()?;
            }
            chart
                .draw_series(
                    self.points
                        .iter()
                        .filter(|p| p.family == f)
                        .map(|p| marker::<DB, _>(p.task, (p.x, p.y), colour.filled())),
                )
                .or_plot_error()?
                .label(label.clone())
                .legend(move |(x, y)| Circle::new((x, y), 5, colour.filled()));
        }
        for (t, task) in self.tasks.iter().enumerate() {
            let front = along(&self.front, t, None);
            chart
                .draw_series(LineSeries::new(front.iter().copied(), BLACK.stroke_width(2)))
                .or_plot_error()?
                .label(format!("overall front, {TASK_OP} = {task}"))
                .legend(move |at| marker::<DB, _>(t, at, BLACK.filled()));
            chart
                .draw_series(front.iter().map(|&(x, y)| Circle::new((x, y), 8, ring.stroke_width(2))))
                .or_plot_error()?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(font(14.0))
            .draw()
            .or_plot_error()?;
        Ok(())
    }
}
