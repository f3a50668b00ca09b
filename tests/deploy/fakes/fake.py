#!/usr/bin/env python3
"""Stateful stand-ins for kubectl, kind and docker (and minikube), for tests/deploy/devscript.rs.

One program, called by the name it is linked as. They share one state file (FAKE_STATE), so what one tool does the
others see, as on a machine with a kind cluster:
- kind creates the cluster, its kubectl context (kind-<name>) and its node container; `kind delete cluster` removes all.
- kubectl requires --context on every call and refuses a context that does not exist. What was applied exists; anything
  else is NotFound. A kind is served only when it is built in or its CRD was applied (applying a ScaledObject before
  KEDA fails as the real one does). `rollout status` and `wait` succeed only on objects that exist.
- Applying KEDA's or metrics-server's release URL creates exactly the objects that release creates (fixtures in
  FAKE_FIXTURES, rendered from the releases' own sources; the files name them).
- docker builds images with IDs that change with FAKE_BUILD_SALT (a code change), saves archives that record the
  platform; `kind load image-archive` of an archive without one fails under FAKE_DOCKER_STORE=containerd (kind#3795).
- `kubectl port-forward` serves a Prometheus or Grafana HTTP API on the local port until it is killed, and records its
  PID, so a test can check that nothing is left running.
- FAKE_KUBECTL_WARNING is printed on stderr by every kubectl call that succeeds (a deprecation or skew warning);
  `kubectl version -o json` answers FAKE_KUBECTL_MINOR and FAKE_SERVER_MINOR (both 32 by default); with
  FAKE_JOB_PODS_STAGGERED=1 a Job's pods start one after another, so `logs -f -l` fails on a sibling still starting
  unless it has --ignore-errors, as the real one does.
- A changed Deployment's `rollout status` fails as a stuck rollout does when the node (FAKE_NODE_CPU) has no room for
  a surge pod beside every other pod's CPU request and its strategy lets no old pod go first (maxUnavailable 0);
  `patch --type merge` changes the stored object.
"""
import base64
import hashlib
import json
import os
import re
import sys
import time

# yaml, subprocess, http.server and urllib are imported where they are used: every call of a fake pays for what it
# imports, and most calls need none of them.

STATE = os.environ["FAKE_STATE"]
FIXTURES = os.environ["FAKE_FIXTURES"]

RELEASES = {
    "https://github.com/kedacore/keda/releases/download/v2.21.0/keda-2.21.0.yaml": "keda-2.21.0.txt",
    "https://github.com/kubernetes-sigs/metrics-server/releases/download/v0.9.0/components.yaml":
        "metrics-server-0.9.0.txt",
}
BUILT_IN = {
    "Namespace", "ConfigMap", "Secret", "Service", "ServiceAccount", "Deployment", "Job", "Pod", "Event", "Node",
    "PodDisruptionBudget", "NetworkPolicy", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding",
    "PersistentVolumeClaim", "HorizontalPodAutoscaler", "CustomResourceDefinition", "APIService",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "StatefulSet", "DaemonSet",
}
CLUSTER_SCOPED = {
    "Namespace", "Node", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "APIService",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
}
ALIASES = {"deploy": "Deployment", "svc": "Service", "hpa": "HorizontalPodAutoscaler", "so": "ScaledObject",
           "ns": "Namespace", "cm": "ConfigMap", "crd": "CustomResourceDefinition", "po": "Pod",
           "netpol": "NetworkPolicy", "pdb": "PodDisruptionBudget"}


def load():
    try:
        with open(STATE) as f:
            return json.load(f)
    except FileNotFoundError:
        state = {"clusters": {}, "contexts": [], "objects": {}, "images": {}, "containers": {}, "rollouts": [],
                 "node_images": {}, "e2e_step": 0}
        seed_cluster(state, "node")
        return state


# kind's control plane and add-ons with their CPU requests: kubeadm's static pods (kube-apiserver 250m,
# kube-controller-manager 200m, kube-scheduler 100m, etcd 100m), two CoreDNS (100m each) and kindnet (100m).
KIND_SYSTEM_PODS = [("kube-apiserver", "250m"), ("kube-controller-manager", "200m"), ("kube-scheduler", "100m"),
                    ("etcd", "100m"), ("coredns-0", "100m"), ("coredns-1", "100m"), ("kindnet", "100m")]


