//! A small blocking Prometheus client for instant queries: what the generator's autoscaling table (and the closed-loop
//! harness) ask, with KEDA's rule that a trigger's query must return exactly one series.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use surge_keda::readers::Sources;
use surge_keda::scaled_object::read_compressed;

/// A blocking HTTP/1.0 GET: the status and the body.
pub fn http_get(host: &str, port: u16, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect((host, port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("no status line")?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_owned();
    Ok((status, body))
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server's HTTP API.
pub struct Prom {
    host: String,
    port: u16,
}

impl Prom {
    pub fn new(host: &str, port: u16) -> Self {
        Self { host: host.to_owned(), port }
    }

    /// From a base URL such as `http://prometheus:9090`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// is supported"))?;
        let authority = rest.split('/').next().unwrap_or(rest);
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| format!("{url}: bad port"))?),
            None => (authority, 80),
        };
        Ok(Self::new(host, port))
    }

    /// A one-series instant query's value (NaN read as 0); an error when Prometheus fails or the result is not
    /// exactly one series, as KEDA's Prometheus scaler treats it.
    pub fn value(&self, query: &str) -> Result<f64, String> {
        match self.series_values(query)?.as_slice() {
            [one] => Ok(if one.is_nan() { 0.0 } else { *one }),
            other => Err(format!("{} series", other.len())),
        }
    }

    /// Every series' value of an instant query, NaN and infinities as Prometheus wrote them; an error only when
    /// Prometheus does not answer or refuses the query.
    pub fn series_values(&self, query: &str) -> Result<Vec<f64>, String> {
        let (status, body) = http_get(&self.host, self.port, &format!("/api/v1/query?query={}", encode(query)))?;
        let answer: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("{status}: {}", answer["error"]));
        }
        let result = answer["data"]["result"].as_array().ok_or("no result")?;
        result
            .iter()
            .map(|series| {
                let text = series["value"][1].as_str().ok_or("a series without a value")?;
                text.parse::<f64>().map_err(|e| format!("{text}: {e}"))
            })
            .collect()
    }

    /// How many series a range query returns over the last `seconds` (step 1 s): "does this panel show anything".
    pub fn series_over(&self, query: &str, seconds: f64) -> Result<usize, String> {
        let end = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?;
        let (end, start) = (end.as_secs_f64(), end.as_secs_f64() - seconds);
        let path = format!("/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step=1", encode(query));
        let (status, body) = http_get(&self.host, self.port, &path)?;
        let answer: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("{status}: {}", answer["error"]));
        }
        Ok(answer["data"]["result"].as_array().map_or(0, Vec::len))
    }

    pub fn ready(&self) -> bool {
        http_get(&self.host, self.port, "/-/ready").is_ok_and(|(status, _)| status == 200)
    }
}

/// Prometheus as the harness and the watch table ask it for a trigger's value (through `surge_keda::readers`), under
/// `factor` times compression as the harness runs (`read_compressed`; 1 against a cluster).
pub struct Compressed<'a> {
    pub prometheus: &'a Prom,
    pub factor: f64,
}

impl Sources for Compressed<'_> {
    fn prometheus(&self, _index: usize, query: &str) -> Result<(Vec<f64>, f64), String> {
        let (query, divisor) = read_compressed(query, self.factor);
        Ok((self.prometheus.series_values(&query)?, divisor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_queries_are_read_as_prometheus_expects() {
        let prom = Prom::parse("http://prometheus.surge.svc:9090").expect("parses");
        assert_eq!((prom.host.as_str(), prom.port), ("prometheus.surge.svc", 9090));
        assert!(Prom::parse("https://x:1").is_err());
        assert_eq!(encode("sum(x{a=\"b\"}[1m])"), "sum%28x%7Ba%3D%22b%22%7D%5B1m%5D%29");
    }
}
