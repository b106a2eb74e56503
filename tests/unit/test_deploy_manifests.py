"""deploy/: the Dockerfile, docker-compose.yml, the Kubernetes manifests and kafka-topics.sh,
held to the code they configure: the variables adapters/config.py reads, the CLI's
subcommands, the API's routes, and to each other (ports, partitions, broker limits)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from contactstream.adapters import config
from contactstream.adapters.api.operations import router
from contactstream.adapters.auth import ROLES
from contactstream.adapters.cli import _parser
from contactstream.adapters.crypto import CryptoError, load_master_key
from contactstream.adapters.database import check_url

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # the largest Avro record
KAFKA_DEFAULT_MIN_SESSION_MS = 6000  # Apache Kafka's group.min.session.timeout.ms
WORKER_DRAIN_S = 20  # streams/app.py: StreamWorker.stop(drain_s=20.0)
ROUTES = {route.path for route in router.routes}  # type: ignore[attr-defined]
SECRET_NAMES = ("CONTACTSTREAM_MASTER_KEY", "CONTACTSTREAM_DATABASE_URL")


def _config_names() -> set[str]:
    """The environment variables ``config.from_env`` reads, from its source."""
    source = Path(config.__file__).read_text()
    return set(re.findall(r'_(?:env|choice)\("([A-Z0-9_]+)"', source))


CONFIG_NAMES = _config_names()


def _ours(name: str) -> bool:
    """A variable contactstream would read (as opposed to Kafka's, PostgreSQL's, ...)."""
    return name.startswith("CONTACTSTREAM_") or name == "KAFKA_BOOTSTRAP_SERVERS"


def _subcommands() -> set[str]:
    for action in _parser()._actions:
        if action.dest == "command":
            return set(action.choices)  # type: ignore[arg-type]
    raise AssertionError("the CLI parser has no subcommands")


def _subcommand(argv: list[str]) -> str:
    """The subcommand ``contactstream ARGV`` runs, as the real parser reads it."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit:
        raise AssertionError(f"`contactstream {' '.join(argv)}` is not a valid command") from None
    assert args.command in _subcommands()
    return str(args.command)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if _ours(name):
            monkeypatch.delenv(name)
    return monkeypatch


def _settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> config.Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        return config.from_env()
    finally:
        for name in env:
            monkeypatch.delenv(name)


def test_config_names_are_found() -> None:
    # the regex over adapters/config.py finds what the deployment files are checked against
    assert {"KAFKA_BOOTSTRAP_SERVERS", "CONTACTSTREAM_DATABASE_URL", "CONTACTSTREAM_MASTER_KEY",
            "CONTACTSTREAM_METRICS_PORT", "CONTACTSTREAM_KAFKA_IDEMPOTENCE"} <= CONFIG_NAMES
    assert {"worker", "api"} <= _subcommands()
    assert {"/healthz", "/readyz", "/metrics"} <= ROUTES


# --- the image ---------------------------------------------------------------------------

DOCKERFILE = (DEPLOY / "Dockerfile").read_text()


def _instructions(name: str) -> list[str]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    return [line.split(None, 1)[1].strip() for line in text.splitlines()
            if line.split(None, 1)[:1] == [name]]


def test_dockerfile() -> None:
    assert _instructions("FROM") == ["python:3.11-slim"]
    assert any(re.search(r"\bpip install --no-cache-dir \.(\s|$)", run)
               for run in _instructions("RUN"))
    assert json.loads(_instructions("ENTRYPOINT")[-1]) == ["contactstream"]
    user = _instructions("USER")[-1].split(":")[0]
    assert user not in ("", "0", "root")
    env_names = {m for line in _instructions("ENV") for m in re.findall(r"([A-Z_]+)=", line)}
    assert {n for n in env_names if _ours(n)} <= CONFIG_NAMES
    assert "CONTACTSTREAM_DATA_DIR" in env_names


