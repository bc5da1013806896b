//! Latency percentile curves as SVG: one panel per message size, one line per
//! transport; x is the percentile on a "nines" axis (p50, p90, p99, p99.9, ...),
//! y the round-trip latency on a log axis.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::cli::Rows;
use crate::echo::Transport;
use crate::stats;

/// Points per nine on each curve.
const STEPS: u32 = 20;

/// One distinct colour per transport, in [`Transport::ALL`] order: the floors in
/// black and grey, shmq in warm colours, the kernel in cool ones.
const COLOURS: [RGBColor; 18] = [
    RGBColor(0x00, 0x00, 0x00), // floor-spin
    RGBColor(0x7f, 0x7f, 0x7f), // floor-futex
    RGBColor(0xd6, 0x27, 0x28), // shmq-spin
    RGBColor(0xff, 0x7f, 0x0e), // shmq-adaptive
    RGBColor(0xe3, 0x77, 0xc2), // shmq-park
    RGBColor(0x1f, 0x77, 0xb4), // pipe
    RGBColor(0x17, 0xbe, 0xcf), // uds-stream
    RGBColor(0x2c, 0xa0, 0x2c), // uds-dgram
    RGBColor(0x94, 0x67, 0xbd), // tcp
    RGBColor(0x8c, 0x56, 0x4b), // eventfd
    RGBColor(0xbc, 0xbd, 0x22), // rawsync
    RGBColor(0xa5, 0x1c, 0x30), // shmq-async
    RGBColor(0xff, 0xbb, 0x78), // shmq-async-busy
    RGBColor(0x39, 0x3b, 0x79), // tokio-uds
    RGBColor(0x6b, 0x6e, 0xcf), // tokio-pipe
    RGBColor(0xf7, 0xb6, 0xd2), // shmq-select64
    RGBColor(0xc4, 0x9c, 0x00), // shmq-broadcast
    RGBColor(0x8c, 0x6d, 0x31), // shmq-broadcast4
];

/// The colour and line width of the curve of `label` (the `i`th label drawn).
fn style_of(label: &str, i: usize) -> (RGBColor, u32) {
    let at = Transport::named(label)
        .ok()
        .and_then(|t| Transport::ALL.iter().position(|&a| a == t))
        .unwrap_or(i);
    let width = if label.starts_with("shmq") { 3 } else { 2 };
    (COLOURS[at % COLOURS.len()], width)
}

/// The label of a position on the nines axis: `0` is p0, `1` p90, `2` p99, ...
pub(crate) fn nines_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.ceil() as i64 - 2).clamp(0, 6) as usize;
    format!("p{p:.decimals$}")
}

/// A latency for an axis label.
pub(crate) fn ns_label(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{} ms", trim(ns / 1e6))
    } else if ns >= 1e3 {
        format!("{} us", trim(ns / 1e3))
    } else {
        format!("{} ns", trim(ns))
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// Draws `series` (label, message size, histogram of ns) into an SVG at `path`.
///
/// # Errors
/// Writing the file failed, or there is nothing to draw.
pub(crate) fn latency_curves(
    path: &Path,
    series: &[(String, usize, &Histogram<u64>)],
) -> Result<(), Box<dyn std::error::Error>> {
    let mut sizes: Vec<usize> = series.iter().map(|s| s.1).collect();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.is_empty() {
        return Err("nothing to plot".into());
    }
    let labels: Vec<&str> = {
        let mut l: Vec<&str> = Vec::new();
        for s in series {
            if !l.contains(&s.0.as_str()) {
                l.push(&s.0);
            }
        }
        l
    };
    let root = SVGBackend::new(path, (1000, 460 * sizes.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((sizes.len(), 1));
    for (panel, &size) in panels.iter().zip(&sizes) {
        let curves: Vec<(&str, Vec<(f64, u64)>)> = series
            .iter()
            .filter(|s| s.1 == size)
            .map(|s| (s.0.as_str(), stats::curve(s.2, STEPS)))
            .collect();
        let points = curves.iter().flat_map(|c| c.1.iter());
        let x_max = points.clone().map(|p| p.0).fold(1.0f64, f64::max).ceil();
        let y_min = points.clone().map(|p| p.1).min().unwrap_or(1).max(1) as f64;
        let y_max = points.map(|p| p.1).max().unwrap_or(10).max(10) as f64;
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("round-trip latency, {size}-byte messages"),
                ("sans-serif", 20),
            )
            .margin(12)
            .margin_right(40)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, (y_min * 0.8..y_max * 1.25).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency")
            .x_labels(x_max as usize + 1)
            .x_label_formatter(&|x| nines_label(*x))
            .y_label_formatter(&|y| ns_label(*y))
            .draw()?;
        for (name, pts) in &curves {
            let i = labels.iter().position(|l| l == name).unwrap_or(0);
            let (color, width) = style_of(name, i);
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|&(x, y)| (x, y as f64)),
                    color.stroke_width(width),
                ))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels() {
        assert_eq!(nines_label(0.0), "p0");
        assert_eq!(nines_label(1.0), "p90");
        assert_eq!(nines_label(2.0), "p99");
        assert_eq!(nines_label(3.0), "p99.9");
        assert_eq!(nines_label(4.0), "p99.99");
        assert_eq!(ns_label(250.0), "250 ns");
        assert_eq!(ns_label(1500.0), "1.5 us");
        assert_eq!(ns_label(2e6), "2 ms");
        assert_eq!(style_of("floor-spin", 5), (BLACK, 2));
        assert_eq!(style_of("shmq-spin", 0).1, 3);
        assert_eq!(style_of("custom", 1).0, COLOURS[1]);
    }

    #[test]
    fn draws_an_svg() {
        let mut a = stats::histogram();
        let mut b = stats::histogram();
        for v in 1..=5000u64 {
            stats::record(&mut a, 200 + v % 50);
            stats::record(&mut b, 5000 + v);
        }
        let path = std::env::temp_dir().join(format!("shmq-bench-plot-{}.svg", std::process::id()));
        latency_curves(
            &path,
            &[
                ("floor-spin".into(), 8, &a),
                ("pipe".into(), 8, &b),
                ("pipe".into(), 64, &b),
            ],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("floor-spin") && svg.contains("p99"));
    }
}
