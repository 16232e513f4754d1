"""The linters scripts/check-deploy runs pass on a copy of the files and fail on mutated ones.

This proves the tool steps of the check are not vacuous: each catches a realistic mistake.
The tools live in another virtual environment (checkov's HCL parser fork breaks python-hcl2 in
a shared one); scripts/check-deploy passes its bin folder as ALL_DOCS_DEPLOY_TOOLS. Without it
(pytest run by hand) these tests are skipped; terraform comes from PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

TOOLS = os.environ.get("ALL_DOCS_DEPLOY_TOOLS")
needs_tools = pytest.mark.skipif(not TOOLS, reason="run through scripts/check-deploy (ALL_DOCS_DEPLOY_TOOLS unset)")

OFFLINE = {"CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_SKIP_MAPPING": "TRUE"}


def run(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **OFFLINE}
    if env.get("TF_CLI_CONFIG_FILE") and not Path(env["TF_CLI_CONFIG_FILE"]).exists():
        del env["TF_CLI_CONFIG_FILE"]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def tool(name: str) -> str:
    if name == "terraform":
        path = shutil.which("terraform")
        assert path, "terraform is not on PATH"
        return path
    path = Path(TOOLS) / name
    assert path.exists(), f"{path} missing"
    return str(path)


def checkov(cwd: Path, framework: str, target: list[str]) -> subprocess.CompletedProcess:
    return run(cwd, tool("checkov"), "--config-file", ".checkov.yaml", "--skip-download", "--compact",
               "--framework", framework, *target)


def failed_ids(output: str) -> set[str]:
    """Check ids checkov reports as FAILED."""
    ids, current = set(), None
    for line in output.splitlines():
        if line.startswith("Check: "):
            current = line.split()[1].rstrip(":")
        elif "FAILED for resource" in line and current:
            ids.add(current)
    return ids


# (tool, edits to one copy, what the output must name). Each row is also run without its edits
# (the baseline), which must pass.
CASES = {
    "terraform-fmt": (
        [("terraform/run.tf", "  location            = var.region\n", "  location = var.region\n")],
        ["run.tf"],
    ),
    "hadolint-root-user": ([("Dockerfile", "USER 65532:65532", "USER root")], ["DL3002"]),
    "hadolint-latest-base": (
        [("Dockerfile", "FROM gcr.io/distroless/cc-debian12:nonroot", "FROM ubuntu:latest")],
        ["DL3007"],
    ),
    "yamllint-duplicate-key": (
        [("service.yaml", "      containerConcurrency: 100\n", "      containerConcurrency: 100\n      containerConcurrency: 80\n")],
        ["key-duplicates"],
    ),
    # One checkov run per framework, several independent mistakes, each check id must fail.
    "checkov-terraform": (
        [
            ("terraform/storage.tf", "uniform_bucket_level_access = true", "uniform_bucket_level_access = false"),
            ("terraform/storage.tf", 'public_access_prevention    = "enforced"', 'public_access_prevention    = "inherited"'),
            ("terraform/storage.tf", "  member = google_service_account.run.member", '  member = "allUsers"'),
            ("terraform/pubsub.tf", """  topic  = google_pubsub_topic.work[each.key].name
  role   = "roles/pubsub.viewer"
  member = google_service_account.run.member""", """  topic  = google_pubsub_topic.work[each.key].name
  role   = "roles/pubsub.viewer"
  member = "allAuthenticatedUsers\""""),
            # An inline skip removed: the finding it excused comes back.
            ("terraform/run.tf", "  #checkov:skip=CKV_GCP_84:", "  # (skip removed) CKV_GCP_84:"),
        ],
        ["CKV_GCP_29", "CKV_GCP_114", "CKV_GCP_28", "CKV_GCP_99", "CKV_GCP_84"],
    ),
    "checkov-dockerfile": (
        [
            ("Dockerfile", "USER 65532:65532\n", ""),
            ("Dockerfile", "FROM gcr.io/distroless/cc-debian12:nonroot", "FROM gcr.io/distroless/cc-debian12:latest"),
            ("Dockerfile", "EXPOSE 8080", "EXPOSE 8080 22"),
        ],
        ["CKV_DOCKER_3", "CKV_DOCKER_7", "CKV_DOCKER_1"],
    ),
}


def run_case(name: str, root: Path) -> subprocess.CompletedProcess:
    if name == "terraform-fmt":
        return run(root, tool("terraform"), "fmt", "-check", "-recursive", "terraform/")
    if name.startswith("hadolint"):
        return run(root, tool("hadolint"), "Dockerfile")
    if name.startswith("yamllint"):
        config = Path(__file__).with_name("yamllint.yaml")
        return run(root, tool("yamllint"), "--strict", "-c", str(config), "service.yaml")
    if name == "checkov-terraform":
        return checkov(root, "terraform", ["-d", "terraform"])
    if name == "checkov-dockerfile":
        return checkov(root, "dockerfile", ["-f", "Dockerfile"])
    raise AssertionError(name)


@needs_tools
@pytest.mark.parametrize("name", list(CASES))
def test_tool_passes_on_copy_and_fails_on_mutation(name: str, tmp_path: Path) -> None:
    from conftest import copy_tree, mutate

    edits, expect = CASES[name]
    clean = copy_tree(tmp_path / "clean")
    base = run_case(name, clean)
    assert base.returncode == 0, f"{name} fails on the unmutated copy:\n{base.stdout}\n{base.stderr}"

    broken = copy_tree(tmp_path / "broken")
    for rel, old, new in edits:
        mutate(broken, rel, old, new)
    result = run_case(name, broken)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"{name} passed a mutated copy:\n{output}"
    if name.startswith("checkov"):
        assert set(expect) <= failed_ids(output), f"{name}: want {expect} failed, got {sorted(failed_ids(output))}\n{output}"
    else:
        for text in expect:
            assert text in output, f"{name}: output does not name {text}:\n{output}"
