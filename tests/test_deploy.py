"""``workbench deploy``: a kustomization's objects server-side applied to the Kubernetes API stand-in."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.adapters.runtime.kube_api import resource_for
from shared.tools import cli
from shared.tools.deploy import read_kustomization
from tests.conftest import ROOT
from tests.kube_server import KubeServer

KNATIVE = ROOT / "knative"
WORKBENCH = Path(sys.executable).with_name("workbench")


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeServer]:
    """The stand-in, named by the kubeconfig the command reads."""
    with KubeServer() as server:
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        yield server


def write_yaml(path: Path, *documents: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(documents))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A kustomization of a namespace, a Knative Service, a cluster role and, in a nested one, a Broker."""
    root = tmp_path / "deploy"
    write_yaml(
        root / "kustomization.yaml",
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": "demo",
            "resources": ["namespace.yaml", "functions.yaml", "eventing"],
            "images": [
                {"name": "workbench-functions", "newName": "registry.example.org/wb", "newTag": "1.2"}
            ],
        },
    )
    write_yaml(
        root / "namespace.yaml", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}
    )
    write_yaml(
        root / "functions.yaml",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "stacks"}},
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": "stacks"},
            "spec": {
                "template": {
                    "spec": {
                        "serviceAccountName": "stacks",
                        "containers": [
                            {
                                "image": "workbench-functions:latest",
                                "env": [{"name": "FUNCTION_TARGET", "value": "stacks"}],
                            }
                        ],
                    }
                }
            },
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "workbench-stacks"},
            "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create", "delete"]}],
        },
    )
    write_yaml(root / "eventing" / "kustomization.yaml", {"resources": ["broker.yaml"]})
    write_yaml(
        root / "eventing" / "broker.yaml",
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": "workbench", "namespace": "elsewhere"},
            "spec": {},
        },
    )
    return root


