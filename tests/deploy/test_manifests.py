"""deploy/k8s and deploy/Dockerfile, checked the way CI can without a cluster or a Docker engine.

Both overlays are rendered with ``kubectl kustomize``; every object of a built-in kind is validated
(strict: no unknown field) against the Kubernetes API schema of its kind for the oldest and newest
versions we support, through the schemas the ``kubernetes-validate`` package bundles. The operators'
kinds (KEDA's ScaledObject and TriggerAuthentication, RabbitmqCluster, MongoDBCommunity) have no
schema there: their CRDs are not published on a registry this project reaches, so they are checked
structurally below for the fields Keyway relies on. checkov then runs on the rendered manifests and
the Dockerfile: zero failed checks, and every skip carries its reason next to the resource.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from keyway_shared.bus.registry import service_consumers

from .support import DOCKERFILE, OVERLAYS, ROOT, render, run_checkov, services

pytestmark = pytest.mark.deploy

KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")  # autoscaling/v2 and policy/v1 are GA in both
CUSTOM_KINDS = {"ScaledObject", "TriggerAuthentication", "RabbitmqCluster", "MongoDBCommunity"}
# Every Secret the manifests reference; docs/deploy.md tells how to create each.
SECRETS = {"keyway-encryption", "keyway-amqp", "keyway-mongodb", "keyway-environment-keys", "keyway-dashboard"}
# Names that carry a credential: they must come from a Secret, never a literal or a ConfigMap.
SENSITIVE = re.compile(r"_(KEYS?|SECRET|PASSWORD)(_|$)|_URL$")
NOT_SENSITIVE = {"KEYWAY_PUBLIC_URL"}
PRIVATE_V4 = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def objects(overlay: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render(overlay)) if doc]


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def config(objects: list[dict[str, Any]], name: str = "keyway-config") -> dict[str, str]:
    """A generated ConfigMap's data (kustomize suffixes its name with a hash of the content)."""
    maps = [
        o for o in objects if o["kind"] == "ConfigMap" and re.fullmatch(rf"{name}-[a-z0-9]+", o["metadata"]["name"])
    ]
    assert len(maps) == 1, name
    return dict(maps[0]["data"])


