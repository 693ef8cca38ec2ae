#!/usr/bin/env python3
"""What the Kubernetes API schema cannot check in deploy/ (run by scripts/validate-deploy.sh;
Python 3 and PyYAML):

- every pod template, init container and Job passes the Pod Security `restricted` profile
  (https://kubernetes.io/docs/concepts/security/pod-security-standards/, version `latest`)
  and keeps its root filesystem read-only;
- no Deployment an autoscaler (a HorizontalPodAutoscaler or a KEDA ScaledObject) owns has
  replicas set, and none has two autoscalers;
- the custom resources (KEDA, Prometheus Operator) have the fields their CRDs require and no
  others, and KEDA scales each consumer on exactly the queues its code consumes;
- every metric an alert or the dashboard names is one the code exports, and the alerts are
  those docs/production.md recommends;
- every file a kustomization names exists.

    check-deploy.py source DIR              the manifests under DIR, file by file
    check-deploy.py core-files DIR          lists the files under DIR holding no custom resource
    check-deploy.py rendered FILE CORE_OUT  one `kustomize build` output; writes its resources
                                            that are not custom to CORE_OUT
"""

import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
errors = []


def fail(where, message):
    errors.append(f"{where}: {message}")


def load(path):
    """The documents of a YAML file, each with the file it came from."""
    with open(path) as f:
        return [(str(path), d) for d in yaml.safe_load_all(f) if d]


def ident(doc):
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def is_custom(doc):
    """A resource of an API group a CRD adds, which kubernetes-validate does not know."""
    group = str(doc.get("apiVersion", "")).rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


# --- Pod Security `restricted` ---------------------------------------------------------------

RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
                "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}
SELINUX_TYPES = {None, "", "container_t", "container_init_t", "container_kvm_t",
                 "container_engine_t"}
TEMPLATED = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"}


def pod_templates(doc):
    """(pod metadata, pod spec) of every pod a resource makes."""
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    if kind == "Pod":
        yield doc.get("metadata") or {}, spec
    elif kind in TEMPLATED:
        template = spec.get("template") or {}
        yield template.get("metadata") or {}, template.get("spec") or {}
    elif kind == "CronJob":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        yield template.get("metadata") or {}, template.get("spec") or {}


