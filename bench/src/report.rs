//! What the subcommands' reports share: latency percentiles, plain-text
//! tables and the progress bar on stderr.

use std::fmt::{Display, Write as _};
use std::io::IsTerminal;
use std::time::Duration;

use client::delivery::Latency;
use indicatif::ProgressBar;

/// p50, p90, p99, p99.9 (nearest rank) and max; `None` without samples.
pub fn percentiles(mut samples: Vec<i64>) -> Option<Latency> {
    samples.sort_unstable();
    let max = *samples.last()?;
    // The sample at rank ceil(per_mille / 1000 * n), counting from 1.
    let at = |per_mille: usize| {
        let rank = (per_mille * samples.len()).div_ceil(1000).max(1);
        samples[rank - 1]
    };
    Some(Latency {
        p50: at(500),
        p90: at(900),
        p99: at(990),
        p99_9: at(999),
        max,
    })
}

/// A duration in whole µs, the unit of the timed subcommands' samples.
pub fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// Percentiles of µs samples, in ms.
pub fn percentiles_ms(samples_us: Vec<i64>) -> Option<Latency<f64>> {
    percentiles(samples_us).map(|latency| latency.map(|us| us as f64 / 1000.0))
}

/// A run's report and the latency samples (µs) behind its percentiles,
/// kept for the chart of `--plot`: one set, one per round (`S =
/// Vec<Vec<i64>>`), or none (`S = ()`) when the report's percentiles are
/// all the chart needs.
#[derive(Debug)]
pub struct Measured<R, S = Vec<i64>> {
    pub report: R,
    pub samples_us: S,
}

/// Header cells of [`latency_cells`].
pub const LATENCY_HEADER: [&str; 5] = ["p50_ms", "p90_ms", "p99_ms", "p99.9_ms", "max_ms"];

/// The percentiles as table cells (`-` without samples): whole ms as they
/// are, `f64` ms to three decimals (µs).
pub fn latency_cells<T: Display>(latency: Option<&Latency<T>>) -> Vec<String> {
    match latency {
        Some(l) => [&l.p50, &l.p90, &l.p99, &l.p99_9, &l.max]
            .map(|ms| format!("{ms:.3}"))
            .to_vec(),
        None => vec!["-".to_string(); LATENCY_HEADER.len()],
    }
}

/// A one-run report: `topic: …`, then a header of `columns` and the
/// latency columns, and one row of `cells` and the latency cells.
pub fn run_table<T: Display>(
    topic: &str,
    columns: &[&str],
    cells: Vec<String>,
    latency: Option<&Latency<T>>,
) -> String {
    rows_table(&format!("topic: {topic}"), columns, vec![(cells, latency)])
}

/// A report of several runs (rounds, steps): the `title` line, then a
/// header of `columns` and the latency columns, and per row its cells and
/// latency cells.
pub fn rows_table<T: Display>(
    title: &str,
    columns: &[&str],
    rows: Vec<(Vec<String>, Option<&Latency<T>>)>,
) -> String {
    let header = columns.iter().chain(&LATENCY_HEADER).map(|h| h.to_string());
    let mut lines = vec![header.collect()];
    for (mut cells, latency) in rows {
        cells.extend(latency_cells(latency));
        lines.push(cells);
    }
    format!("{title}\n{}", table(&lines))
}

/// A bar of `len` steps on stderr, hidden when stderr is no terminal (so
/// that a redirected run prints nothing but its report and errors).
pub fn progress_bar(len: u64) -> ProgressBar {
    if std::io::stderr().is_terminal() {
        ProgressBar::new(len)
    } else {
        ProgressBar::hidden()
    }
}

/// `rows` as aligned text, one line each: the first column left-aligned,
/// the others right-aligned, two spaces apart.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            let cells = rows.iter().filter_map(|row| row.get(column));
            cells.map(String::len).max().unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            let width = widths[column];
            let _ = match column {
                0 => write!(line, "{cell:<width$}"),
                _ => write!(line, "  {cell:>width$}"),
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        assert_eq!(percentiles(Vec::new()), None);
        let one = percentiles(vec![7]).unwrap();
        assert_eq!((one.p50, one.p99_9, one.max), (7, 7, 7));
        // 1..=1000 shuffled: rank k holds k.
        let samples: Vec<i64> = (1..=1000).map(|n| (n * 7919) % 1000 + 1).collect();
        let p = percentiles(samples).unwrap();
        assert_eq!(
            (p.p50, p.p90, p.p99, p.p99_9, p.max),
            (500, 900, 990, 999, 1000)
        );
        let ten = percentiles((1..=10).collect()).unwrap();
        assert_eq!((ten.p50, ten.p90, ten.p99, ten.max), (5, 9, 10, 10));
    }

    #[test]
    fn percentiles_ms_convert_microseconds_and_print_to_the_microsecond() {
        let p = percentiles_ms(vec![1500, 250]).unwrap();
        assert_eq!((p.p50, p.max), (0.25, 1.5));
        assert_eq!(latency_cells(Some(&p))[4], "1.500");
        assert_eq!(latency_cells(percentiles(vec![3]).as_ref())[0], "3");
        assert_eq!(latency_cells::<f64>(None), ["-"; 5]);
    }

    #[test]
    fn rows_table_has_a_title_a_header_and_a_row_each() {
        let fast = percentiles_ms(vec![1000]);
        let rows = vec![
            (vec!["1".to_string()], fast.as_ref()),
            (vec!["2".to_string()], None),
        ];
        let text = rows_table("steps", &["n"], rows);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0], ["steps"]);
        assert_eq!(lines[1][..2], ["n", "p50_ms"]);
        assert_eq!(lines[2], ["1", "1.000", "1.000", "1.000", "1.000", "1.000"]);
        assert_eq!(lines[3], ["2", "-", "-", "-", "-", "-"]);
    }

    #[test]
    fn table_aligns_columns() {
        let rows = [
            vec!["name".to_string(), "n".to_string()],
            vec!["a".to_string(), "100".to_string()],
        ];
        assert_eq!(table(&rows), "name    n\na     100\n");
    }
}
