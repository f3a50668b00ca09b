//! The rendered NetworkPolicies, evaluated for a table of (from, to, port, allowed?) cases.
//!
//! The evaluator implements the ingress half of the NetworkPolicy API as documented
//! (kubernetes.io/docs/concepts/services-networking/network-policies): a pod is isolated for ingress when a policy of
//! its namespace selects it with `Ingress` in its policy types (or none given); it then accepts a connection when
//! some rule of some such policy matches both the port and the source. Ports: absent or empty is every port; numbers,
//! names resolved against the destination container's ports, `endPort` ranges, protocol (TCP by default). Sources:
//! absent or empty `from` is everyone; `podSelector` alone is pods of the policy's namespace; `namespaceSelector`
//! alone every pod of the matching namespaces; both together, the matching pods in the matching namespaces;
//! `ipBlock` an IPv4 CIDR with `except`. Label selectors: `matchLabels` and `matchExpressions` (In, NotIn, Exists,
//! DoesNotExist). Not implemented: egress (the component leaves it open), SCTP/UDP beyond matching the protocol name,
//! IPv6 blocks. Kubelet probes and port-forwards are not subject to NetworkPolicy and are not modelled.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::Value;

use crate::manifests::{self, job_files, kinds, pod_spec};

type Labels = BTreeMap<String, String>;

/// A pod in the model: where it runs, its labels, its named container ports.
#[derive(Clone, Debug)]
struct Pod {
    namespace: String,
    labels: Labels,
    ports: BTreeMap<String, u16>,
}

/// Who opens the connection: a pod, or an address outside every pod network (a node, after a NodePort's SNAT).
#[derive(Clone, Debug)]
enum Source {
    Pod(Pod),
    External(Ipv4Addr),
}

