//! Charts of a benchmark run, for `--plot FILE`: line charts drawn with
//! plotters into an SVG or PNG file, the file's extension choosing which.
//!
//! A [`LineChart`] is one or more panels stacked top to bottom that share
//! the x axis (throughput above latency, say), each with its own y axis and
//! named series. The x axis may be linear, logarithmic (client counts from
//! 1 to thousands) or [`Scale::Nines`], the scale of latency distributions.
//!
//! Text is drawn with a font embedded in the program (`bench/fonts/`), so a
//! chart looks the same on every machine and needs no installed fonts.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// DejaVu Sans cut down to the characters charts print (see `bench/fonts/`).
const FONT: &[u8] = include_bytes!("../fonts/DejaVuSans-subset.ttf");
/// The family plotters asks for when a style names none.
const FONT_FAMILY: &str = "sans-serif";
/// Width of every chart, in pixels.
const WIDTH: u32 = 1000;
/// Height of one panel, in pixels.
const PANEL_HEIGHT: u32 = 400;
/// Height of the title above the panels, in pixels.
const TITLE_HEIGHT: u32 = 40;
/// Points of a latency distribution curve, evenly spaced on its x axis:
/// enough for a smooth line, few enough for a small SVG whatever the
/// number of samples.
const CURVE_POINTS: usize = 400;
/// A series of at most this many points is a few measured values (a
/// sweep's steps, a small run's samples), not a curve: each point also
/// gets a dot, so that the reader sees where the line only joins them.
const MARKED_POINTS: usize = 30;
/// Radius of those dots, in pixels.
const MARKER_RADIUS: u32 = 4;
/// Series colors in order: the Okabe–Ito palette, told apart also by
/// color-blind readers and legible on white.
const COLORS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// Why no chart was drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// A file name ending in neither .svg nor .png (found before the run).
    #[error("--plot {path}: unknown image format, the file name must end in .svg or .png")]
    UnknownFormat { path: String },
    /// A file in a directory that does not exist (found before the run).
    #[error("--plot {path}: no such directory")]
    NoDirectory { path: String },
    /// Drawing or writing the chart failed, after the run.
    #[error("cannot draw {path}: {reason}")]
    Draw { path: String, reason: String },
}

impl PlotError {
    /// The process exit code: 2 for a bad `--plot` argument, 1 when
    /// drawing failed.
    pub fn exit_code(&self) -> i32 {
        match self {
            PlotError::UnknownFormat { .. } | PlotError::NoDirectory { .. } => 2,
            PlotError::Draw { .. } => 1,
        }
    }
}

/// `--plot FILE`, for every subcommand that draws a chart.
#[derive(Debug, Clone, clap::Args)]
pub struct PlotArgs {
    /// Also draw the run's chart into this file: .svg or .png
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

impl PlotArgs {
    /// The file to draw into, if any. Called before the benchmark runs, so
    /// that a mistyped extension or directory does not waste a run.
    pub fn file(&self) -> Result<Option<PlotFile>, PlotError> {
        self.plot.as_deref().map(PlotFile::new).transpose()
    }
}

/// An image file to draw a chart into, its format known from its extension.
#[derive(Debug, Clone)]
pub struct PlotFile {
    path: PathBuf,
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Svg,
    Png,
}

impl PlotFile {
    /// `path`, which must end in `.svg` or `.png` (in any case), in a
    /// directory that exists.
    pub fn new(path: &Path) -> Result<PlotFile, PlotError> {
        let name = || path.display().to_string();
        let extension = path.extension().and_then(|e| e.to_str());
        let format = match extension.map(str::to_ascii_lowercase).as_deref() {
            Some("svg") => Format::Svg,
            Some("png") => Format::Png,
            _ => return Err(PlotError::UnknownFormat { path: name() }),
        };
        let directory = path.parent().filter(|d| !d.as_os_str().is_empty());
        if directory.is_some_and(|d| !d.is_dir()) {
            return Err(PlotError::NoDirectory { path: name() });
        }
        Ok(PlotFile {
            path: path.to_path_buf(),
            format,
        })
    }