def check_common_context(where, sc):
    """Rules a pod's and a container's security context share."""
    se = sc.get("seLinuxOptions") or {}
    if se.get("type") not in SELINUX_TYPES or se.get("user") or se.get("role"):
        fail(where, "seLinuxOptions may set only an allowed type")
    if (sc.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
        fail(where, "appArmorProfile must be RuntimeDefault or Localhost")
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        fail(where, "hostProcess is not allowed")
    if sc.get("runAsUser") == 0:
        fail(where, "runAsUser must not be 0 (root)")
    if (sc.get("seccompProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
        fail(where, "seccompProfile must be RuntimeDefault or Localhost")


def check_pod(where, meta, pod):
    psc = pod.get("securityContext") or {}
    check_common_context(f"{where}: pod securityContext", psc)
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            fail(where, f"{field} is not allowed")
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            fail(where, f"sysctl {sysctl.get('name')} is not allowed")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            fail(where, f"volume {volume.get('name')}: {', '.join(sorted(kinds))} is not allowed")
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
                value == "runtime/default" or value.startswith("localhost/")):
            fail(where, f"annotation {key} must be runtime/default or localhost/*")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for c in pod.get(group) or []:
            at = f"{where}: {group} {c.get('name')}"
            sc = c.get("securityContext") or {}
            check_common_context(at, sc)
            if sc.get("privileged"):
                fail(at, "privileged is not allowed")
            if sc.get("allowPrivilegeEscalation") is not False:
                fail(at, "allowPrivilegeEscalation must be false")
            if sc.get("runAsNonRoot") is False or not (
                    sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
                fail(at, "runAsNonRoot must be true (in the pod's or the container's context)")
            if not ((sc.get("seccompProfile") or {}).get("type") or pod_seccomp):
                fail(at, "seccompProfile must be RuntimeDefault or Localhost "
                         "(in the pod's or the container's context)")
            caps = sc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                fail(at, "capabilities must drop ALL")
            if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
                fail(at, "capabilities may add only NET_BIND_SERVICE")
            if sc.get("procMount") not in (None, "Default"):
                fail(at, "procMount must be Default")
            if any(p.get("hostPort") for p in c.get("ports") or []):
                fail(at, "hostPort is not allowed")
            # Beyond the profile: Beckon writes nothing to its filesystem.
            if sc.get("readOnlyRootFilesystem") is not True:
                fail(at, "readOnlyRootFilesystem must be true")


# --- Custom resources ----------------------------------------------------------------------

ANY = object()


class MapOf:
    def __init__(self, value):
        self.value = value


class OneOf:
    def __init__(self, *values):
        self.values = values


DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def shape(where, value, schema):
    """Checks `value` against a schema: a dict of fields (`name!` when required), a one-item
    list, MapOf, OneOf, a type, `DURATION` or ANY."""
    if schema is ANY:
        return
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return fail(where, "must be a mapping")
        fields = {k.rstrip("!"): v for k, v in schema.items()}
        for key in schema:
            if key.endswith("!") and key[:-1] not in value:
                fail(where, f"{key[:-1]} is required")
        for key, sub in value.items():
            if key not in fields:
                fail(where, f"{key} is not a field here")
            else:
                shape(f"{where}.{key}", sub, fields[key])
    elif isinstance(schema, list):
        if not isinstance(value, list) or not value:
            return fail(where, "must be a non-empty list")
        for i, item in enumerate(value):
            shape(f"{where}[{i}]", item, schema[0])
    elif isinstance(schema, MapOf):
        if not isinstance(value, dict):
            return fail(where, "must be a mapping")
        for key, sub in value.items():
            shape(f"{where}.{key}", sub, schema.value)
    elif isinstance(schema, OneOf):
        if value not in schema.values:
            fail(where, f"must be one of {', '.join(map(str, schema.values))}")
    elif schema is DURATION:
        if not isinstance(value, str) or not DURATION.match(value):
            fail(where, "must be a duration such as 30s or 5m")
    elif not isinstance(value, schema) or (schema is int and isinstance(value, bool)):
        fail(where, f"must be a {schema.__name__}")


METADATA = {"name!": str, "namespace": str, "labels": MapOf(str), "annotations": MapOf(str)}
SELECTOR = {"matchLabels": MapOf(str),
            "matchExpressions": [{"key!": str, "values": [str],
                                  "operator!": OneOf("In", "NotIn", "Exists", "DoesNotExist")}]}
ENDPOINT = {"port": str, "portNumber": int, "targetPort": ANY, "path": str,
            "scheme": OneOf("http", "https"), "interval": DURATION, "scrapeTimeout": DURATION,
            "honorLabels": bool, "params": ANY, "relabelings": ANY, "metricRelabelings": ANY,
            "tlsConfig": ANY, "bearerTokenSecret": ANY, "basicAuth": ANY}
MONITOR = {"jobLabel": str, "podTargetLabels": [str], "targetLabels": [str],
           "namespaceSelector": ANY, "sampleLimit": int}
# Each kind: the fields of its CRD that these manifests may use (KEDA 2.x keda.sh/v1alpha1,
# Prometheus Operator monitoring.coreos.com/v1). A field missing here fails loudly: add it
# after reading the CRD.
CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "scaleTargetRef!": {"name!": str, "kind": str, "apiVersion": str},
        "minReplicaCount": int, "maxReplicaCount": int, "idleReplicaCount": int,
        "pollingInterval": int, "cooldownPeriod": int, "initialCooldownPeriod": int,
        "fallback": ANY, "advanced": ANY,
        "triggers!": [{"type!": str, "name": str, "metadata!": MapOf(str),
                       "metricType": OneOf("AverageValue", "Value", "Utilization"),
                       "useCachedMetrics": bool,
                       "authenticationRef": {"name!": str, "kind": OneOf(
                           "TriggerAuthentication", "ClusterTriggerAuthentication")}}],
    },
    ("keda.sh/v1alpha1", "TriggerAuthentication"): {
        "secretTargetRef": [{"parameter!": str, "name!": str, "key!": str}],
        "configMapTargetRef": [{"parameter!": str, "name!": str, "key!": str}],
        "env": [{"parameter!": str, "name!": str, "containerName": str}],
        "podIdentity": ANY, "hashiCorpVault": ANY, "azureKeyVault": ANY,
    },
    ("monitoring.coreos.com/v1", "PodMonitor"): {
        "selector!": SELECTOR, "podMetricsEndpoints!": [ENDPOINT], **MONITOR},
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "selector!": SELECTOR, "endpoints!": [ENDPOINT], **MONITOR},
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "groups!": [{"name!": str, "interval": DURATION, "limit": int,
                     "rules!": [{"alert": str, "record": str, "expr!": str, "for": DURATION,
                                 "keep_firing_for": DURATION, "labels": MapOf(str),
                                 "annotations": MapOf(str)}]}],
    },
}
RABBITMQ_MODES = {"QueueLength", "MessageRate", "DeliverGetRate", "PublishedToDeliveredRatio",
                  "ExpectedQueueConsumptionTime"}