fn labels(value: &Value) -> Labels {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// A label selector; `{}` selects everything.
fn selects(selector: &Value, labels: &Labels) -> bool {
    let by_labels = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    let by_expressions = selector["matchExpressions"].as_array().into_iter().flatten().all(|expression| {
        let key = expression["key"].as_str().expect("expression key");
        let values: Vec<&str> =
            expression["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        match expression["operator"].as_str().expect("operator") {
            "In" => labels.get(key).is_some_and(|v| values.contains(&v.as_str())),
            "NotIn" => labels.get(key).is_none_or(|v| !values.contains(&v.as_str())),
            "Exists" => labels.contains_key(key),
            "DoesNotExist" => !labels.contains_key(key),
            other => panic!("unknown selector operator {other}"),
        }
    });
    by_labels && by_expressions
}

fn in_block(block: &Value, address: Ipv4Addr) -> bool {
    let contains = |cidr: &str| {
        let (network, bits) = cidr.split_once('/').expect("CIDR");
        let (network, bits): (Ipv4Addr, u32) = (network.parse().expect("IPv4 CIDR"), bits.parse().expect("prefix"));
        let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
        u32::from(network) & mask == u32::from(address) & mask
    };
    contains(block["cidr"].as_str().expect("ipBlock.cidr"))
        && !block["except"].as_array().into_iter().flatten().filter_map(Value::as_str).any(contains)
}

struct Cluster {
    policies: Vec<Value>,
    namespaces: BTreeMap<String, Labels>,
}

impl Cluster {
    /// Namespace labels as Kubernetes sets them (`kubernetes.io/metadata.name`), plus what the rendering declares.
    fn new(objects: &[Value], extra_namespaces: &[&str]) -> Self {
        let mut namespaces = BTreeMap::new();
        for name in extra_namespaces {
            namespaces
                .insert((*name).to_owned(), Labels::from([("kubernetes.io/metadata.name".into(), (*name).into())]));
        }
        for namespace in kinds(objects, "Namespace") {
            let name = namespace["metadata"]["name"].as_str().expect("namespace name").to_owned();
            let mut declared = labels(&namespace["metadata"]["labels"]);
            declared.insert("kubernetes.io/metadata.name".into(), name.clone());
            namespaces.insert(name, declared);
        }
        Self { policies: kinds(objects, "NetworkPolicy"), namespaces }
    }

    fn namespace_labels(&self, name: &str) -> Labels {
        self.namespaces.get(name).cloned().unwrap_or_else(|| panic!("namespace {name} is not in the model"))
    }

    fn peer_matches(&self, peer: &Value, policy_namespace: &str, source: &Source) -> bool {
        if peer.get("ipBlock").is_some() {
            return matches!(source, Source::External(address) if in_block(&peer["ipBlock"], *address));
        }
        let Source::Pod(pod) = source else { return false };
        let namespace_ok = match peer.get("namespaceSelector") {
            Some(selector) => selects(selector, &self.namespace_labels(&pod.namespace)),
            None => pod.namespace == policy_namespace,
        };
        let pod_ok = peer.get("podSelector").is_none_or(|selector| selects(selector, &pod.labels));
        namespace_ok && pod_ok
    }

    fn port_matches(entry: &Value, to: &Pod, port: u16) -> bool {
        if entry["protocol"].as_str().unwrap_or("TCP") != "TCP" {
            return false;
        }
        let first = match &entry["port"] {
            Value::Null => return true,
            Value::Number(n) => u16::try_from(n.as_u64().expect("port number")).expect("port range"),
            Value::String(name) => match to.ports.get(name) {
                Some(number) => *number,
                // A named port the pod does not have matches nothing on it.
                None => return false,
            },
            other => panic!("port {other}"),
        };
        let last = entry["endPort"].as_u64().map_or(first, |end| u16::try_from(end).expect("endPort"));
        (first..=last).contains(&port)
    }

    fn allowed(&self, from: &Source, to: &Pod, port: u16) -> bool {
        let isolating: Vec<&Value> = self
            .policies
            .iter()
            .filter(|policy| policy["metadata"]["namespace"].as_str() == Some(to.namespace.as_str()))
            .filter(|policy| selects(&policy["spec"]["podSelector"], &to.labels))
            .filter(|policy| {
                policy["spec"]["policyTypes"].as_array().is_none_or(|types| types.iter().any(|t| t == "Ingress"))
            })
            .collect();
        if isolating.is_empty() {
            return true;
        }
        isolating.iter().any(|policy| {
            let namespace = policy["metadata"]["namespace"].as_str().expect("policy namespace");
            policy["spec"]["ingress"].as_array().into_iter().flatten().any(|rule| {
                let ports = rule["ports"].as_array().filter(|p| !p.is_empty());
                let port_ok = ports.is_none_or(|ports| ports.iter().any(|entry| Self::port_matches(entry, to, port)));
                let peers = rule["from"].as_array().filter(|p| !p.is_empty());
                let from_ok =
                    peers.is_none_or(|peers| peers.iter().any(|peer| self.peer_matches(peer, namespace, from)));
                port_ok && from_ok
            })
        })
    }
}

/// The pods a rendering runs, by `app.kubernetes.io/name`, with the load Jobs' pods whether or not the overlay
/// includes them (`kubectl apply -f job-heavy.yaml` works against either).
fn pods(objects: &[Value]) -> BTreeMap<String, Pod> {
    let mut templates: Vec<Value> = objects.iter().filter(|o| pod_spec(o).is_some()).cloned().collect();
    templates.extend(job_files().into_iter().map(|(_, job)| job));
    let mut pods = BTreeMap::new();
    for workload in templates {
        let template = &workload["spec"]["template"];
        let labels = labels(&template["metadata"]["labels"]);
        let name = labels.get("app.kubernetes.io/name").expect("every pod carries app.kubernetes.io/name").clone();
        let ports = template["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .filter_map(|p| Some((p["name"].as_str()?.to_owned(), u16::try_from(p["containerPort"].as_u64()?).ok()?)))
            .collect();
        let namespace = workload["metadata"]["namespace"].as_str().unwrap_or("surge").to_owned();
        pods.insert(name, Pod { namespace, labels, ports });
    }
    pods
}

fn outsider(namespace: &str, name: &str) -> Pod {
    Pod { namespace: namespace.into(), labels: Labels::from([("app".into(), name.into())]), ports: BTreeMap::new() }
}

/// The KEDA operator as KEDA's release manifests run it, in its own namespace.
fn keda_operator() -> Pod {
    let labels = [("app", "keda-operator"), ("app.kubernetes.io/name", "keda-operator")];
    Pod { namespace: "keda".into(), labels: labels.map(|(k, v)| (k.into(), v.into())).into(), ports: BTreeMap::new() }
}

const NODE: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);

/// `nodeport_open`: the development overlay opens the consumer's port to every source for its NodePort (kube-proxy
/// rewrites the source to a node address no selector can name), so there the consumer:8000 denials become allowed;
/// every other case must come out the same in both overlays.
fn check(overlay: &str, nodeport_open: bool) {
    let rendering = manifests::overlay(overlay);
    let cluster = Cluster::new(&rendering.objects, &["keda", "default"]);
    assert!(!cluster.policies.is_empty(), "{overlay} renders the network-policy component");
    let pods = pods(&rendering.objects);
    let pod = |name: &str| Source::Pod(pods.get(name).unwrap_or_else(|| panic!("{overlay} runs no {name}")).clone());
    let stranger = Source::Pod(outsider("default", "stranger"));
    let stranger_inside = Source::Pod(outsider("surge", "stranger"));
    let keda = Source::Pod(keda_operator());
    let node = Source::External(NODE);
    let cases: Vec<(&str, Source, &str, u16, bool)> = vec![
        ("load generator sends work", pod("load-generator"), "consumer", 8000, true),
        ("Prometheus scrapes the consumer", pod("prometheus"), "consumer", 8000, true),
        ("Prometheus scrapes kube-state-metrics", pod("prometheus"), "kube-state-metrics", 8080, true),
        ("a stranger pod cannot post work", stranger.clone(), "consumer", 8000, nodeport_open),
        ("an unlabelled pod in the namespace cannot either", stranger_inside.clone(), "consumer", 8000, nodeport_open),
        ("Grafana has no business with the consumer", pod("grafana"), "consumer", 8000, nodeport_open),
        ("KEDA queries Prometheus: without it scaling stops", keda.clone(), "prometheus", 9090, true),
        ("KEDA cannot reach the consumer", keda, "consumer", 8000, nodeport_open),
        ("Grafana queries Prometheus", pod("grafana"), "prometheus", 9090, true),
        ("the load Jobs' autoscaling table queries Prometheus", pod("load-generator"), "prometheus", 9090, true),
        ("a stranger cannot query Prometheus", stranger.clone(), "prometheus", 9090, false),
        ("the consumer pushes logs to Loki", pod("consumer"), "loki", 3100, true),
        ("a load Job pushes its summary to Loki", pod("load-generator"), "loki", 3100, true),
        ("Grafana queries Loki", pod("grafana"), "loki", 3100, true),
        ("a stranger cannot push to Loki", stranger.clone(), "loki", 3100, false),
        ("Loki's gRPC port is closed", pod("consumer"), "loki", 9095, false),
        ("the consumer sends OTLP to Tempo", pod("consumer"), "tempo", 4317, true),
        ("Grafana queries Tempo", pod("grafana"), "tempo", 3200, true),
        ("the consumer cannot query Tempo", pod("consumer"), "tempo", 3200, false),
        ("a stranger cannot send spans", stranger.clone(), "tempo", 4317, false),
        ("nothing reaches Grafana (port-forward only)", stranger, "grafana", 3000, false),
        ("not even from inside the namespace", pod("consumer"), "grafana", 3000, false),
        ("nor Prometheus", pod("prometheus"), "grafana", 3000, false),
        ("kube-state-metrics answers only Prometheus", stranger_inside, "kube-state-metrics", 8080, false),
        ("the NodePort path (development only)", node, "consumer", 8000, nodeport_open),
    ];
    let mut wrong = Vec::new();
    for (what, from, to, port, expected) in &cases {
        let target = pods.get(*to).unwrap_or_else(|| panic!("{overlay} runs no {to}"));
        let allowed = cluster.allowed(from, target, *port);
        println!("{overlay:<12} {:<5} {what}: -> {to}:{port}", if allowed { "allow" } else { "deny" });
        if allowed != *expected {
            wrong.push(format!("{what}: {to}:{port} is {}", if allowed { "allowed" } else { "denied" }));
        }
    }
    assert!(wrong.is_empty(), "{overlay}:\n{}", wrong.join("\n"));

    // Every pod Prometheus is told to scrape, it may scrape.
    for (name, target) in &pods {
        let Some(workload) = rendering.objects.iter().find(|o| {
            pod_spec(o).is_some()
                && o["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == name.as_str()
        }) else {
            continue;
        };
        let annotations = &workload["spec"]["template"]["metadata"]["annotations"];
        if annotations["prometheus.io/scrape"] == "true" {
            let port: u16 =
                annotations["prometheus.io/port"].as_str().and_then(|p| p.parse().ok()).expect("scrape port");
            assert!(
                cluster.allowed(&pod("prometheus"), target, port),
                "{overlay}: Prometheus may scrape {name}:{port}"
            );
        }
    }
}

#[test]
fn production_admits_only_the_callers_each_service_needs() {
    check("production", false);
}

#[test]
fn development_memory_opens_the_consumer_port_for_its_nodeport_and_nothing_else() {
    check("development-memory", true);
}

#[test]
fn the_evaluator_follows_the_documented_rules() {
    let policy = |spec: Value| serde_json::json!({"kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": "a"}, "spec": spec});
    let target = Pod {
        namespace: "a".into(),
        labels: Labels::from([("role".into(), "db".into())]),
        ports: BTreeMap::from([("sql".into(), 5432)]),
    };
    let client = |ns: &str, role: &str| {
        Source::Pod(Pod {
            namespace: ns.into(),
            labels: Labels::from([("role".into(), role.into())]),
            ports: BTreeMap::new(),
        })
    };
    let cluster = |policies: Vec<Value>| Cluster {
        policies,
        namespaces: ["a", "b"]
            .iter()
            .map(|n| {
                (
                    (*n).to_owned(),
                    Labels::from([
                        ("kubernetes.io/metadata.name".into(), (*n).into()),
                        ("team".into(), format!("team-{n}")),
                    ]),
                )
            })
            .collect(),
    };
    // No policy: not isolated.
    assert!(cluster(vec![]).allowed(&client("b", "x"), &target, 5432));
    // Deny-all isolates.
    let deny = policy(serde_json::json!({"podSelector": {}, "policyTypes": ["Ingress"]}));
    assert!(!cluster(vec![deny.clone()]).allowed(&client("a", "app"), &target, 5432));
    // An egress-only policy does not isolate for ingress.
    let egress = policy(serde_json::json!({"podSelector": {}, "policyTypes": ["Egress"]}));
    assert!(cluster(vec![egress]).allowed(&client("a", "app"), &target, 5432));
    // podSelector alone: same namespace only; named ports resolve; other ports stay closed.
    let app = policy(
        serde_json::json!({"podSelector": {"matchLabels": {"role": "db"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "app"}}}], "ports": [{"port": "sql"}]}]}),
    );
    let c = cluster(vec![deny.clone(), app]);
    assert!(c.allowed(&client("a", "app"), &target, 5432));
    assert!(!c.allowed(&client("b", "app"), &target, 5432));
    assert!(!c.allowed(&client("a", "app"), &target, 5433));
    // Both selectors in one peer: AND; in two peers: OR.
    let and = policy(
        serde_json::json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "team-b"}}, "podSelector": {"matchLabels": {"role": "app"}}}]}]}),
    );
    let c = cluster(vec![and]);
    assert!(c.allowed(&client("b", "app"), &target, 1));
    assert!(!c.allowed(&client("b", "web"), &target, 1));
    assert!(!c.allowed(&client("a", "app"), &target, 1));
    let or = policy(
        serde_json::json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "team-b"}}}, {"podSelector": {"matchLabels": {"role": "app"}}}]}]}),
    );
    let c = cluster(vec![or]);
    assert!(c.allowed(&client("b", "web"), &target, 1) && c.allowed(&client("a", "app"), &target, 1));
    assert!(!c.allowed(&client("a", "web"), &target, 1));
    // Expressions, port ranges, ipBlock with except, and a rule without `from` admitting everyone on its port.
    let mixed = policy(
        serde_json::json!({"podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["db"]}]}, "ingress": [
        {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}], "ports": [{"port": 8000, "endPort": 8010}]},
        {"ports": [{"port": 9000, "protocol": "TCP"}]}]}),
    );
    let c = cluster(vec![mixed]);
    assert!(c.allowed(&Source::External(Ipv4Addr::new(10, 2, 3, 4)), &target, 8005));
    assert!(!c.allowed(&Source::External(Ipv4Addr::new(10, 1, 3, 4)), &target, 8005));
    assert!(!c.allowed(&Source::External(Ipv4Addr::new(10, 2, 3, 4)), &target, 8011));
    assert!(c.allowed(&client("b", "anyone"), &target, 9000));
    assert!(!c.allowed(&client("b", "anyone"), &target, 8005));
}