def seed_cluster(state, node):
    """What every new cluster has: its built-in namespaces, a node with FAKE_NODE_CPU allocatable cores, and kind's
    system pods on it."""
    for obj in [{"kind": "Namespace", "metadata": {"name": ns}} for ns in ("default", "kube-system")] + [
            {"kind": "Node", "metadata": {"name": node},
             "status": {"allocatable": {"cpu": os.environ.get("FAKE_NODE_CPU", "4")}}}]:
        state["objects"][key(obj["kind"], None, obj["metadata"]["name"])] = obj
    for name, cpu in KIND_SYSTEM_PODS:
        pod = {"kind": "Pod", "metadata": {"name": name, "namespace": "kube-system"},
               "spec": {"nodeName": node, "containers": [{"name": name, "resources": {"requests": {"cpu": cpu}}}]}}
        state["objects"][key("Pod", "kube-system", name)] = pod


def controller_pods(state):
    """The pods the controllers keep for each stored Deployment, StatefulSet and DaemonSet that has a pod template
    (the release fixtures' objects have none): its replicas (a DaemonSet one, on the one node), with the template's
    labels and spec."""
    pods = []
    for obj in list(state["objects"].values()):
        template = obj.get("spec", {}).get("template") if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet") \
            else None
        if not template:
            continue
        replicas = 1 if obj["kind"] == "DaemonSet" else obj["spec"].get("replicas", 1)
        for i in range(replicas):
            pods.append({"kind": "Pod",
                         "metadata": {"name": f'{obj["metadata"]["name"]}-{i}',
                                      "namespace": obj["metadata"].get("namespace"),
                                      "labels": template.get("metadata", {}).get("labels") or {}},
                         "spec": template.get("spec", {})})
    return pods


def save(state):
    with open(STATE + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(STATE + ".tmp", STATE)


def fail(message, code=1):
    print(message, file=sys.stderr)
    sys.exit(code)


def record(tool, args):
    calls = os.environ.get("CALLS")
    if calls:
        with open(calls, "a") as f:
            f.write(" ".join([tool] + args) + "\n")


# ---------------------------------------------------------------- kubectl: objects

def served_kinds(state):
    kinds = set(BUILT_IN)
    for obj in state["objects"].values():
        if obj["kind"] == "CustomResourceDefinition":
            kinds.add(obj["spec"]["names"]["kind"])
    return kinds


def kind_of(state, word):
    word = word.split(".")[0]
    if word in ALIASES:
        return ALIASES[word]
    for kind in served_kinds(state):
        if word.lower() in (kind.lower(), kind.lower() + "s", kind.lower() + "es"):
            return kind
    fail(f'error: the server doesn\'t have a resource type "{word}"')


def key(kind, namespace, name):
    return f"{kind}/{namespace if kind not in CLUSTER_SCOPED else '-'}/{name}"


def resource_word(kind):
    return {"Deployment": "deployments.apps", "Job": "jobs.batch", "ScaledObject": "scaledobjects.keda.sh",
            "HorizontalPodAutoscaler": "horizontalpodautoscalers.autoscaling",
            "APIService": "apiservices.apiregistration.k8s.io"}.get(kind, kind.lower() + "s")


def not_found(kind, name):
    fail(f'Error from server (NotFound): {resource_word(kind)} "{name}" not found')


def labels_match(obj, selector):
    if not selector:
        return True
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in selector.split(","):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k) != v:
                return False
        elif term not in labels:
            return False
    return True


def with_status(obj):
    """The status a healthy cluster would give the object once its controllers have run."""
    kind, spec = obj["kind"], obj.get("spec") or {}
    if kind == "Deployment":
        replicas = spec.get("replicas", 1)
        obj["status"] = {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
                         "conditions": [{"type": "Available", "status": "True"}]}
    elif kind == "Job":
        obj["status"] = {} if spec.get("suspend") else {"active": spec.get("parallelism", 1),
                                                         "ready": spec.get("parallelism", 1)}
    elif kind in ("APIService", "ScaledObject"):
        obj["status"] = {"conditions": [{"type": "Available", "status": "True"}, {"type": "Ready", "status": "True"}]}
    return obj


def release_objects(url):
    name = RELEASES.get(url)
    if name is None:
        fail(f'error: unable to read URL "{url}", server reported 404 Not Found, status code=404')
    objects = []
    with open(os.path.join(FIXTURES, name)) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            kind, namespace, obj_name, *extra = line.split()
            obj = {"kind": kind, "metadata": {"name": obj_name, "labels": {}}}
            if namespace != "-":
                obj["metadata"]["namespace"] = namespace
            for item in extra:
                if item.startswith("version="):
                    obj["metadata"]["labels"]["app.kubernetes.io/version"] = item.split("=", 1)[1]
                elif kind == "CustomResourceDefinition":
                    obj["spec"] = {"names": {"kind": item}}
            objects.append(obj)
    return objects


