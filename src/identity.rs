//! Pod identity from the Kubernetes downward API, with local fallbacks so the binary also runs outside a cluster.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// Who this replica is, fixed at start-up.
#[derive(Debug, Clone)]
pub struct PodIdentity {
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_ip: String,
    pub node_name: String,
    pub replica_id: String,
    pub started_at: DateTime<Utc>,
    started: Instant,
}

/// The identity as served on `/info`, with the uptime at the moment of the request.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityReport {
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_ip: String,
    pub node_name: String,
    pub replica_id: String,
    pub version: &'static str,
    pub started_at: DateTime<Utc>,
    pub uptime_seconds: f64,
}

impl PodIdentity {
    /// Reads `POD_NAME`, `POD_NAMESPACE`, `POD_IP` and `NODE_NAME`; falls back to the hostname and the bound address.
    pub fn from_env(local_addr: SocketAddr) -> Self {
        Self::from_lookup(|key| std::env::var(key).ok(), hostname(), local_addr)
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>, hostname: String, local_addr: SocketAddr) -> Self {
        let var = |key: &str| lookup(key).filter(|value| !value.trim().is_empty());
        let pod_name = var("POD_NAME").unwrap_or_else(|| hostname.clone());
        let replica_id = replica_id(&pod_name).to_owned();
        Self {
            pod_ip: var("POD_IP").unwrap_or_else(|| reachable_ip(local_addr).to_string()),
            pod_namespace: var("POD_NAMESPACE").unwrap_or_else(|| "local".to_owned()),
            node_name: var("NODE_NAME").unwrap_or(hostname),
            pod_name,
            replica_id,
            started_at: Utc::now(),
            started: Instant::now(),
        }
    }

    pub fn report(&self) -> IdentityReport {
        IdentityReport {
            pod_name: self.pod_name.clone(),
            pod_namespace: self.pod_namespace.clone(),
            pod_ip: self.pod_ip.clone(),
            node_name: self.node_name.clone(),
            replica_id: self.replica_id.clone(),
            version: env!("CARGO_PKG_VERSION"),
            started_at: self.started_at,
            uptime_seconds: self.started.elapsed().as_secs_f64(),
        }
    }
}

/// The last dash-separated part of a pod name: `consumer-7d9f-x2k4q` → `x2k4q`.
fn replica_id(pod_name: &str) -> &str {
    pod_name.rsplit('-').next().unwrap_or(pod_name)
}

/// An unspecified bind address (0.0.0.0) says nothing about where we are reachable; report loopback then.
fn reachable_ip(local_addr: SocketAddr) -> IpAddr {
    match local_addr.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    }
}

fn hostname() -> String {
    sysinfo::System::host_name().unwrap_or_else(|_| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn downward_api_values_win() {
        let env = |key: &str| {
            Some(
                match key {
                    "POD_NAME" => "consumer-5c8d7b9f4-x2k4q",
                    "POD_NAMESPACE" => "surge",
                    "POD_IP" => "10.1.2.3",
                    "NODE_NAME" => "kind-worker",
                    _ => return None,
                }
                .to_owned(),
            )
        };
        let identity = PodIdentity::from_lookup(env, "host".into(), addr("0.0.0.0:8000"));
        assert_eq!(identity.pod_name, "consumer-5c8d7b9f4-x2k4q");
        assert_eq!(identity.replica_id, "x2k4q");
        assert_eq!(identity.pod_namespace, "surge");
        assert_eq!(identity.pod_ip, "10.1.2.3");
        assert_eq!(identity.node_name, "kind-worker");
    }

    #[test]
    fn falls_back_to_hostname_and_bound_address() {
        let identity = PodIdentity::from_lookup(|_| Some(" ".into()), "laptop".into(), addr("127.0.0.2:8000"));
        assert_eq!(identity.pod_name, "laptop");
        assert_eq!(identity.replica_id, "laptop");
        assert_eq!(identity.node_name, "laptop");
        assert_eq!(identity.pod_ip, "127.0.0.2");
        let unspecified = PodIdentity::from_lookup(|_| None, "laptop".into(), addr("0.0.0.0:8000"));
        assert_eq!(unspecified.pod_ip, "127.0.0.1");
    }
}