def check_custom(origin, doc):
    where = f"{origin}: {ident(doc)}"
    schema = CUSTOM.get((doc.get("apiVersion"), doc.get("kind")))
    if schema is None:
        return fail(where, f"no check is known for {doc.get('apiVersion')} {doc.get('kind')}: "
                           "add its fields to CUSTOM in scripts/check-deploy.py")
    shape(f"{where}: metadata", doc.get("metadata"), METADATA)
    if set(doc) - {"apiVersion", "kind", "metadata", "spec"}:
        fail(where, "only apiVersion, kind, metadata and spec are allowed")
    spec = doc.get("spec")
    shape(f"{where}: spec", spec, schema)
    if not isinstance(spec, dict):
        return
    kind = doc["kind"]
    if kind == "ScaledObject":
        low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if isinstance(low, int) and isinstance(high, int) and low > high:
            fail(where, "minReplicaCount is above maxReplicaCount")
        for t in spec.get("triggers") or []:
            meta = t.get("metadata") or {}
            if t.get("type") != "rabbitmq":
                continue
            if not meta.get("queueName"):
                fail(where, "a rabbitmq trigger needs queueName")
            if meta.get("mode") not in RABBITMQ_MODES:
                fail(where, f"rabbitmq mode must be one of {', '.join(sorted(RABBITMQ_MODES))}")
            if meta.get("protocol", "auto") not in ("amqp", "http", "auto"):
                fail(where, "rabbitmq protocol must be amqp, http or auto")
            try:
                assert float(meta.get("value")) > 0
            except (TypeError, ValueError, AssertionError):
                fail(where, "rabbitmq value must be a positive number, written as a string")
            if not (meta.get("host") or meta.get("hostFromEnv") or t.get("authenticationRef")):
                fail(where, "a rabbitmq trigger needs host, hostFromEnv or authenticationRef")
    if kind == "TriggerAuthentication" and not spec:
        fail(where, "names no source of parameters")
    if kind == "PrometheusRule":
        names = set()
        for group in spec.get("groups") or []:
            if group.get("name") in names:
                fail(where, f"group {group.get('name')} appears twice")
            names.add(group.get("name"))
            for rule in group.get("rules") or []:
                if ("alert" in rule) == ("record" in rule):
                    fail(where, f"rule {rule.get('alert') or rule.get('record')}: "
                                "set exactly one of alert and record")


# --- Autoscalers ---------------------------------------------------------------------------

def autoscaled(docs):
    """Deployment name -> the autoscalers that own it."""
    owners = {}
    for origin, doc in docs:
        ref = (doc.get("spec") or {}).get("scaleTargetRef") or {}
        if doc.get("kind") in ("HorizontalPodAutoscaler", "ScaledObject") and \
                ref.get("kind", "Deployment") == "Deployment":
            owners.setdefault(ref.get("name"), []).append((origin, ident(doc)))
    return owners