def documents(state, args, namespace):
    """The objects an apply/delete/create names: -f URL|FILE|-, or -k DIR (rendered by the real kustomize)."""
    import subprocess

    import yaml

    if "-k" in args:
        directory = args[args.index("-k") + 1]
        rendered = subprocess.run([os.environ["FAKE_REAL_KUBECTL"], "kustomize", directory], capture_output=True,
                                  text=True)
        if rendered.returncode != 0:
            fail(rendered.stderr)
        text, source = rendered.stdout, directory
    else:
        src = args[args.index("-f") + 1]
        if src.startswith("https://"):
            return release_objects(src), src
        text = sys.stdin.read() if src == "-" else open(src).read()
        source = src
    docs = []
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        docs.extend(doc["items"] if doc.get("kind") == "List" else [doc])
    for doc in docs:
        if doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"].setdefault("namespace", namespace or "default")
    return docs, source


def mapping_error(doc, source):
    return (f'error: resource mapping not found for name: "{doc["metadata"]["name"]}" namespace: '
            f'"{doc["metadata"].get("namespace", "")}" from "{source}": no matches for kind "{doc["kind"]}" in version '
            f'"{doc.get("apiVersion", "v1")}"\nensure CRDs are installed first')


def pod_template(obj):
    return json.dumps(obj.get("spec", {}).get("template"), sort_keys=True)


