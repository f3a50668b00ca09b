//! KEDA's `redis-streams` scaler (kedacore/keda v2.20.2 `pkg/scalers/redis_streams_scaler.go`): which count it reads
//! from Redis and how (`RedisStreams::count`, the commands and replies, over whichever client asks), against which
//! target, and when it is active. The count then goes through the same HPA arithmetic as
//! any external metric (`hpa`), as a milli-quantity (`GenerateMetricInMili`).

use serde_json::Value;

/// What the scaler reads (`createEntriesCountFn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// `XPENDING <stream> <group>`: entries delivered to the group and not yet acknowledged.
    Pending,
    /// `XLEN <stream>`: every entry still in the stream (acknowledged ones too, unless the consumer deletes them).
    StreamLength,
    /// `XINFO GROUPS`' `lag` of the group (Redis 7+): entries not yet delivered; `XLEN` while the group is missing.
    Lag,
}

/// A `redis-streams` trigger's metadata, validated as the scaler does.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisStreams {
    pub stream: String,
    pub consumer_group: Option<String>,
    pub count: Count,
    /// The metric target (`GetMetricSpecForScaling`): per pod for AverageValue.
    pub target: f64,
    /// `activationLagCount` (default 0): active when the count is above it.
    pub activation: f64,
}

impl RedisStreams {
    /// The trigger's `metadata`, as `redisStreamsMetadata.Validate` reads it: a consumer group makes the count
    /// `pendingEntriesCount` (default 5), or `lagCount` when that is set and not 0; without a group it is
    /// `streamLength` (default 5).
    pub fn from_metadata(metadata: &Value) -> Result<Self, String> {
        let text = |name: &str| metadata[name].as_str().map(str::trim).filter(|v| !v.is_empty());
        let integer = |name: &str, default: i64| -> Result<i64, String> {
            text(name).map_or(Ok(default), |v| v.parse().map_err(|_| format!("{name}: {v:?} is not an integer")))
        };
        let stream = text("stream").ok_or("missing redis stream name")?.to_owned();
        let consumer_group = text("consumerGroup").map(str::to_owned);
        let lag = integer("lagCount", 0)?;
        let (count, target) = match &consumer_group {
            Some(_) if lag != 0 => (Count::Lag, lag),
            Some(_) => (Count::Pending, integer("pendingEntriesCount", 5)?),
            None => (Count::StreamLength, integer("streamLength", 5)?),
        };
        let activation = integer("activationLagCount", 0)? as f64;
        Ok(Self { stream, consumer_group, count, target: target as f64, activation })
    }

    /// `GetMetricsAndActivity`: the scaler is active when the count is strictly above the activation value.
    pub fn is_active(&self, count: f64) -> bool {
        count > self.activation
    }

    /// `createEntriesCountFn`: the count the scaler reads, each command sent through `ask` (an `Err` from `ask`: Redis
    /// not reached). The lag needs Redis 7 (INFO's `redis_version`), is 0 while the stream does not exist and the
    /// stream's length while the group does not.
    pub fn count(&self, ask: &mut dyn FnMut(&[&str]) -> Result<Reply, String>) -> Result<f64, String> {
        let group = || self.consumer_group.as_deref().ok_or("a consumer group is needed for this count");
        match self.count {
            Count::StreamLength => ask(&["XLEN", &self.stream])?.count("XLEN"),
            Count::Pending => match ask(&["XPENDING", &self.stream, group()?])? {
                // The summary form: [count, smallest id, greatest id, consumers].
                Reply::Array(Some(summary)) if !summary.is_empty() => summary[0].clone().count("XPENDING"),
                other => other.count("XPENDING"),
            },
            Count::Lag => {
                let info = ask(&["INFO"])?;
                let Reply::Bulk(Some(info)) = info else { return Err(format!("INFO: {info:?}")) };
                let version = info.lines().find_map(|l| l.strip_prefix("redis_version:")).ok_or("no Redis version")?;
                let major: u32 = version.split('.').next().and_then(|m| m.trim().parse().ok()).ok_or("no version")?;
                if major < 7 {
                    return Err("redis version 7+ required for lag".into());
                }
                let groups = match ask(&["XINFO", "GROUPS", &self.stream])? {
                    Reply::Error(e) if e == "ERR no such key" => return Ok(0.0),
                    Reply::Array(Some(groups)) => groups,
                    other => return Err(format!("XINFO GROUPS: {other:?}")),
                };
                let wanted = group()?;
                for fields in groups {
                    let Reply::Array(Some(fields)) = fields else { continue };
                    let field = |name: &str| fields.chunks(2).find(|kv| kv[0].text() == Some(name)).map(|kv| &kv[1]);
                    if field("name").and_then(Reply::text) == Some(wanted) {
                        // A nil lag (Redis cannot tell) is read as 0 or -1 by go-redis, depending on its version.
                        return field("lag").ok_or("XINFO GROUPS: no lag field")?.clone().count("lag");
                    }
                }
                ask(&["XLEN", &self.stream])?.count("XLEN")
            }
        }
    }
}

