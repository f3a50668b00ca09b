//! KEDA's `redis-streams` scaler (kedacore/keda v2.20.2 `pkg/scalers/redis_streams_scaler.go`): which count it reads
//! from Redis, against which target, and when it is active. The count then goes through the same HPA arithmetic as
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

impl Count {
    /// The Redis command the scaler sends for this count.
    pub fn command(self) -> &'static str {
        match self {
            Self::Pending => "XPENDING",
            Self::StreamLength => "XLEN",
            Self::Lag => "XINFO GROUPS",
        }
    }
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

    #[test]
    fn each_count_names_the_command_the_scaler_sends() {
        assert_eq!(Count::Pending.command(), "XPENDING");
        assert_eq!(Count::StreamLength.command(), "XLEN");
        assert_eq!(Count::Lag.command(), "XINFO GROUPS");
    }
}