def test_image_holds_the_package_and_no_secrets() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    copied = set()  # sources copied to the same relative place in the build folder
    for line in _instructions("COPY"):
        *sources, dest = line.split()
        copied |= {s.rstrip("/") for s in sources
                   if dest in ("./", ".") or dest.rstrip("/") == s.rstrip("/")}
    assert folders | {"pyproject.toml", pyproject["project"]["readme"]} <= copied
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything else (.venv, data dirs, deploy/secrets/) stays out
    assert {f"!{folder}" for folder in folders} <= set(ignore)
    secrets_ignore = (DEPLOY / "secrets" / ".gitignore").read_text().splitlines()
    assert "*" in secrets_ignore


# --- docker compose ----------------------------------------------------------------------

COMPOSE: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def _built_here(service: dict[str, Any]) -> bool:
    build = service.get("build") or {}
    return (isinstance(build, dict) and build.get("dockerfile") == "deploy/Dockerfile"
            and (DEPLOY / build["context"]).resolve() == ROOT)


CONTACTSTREAM = {name: s for name, s in SERVICES.items() if _built_here(s)}


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment as a mapping"
    return {k: str(v) for k, v in env.items()}


def _running(command: str) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in CONTACTSTREAM.items() if _subcommand(s["command"]) == command}


def _secret_targets(service: dict[str, Any]) -> dict[str, str]:
    """target -> the top-level secret it mounts, for the service."""
    out = {}
    for item in service.get("secrets", []):
        item = {"source": item} if isinstance(item, str) else item
        out[item.get("target", item["source"])] = item["source"]
    return out


def _probe(service: dict[str, Any]) -> tuple[int, str]:
    """(port, path) of the service's HTTP healthcheck on its own loopback."""
    found = re.findall(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/[\w/]*)",
                       " ".join(service["healthcheck"]["test"]))
    assert len(found) == 1, service["healthcheck"]
    return int(found[0][0]), found[0][1]


def _options(argv: list[str]) -> dict[str, str]:
    """-x VALUE pairs of a kafka-topics.sh command line."""
    assert len(argv) % 2 == 0, argv
    return dict(zip(argv[::2], argv[1::2], strict=True))


def test_compose_runs_three_workers_and_two_apis() -> None:
    assert set(_running("worker")) == {"worker-1", "worker-2", "worker-3"}
    assert set(_running("api")) == {"api-1", "api-2"}
    assert set(CONTACTSTREAM) == {"worker-1", "worker-2", "worker-3", "api-1", "api-2"}
    for service in CONTACTSTREAM.values():
        assert len(service["command"]) == 1  # the bare subcommand: settings by environment


def test_compose_variables_are_read_by_config() -> None:
    used = set()
    for service in SERVICES.values():
        used |= {n for n in _env(service) if _ours(n)}
        used |= {t for t in _secret_targets(service) if _ours(t)}
    assert {"KAFKA_BOOTSTRAP_SERVERS", "CONTACTSTREAM_PORT", "CONTACTSTREAM_METRICS_PORT",
            *SECRET_NAMES} <= used
    assert used <= CONFIG_NAMES, sorted(used - CONFIG_NAMES)


def test_compose_entrypoint_passes_secrets_and_runs_the_command() -> None:
    for name, service in CONTACTSTREAM.items():
        shell, flag, script, argv0 = service["entrypoint"]
        assert (shell, flag, argv0) == ("/bin/sh", "-c", "contactstream"), name
        # compose interpolates a single $: the script must only hold escaped ones
        assert "$" not in script.replace("$$", ""), name
        assert "/run/secrets/CONTACTSTREAM_*" in script
        assert script.rstrip().endswith('exec contactstream "$$@"')
        assert "CONTACTSTREAM_MASTER_KEY:-" in script and "exit 2" in script
        targets = _secret_targets(service)
        assert set(SECRET_NAMES) <= set(targets), name
        env = _env(service)
        assert not set(SECRET_NAMES) & set(env), f"{name}: a secret in plain environment"
        tokens = Path(env["CONTACTSTREAM_TOKENS_FILE"])
        assert tokens.parent == Path("/run/secrets") and tokens.name in targets
    for secret in COMPOSE["secrets"].values():
        assert Path(secret["file"]).parent == Path("secrets")