def check_replicas(docs, owners, kustomizations=()):
    """No Deployment an autoscaler owns sets replicas, here or through a kustomization."""
    for origin, doc in docs:
        name = (doc.get("metadata") or {}).get("name")
        if doc.get("kind") == "Deployment" and name in owners and \
                "replicas" in (doc.get("spec") or {}):
            fail(f"{origin}: {ident(doc)}", f"sets replicas, which {owners[name][0][1]} owns "
                                            "(raise the autoscaler's minimum instead)")
    for path, k in kustomizations:
        for entry in k.get("replicas") or []:
            if entry.get("name") in owners:
                fail(path, f"sets the replicas of {entry.get('name')}, which "
                           f"{owners[entry['name']][0][1]} owns (patch its minimum instead)")
        for patch in k.get("patches") or []:
            target = patch.get("target") or {}
            owned = [n for n in owners if re.fullmatch(target.get("name") or ".*", n or "")]
            if target.get("kind") == "Deployment" and owned and \
                    re.search(r"/spec/replicas\b|\breplicas:", patch_text(patch, path.parent)):
                fail(path, f"a patch sets the replicas of {', '.join(owned)}, "
                           "which autoscalers own")


def check_two_autoscalers(owners):
    for name, scalers in owners.items():
        if len(scalers) > 1:
            fail(scalers[0][0], f"Deployment/{name} has {len(scalers)} autoscalers "
                                f"({', '.join(s for _, s in scalers)}); they would fight")


def patch_text(patch, directory):
    """A kustomization's patch, inline or from its file."""
    if patch.get("path"):
        return (directory / patch["path"]).read_text()
    return patch.get("patch") or ""


def deleted_by(kustomization, directory):
    """(kind, name pattern) of what a kustomization's `$patch: delete` patches remove."""
    for patch in kustomization.get("patches") or []:
        for doc in yaml.safe_load_all(patch_text(patch, directory)):
            if isinstance(doc, dict) and doc.get("$patch") == "delete":
                target = patch.get("target") or {}
                yield (target.get("kind") or doc.get("kind"),
                       target.get("name") or (doc.get("metadata") or {}).get("name"))


# --- Queues KEDA scales on -----------------------------------------------------------------

def consumed_queues(prefix):
    """Deployment (service directory) name -> the full names of the queues its code consumes."""
    topology = (ROOT / "crates/bus/src/topology.rs").read_text()
    names = dict(re.findall(
        r"pub fn (\w+)\(\) -> WorkQueue \{\s*WorkQueue \{\s*name: \"([a-z-]+)\"", topology))
    consumed = {}
    for lib in sorted(ROOT.glob("services/*/src/lib.rs")):
        used = set(re.findall(r"queues::(\w+)\(\)", lib.read_text())) - {"all", "dead_letters"}
        for f in sorted(used - set(names)):
            fail(lib, f"consumes queues::{f}(), which crates/bus/src/topology.rs does not name")
        if used:
            consumed[lib.parent.parent.name] = {f"{prefix}.{names[f]}" for f in used if f in names}
    return consumed


def queue_prefix(docs):
    for _, doc in docs:
        if doc.get("kind") == "ConfigMap" and doc["metadata"].get("name") == "beckon-config":
            return (doc.get("data") or {}).get("BECKON_QUEUE_PREFIX", "beckon")
    return "beckon"


def check_scaled_queues(docs, prefix):
    """Each ScaledObject scales on exactly the queues its Deployment consumes, and, once any
    consumer is scaled by KEDA, all are."""
    consumed = consumed_queues(prefix)
    scaled = set()
    for origin, doc in docs:
        if doc.get("kind") != "ScaledObject":
            continue
        target = ((doc.get("spec") or {}).get("scaleTargetRef") or {}).get("name")
        scaled.add(target)
        queues = {(t.get("metadata") or {}).get("queueName")
                  for t in doc["spec"].get("triggers") or [] if t.get("type") == "rabbitmq"}
        want = consumed.get(target, set())
        if queues != want:
            fail(f"{origin}: {ident(doc)}", f"scales on {sorted(queues)}, but {target} consumes "
                                            f"{sorted(want)} (crates/bus/src/topology.rs)")
    if scaled and set(consumed) - scaled:
        fail("ScaledObjects", f"none for {', '.join(sorted(set(consumed) - scaled))}")


