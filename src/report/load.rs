//! Load results (TPS and latency under concurrency) for the terminal and for Markdown:
//! one row per variant × script mix × client count, and per script mix a mermaid line
//! chart of TPS and one of p99 against the client count, one line per variant.

use std::fmt::Write;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

use super::{fmt_count, fmt_ms};
use crate::load::{LoadPoint, LoadResult};

const HEADER: [&str; 11] = [
    "variant",
    "script",
    "clients",
    "TPS median [min–max]",
    "p50",
    "p95",
    "p99",
    "max",
    "errors",
    "timeouts",
    "round trips/tx",
];

/// The Markdown section: transport sentence, table, charts, error messages.
pub fn markdown(results: &[(String, LoadResult)]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## Load\n");
    for sentence in transport_sentences(results) {
        let _ = writeln!(md, "{sentence}\n");
    }
    let _ = writeln!(md, "| {} |", HEADER.join(" | "));
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (variant, result) in results {
        for point in &result.points {
            let mut cells = row(variant, point);
            cells[0] = format!("`{}`", cells[0]);
            let cells: Vec<String> = cells.iter().map(|c| escape(c)).collect();
            let _ = writeln!(md, "| {} |", cells.join(" | "));
        }
    }
    let _ = writeln!(
        md,
        "\nTPS counts transactions committed inside the measured window (warmup discarded), \
         median of the runs with the slowest and fastest in brackets; latencies are per \
         transaction, from one HDR histogram of all runs; errors include failed connection \
         attempts."
    );
    for mix in script_mixes(results) {
        chart(&mut md, results, &mix, "TPS", |p| p.tps_median);
        chart(&mut md, results, &mix, "p99 latency (ms)", |p| {
            if p.transactions == 0 {
                0.0
            } else {
                p.latency_ms.p99
            }
        });
    }
    if results.len() > 1 {
        let lines: Vec<String> = results
            .iter()
            .enumerate()
            .map(|(i, (v, _))| format!("{} = `{v}`", i + 1))
            .collect();
        let _ = writeln!(
            md,
            "\nLines in every chart, in order (mermaid draws no legend): {}.",
            lines.join(", ")
        );
    }
    errors(&mut md, results);
    md
}

/// A comfy-table for the terminal, with the transport sentence under it.
pub fn terminal(results: &[(String, LoadResult)]) -> String {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(HEADER.to_vec());
    for (variant, result) in results {
        for point in &result.points {
            table.add_row(row(variant, point));
        }
    }
    let mut out = format!("\nload\n{table}\n");
    for sentence in transport_sentences(results) {
        out.push_str(&sentence);
        out.push('\n');
    }
    for (variant, result) in results {
        for point in result.points.iter().filter(|p| !p.error_samples.is_empty()) {
            for message in &point.error_samples {
                let first = message.lines().next().unwrap_or("");
                out.push_str(&format!(
                    "{variant} · {} · {} clients: {first}\n",
                    point.script_mix, point.clients
                ));
            }
        }
    }
    out
}

fn row(variant: &str, p: &LoadPoint) -> Vec<String> {
    let latency = |ms: f64| {
        if p.transactions == 0 {
            "-".to_string()
        } else {
            fmt_ms(ms)
        }
    };
    let tps = |t: f64| fmt_count(t.round() as i64);
    vec![
        variant.to_string(),
        p.script_mix.clone(),
        p.clients.to_string(),
        if p.runs.len() > 1 {
            format!(
                "{} [{}–{}]",
                tps(p.tps_median),
                tps(p.tps_min),
                tps(p.tps_max)
            )
        } else {
            tps(p.tps_median)
        },
        latency(p.latency_ms.p50),
        latency(p.latency_ms.p95),
        latency(p.latency_ms.p99),
        latency(p.latency_ms.max),
        fmt_count(p.errors as i64),
        fmt_count(p.timeouts as i64),
        format!("{:.1}", p.round_trips_per_tx),
    ]
}

/// Whether round trips carried an injected delay or were the raw transport, once per
/// distinct setup (normally every variant shares one).
fn transport_sentences(results: &[(String, LoadResult)]) -> Vec<String> {
    let mut sentences: Vec<String> = Vec::new();
    for (_, r) in results {
        let sentence = match r.rtt_ms {
            Some(rtt) => format!(
                "Round trips: every request waited an injected client-side delay of {} before \
                 going over the {}, standing in for a network round trip{}.",
                fmt_ms(rtt),
                r.transport,
                r.rtt_actual_ms
                    .map(|ms| format!(
                        " (measured {} on average: the timer rounds up to whole milliseconds)",
                        fmt_ms(ms)
                    ))
                    .unwrap_or_default()
            ),
            None => format!(
                "Round trips: the raw {} with no injected delay, so a round trip costs \
                 microseconds and savings from pipelining or batching look smaller than over a \
                 network (set `load.rtt` to model one).",
                r.transport
            ),
        };
        if !sentences.contains(&sentence) {
            sentences.push(sentence);
        }
    }
    sentences
}

fn script_mixes(results: &[(String, LoadResult)]) -> Vec<String> {
    let mut mixes: Vec<String> = Vec::new();
    for (_, r) in results {
        for p in &r.points {
            if !mixes.contains(&p.script_mix) {
                mixes.push(p.script_mix.clone());
            }
        }
    }
    mixes
}

