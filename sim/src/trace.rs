//! A recorded load: what a real service received, replayed. Read from the Prometheus HTTP API's `query_range` answer
//! (a matrix) for a counter of requests, or from a CSV export of one (a header naming a `timestamp` column, ISO 8601
//! or Unix seconds, a `value` column, and a column per label). Each series is a counter (a fall is a reset: the new
//! value is what came since); the arrivals of an interval are the increases summed over the series, spread evenly at
//! random (seeded) within it.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use serde_json::Value;
use surge_capacity::request::{self, Bounds};

use crate::pod::Task;
use crate::run::Arrival;

/// One counter's samples, (Unix seconds, value), in time order.
type Series = Vec<(f64, f64)>;

/// The series of a `query_range` answer or a CSV export, told apart by their first character.
pub fn parse(text: &str) -> Result<Vec<Series>, String> {
    let series = if text.trim_start().starts_with('{') { matrix(text)? } else { csv(text)? };
    if series.iter().all(|s| s.len() < 2) {
        return Err("no series has two samples: a counter's increase needs an interval".into());
    }
    Ok(series)
}

fn matrix(text: &str) -> Result<Vec<Series>, String> {
    let answer: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if answer["status"] != "success" {
        return Err(format!("the answer's status is {}, not \"success\"", answer["status"]));
    }
    if answer["data"]["resultType"] != "matrix" {
        return Err(format!(
            "data.resultType is {}: a query_range answer is a \"matrix\"",
            answer["data"]["resultType"]
        ));
    }
    let result = answer["data"]["result"].as_array().ok_or("data.result: a list of series")?;
    result
        .iter()
        .enumerate()
        .map(|(index, series)| {
            let values = series["values"].as_array().ok_or_else(|| format!("data.result[{index}].values: a list"))?;
            values
                .iter()
                .map(|pair| {
                    let at = pair[0].as_f64();
                    let value = pair[1].as_str().and_then(|v| v.parse::<f64>().ok());
                    at.zip(value).filter(|(_, v)| v.is_finite()).ok_or_else(|| {
                        format!("data.result[{index}].values: [unix seconds, \"counter value\"] pairs, not {pair}")
                    })
                })
                .collect()
        })
        .collect()
}

fn csv(text: &str) -> Result<Vec<Series>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().ok_or("an empty file")?.split(',').map(str::trim).collect();
    let column = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let at_column = column("timestamp").ok_or("the CSV header names no `timestamp` column")?;
    let value_column = column("value").ok_or("the CSV header names no `value` column")?;
    let mut series: BTreeMap<Vec<String>, Series> = BTreeMap::new();
    for (number, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let row = number + 2;
        if cells.len() != header.len() {
            return Err(format!("line {row}: {} cells where the header has {}", cells.len(), header.len()));
        }
        let at = timestamp(cells[at_column]).map_err(|e| format!("line {row}: timestamp {}: {e}", cells[at_column]))?;
        let value = cells[value_column]
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("line {row}: value {}: a number", cells[value_column]))?;
        let labels = cells.iter().enumerate().filter(|(i, _)| *i != at_column && *i != value_column);
        series.entry(labels.map(|(_, c)| (*c).to_owned()).collect()).or_default().push((at, value));
    }
    Ok(series
        .into_values()
        .map(|mut s| {
            s.sort_by(|a, b| a.0.total_cmp(&b.0));
            s
        })
        .collect())
}

/// Unix seconds, or ISO 8601 / RFC 3339 (`2026-12-07T07:00:00Z`).
fn timestamp(cell: &str) -> Result<f64, String> {
    if let Ok(seconds) = cell.parse::<f64>() {
        return Ok(seconds);
    }
    let at = humantime::parse_rfc3339_weak(cell).map_err(|e| format!("neither Unix seconds nor ISO 8601 ({e})"))?;
    at.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).map_err(|e| e.to_string())
}

/// The tasks a recorded load's requests ask for, each with its weight: one task, or several drawn at random (seeded)
/// in proportion to their weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix(Vec<(Task, f64)>);