# --- Metrics and alerts --------------------------------------------------------------------

def exported_metrics():
    """The metric names the code exports, and which of them are histograms."""
    names, histograms = set(), set()
    for path in list(ROOT.glob("crates/**/*.rs")) + list(ROOT.glob("services/**/*.rs")):
        if "/tests/" in str(path):
            continue
        text = path.read_text()
        names |= set(re.findall(r"\"(beckon_[a-z0-9_]+)\"", text))
        histograms |= set(re.findall(r"histogram!\(\s*\"(beckon_[a-z0-9_]+)\"", text))
    return names, histograms


def check_metric_names(where, text, exported):
    names, histograms = exported
    for name in sorted(set(re.findall(r"\bbeckon_[a-z0-9_]+", text))):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in names and not (base != name and base in histograms):
            fail(where, f"{name} is not a metric the code exports (crates/runtime/src/health.rs)")


def documented_alerts():
    """The alerts of "Alerts to set" in docs/production.md: name -> (expr, for, severity)."""
    text = (ROOT / "docs/production.md").read_text()
    section = text.split("\n## Alerts to set\n", 1)[1].split("\n## ", 1)[0]
    alerts = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or cells[0] in ("alert", "---") or len(cells) != 5:
            continue
        name = "Beckon" + "".join(w.capitalize() for w in cells[0].split())
        alerts[name] = (cells[1].strip("`"), cells[2] or None, cells[3])
    return alerts


def check_rules(origin, doc, exported):
    documented = documented_alerts()
    found = {}
    for group in (doc.get("spec") or {}).get("groups") or []:
        for rule in group.get("rules") or []:
            check_metric_names(f"{origin}: {rule.get('alert')}", rule.get("expr", ""), exported)
            if "alert" in rule:
                found[rule["alert"]] = (rule.get("expr"), rule.get("for"),
                                        (rule.get("labels") or {}).get("severity"))
    for name in sorted(set(documented) | set(found)):
        if documented.get(name) != found.get(name):
            fail(origin, f"alert {name} differs from docs/production.md (Alerts to set): "
                         f"{found.get(name)} here, {documented.get(name)} there")


def check_dashboard(path, exported):
    try:
        board = json.loads(path.read_text())
    except ValueError as err:
        return fail(path, f"not JSON: {err}")
    ids = [p.get("id") for p in board.get("panels", [])]
    if len(ids) != len(set(ids)):
        fail(path, "panel ids repeat")
    for panel in board.get("panels", []):
        if panel.get("type") != "row" and not all(
                t.get("expr") for t in panel.get("targets") or [{}]):
            fail(path, f"panel {panel.get('title')!r} has no query")
    check_metric_names(path, path.read_text(), exported)


# --- Modes ---------------------------------------------------------------------------------

def manifests(directory):
    return sorted(p for p in directory.rglob("*.yaml") if p.name != "kustomization.yaml")


