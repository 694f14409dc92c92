//! The results: one row per workload (a baseline's figure, Cairn's, the unit, their
//! ratio), shown as an aligned text table followed by each row's target, or as a JSON
//! array. A target bounds either the ratio (throughputs from below, latencies from above)
//! or Cairn's own figure, for rows with a fixed goal or without a baseline.

use anyhow::{Context, Result};
use serde::Serialize;

/// What a row must reach to meet its goal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// `cairn / baseline` at least this: throughputs, where higher is better.
    RatioAtLeast(f64),
    /// `cairn / baseline` at most this: latencies, where lower is better.
    RatioAtMost(f64),
    /// Cairn's own figure at least this, in the row's unit.
    AtLeast(f64),
    /// Cairn's own figure at most this, in the row's unit.
    AtMost(f64),
}

impl Target {
    /// The comparison and the bound, as printed.
    fn bound(self) -> (&'static str, f64) {
        match self {
            Target::RatioAtLeast(bound) | Target::AtLeast(bound) => (">=", bound),
            Target::RatioAtMost(bound) | Target::AtMost(bound) => ("<=", bound),
        }
    }
}

/// One compared workload.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    /// The baseline's figure (raw heed, or a bare TLS echo), when the workload has one.
    pub baseline: Option<f64>,
    /// Cairn's figure.
    pub cairn: f64,
    pub unit: &'static str,
    /// `cairn / baseline`, when there is a baseline.
    pub ratio: Option<f64>,
    #[serde(skip)]
    pub target: Option<Target>,
}

impl Row {
    pub fn new(
        name: &str,
        unit: &'static str,
        baseline: f64,
        cairn: f64,
        target: Option<Target>,
    ) -> Row {
        Row {
            name: name.to_string(),
            baseline: Some(baseline),
            cairn,
            unit,
            ratio: Some(cairn / baseline),
            target,
        }
    }

    /// A row with no baseline to compare with: its target, if any, bounds `cairn`.
    pub fn without_baseline(
        name: &str,
        unit: &'static str,
        cairn: f64,
        target: Option<Target>,
    ) -> Row {
        Row {
            name: name.to_string(),
            baseline: None,
            cairn,
            unit,
            ratio: None,
            target,
        }
    }

    /// Whether the row meets its target (`None` without a target, or with a target on
    /// the ratio but no baseline).
    pub fn meets_target(&self) -> Option<bool> {
        match self.target? {
            Target::RatioAtLeast(bound) => Some(self.ratio? >= bound),
            Target::RatioAtMost(bound) => Some(self.ratio? <= bound),
            Target::AtLeast(bound) => Some(self.cairn >= bound),
            Target::AtMost(bound) => Some(self.cairn <= bound),
        }
    }
}

/// What the two figures of a row are called in the table's header.
#[derive(Debug, Clone, Copy)]
pub struct Sides {
    pub baseline: &'static str,
    pub measured: &'static str,
}

/// The rows as an aligned table: text columns left, numbers right; `-` where a row has
/// no baseline.
pub fn render_table(rows: &[Row], sides: Sides) -> String {
    let headers = ["workload", sides.baseline, sides.measured, "unit", "ratio"];
    let mut lines = vec![headers.map(str::to_string)];
    lines.extend(rows.iter().map(row_cells));
    let widths: [usize; 5] = std::array::from_fn(|column| {
        lines
            .iter()
            .map(|line| line[column].chars().count())
            .max()
            .unwrap_or(0)
    });
    lines.insert(1, widths.map(|width| "-".repeat(width)));
    lines
        .iter()
        .map(|line| render_line(line, &widths) + "\n")
        .collect()
}

fn row_cells(row: &Row) -> [String; 5] {
    [
        row.name.clone(),
        row.baseline.map_or_else(|| "-".to_string(), format_rate),
        format_rate(row.cairn),
        row.unit.to_string(),
        row.ratio
            .map_or_else(|| "-".to_string(), |ratio| format!("{ratio:.2}")),
    ]
}

