//! Charts drawn on the server as SVG with plotters, so a page shows them before (and without)
//! its WASM. They travel to the browser inside server-function results, which keeps hydration
//! identical on both sides.

use domain::ledger::DailyAmount;
use domain::time::UnixMillis;
use domain::uptime::{UptimeDay, UtilisationHour};
use plotters::coord::types::RangedCoordi32;
use plotters::coord::Shift;
use plotters::prelude::*;

const WIDTH: u32 = 720;
const HEIGHT: u32 = 220;
// The theme's colours (style/main.css).
const TEXT: RGBColor = RGBColor(0x8d, 0x9a, 0xbb);
const GRID: RGBColor = RGBColor(0x22, 0x30, 0x4f);
const ACCENT: RGBColor = RGBColor(0x5e, 0xea, 0xd4);
const ACCENT_2: RGBColor = RGBColor(0x81, 0x8c, 0xf8);

/// Why a chart could not be drawn (plotters' error, in words).
#[derive(Debug, thiserror::Error)]
#[error("chart: {0}")]
pub struct ChartError(String);

fn failed(e: impl std::fmt::Display) -> ChartError {
    ChartError(e.to_string())
}

/// A chart that cannot be drawn is our bug: logged, and shown as the generic error.
impl From<ChartError> for crate::errors::AppError {
    fn from(e: ChartError) -> Self {
        tracing::error!(error = %e, "could not draw a chart");
        crate::errors::AppError::Internal
    }
}

/// `MM-DD` of a UTC instant.
fn month_day(at: UnixMillis) -> String {
    at.to_rfc3339().get(5..10).unwrap_or_default().to_owned()
}

/// `HH:00` of a UTC instant.
fn hour_of_day(at: UnixMillis) -> String {
    format!("{}:00", at.to_rfc3339().get(11..13).unwrap_or_default())
}

fn percent(v: i32) -> String {
    format!("{v}%")
}

type Frame<'b, DB> = ChartContext<'b, DB, Cartesian2d<RangedCoordi32, RangedCoordi32>>;

/// What every chart shares: `0..y_max` up the side labelled by `y_label`, `slots` slots along
/// the bottom, `x_labels` of them labelled by `label`, in the theme's colours.
fn frame<'b, DB: DrawingBackend>(
    root: &'b DrawingArea<DB, Shift>,
    slots: usize,
    x_labels: usize,
    label: &dyn Fn(usize) -> String,
    y_max: i32,
    y_label: &dyn Fn(i32) -> String,
) -> Result<Frame<'b, DB>, ChartError> {
    let mut chart = ChartBuilder::on(root)
        .margin(8)
        .x_label_area_size(22)
        .y_label_area_size(64)
        .build_cartesian_2d(0..slots.max(1) as i32, 0..y_max.max(1))
        .map_err(failed)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(x_labels)
        .y_labels(5)
        .x_label_formatter(&|i| label(*i as usize))
        .y_label_formatter(&|v| y_label(*v))
        .label_style(("sans-serif", 12).into_font().color(&TEXT))
        .axis_style(GRID)
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(failed)?;
    Ok(chart)
}

/// Bars of daily uptime in percent, oldest day first.
pub fn uptime_svg(days: &[UptimeDay]) -> Result<String, ChartError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let label = |i: usize| days.get(i).map(|d| month_day(d.day)).unwrap_or_default();
        let mut chart = frame(&root, days.len(), 6, &label, 100, &percent)?;
        chart
            .draw_series(days.iter().enumerate().map(|(i, d)| {
                let x = i as i32;
                let top = i32::from(d.permille() / 10);
                let mut bar = Rectangle::new([(x, 0), (x + 1, top)], ACCENT.filled());
                bar.set_margin(0, 0, 2, 2);
                bar
            }))
            .map_err(failed)?;
        root.present().map_err(failed)?;
    }
    Ok(svg)
}

