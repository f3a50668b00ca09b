//! Prometheus 3's windows against the stand-in's, pinned: the closed loop runs Debian's Prometheus 2.42 where the
//! manifests deploy 3.14, and the triggers read `rate(…[1m])` and `avg_over_time(…[1m])` at a 5 s scrape.
//!
//! Two rules differ, both read from prometheus/prometheus at their tags:
//! - the window: 2.42 keeps a sample at the window's start (`promql/engine.go`, `t >= mint`), 3.14 leaves it out
//!   (`t > mint`);
//! - `rate()`'s start for a counter: 2.42 first moves the start to the counter's zero point and then checks it against
//!   1.1 sample intervals (`promql/functions.go`, `extrapolatedRate`), 3.14 first caps a far start at half an interval
//!   and then takes the zero point only if nearer. A series that begins inside the window (a new replica's counter)
//!   reads lower in 3.14.
//!
//! The rules are ported once, in `surge_keda::promql`. The table's 2.42 column is what
//! the real `promtool` 2.42 computes (checked below, at the instant and a millisecond later); the 3.14 column is the
//! port of 3.14's rules. Neither Prometheus 3 nor its promtool runs here.

use std::process::Command;

use surge_keda::promql::{self, Rule, Sample};

#[derive(Debug, Clone, Copy)]
enum Function {
    Rate,
    AvgOverTime,
}

impl Function {
    fn promql(self, series: &str) -> String {
        match self {
            Function::Rate => format!("rate({series}[1m])"),
            Function::AvgOverTime => format!("avg_over_time({series}[1m])"),
        }
    }
}

const SCRAPE_SECONDS: f64 = 5.0;
const WINDOW_SECONDS: f64 = 60.0;

/// (time in seconds, value) of the samples a series has at every scrape from 0 (`None`: not scraped yet).
fn samples(values: &[Option<f64>]) -> Vec<Sample> {
    values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i as f64 * SCRAPE_SECONDS, v))).collect()
}

fn evaluate(function: Function, samples: &[Sample], at: f64, rule: Rule) -> Option<f64> {
    match function {
        Function::Rate => promql::rate(samples, at, WINDOW_SECONDS, rule),
        Function::AvgOverTime => promql::avg_over_time(samples, at, WINDOW_SECONDS, rule),
    }
}

/// One row: a series scraped every 5 s, a function of it evaluated at 120 s, on a scrape (the window's start too).
struct Case {
    what: &'static str,
    series: &'static str,
    values: Vec<Option<f64>>,
    function: Function,
    v2_42: f64,
    v3_14: f64,
}

const AT: f64 = 120.0;

