//! The table on stdout, BENCHMARKS.md and the scaling plot.

use plotters::prelude::*;
use std::path::Path;

/// One line of the scaling plot: (x, server µs per QUANTUM.RECOVER call).
pub type Series = Vec<(f64, f64)>;

pub fn plot(
    path: &Path,
    by_consumers: &Series,
    by_pel: &Series,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(450);
    for (area, series, x_label) in [
        (left, by_consumers, "consumers in the group"),
        (right, by_pel, "PEL size (pending entries)"),
    ] {
        let x_max = series.iter().map(|p| p.0).fold(10.0, f64::max) * 1.5;
        let y_max = series.iter().map(|p| p.1).fold(1.0, f64::max) * 1.2;
        let mut chart = ChartBuilder::on(&area)
            .caption(
                format!("server time per call vs {x_label}"),
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d((5.0..x_max).log_scale(), 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("µs per call")
            .draw()?;
        chart.draw_series(LineSeries::new(series.iter().copied(), &BLUE))?;
        chart.draw_series(series.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))?;
    }
    root.present()?;
    Ok(())
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split(':')
                    .nth(1)
                    .map(|s| s.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .trim()
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
        })
        .unwrap_or(0);
    let redis = std::process::Command::new(quantum_integration::redis_server_binary())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {} GiB; {redis}",
        mem_kb / 1024 / 1024
    )
}