/// Bars of what an account received per day in `asset`, oldest day first.
pub fn daily_bars_svg(
    days: &[DailyAmount],
    show: &dyn Fn(i64) -> String,
) -> Result<String, ChartError> {
    // Bars are drawn in steps of 1/10,000 of the largest day (at least one base unit), which
    // keeps plotters' i32 axis exact for any amount.
    let largest = days.iter().map(|d| d.units).max().unwrap_or(0).max(1);
    let step = (largest / 10_000).max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let label = |i: usize| {
            days.get(i)
                .map(|d| month_day(UnixMillis(d.day_ms)))
                .unwrap_or_default()
        };
        let y_label = |v: i32| show(i64::from(v) * step);
        let y_max = (largest / step) as i32 + 1;
        let mut chart = frame(&root, days.len(), 6, &label, y_max, &y_label)?;
        chart
            .draw_series(days.iter().enumerate().map(|(i, d)| {
                let x = i as i32;
                let mut bar =
                    Rectangle::new([(x, 0), (x + 1, (d.units / step) as i32)], ACCENT.filled());
                bar.set_margin(0, 0, 2, 2);
                bar
            }))
            .map_err(failed)?;
        root.present().map_err(failed)?;
    }
    Ok(svg)
}

/// Lines of mean GPU and CPU utilisation per hour, broken where no heartbeat came.
pub fn utilisation_svg(hours: &[UtilisationHour]) -> Result<String, ChartError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let label = |i: usize| {
            hours
                .get(i)
                .map(|h| hour_of_day(h.hour))
                .unwrap_or_default()
        };
        let mut chart = frame(&root, hours.len(), 8, &label, 100, &percent)?;
        for (name, color, value) in [
            (
                "GPU",
                ACCENT,
                (|h: &UtilisationHour| h.gpu_percent) as fn(&UtilisationHour) -> Option<u8>,
            ),
            ("CPU", ACCENT_2, |h: &UtilisationHour| h.cpu_percent),
        ] {
            let mut labelled = false;
            for run in runs(hours, value) {
                let series = chart
                    .draw_series(LineSeries::new(run, color.stroke_width(2)))
                    .map_err(failed)?;
                if !labelled {
                    labelled = true;
                    series.label(name).legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2))
                    });
                }
            }
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 12).into_font().color(&TEXT))
            .border_style(GRID)
            .background_style(RGBColor(0x12, 0x1a, 0x2f))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(failed)?;
        root.present().map_err(failed)?;
    }
    Ok(svg)
}

