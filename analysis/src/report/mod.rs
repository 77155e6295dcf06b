//! report.html: the whole analysis on one self-contained page (no network
//! access: inline CSS, plots as inline SVG, tables as HTML tables), readable on
//! a phone and on a wide screen. It is built from what the analysis staged, as
//! it was staged (the frames behind the CSVs, the Markdown documents, the SVG
//! text), so it can never disagree with the files beside it.

mod html;
mod markdown;

use anyhow::{Context, Result};
use polars::prelude::{col, DataFrame, IntoLazy};

use crate::columns::{DIVERGED, RUN_ID, SEED, SETTING_ID};
use crate::tables;

pub(crate) const FILE: &str = "report.html";

/// The staged outputs the page shows, in the order they were written.
#[derive(Default)]
pub(crate) struct Contents {
    tables: Vec<Section>,
    plots: Vec<Plot>,
}

enum Section {
    /// A CSV file: its frame's cells, as the Markdown tables format them.
    Table { file: String, what: String, header: Vec<String>, rows: Vec<Vec<String>> },
    /// A Markdown file, turned into HTML when the page is rendered.
    Document { file: String, markdown: String },
}

struct Plot {
    file: String,
    svg: String,
}

impl Contents {
    /// `file` holds `frame`; `what` says what a row of it is, for the caption.
    pub fn add_table(&mut self, file: &str, what: &str, frame: &DataFrame) -> Result<()> {
        let (header, rows) = tables::cells(frame).with_context(|| format!("{file} for {FILE}"))?;
        self.tables.push(Section::Table { file: file.to_string(), what: what.to_string(), header, rows });
        Ok(())
    }

    pub fn add_document(&mut self, file: &str, markdown: &str) {
        self.tables.push(Section::Document { file: file.to_string(), markdown: markdown.to_string() });
    }

    pub fn add_plot(&mut self, file: &str, svg: &str) {
        self.plots.push(Plot { file: file.to_string(), svg: svg.to_string() });
    }
}

/// What the page says besides the staged outputs.
pub(crate) struct Page<'a> {
    pub headline: &'a str,
    /// DIR/sweep.toml, None when the directory has none (older outputs).
    pub sweep_toml: Option<&'a str>,
    pub missing_runs: usize,
    /// A sharded directory's unfinished shards, one line each (as `analyze` prints them).
    pub unfinished_shards: &'a [String],
    pub skipped_runs: usize,
    /// Per-run outcomes (with `diverged`) and the columns that tell settings apart.
    pub runs: &'a DataFrame,
    pub varying: &'a [String],
}

