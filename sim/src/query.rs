//! The part of PromQL the ScaledObject's queries use, parsed and evaluated over the simulator's series as Prometheus
//! evaluates it: selectors with `=` and `!=` matchers, `rate`, `avg_over_time`, `histogram_quantile`, `vector`,
//! `sum`/`max`/`min`/`avg`/`count` (with `by`), arithmetic and comparisons against numbers, `and on(...)` and `or`.
//! Anything else is an error naming it, so a query the simulator cannot read fails loudly rather than reading 0.

use std::collections::{BTreeMap, BTreeSet};

use surge_keda::promql::{self, Rule};

/// A series' labels, `__name__` included.
pub type Labels = BTreeMap<String, String>;

/// The instant-vector lookback (`--query.lookback-delta`, 5 min by default).
const LOOKBACK_SECONDS: f64 = 300.0;

/// One series in the store: its labels, its samples in time order, and when Prometheus marked it stale (its target
/// went away), after which an instant selector no longer finds it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<(f64, f64)>,
    pub stale_at: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
struct Matcher {
    label: String,
    equal: bool,
    value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregation {
    Sum,
    Max,
    Min,
    Avg,
    Count,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Rate,
    AvgOverTime,
    HistogramQuantile,
    Vector,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Gt,
    Lt,
    Ge,
    Le,
    Eq,
    Ne,
    And,
    Or,
}

impl Op {
    /// PromQL's binding strength: `or` < `and` < comparisons < `+ -` < `* /`.
    fn precedence(self) -> u8 {
        match self {
            Op::Or => 1,
            Op::And => 2,
            Op::Gt | Op::Lt | Op::Ge | Op::Le | Op::Eq | Op::Ne => 3,
            Op::Add | Op::Sub => 4,
            Op::Mul | Op::Div => 5,
        }
    }

    fn is_comparison(self) -> bool {
        self.precedence() == 3
    }

    fn apply(self, a: f64, b: f64) -> f64 {
        let truth = |holds: bool| if holds { 1.0 } else { 0.0 };
        match self {
            Op::Add => a + b,
            Op::Sub => a - b,
            Op::Mul => a * b,
            Op::Div => a / b,
            Op::Gt => truth(a > b),
            Op::Lt => truth(a < b),
            Op::Ge => truth(a >= b),
            Op::Le => truth(a <= b),
            Op::Eq => truth(a == b),
            Op::Ne => truth(a != b),
            Op::And | Op::Or => f64::NAN,
        }
    }
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query(Expr);

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Number(f64),
    Selector { name: String, matchers: Vec<Matcher>, range: Option<f64> },
    Call { function: Function, args: Vec<Expr> },
    Aggregate { aggregation: Aggregation, by: Vec<String>, expr: Box<Expr> },
    Binary { op: Op, on: Option<Vec<String>>, lhs: Box<Expr>, rhs: Box<Expr> },
}

/// What an expression evaluates to.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Scalar(f64),
    Vector(Vec<(Labels, f64)>),
}