    fn error(&self, reason: impl ToString) -> PlotError {
        PlotError::Draw {
            path: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

/// How x values are placed along the axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// Powers of ten equally apart; x ≤ 0 is left out.
    Log,
    /// Percentiles in [0, 100) with each nine equally apart (0, 90, 99,
    /// 99.9 …), so that a latency tail gets as much room as the body.
    Nines,
}

impl Scale {
    /// Where `x` lies on the drawn axis, which is linear.
    fn position(self, x: f64) -> f64 {
        match self {
            Scale::Linear => x,
            Scale::Log => x.log10(),
            Scale::Nines => -(1.0 - x / 100.0).log10(),
        }
    }

    /// The x value at `position` of the drawn axis.
    fn value_at(self, position: f64) -> f64 {
        match self {
            Scale::Linear => position,
            Scale::Log => 10f64.powf(position),
            Scale::Nines => 100.0 * (1.0 - 10f64.powf(-position)),
        }
    }
}

/// One named line: points `(x, y)` in the order to join them.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One chart of a figure: a y axis from 0 and the series drawn against it.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub y_label: String,
    pub series: Vec<Series>,
}

/// A titled figure of panels stacked top to bottom, sharing one x axis.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub x_scale: Scale,
    pub panels: Vec<Panel>,
}

impl LineChart {
    /// The latency distribution of named sets of samples in µs: latency in
    /// ms against percentile, on [`Scale::Nines`], up to each set's max.
    pub fn latency_distribution(title: &str, samples_us: &[(&str, &[i64])]) -> LineChart {
        let series = samples_us
            .iter()
            .map(|(name, samples)| Series {
                name: name.to_string(),
                points: percentile_curve(samples),
            })
            .collect();
        LineChart {
            title: title.to_string(),
            x_label: "percentile (%)".to_string(),
            x_scale: Scale::Nines,
            panels: vec![Panel {
                y_label: "latency (ms)".to_string(),
                series,
            }],
        }
    }

    /// Draws the chart into `file`, replacing it.
    pub fn draw(&self, file: &PlotFile) -> Result<(), PlotError> {
        register_font(FONT_FAMILY, FontStyle::Normal, FONT)
            .map_err(|_| file.error("the embedded font is unreadable"))?;
        let panels = u32::try_from(self.panels.len().max(1)).unwrap_or(u32::MAX);
        let size = (WIDTH, TITLE_HEIGHT + PANEL_HEIGHT * panels);
        let drawn = match file.format {
            Format::Svg => self.paint(SVGBackend::new(&file.path, size).into_drawing_area()),
            Format::Png => self.paint(BitMapBackend::new(&file.path, size).into_drawing_area()),
        };
        drawn.map_err(|error| file.error(error))
    }

    /// Paints the whole figure on `root` and writes it out.
    fn paint<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String> {
        let failed = |error: DrawingAreaErrorKind<DB::ErrorType>| error.to_string();
        root.fill(&WHITE).map_err(failed)?;
        let body = root
            .titled(&self.title, (FONT_FAMILY, 22))
            .map_err(failed)?;
        let x_range = self.x_range();
        let areas = body.split_evenly((self.panels.len().max(1), 1));
        for (panel, area) in self.panels.iter().zip(&areas) {
            self.paint_panel(panel, area, x_range.clone())
                .map_err(failed)?;
        }
        root.present().map_err(failed)
    }