fn cases() -> Vec<Case> {
    let steady: Vec<Option<f64>> = (0..=24).map(|i| Some(10.0 * f64::from(i))).collect();
    // Flat at 100 until 100 s, then 10 a scrape: load arriving 20 s before the evaluation.
    let step: Vec<Option<f64>> =
        (0..=24).map(|i| Some(if i <= 20 { 100.0 } else { 100.0 + 10.0 * f64::from(i - 20) })).collect();
    // A replica's counter first scraped at 90 s (10 requests by then), 10 more a scrape.
    let fresh: Vec<Option<f64>> = (0..=24).map(|i| (i >= 18).then(|| 10.0 * f64::from(i - 17))).collect();
    vec![
        Case {
            what: "a steady rate: the sample at the start left out, extrapolation makes it up",
            series: "steady",
            values: steady.clone(),
            function: Function::Rate,
            v2_42: 2.0,
            v3_14: 2.0,
        },
        Case {
            what:
                "load arriving 20 s ago: 3.14 extrapolates 55 s of samples to the window (2.42 a millisecond later too)",
            series: "step",
            values: step.clone(),
            function: Function::Rate,
            v2_42: 40.0 / 60.0,
            v3_14: 40.0 / 55.0,
        },
        Case {
            what: "cpu-demand's average over the same step: 12 samples where 2.42 holds 13",
            series: "step",
            values: step,
            function: Function::AvgOverTime,
            v2_42: 1400.0 / 13.0,
            v3_14: 1300.0 / 12.0,
        },
        Case {
            what: "a new replica's counter: 2.42 extrapolates to its zero point, 3.14 half an interval",
            series: "fresh",
            values: fresh,
            function: Function::Rate,
            v2_42: 60.0 * (30.0 + 5.0) / 30.0 / 60.0,
            v3_14: 60.0 * (30.0 + 2.5) / 30.0 / 60.0,
        },
        Case {
            what: "a steady average",
            series: "steady",
            values: steady,
            function: Function::AvgOverTime,
            v2_42: 180.0,
            v3_14: 185.0,
        },
    ]
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn each_rule_gives_the_tables_figure() {
    for case in cases() {
        let series = samples(&case.values);
        for (rule, expected) in [(Rule::V2_42, case.v2_42), (Rule::V3_14, case.v3_14)] {
            let got = evaluate(case.function, &series, AT, rule).expect("a value");
            assert!(close(got, expected), "{}: {rule:?} gives {got}, the table {expected}", case.what);
        }
    }
}

/// Left-open is what a millisecond of scrape jitter already does: 3.14's figure at an aligned instant is 2.42's a
/// millisecond later, for every row but the new replica's, where the start rule itself changed.
#[test]
fn the_left_open_window_is_a_millisecond_of_jitter_for_2_42() {
    for case in cases() {
        let series = samples(&case.values);
        let later = evaluate(case.function, &series, AT + 0.001, Rule::V2_42).expect("a value");
        let relative = (later - case.v3_14).abs() / case.v3_14;
        if case.series == "fresh" {
            assert!(later > case.v3_14 * 1.05, "{}: 2.42 reads {later}, 3.14 {}", case.what, case.v3_14);
        } else {
            assert!(relative < 1e-4, "{}: 2.42 a millisecond later {later}, 3.14 {}", case.what, case.v3_14);
        }
    }
}

/// The 2.42 column against the real engine: `promtool test rules` with no expected samples prints what it got.
#[test]
fn the_2_42_column_is_what_the_real_promtool_computes() {
    let version = Command::new("promtool").arg("--version").output().expect("promtool (make tools installs it)");
    let version = String::from_utf8_lossy(&version.stdout).into_owned() + &String::from_utf8_lossy(&version.stderr);
    assert!(version.contains("version 2.42"), "this table was checked against 2.42: {version}");
    let mut input = String::new();
    let mut exprs = String::new();
    let mut expected = Vec::new();
    for (i, case) in cases().iter().enumerate() {
        let name = format!("{}_{i}", case.series);
        let values: Vec<String> =
            case.values.iter().map(|v| v.map_or_else(|| "_".to_owned(), |v| format!("{v}"))).collect();
        input += &format!("      - series: '{name}'\n        values: '{}'\n", values.join(" "));
        let series = samples(&case.values);
        for (eval_time, at) in [("2m", AT), ("120001ms", AT + 0.001)] {
            let expr = case.function.promql(&name);
            exprs += &format!("      - expr: '{expr}'\n        eval_time: {eval_time}\n");
            let ours = evaluate(case.function, &series, at, Rule::V2_42).expect("a value");
            expected.push((expr, ours, case.what));
        }
    }
    let file = format!("tests:\n  - interval: 5s\n    input_series:\n{input}    promql_expr_test:\n{exprs}");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("window-edge.yml");
    std::fs::write(&path, &file).expect("write the test file");
    let out = Command::new("promtool").args(["test", "rules"]).arg(&path).output().expect("promtool runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // Each expression's failure report: `expr: "…", time: …,` then `exp: nil` then `got: {} VALUE`.
    let got: Vec<f64> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("got: {}"))
        .map(|v| v.trim().parse::<f64>().unwrap_or_else(|e| panic!("{v}: {e}\n{text}")))
        .collect();
    assert_eq!(got.len(), expected.len(), "one value per expression:\n{text}\n{file}");
    for ((expr, ours, what), real) in expected.iter().zip(&got) {
        assert!(close(*ours, *real), "{what}: {expr} is {real} in promtool 2.42, {ours} in the port");
    }
}
