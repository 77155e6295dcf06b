//! The plots of the fixture are valid, non-empty PNG and SVG files, and the
//! Pareto points drawn in the SVG are exactly those of pareto.csv.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use grokstack_analysis::{analyze, AnalyzeOptions};
use polars::prelude::*;

/// The stroke of the rings around the Pareto points, black like the overall front's line
/// (docs/OUTPUT.md); no other circle of the scatter plot is drawn in it.
const PARETO_RING_STROKE: &str = "#000000";

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

fn check_png(path: &Path) {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(bytes[..8], PNG_SIGNATURE, "{} is a PNG", path.display());
    assert_eq!(&bytes[12..16], b"IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert!(width >= 400 && height >= 300, "{}: {width}×{height}", path.display());
    assert!(bytes.len() > 5_000, "{} has content ({} bytes)", path.display(), bytes.len());
}

fn check_svg(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(text.starts_with("<svg"), "{} starts as SVG", path.display());
    assert!(text.trim_end().ends_with("</svg>"), "{} is complete", path.display());
    assert!(text.contains("<text"), "{} has labels", path.display());
    text
}

#[test]
fn every_plot_is_written_as_png_and_svg() {
    let dir = fixture(Options { lipschitz: true, progress_json: true });
    analyze(dir.path(), &AnalyzeOptions::default()).unwrap();
    let out = dir.path().join("analysis");
    for stem in ["grok_vs_lipschitz", "accuracy_curves", "lr_wd_heatmap"] {
        check_png(&out.join(format!("{stem}.png")));
        check_svg(&out.join(format!("{stem}.svg")));
    }
    let heatmap = fs::read_to_string(out.join("lr_wd_heatmap.svg")).unwrap();
    assert!(heatmap.contains('×'), "unqualified cells are marked");
}

/// (cx, cy) of every `<circle>` with no fill and the given stroke.
fn ringed_points(svg: &str, stroke: &str) -> Vec<(f64, f64)> {
    let attribute = |tag: &str, name: &str| -> Option<String> {
        let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(tag[start..].split('"').next()?.to_string())
    };
    svg.split("<circle")
        .skip(1)
        .map(|rest| &rest[..rest.find("/>").unwrap()])
        .filter(|tag| {
            attribute(tag, "fill").as_deref() == Some("none") && attribute(tag, "stroke").as_deref() == Some(stroke)
        })
        .map(|tag| (attribute(tag, "cx").unwrap().parse().unwrap(), attribute(tag, "cy").unwrap().parse().unwrap()))
        .collect()
}

/// The affine pixel map a + b·v through the extreme values of `data` and `pixels`.
fn axis_map(data: &[f64], pixels: &[f64], increasing: bool) -> impl Fn(f64) -> f64 {
    let (lo, hi) =
        (data.iter().copied().fold(f64::INFINITY, f64::min), data.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    let (plo, phi) = (
        pixels.iter().copied().fold(f64::INFINITY, f64::min),
        pixels.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let (from, to) = if increasing { (plo, phi) } else { (phi, plo) };
    move |v| from + (v - lo) / (hi - lo) * (to - from)
}

#[test]
fn pareto_points_in_the_svg_match_pareto_csv() {
    let dir = fixture(Options { lipschitz: true, progress_json: true });
    analyze(dir.path(), &AnalyzeOptions::default()).unwrap();
    let out = dir.path().join("analysis");
    // The rings mark the overall front; the families' fronts are lines only.
    let front = read_csv(&out.join("pareto.csv")).lazy().filter(col("front").eq(lit("overall"))).collect().unwrap();
    assert!(front.height() > 0);
    let xs: Vec<f64> = front.column("median_grok_epoch").unwrap().f64().unwrap().no_null_iter().collect();
    let ys: Vec<f64> = front.column("median_lipschitz_at_grok").unwrap().f64().unwrap().no_null_iter().collect();

    let mut rings = ringed_points(&check_svg(&out.join("grok_vs_lipschitz.svg")), PARETO_RING_STROKE);
    assert_eq!(rings.len(), xs.len(), "one ring per overall row of pareto.csv");

    // Pixel y grows downwards, so the Lipschitz axis maps decreasingly.
    let cx: Vec<f64> = rings.iter().map(|p| p.0).collect();
    let cy: Vec<f64> = rings.iter().map(|p| p.1).collect();
    let to_x = axis_map(&xs, &cx, true);
    let to_y = axis_map(&ys, &cy, false);
    for (x, y) in xs.iter().zip(&ys) {
        let (px, py) = (to_x(*x), to_y(*y));
        let found =
            rings.iter().position(|(cx, cy)| (cx - px).abs() <= 1.5 && (cy - py).abs() <= 1.5).unwrap_or_else(|| {
                panic!("no ring at ({px:.1}, {py:.1}) for pareto.csv point ({x}, {y}); rings: {rings:?}")
            });
        rings.swap_remove(found);
    }
}