def test_compose_settings(clean_env: pytest.MonkeyPatch) -> None:
    kafka = _env(SERVICES["kafka"])
    registry = _env(SERVICES["schema-registry"])
    advertised = kafka["KAFKA_ADVERTISED_LISTENERS"].split("//", 1)[1]
    registry_port = registry["SCHEMA_REGISTRY_LISTENERS"].rsplit(":", 1)[1]
    for name, service in CONTACTSTREAM.items():
        settings = _settings(_env(service), clean_env)
        assert settings.kafka_idempotence == "on", name
        assert settings.log_format == "json", name
        assert settings.key_store == "postgres", name
        assert settings.bootstrap_servers == advertised, name
        assert settings.schema_registry_url == f"http://schema-registry:{registry_port}"
        assert settings.host == "0.0.0.0", name  # reachable from the healthcheck and ports
        assert settings.replication_factor == 1  # one broker


def test_compose_api_ports_and_probes(clean_env: pytest.MonkeyPatch) -> None:
    published = []
    for name, service in _running("api").items():
        port = _settings(_env(service), clean_env).port
        targets = {int(p["target"]) for p in service["ports"]}
        assert targets == {port}, name
        published += [str(p["published"]) for p in service["ports"]]
        probe_port, path = _probe(service)
        assert (probe_port, path) == (port, "/readyz"), name
        assert path in ROUTES
    assert len(published) == len(set(published)) == 2  # different host ports


def test_compose_worker_probes_hit_their_metrics_port(clean_env: pytest.MonkeyPatch) -> None:
    ports = []
    for name, service in _running("worker").items():
        metrics_port = _settings(_env(service), clean_env).metrics_port
        assert metrics_port > 0, name
        assert _probe(service) == (metrics_port, "/metrics"), name
        assert {int(p["target"]) for p in service["ports"]} == {metrics_port}
        ports.append(metrics_port)
    assert len(set(ports)) == 3  # each its own setting


def test_compose_kafka_broker() -> None:
    kafka = SERVICES["kafka"]
    env = _env(kafka)
    assert kafka["image"] == "apache/kafka:3.9.0"
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}  # KRaft
    assert env["CLUSTER_ID"]
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) == MAX_MESSAGE_BYTES
    assert int(env["KAFKA_REPLICA_FETCH_MAX_BYTES"]) >= MAX_MESSAGE_BYTES
    assert int(env["KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS"]) <= KAFKA_DEFAULT_MIN_SESSION_MS
    assert int(env["KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS"]) == 1000
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 1  # a single broker
    assert SERVICES["schema-registry"]["image"] == "confluentinc/cp-schema-registry:7.7.1"
    assert SERVICES["postgres"]["image"] == "postgres:16"


