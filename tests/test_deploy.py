"""What can be validated of the container and monitoring files without a Docker engine."""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_compose_file_parses_and_references_existing_files() -> None:
    assert shutil.which("docker-compose"), "docker-compose (Debian) is needed: scripts/ensure_system_deps.sh"
    proc = _run("docker-compose", "-f", "docker-compose.yml", "config", "-q")
    assert proc.returncode == 0, proc.stderr
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert {"api", "redis", "prometheus", "trainer"} <= set(compose["services"])
    for svc in compose["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"compose mounts missing file {source}"
        build = svc.get("build")
        if build:
            dockerfile = REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file()
            assert f"AS {build['target']}" in dockerfile.read_text(), f"no stage {build['target']}"
    assert "--appendonly" in compose["services"]["redis"]["command"]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    proc = _run(str(hadolint if hadolint.exists() else "hadolint"), "Dockerfile")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheus_config_passes_promtool() -> None:
    assert shutil.which("promtool"), "promtool (Debian package prometheus) is needed"
    proc = _run("promtool", "check", "config", "deploy/prometheus/prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheus_rules_pass_promtool_unit_tests() -> None:
    assert shutil.which("promtool"), "promtool (Debian package prometheus) is needed"
    check = _run("promtool", "check", "rules", "deploy/prometheus/rules.yml")
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.run(["promtool", "test", "rules", "rules_test.yml"], cwd=REPO / "deploy" / "prometheus",
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


# sample names per metric type, as the text exposition writes them
# (prometheus-client names a counter's family with its _total already)
_SUFFIXES = {"counter": ("",), "histogram": ("_bucket", "_count", "_sum", "_created"), "gauge": ("",),
             "info": ("_info",), "summary": ("", "_count", "_sum", "_created")}  # fmt: skip


def exported_sample_names(tmp_path: Path) -> set[str]:
    """Every sample name the service can export, read from a real app's /metrics (TYPE lines, so labelled
    metrics that have not counted anything yet are included)."""
    from fastapi.testclient import TestClient

    from service.main import create_app
    from service.settings import Settings
    from tests.service.bundle_factory import build_bundle

    build_bundle(tmp_path / "bundle")
    settings = Settings(bundle_dir=tmp_path / "bundle", llm_backend="none", redis_url=None)
    with TestClient(create_app(settings)) as client:
        client.post("/v1/recommend", json={"history": ["1001"]})
        text = client.get("/metrics").text
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            if kind == "counter" and not name.endswith("_total"):  # older clients: the family without it
                name += "_total"
            names |= {name + suffix for suffix in _SUFFIXES[kind]}
    return names


def vllm_sample_names() -> set[str]:
    """vLLM's own metric names, as the service re-exports them (`vllm:x` -> `vllm_x`), read from the installed
    vLLM's source without importing it."""
    spec = importlib.util.find_spec("vllm")
    assert spec and spec.submodule_search_locations, "vllm is not installed"
    source = (Path(list(spec.submodule_search_locations)[0]) / "v1" / "metrics" / "loggers.py").read_text()
    return {"vllm_" + n for n in re.findall(r'"vllm:([a-z_]+)"', source)}


def _metric_names(expr: str) -> set[str]:
    names = set(re.findall(r"\b(?:seqrec|vllm)_[a-z_]+|\b[a-z_]+:[a-z_0-9:]+", expr))
    return {n for n in names if not n.endswith(":")}


def test_dashboard_and_rules_query_only_exported_metrics(tmp_path: Path) -> None:
    exported = exported_sample_names(tmp_path) | vllm_sample_names()
    rules = yaml.safe_load((REPO / "deploy/prometheus/rules.yml").read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/llm-seqrec.json").read_text())
    exprs += [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(dashboard["panels"]) >= 10 and all(p["targets"] for p in dashboard["panels"])
    used = set().union(*map(_metric_names, exprs))
    assert {"seqrec_http_requests_total", "seqrec_stage_duration_seconds_bucket"} <= used
    unknown = sorted(n for n in used if n not in exported and n not in recorded)
    assert not unknown, f"queries name metrics the service does not export: {unknown}"


def test_compose_provisions_grafana_with_the_dashboard() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert mounts["./deploy/grafana/dashboards"] == "/var/lib/grafana/dashboards"
    provider = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/llm-seqrec.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    source = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = source["datasources"][0]["uid"]
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/llm-seqrec.json").read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {uid}
    prometheus = compose["services"]["prometheus"]
    assert any(v.startswith("./deploy/prometheus/rules.yml:") for v in prometheus["volumes"])


K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
KUBERNETES_VERSION = "1.32.0"


def deploy_tool(name: str) -> str:
    """checkov and kubernetes-validate live in their own venv (`make test` builds .venv-deploy): checkov pins
    packages the service's venv needs at other versions."""
    tool = REPO / ".venv-deploy" / "bin" / name
    assert tool.exists(), f"{tool} is missing: `make deploy-tools` installs checkov and kubernetes-validate"
    return str(tool)


def render(overlay: str) -> str:
    assert shutil.which("kubectl"), "kubectl (with kustomize) is needed"
    proc = _run("kubectl", "kustomize", f"deploy/k8s/overlays/{overlay}")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates_against_the_kubernetes_schemas(overlay: str, tmp_path: Path) -> None:
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(render(overlay))
    proc = _run(deploy_tool("kubernetes-validate"), "-k", KUBERNETES_VERSION, "--strict", "--quiet", str(rendered))
    assert proc.returncode == 0 and "ERROR" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    api = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "llm-seqrec-api")
    pod = api["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain = float(config["SEQREC_SHUTDOWN_DRAIN_S"]) + float(config["SEQREC_SHUTDOWN_GRACE_S"])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain  # the kubelet must not kill a draining pod
    if overlay == "gpu":
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_every_setting_in_the_manifests_is_a_service_setting() -> None:
    """A misspelt SEQREC_* variable would be ignored silently by the service (extra="ignore")."""
    from service.settings import Settings

    fields = {"SEQREC_" + name.upper() for name in Settings.model_fields}
    for overlay in OVERLAYS:
        docs = [d for d in yaml.safe_load_all(render(overlay)) if d]
        names = {k for d in docs if d["kind"] == "ConfigMap" for k in d["data"]}
        names |= {"SEQREC_REDIS_URL"} if any(d["kind"] == "Secret" for d in docs) else set()
        assert names and names <= fields, f"{overlay}: not settings: {sorted(names - fields)}"


def test_checkov_findings_are_the_accepted_ones(tmp_path: Path) -> None:
    accepted = yaml.safe_load((K8S / "checkov-accepted.yaml").read_text())
    assert all(entry["reason"].strip() for entry in accepted.values())
    seen: set[str] = set()
    for overlay in OVERLAYS:
        rendered = tmp_path / f"{overlay}.yaml"
        rendered.write_text(render(overlay))
        proc = subprocess.run([deploy_tool("checkov"), "-f", rendered.name, "--framework", "kubernetes", "--quiet",
                               "--compact", "-o", "json"], cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
        report = json.loads(proc.stdout)
        report = report[0] if isinstance(report, list) else report
        assert report["summary"]["passed"] > 100 and report["summary"]["parsing_errors"] == 0
        failed = {c["check_id"]: c["check_name"] for c in report["results"].get("failed_checks", [])}
        assert set(failed) <= set(accepted), f"{overlay}: new findings {sorted(set(failed) - set(accepted))}"
        seen |= set(failed)
    assert seen == set(accepted), f"accepted but no longer found (remove them): {sorted(set(accepted) - seen)}"