def source(directory):
    kustomizations, docs = [], []
    for k in sorted(directory.rglob("kustomization.yaml")):
        content = yaml.safe_load(k.read_text()) or {}
        kustomizations.append((k, content))
        named = list(content.get("resources") or []) + list(content.get("components") or [])
        named += [p["path"] for p in content.get("patches") or [] if p.get("path")]
        for generator in (content.get("configMapGenerator") or []) + \
                (content.get("secretGenerator") or []):
            named += [f.rpartition("=")[2] for f in generator.get("files") or []]
        for name in named:
            if not (k.parent / name).exists():
                fail(k, f"names {name}, which does not exist")
    exported = exported_metrics()
    for path in manifests(directory):
        file_docs = load(path)
        custom = [is_custom(d) for _, d in file_docs]
        if any(custom) and not all(custom):
            fail(path, "keep custom resources in files of their own, apart from the rest "
                       "(kubernetes-validate checks those whole)")
        docs += file_docs
    for origin, doc in docs:
        for meta, pod in pod_templates(doc):
            check_pod(f"{origin}: {ident(doc)}", meta, pod)
        if is_custom(doc):
            check_custom(origin, doc)
        if doc.get("kind") == "PrometheusRule":
            check_rules(origin, doc, exported)
    for path in sorted(directory.parent.rglob("*.json")):
        check_dashboard(path, exported)
    owners = autoscaled(docs)
    check_replicas(docs, owners, kustomizations)
    # Two autoscalers per Deployment, file by file: a component that adds ScaledObjects must
    # remove the HorizontalPodAutoscalers of the same Deployments.
    hpas = {ref for ref, scalers in owners.items()
            if any(s.startswith("HorizontalPodAutoscaler/") for _, s in scalers)}
    for k, content in kustomizations:
        if content.get("kind") != "Component":
            continue
        scaled = {d["spec"]["scaleTargetRef"]["name"] for o, d in docs
                  if d.get("kind") == "ScaledObject" and pathlib.Path(o).parent == k.parent}
        removed = [n for kind, n in deleted_by(content, k.parent)
                   if kind == "HorizontalPodAutoscaler"]
        for name in sorted(scaled & hpas):
            if not any(re.fullmatch(pattern or "", name) for pattern in removed):
                fail(k, f"adds a ScaledObject for {name} but leaves its "
                        "HorizontalPodAutoscaler: two autoscalers fight")
    check_scaled_queues(docs, queue_prefix(docs))


def rendered(path, core_out):
    docs = load(path)
    exported = exported_metrics()
    for origin, doc in docs:
        for meta, pod in pod_templates(doc):
            check_pod(f"{origin}: {ident(doc)}", meta, pod)
        if is_custom(doc):
            check_custom(origin, doc)
        if doc.get("kind") == "PrometheusRule":
            check_rules(origin, doc, exported)
    owners = autoscaled(docs)
    check_replicas(docs, owners)
    check_two_autoscalers(owners)
    names = {(d.get("kind"), d["metadata"].get("name")) for _, d in docs}
    secrets = {d["metadata"]["name"]: set(d.get("data") or {}) | set(d.get("stringData") or {})
               for _, d in docs if d.get("kind") == "Secret"}
    for origin, doc in docs:
        spec = doc.get("spec") or {}
        if doc.get("kind") == "ScaledObject":
            target = (spec.get("scaleTargetRef") or {}).get("name")
            if ("Deployment", target) not in names:
                fail(f"{origin}: {ident(doc)}", f"scales Deployment/{target}, which is not here")
            for t in spec.get("triggers") or []:
                ref = (t.get("authenticationRef") or {}).get("name")
                if ref and ("TriggerAuthentication", ref) not in names:
                    fail(f"{origin}: {ident(doc)}", f"TriggerAuthentication/{ref} is not here")
        if doc.get("kind") == "TriggerAuthentication":
            for ref in spec.get("secretTargetRef") or []:
                if ref.get("name") in secrets and ref.get("key") not in secrets[ref["name"]]:
                    fail(f"{origin}: {ident(doc)}",
                         f"Secret/{ref['name']} has no key {ref.get('key')}")
    check_scaled_queues(docs, queue_prefix(docs))
    with open(core_out, "w") as out:
        yaml.safe_dump_all([d for _, d in docs if not is_custom(d)], out)


def main(argv):
    if len(argv) == 3 and argv[1] == "core-files":
        for path in manifests(pathlib.Path(argv[2])):
            if not any(is_custom(d) for _, d in load(path)):
                print(path)
        return 0
    if len(argv) == 3 and argv[1] == "source":
        source(pathlib.Path(argv[2]))
    elif len(argv) == 4 and argv[1] == "rendered":
        rendered(pathlib.Path(argv[2]), argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