def deploy(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    code = cli.main(["deploy", *arguments])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_object_is_server_side_applied_dependencies_first(
    kube: KubeServer, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = deploy(capsys, "--directory", str(folder))
    assert code == 0, err
    assert out.splitlines() == [
        "namespace/demo serverside-applied",
        "serviceaccount/stacks serverside-applied",
        "clusterrole.rbac.authorization.k8s.io/workbench-stacks serverside-applied",
        "service.serving.knative.dev/stacks serverside-applied",
        "broker.eventing.knative.dev/workbench serverside-applied",
        "5 objects applied (field manager workbench)",
    ]
    applies = [request for request in kube.requests if request.method == "PATCH"]
    assert len(applies) == 5
    for request in applies:
        assert request.content_type == "application/apply-patch+yaml"
        assert request.query["fieldManager"] == "workbench"
    assert kube.get("namespaces", None, "demo") is not None
    assert kube.get("clusterroles", None, "workbench-stacks") is not None
    service = kube.get("services", "demo", "stacks", group_version="serving.knative.dev/v1")
    assert service is not None
    assert service["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.org/wb:1.2"
    assert "clusterIP" not in service["spec"]  # stored as sent: a custom resource
    # The kustomization's namespace wins over the one a manifest names, as kustomize has it.
    assert kube.get("brokers", "demo", "workbench", group_version="eventing.knative.dev/v1") is not None
    assert service["metadata"]["managedFields"][0]["manager"] == "workbench"


def test_a_second_deploy_updates_in_place(
    kube: KubeServer, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy(capsys, "--directory", str(folder))[0] == 0
    before = kube.get("services", "demo", "stacks", group_version="serving.knative.dev/v1")
    assert before is not None
    functions = folder / "functions.yaml"
    functions.write_text(functions.read_text().replace("value: stacks", "value: stacks-v2"))
    assert deploy(capsys, "--directory", str(folder))[0] == 0
    after = kube.get("services", "demo", "stacks", group_version="serving.knative.dev/v1")
    assert after is not None
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "FUNCTION_TARGET", "value": "stacks-v2"}
    ]


def test_a_dry_run_has_the_server_check_everything_and_changes_nothing(
    kube: KubeServer, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy(capsys, "--directory", str(folder))[0] == 0
    stored = kube.get("services", "demo", "stacks", group_version="serving.knative.dev/v1")
    functions = folder / "functions.yaml"
    functions.write_text(functions.read_text().replace("value: stacks", "value: changed"))
    sent = len(kube.requests)
    code, out, err = deploy(capsys, "--directory", str(folder), "--dry-run")
    assert code == 0, err
    assert "service.serving.knative.dev/stacks serverside-applied (server dry run)" in out
    assert out.splitlines()[-1] == "5 objects accepted by the server's dry run; nothing was changed"
    assert all(request.query.get("dryRun") == "All" for request in kube.requests[sent:])
    assert kube.get("services", "demo", "stacks", group_version="serving.knative.dev/v1") == stored


def test_a_dry_run_into_a_namespace_not_made_yet_says_so(
    kube: KubeServer, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = deploy(capsys, "--directory", str(folder), "--dry-run")
    assert code == 1
    assert "namespace 'demo' does not exist (a dry run creates nothing" in err
    assert kube.items("namespaces") == []


def test_what_cannot_be_carried_out_is_refused_before_anything_is_sent(
    kube: KubeServer, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kustomization = folder / "kustomization.yaml"
    document = yaml.safe_load(kustomization.read_text())
    kustomization.write_text(yaml.safe_dump({**document, "patches": [{"path": "p.yaml"}]}))
    code, _, err = deploy(capsys, "--directory", str(folder))
    assert code == 1
    assert "patches cannot be carried out here" in err and "kubectl apply -k" in err

    kustomization.write_text(yaml.safe_dump({**document, "resources": ["https://example.org/remote.yaml"]}))
    assert "is not a file or folder beside it" in deploy(capsys, "--directory", str(folder))[2]
    kustomization.write_text(yaml.safe_dump({**document, "resources": ["missing.yaml"]}))
    assert "resource 'missing.yaml' does not exist" in deploy(capsys, "--directory", str(folder))[2]
    (folder / "broken.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n")
    kustomization.write_text(yaml.safe_dump({**document, "resources": ["broken.yaml"]}))
    assert (
        "broken.yaml, document 1: not an object with apiVersion, kind and metadata.name"
        in deploy(capsys, "--directory", str(folder))[2]
    )
    assert "has no kustomization.yaml" in deploy(capsys, "--directory", str(folder / "nowhere"))[2]
    assert kube.requests == []


def test_an_object_without_a_namespace_is_refused(
    kube: KubeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_yaml(tmp_path / "bare" / "kustomization.yaml", {"resources": ["config.yaml"]})
    write_yaml(
        tmp_path / "bare" / "config.yaml",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
    )
    code, _, err = deploy(capsys, "--directory", str(tmp_path / "bare"))
    assert code == 1
    assert "ConfigMap 'c' names no namespace" in err


def test_a_kind_the_cluster_does_not_serve_names_what_to_install(
    kube: KubeServer, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kube.fail(
        404,
        method="PATCH",
        path="/apis/eventing.knative.dev/",
        message="the server could not find the requested resource",
    )
    code, out, err = deploy(capsys, "--directory", str(folder))
    assert code == 1
    assert "the cluster does not serve Broker (eventing.knative.dev/v1): install what provides it" in err
    assert "service.serving.knative.dev/stacks serverside-applied" in out  # what came before is applied


def test_a_refusal_names_the_object_and_never_the_token(
    kube: KubeServer, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kube.fail(
        403,
        method="PATCH",
        path="/clusterroles/",
        message='clusterroles.rbac.authorization.k8s.io "workbench-stacks" is forbidden: user "deployer" cannot patch',
    )
    code, _, err = deploy(capsys, "--directory", str(folder))
    assert code == 1
    assert "the cluster does not allow the platform to apply ClusterRole 'workbench-stacks'" in err
    assert kube.token not in err


def test_the_kinds_of_the_manifests_map_to_their_api_paths() -> None:
    assert resource_for("v1", "Namespace").path(None, "x") == "/api/v1/namespaces/x"
    assert resource_for("networking.k8s.io/v1", "NetworkPolicy").plural == "networkpolicies"
    assert resource_for("gateway.networking.k8s.io/v1", "HTTPRoute").path("ns", "r") == (
        "/apis/gateway.networking.k8s.io/v1/namespaces/ns/httproutes/r"
    )
    assert resource_for("sources.knative.dev/v1", "ApiServerSource").plural == "apiserversources"
    assert resource_for("eventing.knative.dev/v1", "Broker").plural == "brokers"
    assert (
        resource_for("eventing.rabbitmq.com/v1alpha1", "RabbitmqBrokerConfig").plural
        == "rabbitmqbrokerconfigs"
    )
    assert resource_for("gateway.networking.k8s.io/v1", "GatewayClass").namespaced is False


@pytest.mark.skipif(not (KNATIVE / "kustomization.yaml").is_file(), reason="knative/ is not generated yet")
def test_the_checked_in_knative_folder_deploys_with_the_installed_command(kube: KubeServer) -> None:
    manifests = read_kustomization(KNATIVE)
    for dry_run in (False, True):
        result = subprocess.run(
            [str(WORKBENCH), "deploy", *(["--dry-run"] if dry_run else [])],
            cwd=ROOT,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert len([line for line in lines if "serverside-applied" in line]) == len(manifests)
    for manifest in manifests:
        resource = resource_for(manifest["apiVersion"], manifest["kind"])
        namespace = manifest["metadata"].get("namespace") if resource.namespaced else None
        stored = kube.get(
            resource.plural, namespace, manifest["metadata"]["name"], group_version=manifest["apiVersion"]
        )
        assert stored is not None, (manifest["kind"], manifest["metadata"]["name"])
        assert stored["kind"] == manifest["kind"]