/// One Redis reply, as much of RESP2 as the scaler's commands answer with.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    /// A bulk string; `None` is RESP's nil.
    Bulk(Option<String>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    fn text(&self) -> Option<&str> {
        match self {
            Self::Simple(text) | Self::Bulk(Some(text)) => Some(text),
            _ => None,
        }
    }

    /// An integer reply as a count; anything else an error naming `what` was asked.
    fn count(self, what: &str) -> Result<f64, String> {
        match self {
            Self::Integer(n) => Ok(n as f64),
            Self::Error(e) => Err(format!("{what}: {e}")),
            other => Err(format!("{what}: not a count: {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// redis_streams_scaler.go `Validate` and `GetMetricSpecForScaling`: (metadata, count read, target).
    #[test]
    fn validate_picks_the_count_and_target_from_the_metadata() {
        let cases = [
            (json!({"stream": "s"}), Count::StreamLength, 5.0),
            (json!({"stream": "s", "streamLength": "4"}), Count::StreamLength, 4.0),
            // A consumer group turns streamLength off: pending entries, default 5.
            (json!({"stream": "s", "consumerGroup": "g", "streamLength": "4"}), Count::Pending, 5.0),
            (json!({"stream": "s", "consumerGroup": "g", "pendingEntriesCount": "7"}), Count::Pending, 7.0),
            // lagCount wins over pendingEntriesCount when a group is given.
            (
                json!({"stream": "s", "consumerGroup": "g", "lagCount": "3", "pendingEntriesCount": "7"}),
                Count::Lag,
                3.0,
            ),
            // lagCount 0 is "not set".
            (json!({"stream": "s", "consumerGroup": "g", "lagCount": "0"}), Count::Pending, 5.0),
            // Without a group, lagCount means nothing.
            (json!({"stream": "s", "lagCount": "3"}), Count::StreamLength, 5.0),
        ];
        for (metadata, count, target) in cases {
            let trigger = RedisStreams::from_metadata(&metadata).expect("valid");
            assert_eq!((trigger.count, trigger.target), (count, target), "{metadata}");
        }
    }

    #[test]
    fn a_stream_name_is_required_and_numbers_must_parse() {
        assert!(RedisStreams::from_metadata(&json!({})).is_err());
        assert!(RedisStreams::from_metadata(&json!({"stream": "s", "streamLength": "four"})).is_err());
    }

    /// `GetMetricsAndActivity`: `metricCount > ActivationLagCount`.
    #[test]
    fn active_only_above_the_activation_value() {
        let trigger = RedisStreams::from_metadata(&json!({"stream": "s", "activationLagCount": "2"})).expect("valid");
        assert!(!trigger.is_active(2.0));
        assert!(trigger.is_active(3.0));
        let default = RedisStreams::from_metadata(&json!({"stream": "s"})).expect("valid");
        assert!(!default.is_active(0.0) && default.is_active(1.0));
    }

    /// `createEntriesCountFn` against scripted replies: (metadata, each command and its reply, count or error).
    #[test]
    fn each_count_asks_what_the_scaler_asks_and_reads_its_reply() {
        let bulk = |text: &str| Reply::Bulk(Some(text.to_owned()));
        let group = |name: &str, lag: Reply| {
            Reply::Array(Some(vec![bulk("name"), bulk(name), bulk("pending"), Reply::Integer(1), bulk("lag"), lag]))
        };
        let info = |version: &str| bulk(&format!("# Server\r\nredis_version:{version}\r\nredis_mode:standalone\r\n"));
        let groups = |list: Vec<Reply>| Reply::Array(Some(list));
        let pending = Reply::Array(Some(vec![Reply::Integer(4), bulk("1-0"), bulk("9-0"), Reply::Array(None)]));
        let lagged = json!({"stream": "s", "consumerGroup": "g", "lagCount": "5"});
        type Case = (Value, Vec<(&'static str, Reply)>, Result<f64, &'static str>);
        let cases: Vec<Case> = vec![
            (json!({"stream": "s"}), vec![("XLEN s", Reply::Integer(7))], Ok(7.0)),
            (json!({"stream": "s", "consumerGroup": "g"}), vec![("XPENDING s g", pending)], Ok(4.0)),
            (
                json!({"stream": "s", "consumerGroup": "g"}),
                vec![("XPENDING s g", Reply::Error("NOGROUP No such key 's' or consumer group 'g'".into()))],
                Err("XPENDING: NOGROUP"),
            ),
            (
                lagged.clone(),
                vec![
                    ("INFO", info("7.0.15")),
                    ("XINFO GROUPS s", groups(vec![group("other", Reply::Integer(9)), group("g", Reply::Integer(2))])),
                ],
                Ok(2.0),
            ),
            // No stream yet: a lag of 0.
            (
                lagged.clone(),
                vec![("INFO", info("8.0.1")), ("XINFO GROUPS s", Reply::Error("ERR no such key".into()))],
                Ok(0.0),
            ),
            // The stream but not the group: its length.
            (
                lagged.clone(),
                vec![
                    ("INFO", info("7.4.2")),
                    ("XINFO GROUPS s", groups(vec![group("other", Reply::Integer(9))])),
                    ("XLEN s", Reply::Integer(3)),
                ],
                Ok(3.0),
            ),
            (lagged, vec![("INFO", info("6.2.14"))], Err("redis version 7+ required for lag")),
        ];
        for (metadata, script, expected) in cases {
            let scaler = RedisStreams::from_metadata(&metadata).expect("valid");
            let mut replies = script.iter();
            let mut ask = |args: &[&str]| -> Result<Reply, String> {
                let (command, reply) = replies.next().ok_or_else(|| format!("asked {args:?} past the script"))?;
                assert_eq!(args.join(" "), *command, "{metadata}");
                Ok(reply.clone())
            };
            let got = scaler.count(&mut ask);
            match expected {
                Ok(count) => assert_eq!(got, Ok(count), "{metadata}"),
                Err(part) => assert!(got.as_ref().is_err_and(|e| e.contains(part)), "{metadata}: {got:?}"),
            }
            assert!(replies.next().is_none(), "{metadata}: every scripted command asked");
        }
    }
}
