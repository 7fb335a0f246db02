//! `compare --plot FILE.svg`: each row's latency CDF, rustcd and etcd on one chart, the charts
//! in a grid, latency on a log scale.

use std::path::Path;

use plotters::prelude::*;

/// One chart: a row's name and both servers' latencies (seconds, ascending).
pub struct Series<'a> {
    pub name: &'a str,
    pub rustcd: &'a [f64],
    pub etcd: &'a [f64],
}

/// Up to 400 points of a CDF, in milliseconds.
fn cdf(lats: &[f64]) -> Vec<(f64, f64)> {
    let n = lats.len();
    let step = n.div_ceil(400).max(1);
    let mut pts: Vec<(f64, f64)> =
        (0..n).step_by(step).map(|i| ((lats[i] * 1000.0).max(1e-3), (i + 1) as f64 / n as f64)).collect();
    if let Some(last) = lats.last() {
        pts.push(((last * 1000.0).max(1e-3), 1.0));
    }
    pts
}

pub fn write(path: &Path, charts: &[Series]) -> Result<(), String> {
    let cols = 2;
    let rows = charts.len().div_ceil(cols).max(1);
    let root = SVGBackend::new(path, (1200, 340 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let areas = root.split_evenly((rows, cols));
    for (area, s) in areas.iter().zip(charts) {
        let all = s.rustcd.iter().chain(s.etcd.iter());
        let lo = all.clone().copied().fold(f64::INFINITY, f64::min).max(1e-6) * 1000.0;
        let hi = all.copied().fold(0.0, f64::max).max(1e-6) * 1000.0;
        let (lo, hi) = if lo.is_finite() && hi > lo { (lo * 0.9, hi * 1.1) } else { (0.001, 1000.0) };
        let mut chart = ChartBuilder::on(area)
            .caption(s.name, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d((lo..hi).log_scale(), 0f64..1f64)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(6)
            .light_line_style(WHITE)
            .x_desc("latency (ms, log scale)")
            .y_desc("fraction of requests")
            .draw()
            .map_err(|e| e.to_string())?;
        for (name, lats, color) in [("rustcd", s.rustcd, RED), ("etcd 3.4", s.etcd, BLUE)] {
            chart
                .draw_series(LineSeries::new(cdf(lats), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_both_servers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cdf.svg");
        let a: Vec<f64> = (1..=1000).map(|i| i as f64 / 1e5).collect();
        let b: Vec<f64> = (1..=500).map(|i| i as f64 / 1e4).collect();
        write(&path, &[Series { name: "put", rustcd: &a, etcd: &b }, Series { name: "range", rustcd: &b, etcd: &a }])
            .expect("plot");
        let svg = std::fs::read_to_string(&path).expect("svg");
        assert!(svg.starts_with("<svg") && svg.contains("rustcd") && svg.contains("etcd 3.4") && svg.contains("range"));
        assert!(svg.matches("<polyline").count() >= 4, "two lines per chart");
        let pts = cdf(&a);
        assert!(pts.len() <= 402 && pts.last() == Some(&(10.0, 1.0)), "{:?}", pts.last());
    }
}
