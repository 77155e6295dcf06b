//! report.html on the fixture: one self-contained page with the headline, one
//! HTML table per table the analysis wrote, one inline SVG per plot, the sweep,
//! the missing and diverged runs, and every piece of text escaped.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use grokstack_analysis::{analyze, AnalyzeOptions};

/// A directory name and a sweep name that would run a script if not escaped.
const HOSTILE_DIR: &str = "<script>alert('dir')";
const HOSTILE_SWEEP: &str = "name = \"<script>alert(1)</script>\"\nseeds = 3\n";

/// The escaping the page must apply to `text` (`&` first, so nothing is escaped twice).
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// Files of `dir` whose names end in `extension`, sorted.
fn files_ending(dir: &Path, extension: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(extension))
        .collect();
    names.sort();
    names
}

/// The values of every `attribute="..."` in `html`.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let opener = format!("{attribute}=\"");
    html.match_indices(&opener)
        .map(|(i, _)| {
            let rest = &html[i + opener.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

#[test]
fn report_shows_every_output_self_contained_and_escaped() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(HOSTILE_DIR);
    fs::create_dir(&dir).unwrap();
    write_fixture(&dir, &Options { lipschitz: true, progress_json: true });
    fs::write(dir.join("sweep.toml"), HOSTILE_SWEEP).unwrap();
    // With the study, so that the page shows every output the analysis can write.
    let options = AnalyzeOptions { study: true, ..AnalyzeOptions::default() };
    let report = analyze(&dir, &options).unwrap();
    let out = report.out_dir;
    let html = fs::read_to_string(out.join("report.html")).unwrap();

    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("name=\"viewport\""), "responsive on a phone");
    for line in report.headline.lines() {
        assert!(html.contains(&escaped(line)), "headline line `{line}`");
    }

    // Every table the analysis wrote: one per CSV, one per Markdown table.
    let csvs = files_ending(&out, ".csv");
    let documents = files_ending(&out, ".md");
    assert!(csvs.len() >= 5 && documents.len() == 4, "{csvs:?} {documents:?}");
    for csv in &csvs {
        let tag = format!("<table data-file=\"{csv}\">");
        assert_eq!(html.matches(&tag).count(), 1, "{csv} is one table");
        let header = fs::read_to_string(out.join(csv)).unwrap();
        let section = &html[html.find(&tag).unwrap()..];
        let section = &section[..section.find("</thead>").unwrap()];
        for column in header.lines().next().unwrap().split(',') {
            let column = column.trim_matches('"');
            assert!(section.contains(&format!("<th>{}</th>", escaped(column))), "{csv}: {column}");
        }
    }
    let mut markdown_tables = 0;
    for document in &documents {
        let text = fs::read_to_string(out.join(document)).unwrap();
        let expected = text.lines().filter(|l| l.starts_with("| ---")).count();
        assert!(expected >= 1, "{document} has a table");
        let tag = format!("<table data-file=\"{document}\">");
        assert_eq!(html.matches(&tag).count(), expected, "{document}'s tables");
        markdown_tables += expected;
    }
    assert_eq!(html.matches("<caption>").count(), html.matches("<table").count(), "every table is captioned");
    // The only other table: the diverged run of setting 9.
    assert_eq!(html.matches("<table").count(), csvs.len() + markdown_tables + 1);
    assert_eq!(html.matches("<table data-file=\"runs.parquet\">").count(), 1);
    assert!(html.contains(&format!("{} runs missing", TOTAL_RUNS - ANALYSED_RUNS)));

    // Every plot inline, as written.
    let svgs = files_ending(&out, ".svg");
    assert!(svgs.len() >= 4, "{svgs:?}");
    assert_eq!(html.matches("<svg").count(), svgs.len());
    for svg in &svgs {
        let text = fs::read_to_string(out.join(svg)).unwrap();
        assert!(html.contains(text.trim()), "{svg} is embedded");
        let png = svg.replace(".svg", ".png");
        assert!(out.join(&png).is_file(), "{png} beside it");
    }

    // Self-contained: nothing is fetched from anywhere.
    for attribute in ["src", "href"] {
        for value in attribute_values(&html, attribute) {
            assert!(
                !value.contains("//") && !value.starts_with("data:") || value.is_empty(),
                "{attribute}=\"{value}\" is local"
            );
        }
    }
    for fetching in ["<script", "<link", "<iframe", "<img", "@import", "url("] {
        assert!(!html.contains(fetching), "no {fetching}");
    }

    // The sweep, escaped: the hostile names show as text.
    assert!(html.contains(&escaped(HOSTILE_SWEEP.lines().next().unwrap())));
    assert!(html.contains(&escaped(HOSTILE_DIR)));
}

#[test]
fn a_directory_without_sweep_toml_says_so() {
    let dir = fixture(Options { lipschitz: false, progress_json: false });
    let report = analyze(dir.path(), &AnalyzeOptions::default()).unwrap();
    let html = fs::read_to_string(report.out_dir.join("report.html")).unwrap();
    assert!(html.contains("has no <code>sweep.toml</code>"));
    assert_eq!(html.matches("<svg").count(), files_ending(&report.out_dir, ".svg").len());
}
