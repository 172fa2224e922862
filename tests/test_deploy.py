"""What can be validated of the container and monitoring files without a Docker engine."""

import shutil
import subprocess
import sys
from pathlib import Path

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
    proc = _run("promtool", "check", "config", "deploy/prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