def apply(state, args, namespace):
    docs, source = documents(state, args, namespace)
    selector = args[args.index("-l") + 1] if "-l" in args else None
    errors = []
    for doc in docs:
        if not labels_match(doc, selector):
            continue
        if doc["kind"] not in served_kinds(state):
            errors.append(mapping_error(doc, source))
            continue
        ns = doc["metadata"].get("namespace")
        if doc["kind"] not in CLUSTER_SCOPED and key("Namespace", None, ns) not in state["objects"]:
            errors.append(f'Error from server (NotFound): error when creating "{source}": namespaces "{ns}" not found')
            continue
        k = key(doc["kind"], ns, doc["metadata"]["name"])
        old = state["objects"].get(k)
        if doc["kind"] == "Job" and doc["metadata"]["name"] == "e2e-heavy":
            state["e2e_step"] = 0
        if doc["kind"] == "Deployment" and old is not None and "replicas" in old.get("spec", {}) \
                and "replicas" not in doc.get("spec", {}):
            # A count the manifest leaves out (the autoscaler's) stays as it is, as the API server keeps it.
            doc = dict(doc, spec=dict(doc["spec"], replicas=old["spec"]["replicas"]))
        state["objects"][k] = with_status(doc)
        if doc["kind"] == "Deployment" and "spec" in doc and (old is None or pod_template(old) != pod_template(doc)):
            images = [c["image"] for c in doc["spec"]["template"]["spec"]["containers"]]
            state["rollouts"].append({"deployment": doc["metadata"]["name"], "images": images})
            if old is not None:
                # Its pods replaced by new ones: the rollout has to make room for them (rollout status).
                state.setdefault("rolling", []).append(f"{ns}/{doc['metadata']['name']}")
        if doc["kind"] == "ScaledObject":
            # KEDA creates keda-hpa-<name>, copying the ScaledObject's labels.
            hpa = {"kind": "HorizontalPodAutoscaler",
                   "metadata": {"name": "keda-hpa-" + doc["metadata"]["name"], "namespace": ns,
                                "labels": dict(doc["metadata"].get("labels") or {})},
                   "spec": {"minReplicas": doc["spec"].get("minReplicaCount", 0)},
                   "status": {"desiredReplicas": doc["spec"].get("minReplicaCount", 1)}}
            state["objects"][key("HorizontalPodAutoscaler", ns, hpa["metadata"]["name"])] = hpa
            if f"{ns}/prometheus" not in state.setdefault("rolled_out", []):
                # KEDA polls at once; a Prometheus still starting answers nothing, and the HPA records it.
                event = {"kind": "Event", "reason": "FailedGetExternalMetric",
                         "lastTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "metadata": {"name": f"{hpa['metadata']['name']}.{time.time_ns()}", "namespace": ns}}
                state["objects"][key("Event", ns, event["metadata"]["name"])] = event
        print(f'{doc["kind"].lower()}/{doc["metadata"]["name"]} {"configured" if old else "created"}')
    if errors:
        save(state)
        fail("\n".join(errors))


def delete(state, args, namespace):
    ignore = "--ignore-not-found" in args or "--ignore-not-found=true" in args
    if "-k" in args or "-f" in args:
        docs, source = documents(state, args, namespace)
        errors = []
        for doc in docs:
            if doc["kind"] not in served_kinds(state):
                errors.append(mapping_error(doc, source))
                continue
            k = key(doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
            if state["objects"].pop(k, None) is None and not ignore:
                errors.append(f'Error from server (NotFound): {resource_word(doc["kind"])} '
                              f'"{doc["metadata"]["name"]}" not found')
            elif doc["kind"] == "Namespace":
                drop_namespace(state, doc["metadata"]["name"])
        save(state)
        if errors:
            fail("\n".join(errors))
        return
    words = [a for a in args if not a.startswith("-")]
    kind = kind_of(state, words[0].split("/")[0])
    name = words[0].split("/")[1] if "/" in words[0] else words[1]
    if state["objects"].pop(key(kind, namespace or "default", name), None) is None:
        if not ignore:
            not_found(kind, name)
        # --ignore-not-found: kubectl says nothing.
        return
    if kind == "Namespace":
        drop_namespace(state, name)
    print(f"{kind.lower()} \"{name}\" deleted")


def drop_namespace(state, name):
    for k in [k for k, o in state["objects"].items() if o["metadata"].get("namespace") == name]:
        del state["objects"][k]


def jsonpath(obj, template):
    """The few JSONPath forms kubectl templates use: {.a.b}, escaped dots, [*] over lists, [N]."""
    def resolve(value, path):
        parts = re.findall(r"(?:\\.|[^.\[\]])+|\[[^\]]*\]", path)
        values = [value]
        for part in parts:
            nxt = []
            for v in values:
                if part == "[*]":
                    nxt.extend(v if isinstance(v, list) else [])
                elif part.startswith("["):
                    idx = int(part[1:-1])
                    if isinstance(v, list) and idx < len(v):
                        nxt.append(v[idx])
                elif isinstance(v, dict) and part.replace("\\.", ".") in v:
                    nxt.append(v[part.replace("\\.", ".")])
            values = nxt
        return " ".join(str(v) if not isinstance(v, (dict, list)) else json.dumps(v) for v in values)
    return re.sub(r"\{([^}]*)\}", lambda m: resolve(obj, m.group(1).lstrip(".")), template)


def e2e_scenario(state, obj):
    """The trajectory a test scripted (FAKE_E2E) for make e2e's Job: each readyReplicas read is one poll."""
    scenario = json.loads(os.environ.get("FAKE_E2E", "null") or "null")
    job = state["objects"].get(key("Job", obj["metadata"].get("namespace"), "e2e-heavy"))
    if not scenario or job is None:
        return obj
    step = state["e2e_step"]
    desired, ready = scenario["trajectory"][min(step, len(scenario["trajectory"]) - 1)]
    if obj["kind"] == "Deployment":
        obj = dict(obj, status=dict(obj["status"], readyReplicas=ready))
        state["e2e_step"] = step + 1
    elif obj["kind"] == "HorizontalPodAutoscaler":
        obj = dict(obj, status={"desiredReplicas": desired})
    elif obj["kind"] == "Job":
        done = step >= scenario["job_done_after"]
        obj = dict(obj, status={"succeeded": 1} if done and not scenario.get("job_fails")
                   else {"failed": 1} if done else {"active": 1, "ready": 1})
    return obj


def get(state, args, namespace):
    output = None
    for i, a in enumerate(args):
        if a == "-o":
            output = args[i + 1]
        elif a.startswith("-o") and len(a) > 2:
            output = a[2:].lstrip("=")
        elif a.startswith("--output="):
            output = a.split("=", 1)[1]
    selector = args[args.index("-l") + 1] if "-l" in args else None
    field = args[args.index("--field-selector") + 1] if "--field-selector" in args else None
    skip = {"-o", "-l", "--field-selector", "--sort-by"}
    words = [a for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] not in skip)]
    if "," in words[0]:
        for word in words[0].split(","):
            kind = kind_of(state, word)
            for obj in state["objects"].values():
                if obj["kind"] == kind and obj["metadata"].get("namespace") in (namespace, None):
                    print(f'{kind.lower()}/{obj["metadata"]["name"]}')
        return
    kind = kind_of(state, words[0].split("/")[0])
    name = words[0].split("/")[1] if "/" in words[0] else (words[1] if len(words) > 1 else None)
    ns = None if kind in CLUSTER_SCOPED else namespace or "default"
    if name is not None:
        obj = state["objects"].get(key(kind, ns, name))
        if obj is None and "--ignore-not-found" in args:
            return
        if obj is None:
            not_found(kind, name)
        obj = e2e_scenario(state, obj)
        save(state)
        result = obj
    else:
        every_namespace = "-A" in args or "--all-namespaces" in args
        stored = list(state["objects"].values()) + (controller_pods(state) if kind == "Pod" else [])
        items = [o for o in stored
                 if o["kind"] == kind and (every_namespace or o["metadata"].get("namespace") == ns)
                 and labels_match(o, selector)]
        if field:
            k, v = field.split("=", 1)
            items = [o for o in items if o.get(k) == v]
        result = {"kind": "List", "items": items}
    if output is None or output == "wide":
        for obj in [result] if name else result["items"]:
            print(obj["metadata"]["name"])
    elif output == "json":
        print(json.dumps(result, indent=2))
    elif output.startswith("jsonpath="):
        sys.stdout.write(jsonpath(result, output.split("=", 1)[1]))
    else:
        import yaml

        print(yaml.safe_dump(result))


