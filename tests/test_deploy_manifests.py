"""deploy/: the Kubernetes manifests, the Serve config and the Dockerfile, checked offline.

Nothing here talks to a cluster (none is reachable from CI): the Deployment, the Service
and the RayService's pod templates are loaded into the ``kubernetes`` client's models with
unknown fields refused; the RayService's own fields are checked against a JSON schema of
the KubeRay ``ray.io/v1`` CRD's fields; each Serve config is validated by Ray Serve's own
schema and built into an application.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

kubernetes = pytest.importorskip("kubernetes", reason="the test extra installs the kubernetes client")
jsonschema = pytest.importorskip("jsonschema")
from kubernetes import client as k8s  # noqa: E402

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ROOT = DEPLOY.parent


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()) if d]


def _strict(data: Any, type_name: str, where: str = "") -> None:
    """Check ``data`` against the kubernetes client's model ``type_name``: every field known, every type right."""
    # the client names types "List[X]"/"Dict[str, X]" (v35 on) or "list[X]"/"dict(str, X)"
    if type_name.startswith("Optional["):
        _strict(data, type_name[9:-1], where)
    elif type_name.lower().startswith("list["):
        assert isinstance(data, list), f"{where}: a list expected"
        for i, item in enumerate(data):
            _strict(item, type_name[5:-1], f"{where}[{i}]")
    elif type_name.lower().startswith(("dict(", "dict[")):
        assert isinstance(data, dict), f"{where}: a mapping expected"
        for key, value in data.items():
            _strict(value, type_name.split(",", 1)[1][:-1].strip(), f"{where}.{key}")
    elif type_name in ("str", "datetime", "date"):
        assert isinstance(data, str), f"{where}: a string expected, got {data!r}"
    elif type_name == "int":
        assert isinstance(data, int) and not isinstance(data, bool), f"{where}: an integer expected, got {data!r}"
    elif type_name == "bool":
        assert isinstance(data, bool), f"{where}: true or false expected, got {data!r}"
    elif type_name == "float":
        assert isinstance(data, int | float), f"{where}: a number expected"
    elif type_name != "object":  # object: IntOrString, Quantity and the like
        model = getattr(k8s, type_name)
        assert isinstance(data, dict), f"{where}: a {type_name} mapping expected"
        by_key = {key: attr for attr, key in model.attribute_map.items()}
        unknown = set(data) - set(by_key)
        assert not unknown, f"{where}: {type_name} has no field {sorted(unknown)}"
        for key, value in data.items():
            _strict(value, model.openapi_types[by_key[key]], f"{where}.{key}")


def _load(data: dict[str, Any], type_name: str) -> Any:
    """The client's model object (its constructors refuse missing required fields)."""
    _strict(data, type_name, type_name)
    return k8s.ApiClient()._ApiClient__deserialize(data, type_name)


def test_the_deployment_serves_with_probes_and_a_graceful_stop():
    deployment, service = _docs("deployment.yaml")
    d = _load(deployment, "V1Deployment")
    s = _load(service, "V1Service")
    pod = d.spec.template
    (container,) = pod.spec.containers
    assert d.spec.selector.match_labels.items() <= pod.metadata.labels.items()
    assert s.spec.selector.items() <= pod.metadata.labels.items()
    # the probes ask the server's own health routes, on the port it listens on
    assert container.readiness_probe.http_get.path == "/health/ready"
    assert container.liveness_probe.http_get.path == "/health/live"
    (port,) = container.ports
    args = container.args
    assert args[:2] == ["whisperpool", "serve"] and args[args.index("--port") + 1] == str(port.container_port)
    assert args[args.index("--host") + 1] == "0.0.0.0"
    for probe in (container.readiness_probe, container.liveness_probe, container.startup_probe):
        assert probe.http_get.port == port.name
    assert s.spec.ports[0].target_port == port.name
    # in-flight requests finish: preStop, then the server's grace, inside the pod's grace period
    env = {e.name: e.value for e in container.env}
    pre_stop = int(container.lifecycle.pre_stop._exec.command[-1])
    assert pod.spec.termination_grace_period_seconds > pre_stop + float(env["WHISPERPOOL_GRACE_S"])
    assert container.resources.requests["cpu"] and container.resources.limits["memory"]
    assert d.spec.strategy.rolling_update.max_unavailable == 0