impl Query {
    pub fn parse(text: &str) -> Result<Self, String> {
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens, at: 0 };
        let expr = parser.expression(0)?;
        match parser.peek() {
            None => Ok(Self(expr)),
            Some(token) => Err(format!("unexpected {token:?} after the expression")),
        }
    }

    /// The query's result at `at`: each series' value (a scalar result is one value).
    pub fn evaluate(&self, series: &[Series], at: f64, rule: Rule) -> Result<Vec<f64>, String> {
        match evaluate(&self.0, series, at, rule)? {
            Value::Scalar(v) => Ok(vec![v]),
            Value::Vector(elements) => Ok(elements.into_iter().map(|(_, v)| v).collect()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Number(f64),
    Text(String),
    Duration(f64),
    Punct(&'static str),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == 'e') {
                i += 1;
            }
            let number: String = chars[start..i].iter().collect();
            tokens.push(Token::Number(number.parse().map_err(|_| format!("number {number:?}"))?));
        } else if c == '"' {
            let start = i + 1;
            i = start;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    return Err("escapes in label values are not read by the simulator".into());
                }
                i += 1;
            }
            if i == chars.len() {
                return Err("an unterminated string".into());
            }
            tokens.push(Token::Text(chars[start..i].iter().collect()));
            i += 1;
        } else if c == '[' {
            let end = chars[i..].iter().position(|&c| c == ']').ok_or("an unterminated range")? + i;
            let text: String = chars[i + 1..end].iter().collect();
            tokens.push(Token::Duration(duration(&text)?));
            i = end + 1;
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let punct = ["==", "!=", ">=", "<=", "=~", "!~"].into_iter().find(|p| *p == two);
            let punct = punct.or_else(|| {
                ["(", ")", "{", "}", ",", "+", "-", "*", "/", ">", "<", "="].into_iter().find(|p| p.starts_with(c))
            });
            let punct = punct.ok_or_else(|| format!("{c:?} is not read by the simulator"))?;
            i += punct.len();
            tokens.push(Token::Punct(punct));
        }
    }
    Ok(tokens)
}