/// The queue component's Redis: the consumer (its queue) and KEDA's operator (the redis-streams trigger) only; and
/// every row of the development table still holds with it composed.
#[test]
fn development_admits_only_the_consumer_and_keda_to_redis() {
    check("development", true);
    let rendering = manifests::overlay("development");
    let cluster = Cluster::new(&rendering.objects, &["keda", "default"]);
    let pods = pods(&rendering.objects);
    let pod = |name: &str| Source::Pod(pods.get(name).unwrap_or_else(|| panic!("no {name}")).clone());
    let redis = pods.get("redis").expect("development runs redis");
    let cases = [
        ("the consumer reads and writes the queue", pod("consumer"), 6379, true),
        ("KEDA's operator reads the stream (redis-streams trigger)", Source::Pod(keda_operator()), 6379, true),
        ("the load generator cannot touch the queue", pod("load-generator"), 6379, false),
        ("nor Prometheus", pod("prometheus"), 6379, false),
        ("nor Grafana", pod("grafana"), 6379, false),
        ("nor a stranger in the namespace", Source::Pod(outsider("surge", "stranger")), 6379, false),
        ("nor a pod elsewhere", Source::Pod(outsider("default", "stranger")), 6379, false),
    ];
    for (what, from, port, expected) in cases {
        assert_eq!(cluster.allowed(&from, redis, port), expected, "{what}");
    }
}