def merge(obj, patch):
    """A JSON merge patch (RFC 7386), in place."""
    for name, value in patch.items():
        if value is None:
            obj.pop(name, None)
        elif isinstance(value, dict) and isinstance(obj.get(name), dict):
            merge(obj[name], value)
        else:
            obj[name] = value


def millicores(cpu):
    cpu = str(cpu or "0")
    return int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000)


def rollout_can_progress(state, deployment):
    """Whether a rolling update of `deployment` can finish on the node (FAKE_NODE_CPU): a surge pod needs room for
    its CPU request beside every other pod's; without room, only maxUnavailable of at least one lets an old pod go
    first, as the Deployment controller does."""
    strategy = deployment["spec"].get("strategy", {}).get("rollingUpdate", {})
    if str(strategy.get("maxUnavailable", "25%")) not in ("0", "0%"):
        return True
    name = deployment["metadata"]["name"]
    pods = [p for p in list(state["objects"].values()) + controller_pods(state) if p["kind"] == "Pod"]
    others = sum(millicores(c.get("resources", {}).get("requests", {}).get("cpu"))
                 for p in pods if not p["metadata"]["name"].startswith(name + "-")
                 for c in p["spec"].get("containers", []))
    request = millicores(deployment["spec"]["template"]["spec"]["containers"][0].get("resources", {})
                         .get("requests", {}).get("cpu"))
    free = int(os.environ.get("FAKE_NODE_CPU", "4")) * 1000 - others
    return request == 0 or deployment["spec"].get("replicas", 1) < free // request


def target_object(state, args, namespace):
    words = [a for a in args if not a.startswith("-")]
    kind = kind_of(state, words[0].split("/")[0])
    name = words[0].split("/")[1] if "/" in words[0] else words[1]
    obj = state["objects"].get(key(kind, None if kind in CLUSTER_SCOPED else namespace or "default", name))
    if obj is None:
        not_found(kind, name)
    return obj


def wait(state, args, namespace):
    obj = e2e_scenario(state, target_object(state, args, namespace))
    save(state)
    condition = next(a.split("=", 1)[1] for a in args if a.startswith("--for="))
    if condition.startswith("condition="):
        wanted = condition.split("=", 1)[1]
        if not any(c.get("type") == wanted and c.get("status") == "True"
                   for c in (obj.get("status") or {}).get("conditions", [])):
            fail(f'error: timed out waiting for the condition on {obj["kind"].lower()}s/{obj["metadata"]["name"]}')
    elif condition.startswith("jsonpath="):
        path, value = condition.split("=", 1)[1].rsplit("=", 1)
        if jsonpath(obj, path) != value:
            fail(f'error: timed out waiting for the condition on {obj["kind"].lower()}s/{obj["metadata"]["name"]}')
    print(f'{obj["kind"].lower()}/{obj["metadata"]["name"]} condition met')