def test_compose_topics_job_matches_the_services() -> None:
    topics = SERVICES["topics"]
    assert topics["image"] == SERVICES["kafka"]["image"]  # the image with Kafka's CLI
    shell, script = topics["entrypoint"]
    mounts = {}  # container path -> host path, of "HOST:CONTAINER[:MODE]"
    for volume in topics["volumes"]:
        host, container = volume.split(":")[:2]
        mounts[container] = host
    assert shell == "bash" and mounts[script] == "./kafka-topics.sh"
    assert Path(_env(topics)["KAFKA_TOPICS"]).name == "kafka-topics.sh"
    opts = _options(topics["command"])
    for name, service in CONTACTSTREAM.items():
        env = _env(service)
        assert opts["-n"] == env["CONTACTSTREAM_PARTITIONS"], name
        assert opts["-p"] == env["CONTACTSTREAM_TOPIC_PREFIX"], name
        assert opts["-r"] == env["CONTACTSTREAM_REPLICATION_FACTOR"] == "1", name
        assert opts["-b"] == env["KAFKA_BOOTSTRAP_SERVERS"], name
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_compose_dependencies_wait_for_health() -> None:
    for name, service in CONTACTSTREAM.items():
        for needed in ("postgres", "kafka", "schema-registry"):
            assert service["depends_on"][needed]["condition"] == "service_healthy", name
            assert SERVICES[needed]["healthcheck"]["test"]
        assert service["stop_grace_period"] == "45s"
    assert SERVICES["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "pg_isready" in SERVICES["postgres"]["healthcheck"]["test"]


def test_compose_secrets_script_writes_what_the_stack_needs(tmp_path: Path) -> None:
    shutil.copy(DEPLOY / "compose-secrets.sh", tmp_path)
    for _ in range(2):  # the second run keeps every file
        subprocess.run(["bash", str(tmp_path / "compose-secrets.sh")], check=True,
                       capture_output=True, timeout=60)
    secrets = tmp_path / "secrets"
    for secret in COMPOSE["secrets"].values():
        assert (tmp_path / secret["file"]).is_file(), secret
    assert len(load_master_key((secrets / "master-key").read_text(), tmp_path)) == 32
    url = check_url((secrets / "database-url").read_text())
    postgres = _env(SERVICES["postgres"])
    password = (secrets / "postgres-password").read_text()
    assert url == (f"postgresql://{postgres['POSTGRES_USER']}:{password}@postgres:5432/"
                   f"{postgres['POSTGRES_DB']}")
    assert postgres["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres-password"
    assert set(json.loads((secrets / "tokens.json").read_text())) == set(ROLES)


# --- kafka-topics.sh ---------------------------------------------------------------------

def _dry_run(*args: str, **environ: str) -> dict[str, dict[str, Any]]:
    """topic -> {partitions, replication, configs} of the commands kafka-topics.sh would
    run with ARGS, in an environment holding only ENVIRON of contactstream's variables."""
    env = {k: v for k, v in os.environ.items() if not _ours(k) and k != "KAFKA_TOPICS"}
    env.update(environ)
    out = subprocess.run(["bash", str(DEPLOY / "kafka-topics.sh"), *args, "--dry-run"],
                         check=True, capture_output=True, text=True, env=env, timeout=30)
    topics = {}
    for line in out.stdout.splitlines():
        argv = shlex.split(line)
        configs = [argv[i + 1] for i, a in enumerate(argv) if a == "--config"]
        topics[argv[argv.index("--topic") + 1]] = {
            "partitions": int(argv[argv.index("--partitions") + 1]),
            "replication": int(argv[argv.index("--replication-factor") + 1]),
            "configs": dict(c.split("=", 1) for c in configs)}
    return topics


def test_kafka_topics_script_as_the_compose_job_runs_it() -> None:
    opts = _options(SERVICES["topics"]["command"])
    topics = _dry_run(*SERVICES["topics"]["command"])
    prefix, n = opts["-p"], int(opts["-n"])
    names = {f"{prefix}.{t}" for t in ("interactions.v1", "interactions.dlq", "cases.v1",
                                       "alerts.v1")}
    assert names <= set(topics)
    # a customer's interactions and case events share partition N
    assert topics[f"{prefix}.interactions.v1"]["partitions"] == n
    assert topics[f"{prefix}.cases.v1"]["partitions"] == n
    for name, topic in topics.items():
        assert int(topic["configs"]["max.message.bytes"]) == MAX_MESSAGE_BYTES, name
        assert topic["replication"] == int(opts["-r"])


def test_kafka_topics_script_reads_the_configured_environment() -> None:
    # what the Kubernetes job relies on: the ConfigMap's variables, no flags
    env = {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "CONTACTSTREAM_TOPIC_PREFIX": "acme",
           "CONTACTSTREAM_PARTITIONS": "9", "CONTACTSTREAM_REPLICATION_FACTOR": "2"}
    assert set(env) <= CONFIG_NAMES
    topics = _dry_run(**env)
    assert {"acme.interactions.v1", "acme.cases.v1", "acme.alerts.v1"} <= set(topics)
    assert topics["acme.cases.v1"]["partitions"] == topics["acme.interactions.v1"][
        "partitions"] == 9
    assert {t["replication"] for t in topics.values()} == {2}
    small = _dry_run("-b", "k:9092", "--max-message-bytes", "1024")
    assert {t["configs"]["max.message.bytes"] for t in small.values()} == {"1024"}


# --- Kubernetes --------------------------------------------------------------------------

def _k8s_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                yield path.name, doc


K8S_DOCS = list(_k8s_documents())


def _k8s(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in K8S_DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


CONFIGMAP = _k8s("ConfigMap", "contactstream")
SECRET = _k8s("Secret", "contactstream")
WORKER = _k8s("Deployment", "contactstream-worker")
API = _k8s("Deployment", "contactstream-api")
JOB = _k8s("Job", "contactstream-kafka-topics")


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = _pod(workload)["containers"]
    assert len(containers) == 1
    return containers[0]


def _k8s_env(workload: dict[str, Any]) -> dict[str, str]:
    """The container's environment as Kubernetes builds it: envFrom, then env (which wins);
    secretKeyRef values from the Secret template."""
    container = _container(workload)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert source["configMapRef"]["name"] == CONFIGMAP["metadata"]["name"]
        env.update({k: str(v) for k, v in CONFIGMAP["data"].items()})
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == SECRET["metadata"]["name"]
            env[item["name"]] = SECRET["stringData"][ref["key"]]
    return env


def _port(workload: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port: a number, or the name of a container port."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in _container(workload)["ports"]}
    return int(named[port])


def test_k8s_documents_parse() -> None:
    kinds = sorted(d["kind"] for _, d in K8S_DOCS)
    assert kinds == sorted(["ConfigMap", "Secret", "Deployment", "Deployment", "Service",
                            "PodDisruptionBudget", "PodDisruptionBudget", "Job",
                            "Kustomization"])
    for name, doc in K8S_DOCS:  # namespace-less: kubectl -n or the kustomization sets it
        assert "namespace" not in doc.get("metadata", {}), name


def test_k8s_variables_are_read_by_config() -> None:
    used = {n for n in CONFIGMAP["data"] if _ours(n)}
    for workload in (WORKER, API, JOB):
        used |= {e["name"] for e in _container(workload).get("env", []) if _ours(e["name"])}
    assert {"KAFKA_BOOTSTRAP_SERVERS", "CONTACTSTREAM_METRICS_PORT", *SECRET_NAMES} <= used
    assert used <= CONFIG_NAMES, sorted(used - CONFIG_NAMES)


def test_k8s_deployments_run_the_real_subcommands() -> None:
    for workload, replicas, command in ((WORKER, 3, "worker"), (API, 2, "api")):
        container = _container(workload)
        assert workload["spec"]["replicas"] == replicas
        argv = container["command"] + container.get("args", [])
        assert argv[0] == "contactstream"
        assert _subcommand(argv[1:]) == command
    assert _container(WORKER)["image"] == _container(API)["image"]


def test_k8s_settings(clean_env: pytest.MonkeyPatch) -> None:
    for workload in (WORKER, API):
        env = _k8s_env(workload)
        settings = _settings(env, clean_env)  # also checks the database URL's scheme
        assert settings.kafka_idempotence == "on"
        assert settings.log_format == "json"
        assert settings.key_store == "postgres"
        assert settings.host == "0.0.0.0"
        assert settings.master_key == SECRET["stringData"]["master-key"]
        assert settings.database_url == SECRET["stringData"]["database-url"]
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
                for e in _container(workload)["env"] if "valueFrom" in e}
        assert set(SECRET_NAMES) <= set(refs)
        assert not set(SECRET_NAMES) & set(CONFIGMAP["data"])


def test_k8s_secret_template(tmp_path: Path) -> None:
    data = SECRET["stringData"]
    assert set(data) == {"master-key", "database-url", "tokens.json"}
    for key, value in data.items():
        assert "CHANGE-ME" in value, key
    with pytest.raises(CryptoError):  # the placeholder can start nothing
        load_master_key(data["master-key"], tmp_path)
    assert not (tmp_path / "master.key").exists()
    check_url(data["database-url"])
    assert set(json.loads(data["tokens.json"])) == set(ROLES)


def test_k8s_tokens_file_is_mounted_where_the_config_points(
        clean_env: pytest.MonkeyPatch) -> None:
    for workload in (WORKER, API):
        tokens_file = _settings(_k8s_env(workload), clean_env).tokens_file
        volumes = {v["name"]: v for v in _pod(workload)["volumes"]}
        mounted = set()
        for mount in _container(workload)["volumeMounts"]:
            secret = volumes[mount["name"]].get("secret")
            if secret is None:
                continue
            assert secret["secretName"] == SECRET["metadata"]["name"]
            for item in secret["items"]:
                assert item["key"] in SECRET["stringData"]
                mounted.add(Path(mount["mountPath"]) / item["path"])
        assert mounted == {tokens_file}


def test_k8s_worker_probes_and_grace(clean_env: pytest.MonkeyPatch) -> None:
    metrics_port = _settings(_k8s_env(WORKER), clean_env).metrics_port
    assert metrics_port > 0
    container = _container(WORKER)
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/metrics"
        assert _port(WORKER, get["port"]) == metrics_port
    grace = _pod(WORKER)["terminationGracePeriodSeconds"]
    assert grace >= 45 > WORKER_DRAIN_S


def test_k8s_api_probes_and_service(clean_env: pytest.MonkeyPatch) -> None:
    port = _settings(_k8s_env(API), clean_env).port
    container = _container(API)
    assert {p["containerPort"] for p in container["ports"]} == {port}
    expected = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path and path in ROUTES
        assert _port(API, get["port"]) == port
    service = _k8s("Service", "contactstream-api")
    labels = API["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert [_port(API, p["targetPort"]) for p in service["spec"]["ports"]] == [port]


def test_k8s_disruption_budgets_and_resources() -> None:
    for workload in (WORKER, API):
        name = workload["metadata"]["name"]
        pdb = _k8s("PodDisruptionBudget", name)
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert selector == workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()
        assert pdb["spec"]["maxUnavailable"] < workload["spec"]["replicas"]
        resources = _container(workload)["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert "memory" in resources["limits"]


def test_k8s_pods_run_as_the_image_user() -> None:
    user = int(_instructions("USER")[-1].split(":")[0])
    for workload in (WORKER, API):
        context = _pod(workload)["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == user
        env = _k8s_env(workload)
        mounts = {m["mountPath"] for m in _container(workload)["volumeMounts"]}
        assert env["CONTACTSTREAM_DATA_DIR"] in mounts  # writable: the root fs is read-only


def test_k8s_topics_job_uses_the_configmap_partitions() -> None:
    container = _container(JOB)
    assert container["image"] == SERVICES["kafka"]["image"]
    shell, script = container["command"]
    volumes = {v["name"]: v for v in _pod(JOB)["volumes"]}
    mount = next(m for m in container["volumeMounts"]
                 if Path(script).parent == Path(m["mountPath"]))
    assert shell == "bash" and Path(script).name == "kafka-topics.sh"
    assert volumes[mount["name"]]["configMap"]["name"] == "contactstream-kafka-topics"
    # the partition count, prefix and replication are the ConfigMap's, as for the workers
    assert [s["configMapRef"]["name"] for s in container["envFrom"]] == ["contactstream"]
    assert not {"-n", "--partitions", "-p", "--prefix", "-r"} & set(container.get("args", []))
    env = _k8s_env(JOB)
    assert env["CONTACTSTREAM_PARTITIONS"] == _k8s_env(WORKER)["CONTACTSTREAM_PARTITIONS"]
    topics = _dry_run(*container.get("args", []), **{k: v for k, v in env.items() if _ours(k)})
    prefix, n = env["CONTACTSTREAM_TOPIC_PREFIX"], int(env["CONTACTSTREAM_PARTITIONS"])
    assert topics[f"{prefix}.interactions.v1"]["partitions"] == n
    assert topics[f"{prefix}.cases.v1"]["partitions"] == n
    assert {t["replication"] for t in topics.values()} == {
        int(env["CONTACTSTREAM_REPLICATION_FACTOR"])}


def test_k8s_kustomization_leaves_out_the_secret_template() -> None:
    kustomization = next(d for _, d in K8S_DOCS if d["kind"] == "Kustomization")
    resources = set(kustomization["resources"])
    assert all((K8S / r).is_file() for r in resources)
    assert resources == {"configmap.yaml", "worker.yaml", "api.yaml"}