fn render_line(cells: &[String; 5], widths: &[usize; 5]) -> String {
    let right_aligned = [false, true, true, false, true];
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .zip(right_aligned)
        .map(|((cell, &width), right)| {
            if right {
                format!("{cell:>width$}")
            } else {
                format!("{cell:<width$}")
            }
        })
        .collect();
    padded.join("  ").trim_end().to_string()
}

/// One line per row that has a target: the ratio or the figure it bounds, the target and
/// whether it was met. A ratio has one more decimal than in the table, so that a miss by
/// a hair (0.797 against 0.80) does not read as "0.80 MISSED".
pub fn render_targets(rows: &[Row], sides: Sides) -> String {
    let width = rows
        .iter()
        .map(|row| row.name.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = format!(
        "targets (ratio = {} / {}):\n",
        sides.measured, sides.baseline
    );
    for row in rows {
        let (Some(target), Some(met)) = (row.target, row.meets_target()) else {
            continue;
        };
        let verdict = if met { "met" } else { "MISSED" };
        let (op, bound) = target.bound();
        let line = match (target, row.ratio) {
            (Target::RatioAtLeast(_) | Target::RatioAtMost(_), Some(ratio)) => format!(
                "  {:<width$}  ratio {ratio:>7.3}  target {op} {bound:<5.2}  {verdict}",
                row.name
            ),
            _ => format!(
                "  {:<width$}  {} {} {unit}  target {op} {} {unit}  {verdict}",
                row.name,
                sides.measured,
                format_rate(row.cairn),
                format_rate(bound),
                unit = row.unit,
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The rows as a JSON array of `{name, baseline, cairn, unit, ratio}` objects (`baseline`
/// and `ratio` are null for a row without a baseline).
pub fn render_json(rows: &[Row]) -> Result<String> {
    serde_json::to_string_pretty(rows).context("encoding the rows as JSON")
}

/// A figure rounded to a whole number, with thousands separators, or with one decimal
/// below 100 (a latency in µs, a time in ms).
fn format_rate(rate: f64) -> String {
    if !rate.is_finite() {
        return rate.to_string();
    }
    if rate.abs() < 100.0 {
        return format!("{rate:.1}");
    }
    let digits = format!("{rate:.0}");
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: Sides = Sides {
        baseline: "raw heed",
        measured: "cairn-store",
    };

    const SERVICE: Sides = Sides {
        baseline: "baseline",
        measured: "cairn-service",
    };

    fn sample_rows() -> Vec<Row> {
        vec![
            Row::new(
                "random put",
                "puts/s",
                200_000.0,
                150_000.0,
                Some(Target::RatioAtLeast(0.8)),
            ),
            Row::new(
                "group commit",
                "puts/s",
                500.0,
                12_345_678.4,
                Some(Target::RatioAtLeast(10.0)),
            ),
            Row::new("no target", "gets/s", 10.0, 20.0, None),
        ]
    }

    /// Rows of every other kind of target: a latency ratio, a fixed rate with a
    /// baseline for context, and figures without a baseline.
    fn service_rows() -> Vec<Row> {
        vec![
            Row::new("p99", "µs", 100.0, 250.0, Some(Target::RatioAtMost(2.0))),
            Row::new(
                "pipelined",
                "gets/s",
                1_000_000.0,
                260_000.0,
                Some(Target::AtLeast(250_000.0)),
            ),
            Row::without_baseline("memory", "KiB", 40_000.0, Some(Target::AtMost(30_720.0))),
            Row::without_baseline("ready", "ms", 12.5, Some(Target::AtMost(300.0))),
        ]
    }

    #[test]
    fn ratio_is_cairn_over_baseline() {
        let rows = sample_rows();
        assert_eq!(rows[0].ratio, Some(0.75));
        assert_eq!(rows[0].meets_target(), Some(false));
        assert_eq!(rows[1].meets_target(), Some(true));
        assert_eq!(rows[2].meets_target(), None);
    }

    #[test]
    fn targets_bound_the_ratio_or_the_figure_from_either_side() {
        let rows = service_rows();
        assert_eq!(rows[0].ratio, Some(2.5));
        assert_eq!(rows[0].meets_target(), Some(false));
        assert_eq!(rows[1].meets_target(), Some(true));
        assert_eq!(rows[2].ratio, None);
        assert_eq!(rows[2].meets_target(), Some(false));
        assert_eq!(rows[3].meets_target(), Some(true));
        let ratio_without_baseline =
            Row::without_baseline("x", "us", 1.0, Some(Target::RatioAtMost(2.0)));
        assert_eq!(ratio_without_baseline.meets_target(), None);
    }

    #[test]
    fn json_has_exactly_the_documented_fields() {
        let json: serde_json::Value =
            serde_json::from_str(&render_json(&sample_rows()).unwrap()).unwrap();
        let first = json.as_array().unwrap()[0].as_object().unwrap();
        let mut fields: Vec<&str> = first.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["baseline", "cairn", "name", "ratio", "unit"]);
        assert_eq!(first["name"], "random put");
        assert_eq!(first["baseline"], 200_000.0);
        assert_eq!(first["cairn"], 150_000.0);
        assert_eq!(first["unit"], "puts/s");
        assert_eq!(first["ratio"], 0.75);
    }

    #[test]
    fn json_has_null_baseline_and_ratio_without_a_baseline() {
        let json: serde_json::Value =
            serde_json::from_str(&render_json(&service_rows()).unwrap()).unwrap();
        let memory = json.as_array().unwrap()[2].as_object().unwrap();
        assert_eq!(memory.len(), 5);
        assert_eq!(memory["baseline"], serde_json::Value::Null);
        assert_eq!(memory["ratio"], serde_json::Value::Null);
        assert_eq!(memory["cairn"], 40_000.0);
    }

    #[test]
    fn table_aligns_columns_and_groups_thousands() {
        let expected = "\
workload      raw heed  cairn-store  unit       ratio
------------  --------  -----------  ------  --------
random put     200,000      150,000  puts/s      0.75
group commit       500   12,345,678  puts/s  24691.36
no target         10.0         20.0  gets/s      2.00
";
        assert_eq!(render_table(&sample_rows(), STORE), expected);
    }

    #[test]
    fn table_shows_a_dash_without_baseline_and_counts_characters() {
        let expected = "\
workload    baseline  cairn-service  unit    ratio
---------  ---------  -------------  ------  -----
p99              100            250  µs       2.50
pipelined  1,000,000        260,000  gets/s   0.26
memory             -         40,000  KiB         -
ready              -           12.5  ms          -
";
        assert_eq!(render_table(&service_rows(), SERVICE), expected);
    }

    #[test]
    fn targets_name_missed_rows_and_skip_rows_without_one() {
        let expected = "\
targets (ratio = cairn-store / raw heed):
  random put    ratio   0.750  target >= 0.80   MISSED
  group commit  ratio 24691.357  target >= 10.00  met
";
        assert_eq!(render_targets(&sample_rows(), STORE), expected);
    }

    #[test]
    fn targets_on_figures_show_the_figure_and_its_unit() {
        let expected = "\
targets (ratio = cairn-service / baseline):
  p99        ratio   2.500  target <= 2.00   MISSED
  pipelined  cairn-service 260,000 gets/s  target >= 250,000 gets/s  met
  memory     cairn-service 40,000 KiB  target <= 30,720 KiB  MISSED
  ready      cairn-service 12.5 ms  target <= 300 ms  met
";
        assert_eq!(render_targets(&service_rows(), SERVICE), expected);
    }

    #[test]
    fn figures_get_thousands_separators_or_a_decimal_below_100() {
        assert_eq!(format_rate(0.44), "0.4");
        assert_eq!(format_rate(99.94), "99.9");
        assert_eq!(format_rate(100.4), "100");
        assert_eq!(format_rate(999.0), "999");
        assert_eq!(format_rate(1000.0), "1,000");
        assert_eq!(format_rate(1_234_567.5), "1,234,568");
    }
}