impl Mix {
    pub fn one(task: Task) -> Self {
        Self(vec![(task, 1.0)])
    }

    /// `surge tune --task` values: `cpu=6,memory=120,duration=20` with `sync` or `async` (async unless said) and
    /// `weight=N` (1 unless said), each value within what the consumer accepts.
    pub fn parse(specs: &[String]) -> Result<Self, String> {
        if specs.is_empty() {
            return Err("no task given".into());
        }
        specs
            .iter()
            .map(|spec| weighted(spec).map_err(|e| format!("--task {spec}: {e}")))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn pick(&self, rng: &mut fastrand::Rng) -> Task {
        let total: f64 = self.0.iter().map(|(_, weight)| weight).sum();
        let mut point = rng.f64() * total;
        for (task, weight) in &self.0 {
            if point < *weight {
                return *task;
            }
            point -= weight;
        }
        self.0[self.0.len() - 1].0
    }
}

/// One `--task` value.
fn weighted(spec: &str) -> Result<(Task, f64), String> {
    let (mut cpu, mut memory, mut duration, mut sync, mut weight) = (None, 0, None, false, 1.0);
    for part in spec.split(',').map(str::trim) {
        let whole = |value: &str, name: &str, bounds: Bounds| -> Result<u64, String> {
            let number = value.parse::<f64>().map_err(|_| format!("{name}: {}, not {value:?}", bounds.expected()))?;
            bounds.check(name, number)
        };
        match part.split_once('=') {
            Some(("cpu", value)) => cpu = Some(whole(value, "cpu", request::CPU_INTENSITY)?),
            Some(("memory", value)) => memory = whole(value, "memory", request::MEMORY_MIB)?,
            Some(("duration", value)) => duration = Some(whole(value, "duration", request::DURATION_SECS)?),
            Some(("weight", value)) => {
                weight = value
                    .parse::<f64>()
                    .ok()
                    .filter(|w| w.is_finite() && *w > 0.0)
                    .ok_or_else(|| format!("weight: a number above 0, not {value:?}"))?;
            }
            None if part == "sync" => sync = true,
            None if part == "async" => sync = false,
            _ => return Err(format!("{part:?}: cpu=, memory=, duration=, weight=, sync or async")),
        }
    }
    let cpu = cpu.ok_or("cpu= is required")?;
    let duration = duration.ok_or("duration= is required")?;
    let task = Task { cpu_intensity: cpu as u8, seconds: duration as f64, memory_bytes: memory << 20, sync };
    Ok((task, weight))
}

/// The arrivals the series record, from the earliest sample on, each asking for `task`.
pub fn arrivals(series: &[Series], mix: &Mix, seed: u64) -> Vec<Arrival> {
    let start = series.iter().filter_map(|s| s.first()).map(|(at, _)| *at).fold(f64::INFINITY, f64::min);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut arrivals = Vec::new();
    for samples in series {
        // A counter's increases need not be whole (an extrapolated export): what is left over carries on.
        let mut carried = 0.0;
        for pair in samples.windows(2) {
            let ((from, before), (to, after)) = (pair[0], pair[1]);
            let increase = if after >= before { after - before } else { after };
            carried += increase;
            let count = carried.floor();
            carried -= count;
            for _ in 0..count as u64 {
                let at = from - start + rng.f64() * (to - from);
                arrivals.push(Arrival { at, task: mix.pick(&mut rng) });
            }
        }
    }
    arrivals.sort_by(|a, b| a.at.total_cmp(&b.at));
    arrivals
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASK: Task = Task { cpu_intensity: 5, seconds: 10.0, memory_bytes: 0, sync: false };

    #[test]
    fn a_matrix_and_a_csv_of_the_same_counters_give_the_same_arrivals() {
        // Two pods' counters over two minutes; pod b restarts (its counter falls to 3: 3 new requests).
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"pod":"a"},"values":[[1000,"10"],[1060,"40"],[1120,"46"]]},
            {"metric":{"pod":"b"},"values":[[1000,"100"],[1060,"120"],[1120,"3"]]}]}}"#;
        let csv = "timestamp,pod,value\n1970-01-01T00:16:40Z,a,10\n1060,a,40\n1120,a,46\n1000,b,100\n\
                   1970-01-01T00:17:40Z,b,120\n1120,b,3\n";
        for text in [matrix, csv] {
            let arrivals = arrivals(&parse(text).expect("parses"), &Mix::one(TASK), 7);
            // (30 + 6) + (20 + 3) = 59.
            assert_eq!(arrivals.len(), 59, "{text}");
            let first_minute = arrivals.iter().filter(|a| a.at < 60.0).count();
            assert_eq!(first_minute, 50, "{text}");
            assert!(arrivals.iter().all(|a| (0.0..=120.0).contains(&a.at) && a.task == TASK));
            assert!(arrivals.windows(2).all(|w| w[0].at <= w[1].at));
        }
        let (one, other) = (
            arrivals(&parse(matrix).expect("parses"), &Mix::one(TASK), 7),
            arrivals(&parse(csv).expect("parses"), &Mix::one(TASK), 7),
        );
        assert_eq!(one, other, "the same seed spreads the same counts the same way");
    }

    #[test]
    fn what_it_cannot_read_is_named() {
        // (text, what the error must name)
        let cases = [
            (r#"{"status":"error","error":"bad"}"#, "status"),
            (r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#, "\"matrix\""),
            (
                r#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[[1,"x"]]}]}}"#,
                "result[0].values",
            ),
            ("time,value\n1,2\n", "no `timestamp` column"),
            ("timestamp,count\n1,2\n", "no `value` column"),
            ("timestamp,value\nyesterday,2\n", "line 2: timestamp yesterday"),
            ("timestamp,value\n1,two\n", "line 2: value two"),
            ("timestamp,value\n1,2\n", "two samples"),
        ];
        for (text, names) in cases {
            let error = parse(text).expect_err(text);
            assert!(error.contains(names), "{text}: {error}");
        }
    }

    #[test]
    fn a_task_mix_is_drawn_by_weight_and_each_value_is_checked() {
        let mix = Mix::parse(&["cpu=6,memory=120,duration=20,weight=3".into(), "cpu=2,duration=5,sync".into()])
            .expect("parses");
        let heavy = Task { cpu_intensity: 6, seconds: 20.0, memory_bytes: 120 << 20, sync: false };
        let light = Task { cpu_intensity: 2, seconds: 5.0, memory_bytes: 0, sync: true };
        let series = vec![vec![(0.0, 0.0), (600.0, 2000.0)]];
        let tasks: Vec<Task> = arrivals(&series, &mix, 3).iter().map(|a| a.task).collect();
        assert!(tasks.iter().all(|t| *t == heavy || *t == light), "only the mix's tasks");
        let share = tasks.iter().filter(|t| **t == heavy).count() as f64 / tasks.len() as f64;
        assert!((0.72..=0.78).contains(&share), "weight 3 of 4: {share} of 2000 arrivals");
        for (spec, error) in [
            ("cpu=11,duration=5", "cpu: 11 is not a whole number from 1 to 10"),
            ("cpu=5,duration=61", "duration: 61 is not a whole number from 1 to 60"),
            ("cpu=5,duration=5,memory=501", "memory: 501 is not a whole number from 0 to 500"),
            ("cpu=five,duration=5", "cpu: a whole number from 1 to 10, not \"five\""),
            ("cpu=5,duration=5,weight=0", "weight: a number above 0, not \"0\""),
            ("cpu=5", "duration= is required"),
            ("cpu=5,duration=5,fast", "\"fast\": cpu=, memory=, duration=, weight=, sync or async"),
        ] {
            let got = Mix::parse(&[spec.to_owned()]).expect_err(spec);
            assert_eq!(got, format!("--task {spec}: {error}"));
        }
    }
}