def env_from(objects: list[dict[str, Any]], deployment: dict[str, Any]) -> dict[str, str]:
    """Every variable a container gets from its ConfigMaps."""
    maps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    merged: dict[str, str] = {}
    for source in container(deployment).get("envFrom", []):
        merged.update(maps[source["configMapRef"]["name"]])
    return merged


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_every_builtin_object_matches_the_kubernetes_schema(objects: list[dict[str, Any]]) -> None:
    problems: list[str] = []
    kinds = set()
    for obj in objects:
        kinds.add(obj["kind"])
        if obj["kind"] in CUSTOM_KINDS:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(map(str, exc.path))
                problems.append(f"{obj['kind']}/{obj['metadata']['name']} ({version}) {where}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{obj['kind']} ({obj['apiVersion']}) has no schema in Kubernetes {version}")
    assert not problems, "\n".join(problems)
    expected = {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy"}
    assert expected | {"ConfigMap", "ServiceAccount"} <= kinds


def test_the_validator_rejects_a_broken_deployment(objects: list[dict[str, Any]]) -> None:
    deployment = of_kind(objects, "Deployment")["auth-gateway"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_one_deployment_per_service_hardened_and_probed(objects: list[dict[str, Any]]) -> None:
    deployments = of_kind(objects, "Deployment")
    assert set(deployments) == {s.name for s in services()}
    grace = float(config(objects)["KEYWAY_SHUTDOWN_GRACE_SECONDS"])
    for svc in services():
        deployment = deployments[svc.name]
        pod = deployment["spec"]["template"]["spec"]
        main = container(deployment)
        assert deployment["spec"]["replicas"] >= 1
        assert re.search(rf"/keyway/{svc.name}:|^keyway/{svc.name}:", main["image"]), main["image"]

        env = {e["name"]: e for e in main.get("env", [])}
        port = int(env[svc.port_var]["value"])
        ports = {p["containerPort"]: p["name"] for p in main["ports"]}
        admin = {int(env["KEYWAY_ADMIN_PORT"]["value"])} if "KEYWAY_ADMIN_PORT" in env else set()
        assert set(ports) == {port} | admin  # the service's port, and the gateway's admin port if split
        port_name = ports[port]
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
            assert main[probe]["httpGet"] == {"path": path, "port": port_name}, (svc.name, probe)

        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(main["resources"][kind]), (svc.name, kind)

        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] >= 10000
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        hardening = main["securityContext"]
        assert hardening["readOnlyRootFilesystem"] is True
        assert hardening["allowPrivilegeEscalation"] is False
        assert hardening["capabilities"]["drop"] == ["ALL"]

        # SIGTERM comes after preStop; the service drains for the grace period (+5 s to close for the
        # consumers, see their __main__); the kubelet must not SIGKILL before that is over.
        pre_stop = main.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        pre_stop_seconds = float(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0.0
        assert pod["terminationGracePeriodSeconds"] > pre_stop_seconds + grace + 5, svc.name


def test_every_variable_set_is_one_the_code_reads_and_secrets_are_referenced(objects: list[dict[str, Any]]) -> None:
    assert not [o for o in objects if o["kind"] == "Secret"], "Secrets are created by the operator, never rendered"
    problems: list[str] = []
    referenced: set[str] = set()
    for svc in services():
        deployment = of_kind(objects, "Deployment")[svc.name]
        main = container(deployment)
        from_maps = env_from(objects, deployment)
        assert config(objects).items() <= from_maps.items()  # every service gets the shared settings
        for variable in from_maps:
            if not svc.reads(variable):
                problems.append(f"a ConfigMap gives {svc.name} {variable}, which it does not read")
            if SENSITIVE.search(variable) and variable not in NOT_SENSITIVE:
                problems.append(f"a ConfigMap holds {variable}: credentials belong in a Secret")
        for entry in main["env"]:
            name = entry["name"]
            if not svc.reads(name):
                problems.append(f"{svc.name} sets {name}, which its settings do not read")
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                referenced.add(ref["name"])
            elif SENSITIVE.search(name) and name not in NOT_SENSITIVE:
                problems.append(f"{svc.name}: {name} must come from a secretKeyRef")
        for required in ("AMQP_URL", "MONGODB_URL", "KEYWAY_ENCRYPTION_KEY"):
            entry = next((e for e in main["env"] if e["name"] == required), None)
            if entry is None or entry.get("valueFrom", {}).get("secretKeyRef", {}).get("optional"):
                problems.append(f"{svc.name}: {required} must come from a required Secret")
    assert not problems, "\n".join(problems)
    assert referenced == SECRETS
    deploy_doc = (ROOT / "docs" / "deploy.md").read_text()
    for name in SECRETS:
        assert name in deploy_doc, f"docs/deploy.md should say how to create the Secret {name}"


def test_services_and_disruption_budgets_select_their_pods(objects: list[dict[str, Any]]) -> None:
    deployments = of_kind(objects, "Deployment")
    kube_services, budgets = of_kind(objects, "Service"), of_kind(objects, "PodDisruptionBudget")
    for svc in services():
        labels = deployments[svc.name]["spec"]["template"]["metadata"]["labels"]
        service_spec = kube_services[svc.name]["spec"]
        assert service_spec["selector"].items() <= labels.items()
        main = container(deployments[svc.name])
        port = int(next(e["value"] for e in main["env"] if e["name"] == svc.port_var))
        port_name = next(p["name"] for p in main["ports"] if p["containerPort"] == port)
        assert [p["targetPort"] for p in service_spec["ports"]] == [port_name]
        budget = budgets[svc.name]["spec"]
        assert budget["selector"]["matchLabels"].items() <= labels.items()
        assert budget.get("maxUnavailable") == 1  # one pod at a time: never all replicas of a service


def test_autoscaling(objects: list[dict[str, Any]], overlay: str) -> None:
    hpas = of_kind(objects, "HorizontalPodAutoscaler")
    gateway = hpas["auth-gateway"]["spec"]
    assert gateway["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "auth-gateway"}
    assert [m["resource"]["name"] for m in gateway["metrics"]] == ["cpu"]
    scaled = of_kind(objects, "ScaledObject")
    hpa_targets = {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()}
    assert not hpa_targets & {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()}, "two autoscalers"
    if overlay != "prod":
        assert not scaled
        return
    namespace = config(objects)["KEYWAY_BUS_NAMESPACE"]
    queues: dict[str, set[str]] = {}
    for spec in service_consumers(namespace).values():
        queues.setdefault(spec.service, set()).add(spec.queue)
    assert set(scaled) == set(queues) == {s.name for s in services()} - {"auth-gateway"}
    auth = of_kind(objects, "TriggerAuthentication")
    for name, obj in scaled.items():
        spec = obj["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        assert spec["minReplicaCount"] >= 2
        assert spec["maxReplicaCount"] > spec["minReplicaCount"]
        for trigger in spec["triggers"]:
            assert trigger["type"] == "rabbitmq"
            assert trigger["metadata"]["mode"] == "QueueLength"
            assert int(trigger["metadata"]["value"]) > 0
            assert trigger["authenticationRef"]["name"] in auth
        # one trigger per queue the service consumes, named as the code declares them
        assert sorted(t["metadata"]["queueName"] for t in spec["triggers"]) == sorted(queues[name]), name
    (trigger_auth,) = auth.values()
    assert trigger_auth["spec"]["secretTargetRef"] == [{"parameter": "host", "name": "keyway-amqp", "key": "url"}]


def test_the_ingress_reaches_the_gateway_and_keeps_websockets_open(objects: list[dict[str, Any]]) -> None:
    (ingress,) = of_kind(objects, "Ingress").values()
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    backends = [p["backend"]["service"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert backends == [{"name": "auth-gateway", "port": {"name": "http"}}]
    host = ingress["spec"]["rules"][0]["host"]
    public_url = config(objects, "keyway-gateway-config")["KEYWAY_PUBLIC_URL"]
    assert public_url.split("://", 1)[1] == host  # OAuth callbacks come back through it
    assert public_url.startswith("https://") == bool(ingress["spec"].get("tls"))


def named_port(spec: dict[str, Any], name: str) -> int:
    (port,) = [p["containerPort"] for p in spec["ports"] if p["name"] == name]
    return int(port)


def test_prod_keeps_the_admin_listener_off_the_ingress(objects: list[dict[str, Any]], overlay: str) -> None:
    gateway = container(of_kind(objects, "Deployment")["auth-gateway"])
    env = {e["name"]: e.get("value") for e in gateway["env"]}
    services_ = of_kind(objects, "Service")
    if overlay != "prod":
        assert "KEYWAY_ADMIN_PORT" not in env  # one listener serves everything
        assert "auth-gateway-admin" not in services_
        return
    admin_port = named_port(gateway, "admin")
    assert env["KEYWAY_ADMIN_PORT"] == str(admin_port) != env["KEYWAY_GATEWAY_PORT"]
    admin = services_["auth-gateway-admin"]["spec"]
    assert admin["type"] == "ClusterIP"
    assert [p["targetPort"] for p in admin["ports"]] == ["admin"]
    # The Ingress reaches the public Service's http port only, and that Service has no admin port.
    assert [p["targetPort"] for p in services_["auth-gateway"]["spec"]["ports"]] == ["http"]
    (ingress,) = of_kind(objects, "Ingress").values()
    backends = [p["backend"]["service"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert all(b["name"] == "auth-gateway" and b["port"] == {"name": "http"} for b in backends)
    # The admin port is open to chosen namespaces only, never to every source.
    labels = of_kind(objects, "Deployment")["auth-gateway"]["spec"]["template"]["metadata"]["labels"]
    rules = [r for p in _policies_for(objects, labels) for r in p["spec"].get("ingress", [])]
    admin_rules = [r for r in rules if {"protocol": "TCP", "port": admin_port} in r.get("ports", [])]
    assert admin_rules
    assert all(r.get("from") and all("namespaceSelector" in peer for peer in r["from"]) for r in admin_rules)
    # Probes stay on the public port, which answers /healthz and /readyz on both sides.
    assert gateway["readinessProbe"]["httpGet"]["port"] == "http"


def _policies_for(objects: list[dict[str, Any]], labels: dict[str, str]) -> Iterator[dict[str, Any]]:
    for policy in of_kind(objects, "NetworkPolicy").values():
        selector = policy["spec"]["podSelector"]
        if not selector.get("matchLabels", {}).items() <= labels.items():
            continue
        if all(
            labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", []) if e["operator"] == "In"
        ):
            yield policy


def test_network_policies(objects: list[dict[str, Any]]) -> None:
    deployments = of_kind(objects, "Deployment")
    internet_talkers = {"auth-gateway", "token-refresher", "webhook-dispatcher"}
    for svc in services():
        labels = deployments[svc.name]["spec"]["template"]["metadata"]["labels"]
        policies = list(_policies_for(objects, labels))
        assert any(
            set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress")
            and not p["spec"].get("egress")
            for p in policies
        ), f"{svc.name} has no default deny"
        ingress = [rule for p in policies for rule in p["spec"].get("ingress", [])]
        egress = [rule for p in policies for rule in p["spec"].get("egress", [])]
        open_ingress = [rule for rule in ingress if not rule.get("from")]
        if svc.name == "auth-gateway":
            port = named_port(container(deployments[svc.name]), "http")
            assert [r["ports"] for r in open_ingress] == [[{"protocol": "TCP", "port": port}]]
        else:
            assert not open_ingress, f"{svc.name} must not take traffic from outside"
            assert all("namespaceSelector" in peer for rule in ingress for peer in rule["from"])
        egress_ports = {p["port"] for rule in egress if not rule.get("to") for p in rule.get("ports", [])}
        assert {53, 5671, 5672, 27017} <= egress_ports  # DNS, RabbitMQ, MongoDB
        internet = [peer["ipBlock"] for rule in egress for peer in rule.get("to", []) if "ipBlock" in peer]
        if svc.name in internet_talkers:
            v4 = next(block for block in internet if block["cidr"] == "0.0.0.0/0")
            excepted = [ipaddress.ip_network(n) for n in v4["except"]]
            assert all(any(net.subnet_of(e) for e in excepted) for net in PRIVATE_V4)  # type: ignore[arg-type]
        else:
            assert not internet, f"{svc.name} has no business on the internet"


def test_prod_backing_services(objects: list[dict[str, Any]], overlay: str) -> None:
    rabbit, mongo = of_kind(objects, "RabbitmqCluster"), of_kind(objects, "MongoDBCommunity")
    if overlay != "prod":
        assert not rabbit
        assert not mongo
        return
    (cluster,) = rabbit.values()
    assert cluster["apiVersion"] == "rabbitmq.com/v1beta1"
    assert cluster["spec"]["replicas"] == 3
    assert "default_queue_type = quorum" in cluster["spec"]["rabbitmq"]["additionalConfig"]
    assert config(objects)["KEYWAY_QUEUE_TYPE"] == "quorum"
    (replica_set,) = mongo.values()
    assert replica_set["apiVersion"] == "mongodbcommunity.mongodb.com/v1"
    assert replica_set["spec"]["members"] == 3
    assert replica_set["spec"]["type"] == "ReplicaSet"
    (user,) = replica_set["spec"]["users"]
    assert {"name": "readWrite", "db": config(objects)["MONGODB_DATABASE"]} in user["roles"]
    assert user["passwordSecretRef"]["name"]  # a Secret you create; the password is never in the file


def test_checkov_passes_on_manifests_and_dockerfile(tmp_path: Path) -> None:
    files = []
    for overlay in OVERLAYS:
        path = tmp_path / f"{overlay}.yaml"
        path.write_text(render(overlay))
        files.append(path)
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(DOCKERFILE.read_text())
    reports = {r["check_type"]: r for r in run_checkov([*files, dockerfile], ["kubernetes", "dockerfile"])}
    assert set(reports) == {"kubernetes", "dockerfile"}, f"checkov scanned {set(reports)}"
    for kind, report in reports.items():
        summary = report["summary"]
        assert summary["resource_count"] > 0, f"checkov checked no {kind} resource"
        assert summary["passed"] > 0
        assert summary["parsing_errors"] == 0, report
        failed = [
            f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']}:{c['file_line_range']})"
            for c in report["results"]["failed_checks"]
        ]
        assert not failed, f"checkov {kind}:\n" + "\n".join(failed)
        for skipped in report["results"].get("skipped_checks", []):
            reason = skipped["check_result"].get("suppress_comment") or ""
            assert len(reason) > 20, f"{skipped['check_id']} on {skipped['resource']} is skipped without a reason"