/// A line chart of `value` against clients for one script mix, a line per variant.
fn chart(
    md: &mut String,
    results: &[(String, LoadResult)],
    mix: &str,
    what: &str,
    value: fn(&LoadPoint) -> f64,
) {
    let mut clients: Vec<usize> = results
        .iter()
        .flat_map(|(_, r)| &r.points)
        .filter(|p| p.script_mix == mix)
        .map(|p| p.clients)
        .collect();
    clients.sort_unstable();
    clients.dedup();
    if clients.is_empty() {
        return;
    }
    let axis: Vec<String> = clients.iter().map(|c| c.to_string()).collect();
    let _ = writeln!(
        md,
        "\n```mermaid\nxychart-beta\n    title \"{what} by clients · {}\"\n    x-axis \"clients\" [{}]\n    y-axis \"{what}\"",
        mix.replace('"', "'"),
        axis.join(", ")
    );
    for (_, r) in results {
        let values: Vec<String> = clients
            .iter()
            .map(|&c| {
                let v = r
                    .points
                    .iter()
                    .find(|p| p.script_mix == mix && p.clients == c)
                    .map_or(0.0, value);
                format!("{v:.2}")
            })
            .collect();
        let _ = writeln!(md, "    line [{}]", values.join(", "));
    }
    let _ = writeln!(md, "```");
}

fn errors(md: &mut String, results: &[(String, LoadResult)]) {
    let failing: Vec<(&str, &LoadPoint)> = results
        .iter()
        .flat_map(|(v, r)| r.points.iter().map(move |p| (v.as_str(), p)))
        .filter(|(_, p)| !p.error_samples.is_empty())
        .collect();
    if failing.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n### Errors and timeouts\n");
    for (variant, p) in failing {
        let _ = writeln!(
            md,
            "- `{variant}` · {} · {} clients ({} errors, {} timeouts):",
            p.script_mix, p.clients, p.errors, p.timeouts
        );
        for message in &p.error_samples {
            let _ = writeln!(
                md,
                "  - `{}`",
                message.lines().next().unwrap_or("").replace('`', "'")
            );
        }
    }
    md.push('\n');
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Percentiles, RunStats};

    fn point(mix: &str, clients: usize, tps: [f64; 3], errors: u64) -> LoadPoint {
        let runs = tps
            .iter()
            .map(|&t| RunStats {
                tps: t,
                transactions: t as u64,
                seconds: 1.0,
                ..Default::default()
            })
            .collect::<Vec<_>>();
        LoadPoint {
            script_mix: mix.into(),
            clients,
            tps_median: tps[1],
            tps_min: tps[0],
            tps_max: tps[2],
            latency_ms: Percentiles {
                p50: 0.5,
                p95: 1.5,
                p99: 3.25,
                max: 12.0,
            },
            transactions: tps.iter().sum::<f64>() as u64,
            errors,
            timeouts: 0,
            error_samples: if errors > 0 {
                vec!["connect: refused\n  detail: x".into()]
            } else {
                vec![]
            },
            round_trips_per_tx: 1.0,
            runs,
        }
    }

    fn results() -> Vec<(String, LoadResult)> {
        let result = |scale: f64, rtt: Option<f64>| LoadResult {
            points: vec![
                point(
                    "read",
                    1,
                    [900.0 * scale, 1000.0 * scale, 1100.0 * scale],
                    0,
                ),
                point(
                    "read",
                    8,
                    [5000.0 * scale, 5100.0 * scale, 5200.0 * scale],
                    2,
                ),
            ],
            rtt_ms: rtt,
            rtt_actual_ms: rtt.map(|r| r + 0.5),
            transport: "unix socket".into(),
            rtt_mode: rtt.map(|_| "client".into()),
            rtt_note: None,
            rtt_probe_ms: None,
        };
        vec![
            ("current".into(), result(1.0, None)),
            ("covering".into(), result(2.0, Some(1.0))),
        ]
    }

    #[test]
    fn markdown_has_table_charts_and_transport() {
        let md = markdown(&results());
        assert!(!md.contains("\n\n\n"), "no double blank lines:\n{md}");
        assert!(
            md.contains("| `current` | read | 8 | 5,100 [5,000–5,200] | 0.500 ms |"),
            "{md}"
        );
        assert!(md.contains("x-axis \"clients\" [1, 8]"));
        assert!(md.contains("line [1000.00, 5100.00]"));
        assert!(md.contains("line [2000.00, 10200.00]"));
        assert!(md.contains("line [3.25, 3.25]"));
        assert!(md.contains("the raw unix socket with no injected delay"));
        assert!(md.contains("injected client-side delay of 1.000 ms"));
        assert!(md.contains("1 = `current`, 2 = `covering`"));
        assert!(md.contains(
            "- `current` · read · 8 clients (2 errors, 0 timeouts):\n  - `connect: refused`"
        ));
    }

    #[test]
    fn terminal_has_a_row_per_point() {
        let text = terminal(&results());
        assert_eq!(text.matches("covering").count(), 3, "{text}"); // 2 rows + 1 error line
        assert!(text.contains("10,200 [10,000–10,400]"));
    }
}