    /// Paints one panel: its axes, grid, lines and legend.
    fn paint_panel<DB: DrawingBackend>(
        &self,
        panel: &Panel,
        area: &DrawingArea<DB, Shift>,
        x_range: std::ops::Range<f64>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let scale = self.x_scale;
        let mut chart = ChartBuilder::on(area)
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(75)
            .build_cartesian_2d(x_range.clone(), panel.y_range())?;
        let x_tick = |position: &f64| tick_label(scale.value_at(*position));
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(panel.y_label.as_str())
            .x_labels(x_labels(&x_range))
            .x_label_formatter(&x_tick)
            .y_label_formatter(&|y| tick_label(*y))
            // Fine lines between x labels would fall at no round value on
            // a log or nines scale.
            .x_max_light_lines(0)
            .y_max_light_lines(4)
            .label_style((FONT_FAMILY, 14))
            .axis_desc_style((FONT_FAMILY, 16))
            .draw()?;
        for (series, color) in panel.series.iter().zip(COLORS.iter().cycle()) {
            let style = color.stroke_width(2);
            let points: Vec<(f64, f64)> = series
                .points
                .iter()
                .filter_map(|&(x, y)| {
                    let x = scale.position(x);
                    (x.is_finite() && y.is_finite()).then_some((x, y))
                })
                .collect();
            if points.len() <= MARKED_POINTS {
                let dot = |&point| Circle::new(point, MARKER_RADIUS, style.filled());
                chart.draw_series(points.iter().map(dot))?;
            }
            chart
                .draw_series(LineSeries::new(points, style))?
                .label(series.name.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT_FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
    }

    /// The drawn x range covering every point of every panel.
    fn x_range(&self) -> std::ops::Range<f64> {
        let xs = self
            .panels
            .iter()
            .flat_map(|panel| &panel.series)
            .flat_map(|series| &series.points)
            .map(|&(x, _)| self.x_scale.position(x))
            .filter(|x| x.is_finite());
        let (low, high) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), x| {
            (low.min(x), high.max(x))
        });
        if low < high {
            snap(low)..snap(high)
        } else if low.is_finite() {
            // A single x value: centred in a range of one.
            low - 0.5..low + 0.5
        } else {
            0.0..1.0
        }
    }
}

impl Panel {
    /// From 0 to a little above the highest y, so no line runs along the
    /// frame.
    fn y_range(&self) -> std::ops::Range<f64> {
        let highest = self
            .series
            .iter()
            .flat_map(|series| &series.points)
            .map(|&(_, y)| y)
            .filter(|y| y.is_finite())
            .fold(0.0, f64::max);
        if highest > 0.0 {
            0.0..highest * 1.05
        } else {
            0.0..1.0
        }
    }
}

/// `position`, or the whole number it is a rounding error away from (the
/// log of 1000, the nines of 99.99 %), so that the axis ends on a label.
fn snap(position: f64) -> f64 {
    let whole = position.round();
    if (position - whole).abs() < 1e-9 {
        whole
    } else {
        position
    }
}

/// How many x labels to ask plotters for: one per whole unit of the drawn
/// axis when it spans a few (one per power of ten on a log scale, one per
/// nine on [`Scale::Nines`]), plotters' usual density otherwise.
fn x_labels(range: &std::ops::Range<f64>) -> usize {
    let units = (range.end - range.start).floor() as usize;
    if (2..=10).contains(&units) {
        units + 1
    } else {
        10
    }
}

/// A tick value in at most four decimals without trailing zeros: 99.9,
/// 1000, 0.25.
fn tick_label(value: f64) -> String {
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    match text {
        "-0" => "0".to_string(),
        text => text.to_string(),
    }
}

/// `(percentile, ms)` points of the latency distribution of `samples_us`:
/// the sorted samples, the one of index i at percentile 100 i / n (the
/// share below it), so the maximum lies log10(n) nines out. Only the
/// samples at [`CURVE_POINTS`] positions evenly apart on [`Scale::Nines`]
/// are kept: a smooth line and a small SVG whatever the number of samples.
fn percentile_curve(samples_us: &[i64]) -> Vec<(f64, f64)> {
    let mut sorted = samples_us.to_vec();
    sorted.sort_unstable();
    let Some(last) = sorted.len().checked_sub(1) else {
        return Vec::new();
    };
    let count = sorted.len() as f64;
    let nines = count.log10();
    let mut indices: Vec<usize> = (0..CURVE_POINTS)
        .map(|step| {
            let position = nines * step as f64 / (CURVE_POINTS - 1) as f64;
            let below = Scale::Nines.value_at(position) / 100.0 * count;
            // The margin keeps rounding errors from falling one index short.
            ((below + 1e-6) as usize).min(last)
        })
        .collect();
    indices.dedup();
    indices
        .into_iter()
        .map(|index| (100.0 * index as f64 / count, sorted[index] as f64 / 1000.0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

    fn sweep_chart() -> LineChart {
        let clients = [1.0, 10.0, 100.0, 1000.0, 5000.0];
        let series = |name: &str, y: fn(f64) -> f64| Series {
            name: name.to_string(),
            points: clients.iter().map(|&x| (x, y(x))).collect(),
        };
        LineChart {
            title: "sweep".to_string(),
            x_label: "clients".to_string(),
            x_scale: Scale::Log,
            panels: vec![
                Panel {
                    y_label: "msg/s".to_string(),
                    series: vec![series("throughput", |x| 1000.0 * x.sqrt())],
                },
                Panel {
                    y_label: "latency (ms)".to_string(),
                    series: vec![series("p50", |x| x / 10.0), series("p99", |x| x / 2.0)],
                },
            ],
        }
    }

    fn latency_chart() -> LineChart {
        let fast: Vec<i64> = (1..=1000).map(|n| n * 10).collect();
        let slow: Vec<i64> = (1..=50).map(|n| n * n * 100).collect();
        LineChart::latency_distribution("latency", &[("fast", &fast), ("slow", &slow)])
    }

    /// Draws `chart` into a fresh file `name`; returns the file's bytes.
    fn drawn(chart: &LineChart, name: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        chart.draw(&PlotFile::new(&path).unwrap()).unwrap();
        std::fs::read(&path).unwrap()
    }

    #[test]
    fn draws_both_chart_kinds_as_svg_with_their_labels() {
        for (chart, label) in [(sweep_chart(), "p99"), (latency_chart(), "slow")] {
            let svg = String::from_utf8(drawn(&chart, "chart.svg")).unwrap();
            assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
            assert!(svg.contains(label), "no label {label}");
            assert!(svg.contains(&chart.title));
        }
    }

    #[test]
    fn draws_both_chart_kinds_as_png() {
        for chart in [sweep_chart(), latency_chart()] {
            let png = drawn(&chart, "chart.PNG");
            assert!(png.starts_with(PNG_SIGNATURE), "{:?}", &png[..8]);
            assert!(png.len() > 1000, "{} bytes", png.len());
        }
    }

    #[test]
    fn draws_charts_without_points_series_or_panels() {
        let chart = LineChart::latency_distribution("nothing received", &[("none", &[])]);
        assert!(chart.panels[0].series[0].points.is_empty());
        assert!(drawn(&chart, "empty.svg").starts_with(b"<svg"));
        let bare = LineChart {
            panels: vec![],
            ..sweep_chart()
        };
        assert!(drawn(&bare, "bare.png").starts_with(PNG_SIGNATURE));
        let no_series = LineChart {
            panels: vec![Panel {
                y_label: "y".to_string(),
                series: vec![],
            }],
            ..sweep_chart()
        };
        assert!(drawn(&no_series, "no-series.png").starts_with(PNG_SIGNATURE));
    }

    #[test]
    fn refuses_unknown_extensions() {
        for name in ["chart.jpg", "chart", "svg"] {
            let error = PlotFile::new(Path::new(name)).unwrap_err();
            assert!(matches!(error, PlotError::UnknownFormat { .. }), "{name}");
            assert!(error.to_string().contains(".svg or .png"), "{error}");
        }
        let args = PlotArgs { plot: None };
        assert!(args.file().unwrap().is_none());
        assert!(PlotFile::new(Path::new("chart.svg")).is_ok());
    }

    #[test]
    fn refuses_a_missing_directory_before_drawing_fails() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing/chart.png");
        let error = PlotFile::new(&missing).unwrap_err();
        assert!(matches!(error, PlotError::NoDirectory { .. }), "{error}");
        assert_eq!(error.exit_code(), 2);
        let file = PlotFile::new(&dir.path().join("chart.png")).unwrap();
        dir.close().unwrap();
        let error = latency_chart().draw(&file).unwrap_err();
        assert!(matches!(error, PlotError::Draw { .. }), "{error}");
        assert_eq!(error.exit_code(), 1);
    }

    #[test]
    fn scales_map_to_the_axis_and_back() {
        for (scale, x) in [
            (Scale::Linear, 3.5),
            (Scale::Log, 5000.0),
            (Scale::Nines, 99.9),
        ] {
            let back = scale.value_at(scale.position(x));
            assert!((back - x).abs() < 1e-9, "{scale:?}: {back}");
        }
        assert!((Scale::Nines.position(99.0) - 2.0).abs() < 1e-9);
        assert_eq!(tick_label(Scale::Nines.value_at(3.0)), "99.9");
        assert_eq!(tick_label(Scale::Log.value_at(3.0)), "1000");
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(snap(Scale::Log.position(1000.0)), 3.0);
        assert_eq!(snap(2.5), 2.5);
    }

    #[test]
    fn percentile_curve_runs_from_minimum_to_maximum_in_ms() {
        let samples: Vec<i64> = (1..=1000).rev().map(|n| n * 1000).collect();
        let curve = percentile_curve(&samples);
        assert_eq!(curve.first(), Some(&(0.0, 1.0)));
        let &(percentile, max) = curve.last().unwrap();
        assert!((percentile - 99.9).abs() < 1e-9, "{percentile}");
        assert_eq!(max, 1000.0);
        assert!(curve
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert!(curve.len() <= CURVE_POINTS);
        assert_eq!(percentile_curve(&[7000]), [(0.0, 7.0)]);
        let few = percentile_curve(&[3000, 1000, 2000]);
        assert_eq!(few.iter().map(|p| p.1).collect::<Vec<_>>(), [1.0, 2.0, 3.0]);
    }
}