/// Consecutive hours with a value, as (x, y) points: one line per run, so silent hours show
/// as gaps rather than as lines drawn across them.
fn runs(
    hours: &[UtilisationHour],
    value: fn(&UtilisationHour) -> Option<u8>,
) -> Vec<Vec<(i32, i32)>> {
    let mut runs: Vec<Vec<(i32, i32)>> = Vec::new();
    let mut current = Vec::new();
    for (i, h) in hours.iter().enumerate() {
        match value(h) {
            Some(v) => current.push((i as i32, i32::from(v))),
            None if !current.is_empty() => runs.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    // A single point draws no line; widen it to its hour so it shows.
    for run in &mut runs {
        if let [(x, y)] = run[..] {
            run.push((x + 1, y));
        }
    }
    runs
}

/// A country on the supply map: where it is and how many GPUs it has.
pub struct MapPoint<'a> {
    pub code: &'a str,
    pub lon: f64,
    pub lat: f64,
    pub gpus: i64,
}

/// The world as an equirectangular grid with a circle per country, its area proportional to
/// the country's GPUs; the largest are labelled with their code.
pub fn world_map_svg(points: &[MapPoint]) -> Result<String, ChartError> {
    const LABELLED: usize = 12;
    let largest = points.iter().map(|p| p.gpus).max().unwrap_or(0).max(1) as f64;
    let mut by_size: Vec<&MapPoint> = points.iter().filter(|p| p.gpus > 0).collect();
    by_size.sort_by(|a, b| b.gpus.cmp(&a.gpus).then_with(|| a.code.cmp(b.code)));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 360)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .build_cartesian_2d(-180f64..180f64, -58f64..84f64)
            .map_err(failed)?;
        chart
            .configure_mesh()
            .x_labels(13)
            .y_labels(7)
            .disable_x_axis()
            .disable_y_axis()
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(failed)?;
        // Smallest last would hide under the largest; draw the largest first.
        chart
            .draw_series(by_size.iter().map(|p| {
                let radius = 3.0 + 22.0 * (p.gpus as f64 / largest).sqrt();
                Circle::new((p.lon, p.lat), radius as i32, ACCENT.mix(0.45).filled())
            }))
            .map_err(failed)?;
        chart
            .draw_series(by_size.iter().take(LABELLED).map(|p| {
                Text::new(
                    p.code.to_owned(),
                    (p.lon, p.lat),
                    ("sans-serif", 11).into_font().color(&WHITE),
                )
            }))
            .map_err(failed)?;
        root.present().map_err(failed)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::money::Asset;

    fn hour(i: i64, gpu: Option<u8>) -> UtilisationHour {
        UtilisationHour {
            hour: UnixMillis(i * 3_600_000),
            online_ms: 0,
            gpu_percent: gpu,
            cpu_percent: gpu.map(|g| g / 2),
        }
    }

    #[test]
    fn silent_hours_break_the_line() {
        let hours = [
            hour(0, Some(10)),
            hour(1, Some(20)),
            hour(2, None),
            hour(3, Some(40)),
        ];
        let gpu = runs(&hours, |h| h.gpu_percent);
        assert_eq!(gpu, vec![vec![(0, 10), (1, 20)], vec![(3, 40), (4, 40)]]);
    }

    #[test]
    fn charts_are_svg_with_their_labels() {
        let days: Vec<UptimeDay> = (0..30)
            .map(|i| UptimeDay {
                day: UnixMillis(1_795_600_000_000 + i * 86_400_000),
                online_ms: i * 3_600_000,
            })
            .collect();
        let svg = uptime_svg(&days).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60.min(svg.len())]);
        assert!(svg.contains("100%") && svg.contains("<rect"));
        let hours: Vec<UtilisationHour> = (0..48)
            .map(|i| hour(i, (i % 5 != 0).then_some(30)))
            .collect();
        let svg = utilisation_svg(&hours).unwrap();
        assert!(svg.contains("GPU") && svg.contains("CPU") && svg.contains("<polyline"));
    }

    #[test]
    fn daily_bars_are_labelled_in_their_unit() {
        let days: Vec<DailyAmount> = (0..30)
            .map(|i| DailyAmount {
                day_ms: 1_795_600_000_000 + i * 86_400_000,
                units: i * 1_500_000,
            })
            .collect();
        let svg = daily_bars_svg(&days, &|u| Asset::Usdc.show(u)).unwrap();
        assert!(svg.contains("$") && svg.contains("<rect"));
        let empty = vec![
            DailyAmount {
                day_ms: 0,
                units: 0
            };
            30
        ];
        let svg = daily_bars_svg(&empty, &|u| Asset::Token.show(u)).unwrap();
        assert!(svg.contains("GCT"));
    }

    #[test]
    fn the_map_has_a_circle_per_country_with_supply_and_labels_the_largest() {
        let points = [
            MapPoint {
                code: "US",
                lon: -98.0,
                lat: 39.0,
                gpus: 900,
            },
            MapPoint {
                code: "DE",
                lon: 10.0,
                lat: 51.0,
                gpus: 100,
            },
            MapPoint {
                code: "IS",
                lon: -18.0,
                lat: 65.0,
                gpus: 0,
            },
        ];
        let svg = world_map_svg(&points).unwrap();
        assert_eq!(
            svg.matches("<circle").count(),
            2,
            "none for a country without GPUs"
        );
        let labels: Vec<&str> = svg
            .split("</text>")
            .filter_map(|t| t.rsplit('>').next())
            .map(str::trim)
            .collect();
        assert!(
            labels.contains(&"US") && labels.contains(&"DE"),
            "{labels:?}"
        );
        assert!(world_map_svg(&[]).unwrap().starts_with("<svg"));
    }
}