# The KubeRay ray.io/v1 RayService fields (from its CRD, ray-project/kuberay
# ray-operator/config/crd/bases/ray.io_rayservices.yaml): names, required ones and the types
# this manifest relies on; the pod templates are checked against the kubernetes models.
_ANY: dict[str, Any] = {}
_GROUP_COMMON = {
    "rayStartParams": {"type": "object", "additionalProperties": {"type": "string"}},
    "template": {"type": "object"},
    "labels": _ANY,
    "resources": _ANY,
}
RAYSERVICE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayService"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["rayClusterConfig"],
            "additionalProperties": False,
            "properties": {
                "serveConfigV2": {"type": "string"},
                "rayClusterConfig": {
                    "type": "object",
                    "required": ["headGroupSpec"],
                    "additionalProperties": False,
                    "properties": {
                        "rayVersion": {"type": "string"},
                        "enableInTreeAutoscaling": {"type": "boolean"},
                        "headGroupSpec": {
                            "type": "object",
                            "required": ["template"],
                            "additionalProperties": False,
                            "properties": {
                                **_GROUP_COMMON,
                                **dict.fromkeys(
                                    ("enableIngress", "headService", "ingressOptions", "serviceType"), _ANY
                                ),
                            },
                        },
                        "workerGroupSpecs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["groupName", "maxReplicas", "minReplicas", "template"],
                                "additionalProperties": False,
                                "properties": {
                                    **_GROUP_COMMON,
                                    "groupName": {"type": "string"},
                                    "replicas": {"type": "integer", "minimum": 0},
                                    "minReplicas": {"type": "integer", "minimum": 0},
                                    "maxReplicas": {"type": "integer", "minimum": 0},
                                    **dict.fromkeys(
                                        ("idleTimeoutSeconds", "numOfHosts", "priority", "scaleStrategy", "suspend"),
                                        _ANY,
                                    ),
                                },
                            },
                        },
                        **dict.fromkeys(
                            (
                                "authOptions",
                                "autoscalerOptions",
                                "gcsFaultToleranceOptions",
                                "headServiceAnnotations",
                                "historyServerOptions",
                                "managedBy",
                                "networkPolicy",
                                "suspend",
                                "tlsOptions",
                                "upgradeStrategy",
                            ),
                            _ANY,
                        ),
                    },
                },
                **dict.fromkeys(
                    (
                        "deploymentUnhealthySecondThreshold",
                        "excludeHeadPodFromServeSvc",
                        "managedBy",
                        "rayClusterDeletionDelaySeconds",
                        "serveService",
                        "serviceUnhealthySecondThreshold",
                        "suspend",
                        "upgradeStrategy",
                    ),
                    _ANY,
                ),
            },
        },
    },
}


def _serve_config(text: str):
    from ray.serve.schema import ServeDeploySchema

    return ServeDeploySchema.model_validate(yaml.safe_load(text))


def _check_serve_config(config) -> None:
    """Each application's builder builds the deployment from its args (no cluster needed)."""
    import importlib

    from whisperpool.cluster.serve import DEPLOYMENT, settings_from_args

    for app in config.applications:
        module, name = app.import_path.split(":")
        application = getattr(importlib.import_module(module), name)(app.args)
        deployment = application._bound_deployment
        assert deployment.name == DEPLOYMENT
        settings = settings_from_args(app.args, environ={})
        assert deployment.max_ongoing_requests == 2 * settings.workers_per_replica
        assert deployment.ray_actor_options["num_cpus"] == settings.workers_per_replica


def test_the_rayservice_has_kuberays_fields_valid_pods_and_a_valid_serve_config():
    pytest.importorskip("ray", reason="the ray extra checks the Serve config")
    (service,) = _docs("rayservice.yaml")
    jsonschema.validate(service, RAYSERVICE_SCHEMA)
    cluster = service["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        template = _load(group["template"], "V1PodTemplateSpec")
        assert all(c.image == "whisperpool:0.1.0" for c in template.spec.containers)
    config = _serve_config(service["spec"]["serveConfigV2"])
    assert config.http_options.host == "0.0.0.0"  # reached from outside the pod
    _check_serve_config(config)
    # a worker pod holds a replica: its CPUs cover the replica's reservation
    (worker,) = cluster["workerGroupSpecs"]
    (container,) = worker["template"]["spec"]["containers"]
    (app,) = config.applications
    assert float(container["resources"]["requests"]["cpu"]) >= app.args["workers_per_replica"]
    pod_cpus = float(container["resources"]["requests"]["cpu"])
    assert worker["maxReplicas"] * pod_cpus >= app.args["max_replicas"] * app.args["workers_per_replica"]


def test_the_rayservice_schema_refuses_what_kuberay_would():
    (service,) = _docs("rayservice.yaml")
    service["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # must be a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(service, RAYSERVICE_SCHEMA)
    with pytest.raises(AssertionError, match="no field"):
        _strict({"spec": {"containers": [{"name": "a", "imag": "x"}]}}, "V1PodTemplateSpec")


def test_the_serve_config_file_matches_the_rayservice_and_builds():
    pytest.importorskip("ray", reason="the ray extra checks the Serve config")
    config = _serve_config((DEPLOY / "serve-config.yaml").read_text())
    assert config.http_options.host == "127.0.0.1"  # a local `serve run` stays on loopback
    _check_serve_config(config)
    (service,) = _docs("rayservice.yaml")
    in_cluster = _serve_config(service["spec"]["serveConfigV2"])
    assert config.applications == in_cluster.applications


def test_the_dockerfile_copies_what_exists_and_serves():
    text = (DEPLOY / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, _dest = shlex.split(line)
        assert all((ROOT / source).exists() for source in sources), line
    assert "resolve_model('base')" in text  # the packaged model is joined at build time
    from whisperpool.models import resolve_model  # noqa: F401  (the call the image runs exists)

    cmd = re.findall(r"^CMD (.+)$", text, re.M)[-1]
    assert yaml.safe_load(cmd)[:2] == ["whisperpool", "serve"]
