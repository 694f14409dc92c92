//! The results: one row per workload (raw heed baseline, cairn-store, unit, ratio), shown
//! as an aligned text table with each row's target, or as a JSON array; and the
//! process's peak resident memory from `/proc/self/status`.

use anyhow::{Context, Result};
use serde::Serialize;

/// One compared workload. Every unit is a throughput, so a higher ratio is better.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    /// Raw heed's throughput.
    pub baseline: f64,
    /// cairn-store's throughput.
    pub cairn: f64,
    pub unit: &'static str,
    /// `cairn / baseline`.
    pub ratio: f64,
    /// Smallest acceptable ratio, when the workload has one.
    #[serde(skip)]
    pub target: Option<f64>,
}

impl Row {
    pub fn new(
        name: &str,
        unit: &'static str,
        baseline: f64,
        cairn: f64,
        target: Option<f64>,
    ) -> Row {
        Row {
            name: name.to_string(),
            baseline,
            cairn,
            unit,
            ratio: cairn / baseline,
            target,
        }
    }

    /// Whether the ratio reaches the target (`None` without a target).
    pub fn meets_target(&self) -> Option<bool> {
        self.target.map(|target| self.ratio >= target)
    }
}

const HEADERS: [&str; 5] = ["workload", "raw heed", "cairn-store", "unit", "ratio"];

/// The rows as an aligned table: text columns left, numbers right.
pub fn render_table(rows: &[Row]) -> String {
    let mut lines = vec![HEADERS.map(str::to_string)];
    lines.extend(rows.iter().map(row_cells));
    let widths: [usize; 5] = std::array::from_fn(|column| {
        lines
            .iter()
            .map(|line| line[column].len())
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
        format_rate(row.baseline),
        format_rate(row.cairn),
        row.unit.to_string(),
        format!("{:.2}", row.ratio),
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

/// One line per row that has a target: the ratio, the target and whether it was met.
/// The ratio has one more decimal than in the table, so that a miss by a hair (0.797
/// against 0.80) does not read as "0.80 MISSED".
pub fn render_targets(rows: &[Row]) -> String {
    let width = rows.iter().map(|row| row.name.len()).max().unwrap_or(0);
    let mut out = String::from("targets (ratio = cairn-store / raw heed, higher is better):\n");
    for row in rows {
        if let (Some(target), Some(met)) = (row.target, row.meets_target()) {
            let verdict = if met { "met" } else { "MISSED" };
            out.push_str(&format!(
                "  {:<width$}  ratio {:>7.3}  target >= {:<5.2}  {verdict}\n",
                row.name, row.ratio, target
            ));
        }
    }
    out
}

/// The rows as a JSON array of `{name, baseline, cairn, unit, ratio}` objects.
pub fn render_json(rows: &[Row]) -> Result<String> {
    serde_json::to_string_pretty(rows).context("encoding the rows as JSON")
}

/// A rate rounded to a whole number, with thousands separators.
fn format_rate(rate: f64) -> String {
    if !rate.is_finite() {
        return rate.to_string();
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

/// Peak resident set size of this process in KiB (`VmHWM`).
pub fn peak_rss_kib() -> Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    parse_vm_hwm_kib(&status).context("no VmHWM line in /proc/self/status")
}

fn parse_vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|number| number.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_rows() -> Vec<Row> {
        vec![
            Row::new("random put", "puts/s", 200_000.0, 150_000.0, Some(0.8)),
            Row::new("group commit", "puts/s", 500.0, 12_345_678.4, Some(10.0)),
            Row::new("no target", "gets/s", 10.0, 20.0, None),
        ]
    }

    #[test]
    fn ratio_is_cairn_over_baseline() {
        let rows = sample_rows();
        assert_eq!(rows[0].ratio, 0.75);
        assert_eq!(rows[0].meets_target(), Some(false));
        assert_eq!(rows[1].meets_target(), Some(true));
        assert_eq!(rows[2].meets_target(), None);
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
    fn table_aligns_columns_and_groups_thousands() {
        let expected = "\
workload      raw heed  cairn-store  unit       ratio
------------  --------  -----------  ------  --------
random put     200,000      150,000  puts/s      0.75
group commit       500   12,345,678  puts/s  24691.36
no target           10           20  gets/s      2.00
";
        assert_eq!(render_table(&sample_rows()), expected);
    }

    #[test]
    fn targets_name_missed_rows_and_skip_rows_without_one() {
        let expected = "\
targets (ratio = cairn-store / raw heed, higher is better):
  random put    ratio   0.750  target >= 0.80   MISSED
  group commit  ratio 24691.357  target >= 10.00  met
";
        assert_eq!(render_targets(&sample_rows()), expected);
    }

    #[test]
    fn rates_get_thousands_separators() {
        assert_eq!(format_rate(0.4), "0");
        assert_eq!(format_rate(999.0), "999");
        assert_eq!(format_rate(1000.0), "1,000");
        assert_eq!(format_rate(1_234_567.5), "1,234,568");
    }

    #[test]
    fn reads_vm_hwm() {
        let status =
            "Name:\tcairn-bench\nVmPeak:\t  9000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_vm_hwm_kib(status), Some(12345));
        assert_eq!(parse_vm_hwm_kib("Name:\tx\n"), None);
    }
}