/// Phone first: one column of at most 72rem; tables scroll inside their
/// wrapper and SVGs shrink to the width, so nothing widens the page.
const STYLE: &str = "\
body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1b1b1b;background:#fff}
main{max-width:72rem;margin:0 auto;padding:0.75rem 1rem 3rem}
h1{font-size:1.5rem;margin:0.5rem 0}
h2{font-size:1.3rem;border-bottom:1px solid #ddd;margin-top:2.5rem}
h3{font-size:1.1rem;margin-top:2rem}
h4,h5,h6{font-size:1rem}
nav a{margin-right:1rem;white-space:nowrap}
.headline{background:#f4f7fb;border-left:4px solid #1f77b4;padding:0.5rem 1rem}
.headline p{margin:0.25rem 0}
.scroll{overflow-x:auto;margin:0.75rem 0 1.25rem;max-width:100%}
table{border-collapse:collapse;font-size:0.85rem}
caption{caption-side:top;text-align:left;padding:0.25rem 0;font-size:0.9rem}
th,td{border:1px solid #d0d0d0;padding:0.2rem 0.5rem;text-align:left;white-space:nowrap}
th{background:#f0f0f0}
tbody tr:nth-child(even){background:#fafafa}
figure{margin:1rem 0 2rem}
figure svg{display:block;width:100%;height:auto}
figcaption{font-size:0.9rem;color:#444}
pre{overflow-x:auto;background:#f6f6f6;padding:0.75rem;font-size:0.85rem}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:0.9em}
";

pub(crate) fn render(page: &Page, contents: &Contents) -> Result<String> {
    let title = page.headline.lines().next().unwrap_or("grokstack analysis");
    let mut body = String::new();
    body.push_str("<h1>grokstack analysis</h1>\n<div class=\"headline\" id=\"headline\">\n");
    for line in page.headline.lines() {
        body.push_str(&format!("<p>{}</p>\n", html::escape(line)));
    }
    body.push_str(
        "</div>\n<nav><a href=\"#runs\">Missing and diverged runs</a> <a href=\"#plots\">Plots</a> \
         <a href=\"#tables\">Tables</a> <a href=\"#sweep\">Sweep</a></nav>\n",
    );
    body.push_str(&runs_section(page)?);
    body.push_str(&plots_section(&contents.plots));
    body.push_str(&tables_section(&contents.tables));
    body.push_str(&sweep_section(page.sweep_toml));
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n",
        html::escape(title)
    ))
}

/// The runs that are not in the results: missing (the sweep is unfinished)
/// and skipped by seed waves, as counts; diverged runs one per row.
fn runs_section(page: &Page) -> Result<String> {
    let mut out = String::from("<section id=\"runs\">\n<h2>Missing and diverged runs</h2>\n");
    out.push_str(&if page.missing_runs == 0 {
        "<p>No runs missing: every planned run has results.</p>\n".to_string()
    } else {
        format!(
            "<p><strong>{} runs missing</strong>: the sweep is unfinished (progress.json plans them, \
             they have no metrics yet), so every result below is provisional.</p>\n",
            page.missing_runs
        )
    });
    if !page.unfinished_shards.is_empty() {
        out.push_str("<p>Unfinished shards (train them, or resubmit their array tasks):</p>\n<ul>\n");
        for shard in page.unfinished_shards {
            out.push_str(&format!("<li><code>{}</code></li>\n", html::escape(shard)));
        }
        out.push_str("</ul>\n");
    }
    if page.skipped_runs > 0 {
        out.push_str(&format!(
            "<p>{} runs skipped by seed waves (never trained; their settings are <code>partial</code>).</p>\n",
            page.skipped_runs
        ));
    }
    let mut shown = vec![RUN_ID, SETTING_ID, SEED];
    shown.extend(page.varying.iter().map(String::as_str));
    let diverged = page
        .runs
        .clone()
        .lazy()
        .filter(col(DIVERGED))
        .select(shown.iter().map(|c| col(*c)).collect::<Vec<_>>())
        .collect()
        .context("selecting the diverged runs for the report")?;
    if diverged.height() == 0 {
        out.push_str("<p>No run diverged.</p>\n");
    } else {
        let (header, rows) = tables::cells(&diverged)?;
        let caption = format!(
            "{} diverged runs (status <code>diverged</code> in <code>runs.parquet</code>): \
             their NaN epochs never count as grokked",
            diverged.height()
        );
        out.push_str(&html::table("runs.parquet", &caption, &header, &rows));
    }
    out.push_str("</section>\n");
    Ok(out)
}

fn plots_section(plots: &[Plot]) -> String {
    let mut out = String::from("<section id=\"plots\">\n<h2>Plots</h2>\n");
    if plots.is_empty() {
        out.push_str("<p>No plots for this sweep.</p>\n");
    }
    for plot in plots {
        let stem = plot.file.trim_end_matches(".svg");
        // The SVG comes from plotters, which escapes its text; it is embedded as it is.
        out.push_str(&format!(
            "<figure id=\"{id}\">\n{svg}\n<figcaption><code>{svg_file}</code> \
             (also <a href=\"{png}\"><code>{png}</code></a>)</figcaption>\n</figure>\n",
            id = html::escape(stem),
            svg = plot.svg.trim(),
            svg_file = html::escape(&plot.file),
            png = html::escape(&format!("{stem}.png")),
        ));
    }
    out.push_str("</section>\n");
    out
}

fn tables_section(sections: &[Section]) -> String {
    let mut out = String::from("<section id=\"tables\">\n<h2>Tables</h2>\n");
    for section in sections {
        let (file, content) = match section {
            Section::Table { file, what, header, rows } => {
                let caption = format!("<code>{}</code> — {}", html::escape(file), html::escape(what));
                (file, html::table(file, &caption, header, rows))
            }
            Section::Document { file, markdown } => (file, markdown::to_html(file, markdown)),
        };
        out.push_str(&format!("<h3 id=\"{0}\">{0}</h3>\n{content}", html::escape(file)));
    }
    out.push_str("</section>\n");
    out
}

fn sweep_section(sweep_toml: Option<&str>) -> String {
    let body = match sweep_toml {
        Some(text) => format!("<pre><code>{}</code></pre>\n", html::escape(text)),
        None => "<p>This output directory has no <code>sweep.toml</code>.</p>\n".to_string(),
    };
    format!("<section id=\"sweep\">\n<h2>The resolved sweep (<code>sweep.toml</code>)</h2>\n{body}</section>\n")
}