def create(state, args, namespace):
    if "--dry-run=client" in args and "-f" in args:
        docs, _ = documents(state, args, namespace)
        print(json.dumps(docs[0]))
    elif args[0] == "namespace":
        print(f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {args[1]}")
    elif args[:2] == ["secret", "generic"]:
        name = args[2]
        k = key("Secret", namespace or "default", name)
        if k in state["objects"]:
            fail(f'error: failed to create secret secrets "{name}" already exists')
        data = {}
        for a in args:
            if a.startswith("--from-literal="):
                field, value = a.split("=", 1)[1].split("=", 1)
                data[field] = base64.b64encode(value.encode()).decode()
        state["objects"][k] = {"kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "data": data}
        save(state)
        print(f"secret/{name} created")
    else:
        fail(f"fake kubectl: create {' '.join(args)} is not modelled", 3)


def port_forward(state, args, namespace):
    target, ports = [a for a in args if not a.startswith("-")][:2]
    obj = target_object(state, [target], namespace)
    local = int(ports.split(":")[0])
    with open(STATE + ".pids", "a") as f:
        f.write(f"{os.getpid()} port-forward {target}\n")
    serve(obj["metadata"]["name"], local, namespace)


def kubectl(args):
    state = load()
    context, namespace, rest = None, None, []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--context":
            context, i = args[i + 1], i + 2
        elif a.startswith("--context="):
            context, i = a.split("=", 1)[1], i + 1
        elif a in ("-n", "--namespace"):
            namespace, i = args[i + 1], i + 2
        else:
            rest.append(a)
            i += 1
    if not rest:
        fail("fake kubectl: no command", 3)
    verb, args = rest[0], rest[1:]
    if verb == "kustomize":
        os.execv(os.environ["FAKE_REAL_KUBECTL"], ["kubectl", "kustomize"] + args)
    if context is None:
        fail("fake kubectl: every call must name its --context (the current context may be any cluster)", 3)
    if context not in state["contexts"] and context not in os.environ.get("FAKE_EXTRA_CONTEXTS", "").split(","):
        fail(f"error: context was not found for specified context: {context}")
    if context in os.environ.get("FAKE_DOWN_CONTEXTS", "").split(","):
        fail("Unable to connect to the server: dial tcp 127.0.0.1:6443: connect: connection refused")
    flaky = int(os.environ.get("FAKE_FLAKY_EVERY", "0"))
    if flaky and rest[0] == "get":
        # A busy apiserver: every Nth read times out once.
        state["reads"] = state.get("reads", 0) + 1
        save(state)
        if state["reads"] % flaky == 0:
            fail("Unable to connect to the server: net/http: TLS handshake timeout")
    warning = os.environ.get("FAKE_KUBECTL_WARNING")
    if warning:
        print(warning, file=sys.stderr)
    if verb == "cluster-info":
        print("Kubernetes control plane is running")
    elif verb == "version":
        minor = os.environ.get("FAKE_KUBECTL_MINOR", "32")
        print(json.dumps({"clientVersion": {"major": "1", "minor": minor, "gitVersion": f"v1.{minor}.0"},
                          "serverVersion": {"major": "1", "minor": os.environ.get("FAKE_SERVER_MINOR", minor),
                                            "gitVersion": f"v1.{os.environ.get('FAKE_SERVER_MINOR', minor)}.0"}}))
    elif verb == "apply":
        apply(state, args, namespace)
        save(state)
    elif verb == "delete":
        delete(state, args, namespace)
        save(state)
    elif verb == "get":
        get(state, args, namespace)
    elif verb == "create":
        create(state, args, namespace)
    elif verb == "rollout" and args[0] == "status":
        obj = target_object(state, args[1:], namespace)
        rolling = f'{obj["metadata"]["namespace"]}/{obj["metadata"]["name"]}'
        if rolling in state.get("rolling", []) and not rollout_can_progress(state, obj):
            fail(f'error: deployment "{obj["metadata"]["name"]}" exceeded its progress deadline')
        state["rolling"] = [r for r in state.get("rolling", []) if r != rolling]
        state.setdefault("rolled_out", []).append(f'{obj["metadata"]["namespace"]}/{obj["metadata"]["name"]}')
        save(state)
        print(f'deployment "{obj["metadata"]["name"]}" successfully rolled out')
    elif verb == "rollout" and args[0] == "restart":
        obj = target_object(state, args[1:], namespace)
        state["rollouts"].append({"deployment": obj["metadata"]["name"], "images": ["restart"]})
        save(state)
    elif verb == "wait":
        wait(state, args, namespace)
    elif verb == "patch":
        obj = target_object(state, args, namespace)
        if "--type" in args and args[args.index("--type") + 1] == "merge":
            merge(obj, json.loads(args[args.index("-p") + 1]))
            save(state)
        print(f'{obj["kind"].lower()}/{obj["metadata"]["name"]} patched')
    elif verb in ("logs", "describe"):
        following_siblings = verb == "logs" and "-f" in args and any(a.startswith("-l") for a in args)
        if following_siblings and os.environ.get("FAKE_JOB_PODS_STAGGERED") == "1" and "--ignore-errors" not in args:
            fail('error: container "generator" in pod "load-distributed-1-x7k2p" is waiting to start: '
                 'ContainerCreating')
        if verb == "logs" and not any(a.startswith("-l") for a in args):
            target_object(state, [a for a in args if a.startswith("job/") or a.startswith("deployment/")], namespace)
        print(f"fake {verb}: {' '.join(args)}")
    elif verb == "port-forward":
        port_forward(state, args, namespace)
    else:
        fail(f"fake kubectl: {verb} is not modelled", 3)


# ---------------------------------------------------------------- port-forward: Prometheus and Grafana APIs

def serve(service, port, namespace):
    import http.server
    import urllib.parse

    dashboards = os.environ.get("FAKE_DASHBOARDS", "")
    rejected = os.environ.get("FAKE_PROMQL_REJECT", "")

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def query(self, params):
            expr = params.get("query", [""])[0]
            if rejected and rejected in expr:
                return self.reply(400, {"status": "error", "errorType": "bad_data", "error": "parse error"})
            self.reply(200, {"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {}, "value": [time.time(), "1"]}]}})

        def do_GET(self):
            self.route(urllib.parse.urlparse(self.path), {})

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            self.route(urllib.parse.urlparse(self.path), urllib.parse.parse_qs(self.rfile.read(length).decode()))

        def route(self, url, form):
            params = dict(urllib.parse.parse_qs(url.query), **form)
            if service == "prometheus":
                if url.path == "/-/ready":
                    return self.reply(200, "ready")
                if url.path == "/api/v1/query":
                    return self.query(params)
                return self.reply(404, {})
            if url.path == "/api/health":
                return self.reply(200, {"database": "ok"})
            state = load()
            secret = state["objects"].get(key("Secret", namespace, "grafana-admin"), {}).get("data", {})
            expected = "Basic " + base64.b64encode(b"admin:" + base64.b64decode(secret.get("password", ""))).decode()
            if self.headers.get("Authorization") != expected:
                return self.reply(401, {"message": "invalid username or password"})
            files = sorted(f for f in os.listdir(dashboards) if f.endswith(".json")) if dashboards else []
            if url.path == "/api/search":
                return self.reply(200, [{"uid": f[:-5]} for f in files])
            if url.path.startswith("/api/dashboards/uid/"):
                with open(os.path.join(dashboards, url.path.rsplit("/", 1)[1] + ".json")) as f:
                    return self.reply(200, {"dashboard": json.load(f)})
            if url.path == "/api/datasources/proxy/uid/prometheus/api/v1/query_range":
                return self.query(params)
            self.reply(404, {})

    server = http.server.HTTPServer(("127.0.0.1", port), Handler)
    server.timeout = 1
    deadline = time.time() + 600  # a safety net only: the script under test must kill it
    while time.time() < deadline:
        server.handle_request()


# ---------------------------------------------------------------- kind, docker, minikube

def kind(args):
    state = load()
    flags = dict(zip(args[::1], args[1::1]))
    name = flags.get("--name", "kind")
    if args[:2] == ["get", "clusters"]:
        if not state["clusters"]:
            print("No kind clusters found.", file=sys.stderr)
        for cluster in state["clusters"]:
            print(cluster)
    elif args[:2] == ["create", "cluster"]:
        if name in state["clusters"]:
            fail(f'ERROR: failed to create cluster: node(s) already exist for a cluster with the name "{name}"')
        import yaml

        with open(flags["--config"]) as f:
            config = yaml.safe_load(f)
        mappings = {f'{m["containerPort"]}/{m.get("protocol", "TCP").lower()}':
                    f'{m.get("listenAddress", "0.0.0.0")}:{m["hostPort"]}'
                    for node in config["nodes"] for m in node.get("extraPortMappings", [])}
        state["clusters"][name] = {"ports": mappings}
        state["containers"][f"{name}-control-plane"] = mappings
        state["contexts"].append(f"kind-{name}")
        state["objects"] = {}
        seed_cluster(state, f"{name}-control-plane")
        save(state)
        print(f'Creating cluster "{name}" ...')
    elif args[:2] == ["load", "image-archive"]:
        if name not in state["clusters"]:
            fail(f'ERROR: no nodes found for cluster "{name}"')
        with open(args[2]) as f:
            archive = json.load(f)
        if os.environ.get("FAKE_DOCKER_STORE") == "containerd" and archive["platform"] is None:
            fail("ERROR: failed to load image: command \"docker exec --privileged -i surge-control-plane ctr "
                 "--namespace=k8s.io images import --all-platforms --digests --snapshotter=overlayfs -\" failed with "
                 "error: exit status 1\nCommand Output: ctr: content digest sha256:0123: not found")
        state["node_images"].update(archive["images"])
        save(state)
    elif args[:2] == ["delete", "cluster"]:
        state["clusters"].pop(name, None)
        state["containers"].pop(f"{name}-control-plane", None)
        state["contexts"] = [c for c in state["contexts"] if c != f"kind-{name}"]
        state["objects"], state["node_images"] = {}, {}
        save(state)
        print(f'Deleting cluster "{name}" ...')
    else:
        fail(f"fake kind: {' '.join(args)} is not modelled", 3)


def docker(args):
    state = load()
    no_buildx = os.environ.get("FAKE_NO_BUILDX") == "1"
    if args[0] == "info":
        if os.environ.get("FAKE_DOCKER_DOWN") == "1":
            fail("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")
    elif args[0] == "buildx":
        if no_buildx:
            fail("docker: unknown command: docker buildx")
        print("github.com/docker/buildx v0.29.1")
    elif args[0] == "build":
        if no_buildx:
            fail("the --mount option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how "
                 "to build images with BuildKit enabled")
        dockerfile, tag = args[args.index("-f") + 1], args[args.index("-t") + 1]
        digest = hashlib.sha256((dockerfile + os.environ.get("FAKE_BUILD_SALT", "")).encode()).hexdigest()
        state["images"][tag] = "sha256:" + digest
        save(state)
    elif args[0] == "tag":
        if args[1] not in state["images"]:
            fail(f"Error response from daemon: No such image: {args[1]}")
        state["images"][args[2]] = state["images"][args[1]]
        save(state)
    elif args[:2] == ["image", "inspect"] or args[0] == "inspect":
        ref = args[-1]
        if ref not in state["images"]:
            fail(f"Error response from daemon: No such image: {ref}")
        template = args[args.index("-f") + 1] if "-f" in args else "{{.Id}}"
        print(template.replace("{{.Id}}", state["images"][ref]).replace("{{.Os}}", "linux")
              .replace("{{.Architecture}}", "amd64"))
    elif args[0] == "save" or args[:2] == ["image", "save"]:
        rest = args[1:] if args[0] == "save" else args[2:]
        if "--help" in rest:
            print("Usage:  docker image save [OPTIONS] IMAGE [IMAGE...]\n  -o, --output string\n"
                  "      --platform stringArray   Save only the given platform(s)")
            return
        platform = rest[rest.index("--platform") + 1] if "--platform" in rest else None
        out = rest[rest.index("-o") + 1]
        refs = [r for i, r in enumerate(rest) if not r.startswith("-") and rest[i - 1] not in ("-o", "--platform")]
        for ref in refs:
            if ref not in state["images"]:
                fail(f"Error response from daemon: No such image: {ref}")
        with open(out, "w") as f:
            json.dump({"platform": platform, "images": {r: state["images"][r] for r in refs}}, f)
    elif args[0] == "port":
        mappings = state["containers"].get(args[1])
        if mappings is None:
            fail(f"Error response from daemon: No such container: {args[1]}")
        if args[2] in mappings:
            print(mappings[args[2]])
        else:
            fail(f"Error: No public port '{args[2]}' published for {args[1]}")
    else:
        fail(f"fake docker: {' '.join(args)} is not modelled", 3)


def clock():
    """make e2e's clock (E2E_CLOCK=clock): FAKE_SECONDS_PER_POLL (15) seconds for every poll of its loop so far."""
    print(load()["e2e_step"] * int(os.environ.get("FAKE_SECONDS_PER_POLL", "15")))


def main():
    tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
    record(tool, args)
    if tool == "kubectl":
        kubectl(args)
    elif tool == "kind":
        kind(args)
    elif tool == "docker":
        docker(args)
    elif tool == "minikube":
        pass
    elif tool == "clock":
        clock()
    else:
        fail(f"fake: unknown tool {tool}", 3)


if __name__ == "__main__":
    main()
