//! One reader per trigger type, as KEDA has one scaler per type: whoever reads trigger values (the closed loop, the
//! simulator, the watch table) says how it asks each kind of source, and `read` picks the one the trigger's type
//! names and applies that scaler's rule. A source a caller cannot ask is an error naming it, never a 0.

use crate::redis_streams::RedisStreams;
use crate::resource::{Resource, Target};
use crate::scaled_object::{keda_value, Source, Trigger};

/// How one caller asks each kind of source.
pub trait Sources {
    /// The series values of the query of the trigger at `index` (a caller may have prepared it), as KEDA's prometheus
    /// scaler receives them, and what its value is divided by (the closed loop's compression of rates; 1 elsewhere).
    fn prometheus(&self, index: usize, query: &str) -> Result<(Vec<f64>, f64), String>;

    /// The count KEDA's redis-streams scaler reads from Redis.
    fn redis_streams(&self, scaler: &RedisStreams) -> Result<f64, String> {
        Err(format!("no Redis to read stream {} from here", scaler.stream))
    }

    /// The replicas the HPA's Resource metric asks for (metrics-server's usage against the request).
    fn resource(&self, resource: Resource, target: Target) -> Result<f64, String> {
        Err(format!("no metrics-server to read {resource:?} against {target:?} from here"))
    }
}

/// Every trigger's value as its scaler reads it, in the ScaledObject's order.
pub fn read(triggers: &[Trigger], sources: &impl Sources) -> Vec<Result<f64, String>> {
    triggers
        .iter()
        .enumerate()
        .map(|(index, trigger)| match &trigger.source {
            Source::Prometheus { query, ignore_null_values } => {
                let (values, divisor) = sources.prometheus(index, query)?;
                keda_value(&values, *ignore_null_values).map(|value| value / divisor)
            }
            Source::RedisStreams(scaler) => sources.redis_streams(scaler),
            Source::Resource { resource, target } => sources.resource(*resource, *target),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpa::MetricType;
    use crate::redis_streams::Count;

    /// A caller that can ask Prometheus (each query's series given) and Redis, but has no metrics-server.
    struct Table;

    impl Sources for Table {
        fn prometheus(&self, index: usize, query: &str) -> Result<(Vec<f64>, f64), String> {
            match query {
                "two_series" => Ok((vec![1.0, 2.0], 1.0)),
                "empty" => Ok((vec![], 1.0)),
                "rate" => Ok((vec![40.0], 20.0)),
                _ => Err(format!("trigger {index}: Prometheus refused {query}")),
            }
        }

        fn redis_streams(&self, scaler: &RedisStreams) -> Result<f64, String> {
            Ok(if scaler.count == Count::StreamLength { 7.0 } else { 3.0 })
        }
    }

    fn trigger(source: Source) -> Trigger {
        Trigger { name: "t".into(), kind: MetricType::AverageValue, source, threshold: 1.0, activation_threshold: 0.0 }
    }

    fn prometheus(query: &str, ignore_null_values: bool) -> Trigger {
        trigger(Source::Prometheus { query: query.into(), ignore_null_values })
    }

    #[test]
    fn each_trigger_is_read_by_its_types_reader_with_that_scalers_rule() {
        let stream =
            |count| RedisStreams { stream: "s".into(), consumer_group: None, count, target: 4.0, activation: 0.0 };
        let triggers = [
            prometheus("rate", false),
            prometheus("empty", true),
            prometheus("empty", false),
            prometheus("two_series", true),
            prometheus("refused", true),
            trigger(Source::RedisStreams(stream(Count::StreamLength))),
            trigger(Source::Resource { resource: Resource::Cpu, target: Target::Utilization(70) }),
        ];
        let read = read(&triggers, &Table);
        assert_eq!(read[0], Ok(2.0), "divided as the caller says");
        assert_eq!(read[1], Ok(0.0), "empty reads 0 with ignoreNullValues");
        assert!(read[2].is_err() && read[3].is_err(), "{read:?}: empty without it, and two series, are errors");
        assert_eq!(read[4], Err("trigger 4: Prometheus refused refused".into()));
        assert_eq!(read[5], Ok(7.0));
        assert!(read[6].as_ref().is_err_and(|e| e.contains("no metrics-server")), "{:?}", read[6]);
    }
}