/// A range's duration: `90s`, `1m`, `500ms`, `1h`.
fn duration(text: &str) -> Result<f64, String> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').ok_or_else(|| format!("[{text}]: no unit"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("[{text}]"))?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("[{text}]: unit {other} is not read by the simulator")),
    };
    Ok(number * scale)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Result<Token, String> {
        let token = self.tokens.get(self.at).cloned().ok_or("the query ends too soon")?;
        self.at += 1;
        Ok(token)
    }

    fn expect(&mut self, punct: &str) -> Result<(), String> {
        match self.next()? {
            Token::Punct(p) if p == punct => Ok(()),
            other => Err(format!("expected {punct:?}, found {other:?}")),
        }
    }

    fn binary_op(&self) -> Option<Op> {
        match self.peek()? {
            Token::Punct(p) => match *p {
                "+" => Some(Op::Add),
                "-" => Some(Op::Sub),
                "*" => Some(Op::Mul),
                "/" => Some(Op::Div),
                ">" => Some(Op::Gt),
                "<" => Some(Op::Lt),
                ">=" => Some(Op::Ge),
                "<=" => Some(Op::Le),
                "==" => Some(Op::Eq),
                "!=" => Some(Op::Ne),
                _ => None,
            },
            Token::Ident(word) => match word.as_str() {
                "and" => Some(Op::And),
                "or" => Some(Op::Or),
                _ => None,
            },
            _ => None,
        }
    }

    /// Precedence climbing: operators binding tighter than `floor` are taken here; all are left-associative.
    fn expression(&mut self, floor: u8) -> Result<Expr, String> {
        let mut lhs = self.primary()?;
        while let Some(op) = self.binary_op().filter(|op| op.precedence() > floor) {
            self.at += 1;
            let on = if matches!(self.peek(), Some(Token::Ident(w)) if w == "on") {
                self.at += 1;
                Some(self.label_list()?)
            } else {
                None
            };
            if matches!(self.peek(), Some(Token::Ident(w)) if w == "bool" || w == "ignoring" || w == "group_left") {
                return Err(format!("{:?} is not read by the simulator", self.peek()));
            }
            let rhs = self.expression(op.precedence())?;
            lhs = Expr::Binary { op, on, lhs: Box::new(lhs), rhs: Box::new(rhs) };
        }
        Ok(lhs)
    }

    fn label_list(&mut self) -> Result<Vec<String>, String> {
        self.expect("(")?;
        let mut labels = Vec::new();
        loop {
            match self.next()? {
                Token::Punct(")") => return Ok(labels),
                Token::Punct(",") => {}
                Token::Ident(label) => labels.push(label),
                other => return Err(format!("a label list holds {other:?}")),
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        match self.next()? {
            Token::Number(n) => Ok(Expr::Number(n)),
            Token::Punct("(") => {
                let inner = self.expression(0)?;
                self.expect(")")?;
                Ok(inner)
            }
            Token::Ident(word) => {
                let aggregation = match word.as_str() {
                    "sum" => Some(Aggregation::Sum),
                    "max" => Some(Aggregation::Max),
                    "min" => Some(Aggregation::Min),
                    "avg" => Some(Aggregation::Avg),
                    "count" => Some(Aggregation::Count),
                    _ => None,
                };
                if let Some(aggregation) = aggregation {
                    let by = if matches!(self.peek(), Some(Token::Ident(w)) if w == "by") {
                        self.at += 1;
                        self.label_list()?
                    } else {
                        Vec::new()
                    };
                    self.expect("(")?;
                    let expr = self.expression(0)?;
                    self.expect(")")?;
                    if matches!(self.peek(), Some(Token::Ident(w)) if w == "by" || w == "without") {
                        return Err("write `by` before the aggregation's argument".into());
                    }
                    return Ok(Expr::Aggregate { aggregation, by, expr: Box::new(expr) });
                }
                let function = match word.as_str() {
                    "rate" => Some(Function::Rate),
                    "avg_over_time" => Some(Function::AvgOverTime),
                    "histogram_quantile" => Some(Function::HistogramQuantile),
                    "vector" => Some(Function::Vector),
                    _ => None,
                };
                if matches!(self.peek(), Some(Token::Punct("("))) {
                    let function = function.ok_or_else(|| format!("{word}() is not read by the simulator"))?;
                    self.at += 1;
                    let mut args = vec![self.expression(0)?];
                    while matches!(self.peek(), Some(Token::Punct(","))) {
                        self.at += 1;
                        args.push(self.expression(0)?);
                    }
                    self.expect(")")?;
                    return Ok(Expr::Call { function, args });
                }
                self.selector(word)
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }

    fn selector(&mut self, name: String) -> Result<Expr, String> {
        let mut matchers = Vec::new();
        if matches!(self.peek(), Some(Token::Punct("{"))) {
            self.at += 1;
            loop {
                match self.next()? {
                    Token::Punct("}") => break,
                    Token::Punct(",") => {}
                    Token::Ident(label) => {
                        let equal = match self.next()? {
                            Token::Punct("=") => true,
                            Token::Punct("!=") => false,
                            other => return Err(format!("matcher {other:?} is not read by the simulator")),
                        };
                        let Token::Text(value) = self.next()? else { return Err(format!("{label}: a quoted value")) };
                        matchers.push(Matcher { label, equal, value });
                    }
                    other => return Err(format!("a selector holds {other:?}")),
                }
            }
        }
        let range = match self.peek() {
            Some(Token::Duration(seconds)) => {
                let seconds = *seconds;
                self.at += 1;
                Some(seconds)
            }
            _ => None,
        };
        Ok(Expr::Selector { name, matchers, range })
    }
}

fn selected<'a>(series: &'a [Series], name: &str, matchers: &[Matcher]) -> impl Iterator<Item = &'a Series> {
    let name = name.to_owned();
    let matchers = matchers.to_vec();
    series.iter().filter(move |s| {
        s.labels.get("__name__") == Some(&name)
            && matchers.iter().all(|m| (s.labels.get(&m.label).map_or("", String::as_str) == m.value) == m.equal)
    })
}

fn without_name(labels: &Labels) -> Labels {
    let mut labels = labels.clone();
    labels.remove("__name__");
    labels
}

fn vector(value: Value, what: &str) -> Result<Vec<(Labels, f64)>, String> {
    match value {
        Value::Vector(elements) => Ok(elements),
        Value::Scalar(_) => Err(format!("{what} takes a vector")),
    }
}

fn evaluate(expr: &Expr, series: &[Series], at: f64, rule: Rule) -> Result<Value, String> {
    match expr {
        Expr::Number(n) => Ok(Value::Scalar(*n)),
        Expr::Selector { range: Some(_), .. } => Err("a range selector outside a function".into()),
        Expr::Selector { name, matchers, range: None } => {
            let start = at - LOOKBACK_SECONDS;
            let elements = selected(series, name, matchers)
                .filter_map(|s| {
                    let &(t, v) = s.samples.iter().rev().find(|(t, _)| *t <= at)?;
                    let inside = match rule {
                        Rule::V2_42 => t >= start,
                        Rule::V3_14 => t > start,
                    };
                    let stale = s.stale_at.is_some_and(|stale| stale >= t && stale <= at);
                    (inside && !stale).then(|| (s.labels.clone(), v))
                })
                .collect();
            Ok(Value::Vector(elements))
        }
        Expr::Call { function, args } => call(*function, args, series, at, rule),
        Expr::Aggregate { aggregation, by, expr } => {
            let elements = vector(evaluate(expr, series, at, rule)?, "an aggregation")?;
            let mut groups: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
            for (labels, value) in elements {
                let key: Labels = labels.into_iter().filter(|(k, _)| by.contains(k)).collect();
                groups.entry(key).or_default().push(value);
            }
            let fold = |values: Vec<f64>| match aggregation {
                Aggregation::Sum => values.iter().sum(),
                Aggregation::Max => values.iter().copied().fold(f64::NAN, f64::max),
                Aggregation::Min => values.iter().copied().fold(f64::NAN, f64::min),
                Aggregation::Avg => values.iter().sum::<f64>() / values.len() as f64,
                Aggregation::Count => values.len() as f64,
            };
            Ok(Value::Vector(groups.into_iter().map(|(labels, values)| (labels, fold(values))).collect()))
        }
        Expr::Binary { op, on, lhs, rhs } => {
            let (lhs, rhs) = (evaluate(lhs, series, at, rule)?, evaluate(rhs, series, at, rule)?);
            binary(*op, on.as_deref(), lhs, rhs)
        }
    }
}

fn call(function: Function, args: &[Expr], series: &[Series], at: f64, rule: Rule) -> Result<Value, String> {
    match (function, args) {
        (Function::Vector, [arg]) => match evaluate(arg, series, at, rule)? {
            Value::Scalar(v) => Ok(Value::Vector(vec![(Labels::new(), v)])),
            Value::Vector(_) => Err("vector() takes a number".into()),
        },
        (Function::Rate | Function::AvgOverTime, [Expr::Selector { name, matchers, range: Some(range) }]) => {
            let elements = selected(series, name, matchers)
                .filter_map(|s| {
                    let value = match function {
                        Function::Rate => promql::rate(&s.samples, at, *range, rule),
                        _ => promql::avg_over_time(&s.samples, at, *range, rule),
                    };
                    value.map(|v| (without_name(&s.labels), v))
                })
                .collect();
            Ok(Value::Vector(elements))
        }
        (Function::HistogramQuantile, [q, buckets]) => {
            let Value::Scalar(q) = evaluate(q, series, at, rule)? else {
                return Err("histogram_quantile's first argument is a number".into());
            };
            let elements = vector(evaluate(buckets, series, at, rule)?, "histogram_quantile")?;
            let mut groups: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
            for (labels, count) in elements {
                let mut key = without_name(&labels);
                let Some(le) = key.remove("le") else { continue };
                let upper = if le == "+Inf" { f64::INFINITY } else { le.parse().map_err(|_| format!("le={le}"))? };
                groups.entry(key).or_default().push((upper, count));
            }
            Ok(Value::Vector(groups.into_iter().map(|(labels, b)| (labels, bucket_quantile(q, b))).collect()))
        }
        (function, _) => Err(format!("{function:?}: arguments the simulator does not read")),
    }
}

/// `bucketQuantile` (promql/quantile.go): the rank's bucket found by cumulative count, then linear interpolation
/// within it; the highest finite bound when the rank falls in `+Inf`; NaN without a `+Inf` bucket or observations.
pub fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.len() < 2 || buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // ensureMonotonic: a count below an earlier one is raised to it.
    let mut highest = f64::NEG_INFINITY;
    for bucket in &mut buckets {
        highest = highest.max(bucket.1);
        bucket.1 = highest;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = buckets[..buckets.len() - 1].iter().position(|b| b.1 >= rank).unwrap_or(buckets.len() - 1);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (mut start, end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

fn binary(op: Op, on: Option<&[String]>, lhs: Value, rhs: Value) -> Result<Value, String> {
    match (lhs, rhs) {
        (Value::Scalar(a), Value::Scalar(b)) => Ok(Value::Scalar(op.apply(a, b))),
        (Value::Vector(_), Value::Scalar(_)) | (Value::Scalar(_), Value::Vector(_))
            if matches!(op, Op::And | Op::Or) =>
        {
            Err("and/or between a vector and a number".into())
        }
        (Value::Vector(v), Value::Scalar(s)) => Ok(Value::Vector(scalar_side(op, v, s, false))),
        (Value::Scalar(s), Value::Vector(v)) => Ok(Value::Vector(scalar_side(op, v, s, true))),
        (Value::Vector(lhs), Value::Vector(rhs)) => {
            let signature = |labels: &Labels| -> Labels {
                match on {
                    Some(on) => {
                        labels.iter().filter(|(k, _)| on.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
                    }
                    None => without_name(labels),
                }
            };
            let right: BTreeSet<Labels> = rhs.iter().map(|(l, _)| signature(l)).collect();
            match op {
                Op::And => Ok(Value::Vector(lhs.into_iter().filter(|(l, _)| right.contains(&signature(l))).collect())),
                Op::Or => {
                    let left: BTreeSet<Labels> = lhs.iter().map(|(l, _)| signature(l)).collect();
                    let mut union = lhs;
                    union.extend(rhs.into_iter().filter(|(l, _)| !left.contains(&signature(l))));
                    Ok(Value::Vector(union))
                }
                other => Err(format!("{other:?} between two vectors is not read by the simulator")),
            }
        }
    }
}

/// A vector against a number: arithmetic drops the metric name; a comparison keeps the elements it holds for.
fn scalar_side(op: Op, vector: Vec<(Labels, f64)>, scalar: f64, scalar_first: bool) -> Vec<(Labels, f64)> {
    vector
        .into_iter()
        .filter_map(|(labels, v)| {
            let (a, b) = if scalar_first { (scalar, v) } else { (v, scalar) };
            if op.is_comparison() {
                (op.apply(a, b) == 1.0).then_some((labels, v))
            } else {
                Some((without_name(&labels), op.apply(a, b)))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, labels: &[(&str, &str)], samples: &[(f64, f64)]) -> Series {
        let mut all: Labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        all.insert("__name__".into(), name.into());
        Series { labels: all, samples: samples.to_vec(), stale_at: None }
    }

    fn value(query: &str, store: &[Series], at: f64) -> Result<Vec<f64>, String> {
        Query::parse(query)?.evaluate(store, at, Rule::V3_14)
    }

    #[test]
    fn the_backlog_query_reads_the_largest_gauge_while_a_target_is_up() {
        let query = r#"(max(consumer_queue_backlog{namespace="surge", app_kubernetes_io_name="consumer"}) or vector(0))
            and on() count(up{namespace="surge", app_kubernetes_io_name="consumer"} == 1)"#;
        let labels = [("namespace", "surge"), ("app_kubernetes_io_name", "consumer")];
        let store = vec![
            series("consumer_queue_backlog", &[labels[0], labels[1], ("pod", "a")], &[(0.0, 7.0), (5.0, 9.0)]),
            series("consumer_queue_backlog", &[labels[0], labels[1], ("pod", "b")], &[(1.0, 8.0)]),
            series("up", &[labels[0], labels[1], ("pod", "a")], &[(0.0, 1.0), (5.0, 1.0)]),
            series("consumer_queue_backlog", &[("namespace", "other"), labels[1]], &[(5.0, 99.0)]),
        ];
        assert_eq!(value(query, &store, 6.0), Ok(vec![9.0]));
        // No target up: the `and on()` leaves nothing, which KEDA reads as an error with ignoreNullValues false.
        let down: Vec<Series> = store.iter().filter(|s| s.labels["__name__"] != "up").cloned().collect();
        assert_eq!(value(query, &down, 6.0), Ok(vec![]));
        // No backlog series at all while a target is up: the `or vector(0)` gives 0.
        let empty: Vec<Series> = store.iter().filter(|s| s.labels["__name__"] == "up").cloned().collect();
        assert_eq!(value(query, &empty, 6.0), Ok(vec![0.0]));
    }

    #[test]
    fn rates_and_averages_sum_over_pods_and_stale_series_drop_out_of_instant_reads() {
        let counter = |pod: &str, per_scrape: f64| {
            let samples: Vec<(f64, f64)> = (0..=24).map(|i| (5.0 * f64::from(i), per_scrape * f64::from(i))).collect();
            series("http_requests_total", &[("handler", "/process"), ("pod", pod)], &samples)
        };
        let store = vec![counter("a", 10.0), counter("b", 5.0)];
        let rate = value(r#"sum(rate(http_requests_total{handler="/process"}[1m]))"#, &store, 120.0).expect("rate");
        assert!((rate[0] - 3.0).abs() < 1e-9, "{rate:?}");
        let mut gone = store[0].clone();
        gone.stale_at = Some(121.0);
        assert_eq!(value("http_requests_total", &[gone.clone()], 122.0), Ok(vec![]));
        assert_eq!(value("http_requests_total", &[gone], 120.5), Ok(vec![240.0]));
    }

    /// The task-stretch query: the p95 of the slowdowns observed over the last minute, less 1, and 0 when under it.
    #[test]
    fn the_stretch_query_interpolates_the_95th_percentile_within_its_bucket() {
        let query = "((histogram_quantile(0.95, sum by (le) (rate(slowdown_bucket[1m]))) - 1 > 0) or vector(0))";
        // 20 observations over the minute: 10 at most 1.05, 18 at most 2.05, all 20 at most 3.
        let bucket = |le: &str, count: f64| series("slowdown_bucket", &[("le", le)], &[(65.0, 0.0), (120.0, count)]);
        let store = vec![bucket("1.05", 10.0), bucket("2.05", 18.0), bucket("3", 20.0), bucket("+Inf", 20.0)];
        // rank 19 falls in (2.05, 3]: 2.05 + 0.95 × (19 - 18) / 2 = 2.525; less 1.
        let stretch = value(query, &store, 120.0).expect("stretch");
        assert!((stretch[0] - 1.525).abs() < 1e-9, "{stretch:?}");
        let idle = vec![bucket("1.05", 0.0), bucket("+Inf", 0.0)];
        assert_eq!(value(query, &idle, 120.0), Ok(vec![0.0]), "no observations: NaN, then 0");
    }

    #[test]
    fn bucket_quantile_follows_prometheus() {
        let buckets = vec![(1.0, 2.0), (2.0, 4.0), (f64::INFINITY, 6.0)];
        assert_eq!(bucket_quantile(0.5, buckets.clone()), 1.5);
        assert_eq!(bucket_quantile(0.9, buckets), 2.0, "in +Inf: the highest finite bound");
        assert!(bucket_quantile(0.5, vec![(1.0, 1.0)]).is_nan(), "no +Inf bucket");
    }

    #[test]
    fn what_the_simulator_cannot_read_is_an_error_naming_it() {
        for (query, names) in [
            (r#"rate(x{a=~"b"}[1m])"#, "matcher"),
            ("increase(x[1m])", "increase()"),
            ("x + on(a) group_left y", "group_left"),
            ("sum(x) by (le)", "by"),
        ] {
            let error = Query::parse(query).expect_err(query);
            assert!(error.contains(names), "{query}: {error}");
        }
    }
}
