//! The benchmarks at a glance: reads the `targets` of every JSON result in
//! a directory (each benchmark script writes its own), draws one chart of
//! the ratios against their targets as a PNG, and writes the summary table
//! into the benchmarks document between its `summary` markers.
//!
//! ```text
//! bench-report <results dir> <benchmarks.md> <chart.png>
//! ```
//!
//! Each target is a ratio, ours over the reference, measured in one run.
//! The chart puts every ratio on one logarithmic axis, with a mark for the
//! target and a line at 1 (level with the reference); a bar is green when
//! its target is met, red when missed, grey when there is no target.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use serde::Deserialize;

/// One target, as the scripts write it.
#[derive(Debug, Clone, Deserialize)]
struct Target {
    label: String,
    ours: f64,
    reference: f64,
    reference_name: String,
    unit: String,
    ratio: f64,
    target: Option<f64>,
    /// `at_most` (lower is better) or `at_least` (higher is better).
    rule: String,
    met: Option<bool>,
}

/// The targets of one result file, and where it came from.
#[derive(Debug, Clone)]
struct Results {
    file: String,
    date: String,
    command: String,
    targets: Vec<Target>,
}

const FONT_FILE: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, doc, chart] = args.as_slice() else {
        bail!("usage: bench-report <results dir> <benchmarks.md> <chart.png>");
    };
    let results = load(Path::new(dir))?;
    if results.iter().all(|r| r.targets.is_empty()) {
        bail!("no result in {dir} has targets: run the benchmarks first (bench/run.sh)");
    }
    draw(&results, Path::new(chart))?;
    let chart_name = Path::new(chart)
        .strip_prefix(Path::new(doc).parent().unwrap_or(Path::new("")))
        .unwrap_or(Path::new(chart));
    write_summary(&results, Path::new(doc), chart_name)?;
    println!("wrote {chart} and the summary in {doc}");
    Ok(())
}

/// Every `*.json` in `dir` that has a `targets` array, by file name.
fn load(dir: &Path) -> Result<Vec<Results>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let value: serde_json::Value = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not JSON", file.display()))?;
        let Some(targets) = value.get("targets") else {
            continue;
        };
        let targets: Vec<Target> = serde_json::from_value(targets.clone())
            .with_context(|| format!("the targets in {} are malformed", file.display()))?;
        let meta = |key: &str| value["meta"][key].as_str().unwrap_or("").to_owned();
        out.push(Results {
            file: file.file_name().unwrap().to_string_lossy().into_owned(),
            date: meta("date"),
            command: meta("command"),
            targets,
        });
    }
    Ok(out)
}

fn colour(t: &Target) -> RGBColor {
    match t.met {
        Some(true) => RGBColor(46, 139, 87),
        Some(false) => RGBColor(200, 55, 55),
        None => RGBColor(150, 150, 150),
    }
}

/// The chart: one horizontal bar per target, ratio on a log axis.
fn draw(results: &[Results], out: &Path) -> Result<()> {
    let font = std::fs::read(FONT_FILE).with_context(|| {
        format!("cannot read {FONT_FILE}: apt-get install -y fonts-dejavu-core")
    })?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("{FONT_FILE} is not a font plotters can read"))?;

    let targets: Vec<&Target> = results.iter().flat_map(|r| &r.targets).collect();
    let rows = targets.len();
    let height = 120 + 44 * rows as u32;
    let root = BitMapBackend::new(out, (1200, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (lo, hi) = (0.003f64, 10f64);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "ours / reference, same machine, same run (left of a target mark is better for \"at most\", right for \"at least\")",
            ("sans-serif", 18),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(470)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..rows as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("ratio (log scale; 1 = level with the reference)")
        .x_label_formatter(&|v| format!("{v}"))
        .label_style(("sans-serif", 15))
        .draw()?;

    for (i, t) in targets.iter().enumerate() {
        let y = (rows - 1 - i) as f64;
        let ratio = t.ratio.clamp(lo, hi);
        chart.draw_series(std::iter::once(Rectangle::new(
            [(lo, y + 0.2), (ratio, y + 0.8)],
            colour(t).filled(),
        )))?;
        if let Some(target) = t.target {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(target, y + 0.05), (target, y + 0.95)],
                BLACK.stroke_width(3),
            )))?;
        }
        let rule = match t.rule.as_str() {
            "at_least" => "≥",
            _ => "≤",
        };
        let goal = t
            .target
            .map(|g| format!("target {rule} {g}"))
            .unwrap_or_else(|| "for information".into());
        let text = format!("{}  ({:.2}; {goal})", t.label, t.ratio);
        let (_, row) = chart.backend_coord(&(lo, y + 0.5));
        root.draw(&Text::new(
            text,
            (16, row - 8),
            ("sans-serif", 15).into_font(),
        ))?;
    }
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.0, 0.0), (1.0, rows as f64)],
        BLACK.mix(0.4).stroke_width(1),
    )))?;
    root.present()
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

fn number(v: f64, unit: &str) -> String {
    match unit {
        "s" => format!("{v:.2} s"),
        "bytes" => format!("{:.1} MB", v / 1e6),
        "MiB" => format!("{v:.1} MiB"),
        "ms" => format!("{v:.1} ms"),
        _ => format!("{v:.1} {unit}"),
    }
}

/// The summary table, between the document's summary markers.
fn write_summary(results: &[Results], doc: &Path, chart: &Path) -> Result<()> {
    let mut body = format!(
        "![ours / reference for every target]({})\n\n",
        chart.display()
    );
    body.push_str(
        "| measure | ours | reference | ours / reference | target | |\n|---|---|---|---|---|---|\n",
    );
    for r in results {
        for t in &r.targets {
            let rule = if t.rule == "at_least" { "≥" } else { "≤" };
            let (target, verdict) = match (t.target, t.met) {
                (Some(g), Some(true)) => (format!("{rule} {g}"), "met"),
                (Some(g), _) => (format!("{rule} {g}"), "**missed**"),
                (None, _) => ("—".into(), "for information"),
            };
            body.push_str(&format!(
                "| {} | {} | {} ({}) | {:.3} | {target} | {verdict} |\n",
                t.label,
                number(t.ours, &t.unit),
                number(t.reference, &t.unit),
                t.reference_name,
                t.ratio
            ));
        }
    }
    body.push_str("\nFrom:\n\n");
    for r in results.iter().filter(|r| !r.targets.is_empty()) {
        body.push_str(&format!(
            "- [benchmarks/{}](benchmarks/{}): `{}`, {}\n",
            r.file, r.file, r.command, r.date
        ));
    }
    let text =
        std::fs::read_to_string(doc).with_context(|| format!("cannot read {}", doc.display()))?;
    let (begin, end) = (
        "<!-- summary: begin (generated by bench-report) -->",
        "<!-- summary: end -->",
    );
    let Some((head, rest)) = text.split_once(begin) else {
        bail!("{} has no line {begin}", doc.display());
    };
    let Some((_, tail)) = rest.split_once(end) else {
        bail!("{} has no line {end}", doc.display());
    };
    std::fs::write(doc, format!("{head}{begin}\n{body}{end}{tail}"))
        .with_context(|| format!("cannot write {}", doc.display()))
}
