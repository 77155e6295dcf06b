//! Median grok epoch vs median Lipschitz bound of the qualified settings, one
//! colour per task, with each task's Pareto front ringed and joined.

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
    x: f64,
    y: f64,
}

struct ParetoScatter {
    tasks: Vec<String>,
    points: Vec<Point>,
    /// Sorted along each task's front, as pareto.csv is.
    front: Vec<Point>,
    x_label: String,
}

/// Writes grok_vs_lipschitz.png/.svg from settings.csv and pareto.csv's frames.
pub(crate) fn draw(
    stage: &mut Staging,
    settings: &DataFrame,
    front: &DataFrame,
    grok: GrokCriterion,
) -> Result<()> {
    let tasks = distinct_strings(settings, TASK_OP)?;
    let qualified = settings
        .clone()
        .lazy()
        .filter(col(QUALIFIED).and(col(MEDIAN_LIPSCHITZ).is_not_null()))
        .collect()?;
    let figure = ParetoScatter {
        points: points(&qualified, &tasks)?,
        front: points(front, &tasks)?,
        tasks,
        x_label: format!("median epochs ({})", grok.meaning()),
    };
    render(stage, "grok_vs_lipschitz", &figure)
}

fn points(frame: &DataFrame, tasks: &[String]) -> Result<Vec<Point>> {
    let task = frame.column(TASK_OP)?.str()?;
    let x = frame.column(MEDIAN_GROK_EPOCH)?.f64()?;
    let y = frame.column(MEDIAN_LIPSCHITZ)?.f64()?;
    Ok((0..frame.height())
        .filter_map(|i| {
            let task = tasks.iter().position(|t| Some(t.as_str()) == task.get(i))?;
            Some(Point {
                task,
                x: x.get(i)?,
                y: y.get(i)?,
            })
        })
        .collect())
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
            .caption(
                "Qualified settings: median grok epoch vs median Lipschitz bound (ringed: Pareto front per task)",
                font(20.0),
            )
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

        let ring = RGBColor(
            PARETO_RING_COLOUR.0,
            PARETO_RING_COLOUR.1,
            PARETO_RING_COLOUR.2,
        );
        for (t, task) in self.tasks.iter().enumerate() {
            let colour = series_colour(t);
            let front: Vec<(f64, f64)> = self
                .front
                .iter()
                .filter(|p| p.task == t)
                .map(|p| (p.x, p.y))
                .collect();
            chart
                .draw_series(LineSeries::new(
                    front.iter().copied(),
                    colour.stroke_width(2),
                ))
                .or_plot_error()?;
            chart
                .draw_series(
                    self.points
                        .iter()
                        .filter(|p| p.task == t)
                        .map(|p| Circle::new((p.x, p.y), 4, colour.filled())),
                )
                .or_plot_error()?
                .label(format!("{TASK_OP} = {task}"))
                .legend(move |(x, y)| Circle::new((x, y), 5, colour.filled()));
            chart
                .draw_series(
                    front
                        .iter()
                        .map(|&(x, y)| Circle::new((x, y), 8, ring.stroke_width(2))),
                )
                .or_plot_error()?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(&BLACK)
            .label_font(font(14.0))
            .draw()
            .or_plot_error()?;
        Ok(())
    }
}
