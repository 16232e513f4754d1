"""Loads the deployment files and checks what checkov cannot.

checkov has no policy for Cloud Run v2 services or Pub/Sub subscriptions, and none knows this
service: which endpoints exist, which environment it reads, which timeouts must nest. The
checks here do, on the files as written (Terraform parsed with python-hcl2, `${var.x}` resolved
from defaults or tfvars, service.yaml parsed with PyYAML).

Every check is a function `check_*(d: Deployment) -> list[str]` that returns the problems it
found (empty when all is well), each naming the file or resource at fault. The tests run every
check on the real tree (no problem allowed) and on mutated copies (a problem required).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import hcl2
import yaml

# The work types, in fan-out order: each is a topic (named like it by default) and an endpoint
# `/work/{type}` of the service.
KINDS = ("partition-set", "partition", "packument")

# Topic env var of each work type (src/service/cli.rs).
TOPIC_ENV = {
    "partition-set": "ALL_DOCS_TOPIC_PARTITION_SET",
    "partition": "ALL_DOCS_TOPIC_PARTITION",
    "packument": "ALL_DOCS_TOPIC_PACKUMENT",
}

# What `all-docs serve` needs in the cloud (brief: "Service configuration").
REQUIRED_ENV = {
    "GOOGLE_CLOUD_PROJECT",
    "ALL_DOCS_STORE",
    "ALL_DOCS_TOPIC_PARTITION_SET",
    "ALL_DOCS_TOPIC_PARTITION",
    "ALL_DOCS_TOPIC_PACKUMENT",
    "ALL_DOCS_REPLICATE_ORIGIN",
    "ALL_DOCS_REGISTRY_ORIGIN",
    "ALL_DOCS_PUSH_AUDIENCE",
    "ALL_DOCS_PUSH_SERVICE_ACCOUNT",
    "ALL_DOCS_MAX_IN_FLIGHT",
    "ALL_DOCS_REQUEST_BUDGET",
    "ALL_DOCS_MAX_RPS",
}

# Never in a deployment: it turns push authentication off (emulators only).
FORBIDDEN_ENV = {"ALL_DOCS_INSECURE_SKIP_PUSH_AUTH"}

# The placeholders service.yaml may use, filled by envsubst (docs/deploy.md).
PLACEHOLDERS = {"PROJECT_ID", "IMAGE", "BUCKET", "REPLICATE_ORIGIN", "REGISTRY_ORIGIN"}

PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")

PUBSUB_AGENT = re.compile(r"^serviceAccount:service-.+@gcp-sa-pubsub\.iam\.gserviceaccount\.com$")

# Hosts a deployment file may name. Origins are variables or placeholders: anything else
# (an upstream's real host above all) must not be written down.
ALLOWED_HOST = re.compile(
    r"(^|\.)(example\.com|example\.org|invalid|googleapis\.com|run\.app|pkg\.dev|gcr\.io|"
    r"cloud\.google\.com|google\.com)$|^(127\.0\.0\.1|localhost|\[::1\])$"
)

# ---------------------------------------------------------------------------------------------
# Terraform: parsing and a small evaluator for the expressions the files use.


def _unquote(s: Any) -> Any:
    if isinstance(s, str) and len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        return s[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return s


def _normalize(v: Any) -> Any:
    """python-hcl2 8.x output -> plain data: keys and strings unquoted, markers dropped."""
    if isinstance(v, dict):
        return {
            _unquote(k): _normalize(x) for k, x in v.items() if k not in ("__is_block__", "__comments__")
        } | ({"__comments__": v["__comments__"]} if "__comments__" in v else {})
    if isinstance(v, list):
        return [_normalize(x) for x in v]
    return _unquote(v)


def _interpolations(s: str) -> list[tuple[int, int, str]]:
    """(start, end, inner) of each top-level `${...}` in s, braces balanced."""
    out = []
    i = 0
    while (i := s.find("${", i)) >= 0:
        depth, j = 0, i + 1
        while j < len(s):
            if s[j] == "{":
                depth += 1
            elif s[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        out.append((i, j + 1, s[i + 2 : j]))
        i = j + 1
    return out


_TRAVERSAL = re.compile(r'^[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\[(?:"[^"]*"|\d+|each\.key|each\.value)\])*$')
_PART = re.compile(r'\.([A-Za-z_][\w-]*)|\[("[^"]*"|\d+|each\.key|each\.value)\]')


@dataclass(frozen=True)
class Index:
    """`[KEY]` in a traversal (as opposed to `.attr`)."""

    value: Any


class Unresolved(str):
    """An expression the evaluator leaves as written (a computed attribute, a function call):
    `${...}` text, with `each.key`/`each.value` substituted so references stay comparable."""


@dataclass
class Instance:
    """One instance of a resource or data block (one per for_each key)."""

    tf: "Terraform"
    kind: str  # "resource" or "data"
    type: str
    name: str
    key: Any
    raw: dict
    file: str
    _body: Any = None

    @property
    def address(self) -> str:
        base = f"{'data.' if self.kind == 'data' else ''}{self.type}.{self.name}"
        return base if self.key is None else f'{base}["{self.key}"]'

    @property
    def body(self) -> dict:
        if self._body is None:
            self._body = {}  # breaks reference cycles: a cycle reads as empty
            self._body = self.tf.evaluate(self.raw, self._each())
        return self._body

    def _each(self) -> dict:
        if self.key is None:
            return {}
        return {"key": self.key, "value": self.tf.for_each_value(self)}


class Terraform:
    """Every `.tf` file of one folder (no modules), with variables resolved from overrides,
    then `terraform.tfvars` / `*.auto.tfvars`, then defaults."""

    def __init__(self, folder: Path, overrides: dict[str, Any] | None = None):
        self.folder = folder
        self.files: dict[str, dict] = {}
        for path in sorted(folder.glob("*.tf")):
            with path.open() as f:
                self.files[path.name] = _normalize(hcl2.load(f))
        self.variables: dict[str, dict] = {}
        self.locals: dict[str, Any] = {}
        self.instances: list[Instance] = []
        self._for_each: dict[tuple, Any] = {}
        for fname, doc in self.files.items():
            for block in doc.get("variable", []):
                for name, body in block.items():
                    self.variables[name] = body
            for block in doc.get("locals", []):
                self.locals.update({k: v for k, v in block.items() if k != "__comments__"})
        values: dict[str, Any] = {n: b["default"] for n, b in self.variables.items() if "default" in b}
        for tfvars in [folder / "terraform.tfvars", *sorted(folder.glob("*.auto.tfvars"))]:
            if tfvars.exists():
                with tfvars.open() as f:
                    values.update(_normalize(hcl2.load(f)))
        values.update(overrides or {})
        self.values = values
        for fname, doc in self.files.items():
            for kind in ("resource", "data"):
                for block in doc.get(kind, []):
                    for rtype, named in block.items():
                        for rname, body in named.items():
                            self._expand(kind, rtype, rname, body, fname)

    def _expand(self, kind: str, rtype: str, rname: str, body: dict, fname: str) -> None:
        if "for_each" not in body:
            self.instances.append(Instance(self, kind, rtype, rname, None, body, fname))
            return
        each = self.evaluate(body["for_each"], {})
        if isinstance(each, dict):
            items = list(each.items())
        elif isinstance(each, list):
            items = [(v, v) for v in each]
        else:  # unknown keys: one instance stands for all
            items = [("*", Unresolved("${each.value}"))]
        for k, v in items:
            self._for_each[(kind, rtype, rname, k)] = v
            self.instances.append(Instance(self, kind, rtype, rname, k, body, fname))

    def for_each_value(self, inst: Instance) -> Any:
        return self._for_each.get((inst.kind, inst.type, inst.name, inst.key))

    # -- evaluation ----------------------------------------------------------------------------

    def evaluate(self, v: Any, each: dict) -> Any:
        if isinstance(v, dict):
            return {k: (x if k == "__comments__" else self.evaluate(x, each)) for k, x in v.items()}
        if isinstance(v, list):
            return [self.evaluate(x, each) for x in v]
        if not isinstance(v, str):
            return v
        parts = _interpolations(v)
        if len(parts) == 1 and parts[0][0] == 0 and parts[0][1] == len(v):
            return self._expr(parts[0][2], each)
        out, last = [], 0
        for start, end, inner in parts:
            out.append(v[last:start])
            r = self._expr(inner, each)
            out.append(str(r).lower() if isinstance(r, bool) else str(r))
            last = end
        out.append(v[last:])
        text = "".join(out)
        return Unresolved(text) if any(isinstance(self._expr(i, each), Unresolved) for _, _, i in parts) else text

    def _expr(self, expr: str, each: dict) -> Any:
        expr = expr.strip()
        if each:
            expr_sub = re.sub(r"\beach\.key\b", json.dumps(each["key"]), expr)
            if isinstance(each.get("value"), str):
                expr_sub = re.sub(r"\beach\.value\b", json.dumps(each["value"]), expr_sub)
        else:
            expr_sub = expr
        if expr in ("each.key", "each.value") and each:
            return each["key" if expr == "each.key" else "value"]
        if not _TRAVERSAL.match(expr):
            return Unresolved("${" + expr_sub + "}")
        head = expr.split(".", 1)[0].split("[", 1)[0]
        steps: list = []
        for m in _PART.finditer(expr[len(head) :]):
            if m.group(1):
                steps.append(m.group(1))  # .attr
            else:
                raw = m.group(2)
                steps.append(Index(
                    each.get("key") if raw == "each.key" else each.get("value") if raw == "each.value"
                    else raw[1:-1] if raw.startswith('"') else int(raw)
                ))
        unresolved = Unresolved("${" + expr_sub + "}")
        if head == "var":
            if not steps or steps[0] not in self.values:
                return unresolved
            return self._walk(self.values[steps[0]], steps[1:], unresolved)
        if head == "local":
            if not steps or steps[0] not in self.locals:
                return unresolved
            return self._walk(self.evaluate(self.locals[steps[0]], {}), steps[1:], unresolved)
        if head == "data" or not steps or isinstance(steps[0], Index):
            return unresolved
        # A resource: TYPE.NAME[KEY].ATTR...
        rname, rest = steps[0], steps[1:]
        key = None
        if rest and isinstance(rest[0], Index):
            key, rest = rest[0].value, rest[1:]
        inst = self.find(head, rname, key)
        if inst is None or not rest:
            return unresolved
        return self._walk(inst.body, rest, unresolved)

    @staticmethod
    def _walk(v: Any, steps: list, unresolved: Unresolved) -> Any:
        for s in steps:
            k = s.value if isinstance(s, Index) else s
            if isinstance(v, dict) and k in v:
                v = v[k]
            elif isinstance(v, list) and isinstance(k, int) and k < len(v):
                v = v[k]
            elif isinstance(v, list) and len(v) == 1 and isinstance(v[0], dict) and k in v[0]:
                v = v[0][k]  # a single nested block, addressed like an attribute
            else:
                return unresolved
        return v

    # -- queries -------------------------------------------------------------------------------

    def find(self, rtype: str, rname: str, key: Any = None, kind: str = "resource") -> Instance | None:
        for i in self.instances:
            if i.kind == kind and i.type == rtype and i.name == rname and i.key == key:
                return i
        return None

    def of_type(self, rtype: str, kind: str = "resource") -> list[Instance]:
        return [i for i in self.instances if i.kind == kind and i.type == rtype]

    def deref(self, value: Any) -> tuple[Instance | None, str | None]:
        """`${TYPE.NAME["KEY"].ATTR}` -> (instance, ATTR); anything else -> (None, None)."""
        if not isinstance(value, str):
            return None, None
        m = re.match(r'^\$\{([A-Za-z_][\w-]*)\.([A-Za-z_][\w-]*)(?:\["([^"]*)"\])?\.([A-Za-z_]\w*)\}$', value)
        if not m:
            return None, None
        return self.find(m.group(1), m.group(2), m.group(3)), m.group(4)

    def designates(self, value: Any, inst: Instance | None) -> bool:
        """Whether `value` (a reference, or a resolved name or id) names `inst`."""
        if inst is None:
            return False
        if self.deref(value)[0] is inst:
            return True
        name = inst.body.get("name")
        return isinstance(value, str) and not isinstance(value, Unresolved) and name is not None and (
            value == name or value.endswith(f"/{name}")
        )

    def topic_named(self, value: Any) -> Instance | None:
        """The google_pubsub_topic a `topic`/`dead_letter_topic` value designates."""
        inst, _ = self.deref(value)
        if inst is not None and inst.type == "google_pubsub_topic":
            return inst
        for t in self.of_type("google_pubsub_topic"):
            if value in (t.body.get("name"), f"projects/{self.values.get('project')}/topics/{t.body.get('name')}"):
                return t
        return None


def block(body: dict, name: str) -> dict | None:
    """The single block `name` of a body (python-hcl2 gives blocks as lists)."""
    v = body.get(name)
    if isinstance(v, list):
        return v[0] if v and isinstance(v[0], dict) else None
    return v if isinstance(v, dict) else None


def blocks(body: dict, name: str) -> list[dict]:
    v = body.get(name)
    if isinstance(v, list):
        return [b for b in v if isinstance(b, dict)]
    return [v] if isinstance(v, dict) else []


def seconds(duration: Any) -> float | None:
    """`"600s"`, `"3.5s"` or a number -> seconds; None when not resolved."""
    if isinstance(duration, (int, float)) and not isinstance(duration, bool):
        return float(duration)
    if isinstance(duration, str) and not isinstance(duration, Unresolved):
        m = re.fullmatch(r"(\d+(?:\.\d+)?)s?", duration.strip())
        if m:
            return float(m.group(1))
    return None


def as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and not isinstance(v, Unresolved) and re.fullmatch(r"\d+", v.strip()):
        return int(v)
    return None


# ---------------------------------------------------------------------------------------------
# The whole deployment.


@dataclass
class Deployment:
    root: Path
    tf: Terraform
    service: dict
    service_text: str
    dockerfile: str
    dockerignore: str
    docs: str
    src_env: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, root: Path, src_root: Path | None = None) -> "Deployment":
        # Origins have no default on purpose; these stand in for what an operator passes.
        tf = Terraform(
            root / "terraform",
            overrides={
                "project": "my-project",
                "region": "europe-west1",
                "image": "europe-west1-docker.pkg.dev/my-project/all-docs/all-docs:v1",
                "bucket": "my-project-all-docs",
                "replicate_origin": "https://replicate.example.com",
                "registry_origin": "https://registry.example.com",
            },
        )
        service_text = (root / "service.yaml").read_text()
        src = src_root or root
        return cls(
            root=root,
            tf=tf,
            service=yaml.safe_load(service_text),
            service_text=service_text,
            dockerfile=(root / "Dockerfile").read_text(),
            dockerignore=(root / ".dockerignore").read_text(),
            docs=(root / "docs" / "deploy.md").read_text(),
            src_env=env_names_read_by(src / "src"),
        )

    # -- Terraform views -------------------------------------------------------------------------

    def run_service(self) -> Instance | None:
        services = self.tf.of_type("google_cloud_run_v2_service")
        return services[0] if len(services) == 1 else None

    def push_subscriptions(self) -> list[Instance]:
        return [s for s in self.tf.of_type("google_pubsub_subscription") if block(s.body, "push_config")]

    def pull_subscriptions(self) -> list[Instance]:
        return [s for s in self.tf.of_type("google_pubsub_subscription") if not block(s.body, "push_config")]

    def run_container(self) -> dict:
        svc = self.run_service()
        if svc is None:
            return {}
        return block(block(svc.body, "template") or {}, "containers") or {}

    def tf_env(self) -> dict[str, Any]:
        return {e.get("name"): e.get("value") for e in blocks(self.run_container(), "env")}

    def tf_timeout(self) -> float | None:
        svc = self.run_service()
        return seconds((block(svc.body, "template") or {}).get("timeout")) if svc else None

    def push_identity(self) -> str | None:
        """The push subscriptions' token identity (service_account_email), if they agree."""
        emails = {
            (block(block(s.body, "push_config") or {}, "oidc_token") or {}).get("service_account_email")
            for s in self.push_subscriptions()
        }
        return emails.pop() if len(emails) == 1 else None

    def iam_grants(self) -> list[tuple[Instance, str, str]]:
        """(resource, role, member) of every IAM grant: *_iam_member, *_iam_binding, *_iam_policy
        (through a google_iam_policy data source) and any `members`."""
        out = []
        for i in self.tf.instances:
            if not re.search(r"_iam_(member|binding|policy)$", i.type) and i.type != "google_iam_policy":
                continue
            b = i.body
            if "member" in b:
                out.append((i, b.get("role"), b.get("member")))
            for m in b.get("members", []) or []:
                out.append((i, b.get("role"), m))
            for binding in blocks(b, "binding"):
                for m in binding.get("members", []) or []:
                    out.append((i, binding.get("role"), m))
        return out

    # -- service.yaml views ----------------------------------------------------------------------

    def svc_template(self) -> dict:
        return ((self.service or {}).get("spec") or {}).get("template") or {}

    def svc_container(self) -> dict:
        containers = (self.svc_template().get("spec") or {}).get("containers") or []
        return containers[0] if containers else {}

    def svc_env(self) -> dict[str, Any]:
        return {e.get("name"): e.get("value") for e in self.svc_container().get("env") or []}

    def svc_annotations(self) -> dict:
        return ((self.service or {}).get("metadata") or {}).get("annotations") or {}

    def svc_template_annotations(self) -> dict:
        return (self.svc_template().get("metadata") or {}).get("annotations") or {}


def env_names_read_by(src: Path) -> set[str]:
    """Every `env = "NAME"` of the clap definitions under src/: the variables the binary reads."""
    names = set()
    for path in src.rglob("*.rs"):
        names.update(re.findall(r'env\s*=\s*"([A-Z][A-Z0-9_]*)"', path.read_text(errors="replace")))
    return names


def member_identity(member: Any) -> str:
    """A member, with `google_service_account.X.member` spelled like `serviceAccount:${...email}`."""
    if isinstance(member, str):
        m = re.fullmatch(r"\$\{(google_service_account\.[\w-]+)\.member\}", member)
        if m:
            return "serviceAccount:${" + m.group(1) + ".email}"
    return str(member)


# ---------------------------------------------------------------------------------------------
# Checks on Terraform.


def check_topics(d: Deployment) -> list[str]:
    """The three work topics exist, each with one push subscription to /work/{type}."""
    problems = []
    names = {t.body.get("name") for t in d.tf.of_type("google_pubsub_topic")}
    for kind in KINDS:
        if kind not in names:
            problems.append(f"no google_pubsub_topic named `{kind}` (the service's default topic)")
        subs = [
            s for s in d.push_subscriptions()
            if str((block(s.body, "push_config") or {}).get("push_endpoint", "")).endswith(f"/work/{kind}")
        ]
        if len(subs) != 1:
            problems.append(f"want one push subscription to `/work/{kind}`, found {len(subs)}")
            continue
        topic = d.tf.topic_named(subs[0].body.get("topic"))
        if topic is None or topic.body.get("name") != kind:
            problems.append(f"{subs[0].address}: pushes to /work/{kind} but reads topic {subs[0].body.get('topic')}")
    return problems


def check_push_subscriptions(d: Deployment) -> list[str]:
    """Each push subscription: OIDC token, retry and dead-letter policies, an ack deadline no
    shorter than the request timeout, retention, no expiry, names as `dev pubsub-setup` makes."""
    problems = []
    subs = d.push_subscriptions()
    if len(subs) < len(KINDS):
        problems.append(f"want {len(KINDS)} push subscriptions, found {len(subs)}")
    timeout = d.tf_timeout()
    svc = d.run_service()
    for s in subs:
        b, a = s.body, s.address
        push = block(b, "push_config") or {}
        endpoint = str(push.get("push_endpoint", ""))
        target, attr = d.tf.deref(endpoint.split("/work/")[0]) if "/work/" in endpoint else (None, None)
        if svc is None or target is not svc or attr != "uri":
            problems.append(f"{a}: push_endpoint `{endpoint}` is not the Cloud Run service's uri + /work/TYPE")
        oidc = block(push, "oidc_token")
        if not oidc:
            problems.append(f"{a}: push_config has no oidc_token (pushes would be unauthenticated)")
        else:
            if not oidc.get("service_account_email"):
                problems.append(f"{a}: oidc_token has no service_account_email")
            if not oidc.get("audience"):
                problems.append(f"{a}: oidc_token has no audience")
        retry = block(b, "retry_policy")
        if not retry:
            problems.append(f"{a}: no retry_policy (Pub/Sub would redeliver at once, amplifying storms)")
        else:
            lo, hi = seconds(retry.get("minimum_backoff")), seconds(retry.get("maximum_backoff"))
            if lo is None or hi is None or not (0 <= lo <= hi <= 600):
                problems.append(f"{a}: retry_policy wants minimum_backoff <= maximum_backoff <= 600s, got {lo}, {hi}")
        dlp = block(b, "dead_letter_policy")
        if not dlp:
            problems.append(f"{a}: no dead_letter_policy (poison messages would retry forever)")
        else:
            attempts = as_int(dlp.get("max_delivery_attempts"))
            if attempts is None or not 5 <= attempts <= 100:
                problems.append(f"{a}: max_delivery_attempts must be 5..100, got {dlp.get('max_delivery_attempts')}")
            dlq = d.tf.topic_named(dlp.get("dead_letter_topic"))
            topic = d.tf.topic_named(b.get("topic"))
            if dlq is None:
                problems.append(f"{a}: dead_letter_topic {dlp.get('dead_letter_topic')} is not a topic of this config")
            elif topic is not None and dlq.body.get("name") != f"{topic.body.get('name')}-dead-letter":
                problems.append(f"{a}: dead-letter topic `{dlq.body.get('name')}` is not `{topic.body.get('name')}-dead-letter` (the name dev pubsub-setup uses)")
        topic = d.tf.topic_named(b.get("topic"))
        if topic is not None and b.get("name") != f"{topic.body.get('name')}-push":
            problems.append(f"{a}: name `{b.get('name')}` is not `{topic.body.get('name')}-push` (the name dev pubsub-setup uses)")
        ack = as_int(b.get("ack_deadline_seconds"))
        if ack is None or not 10 <= ack <= 600:
            problems.append(f"{a}: ack_deadline_seconds must be 10..600, got {b.get('ack_deadline_seconds')}")
        elif timeout is None or ack < timeout:
            problems.append(f"{a}: ack deadline {ack}s is shorter than the Cloud Run timeout {timeout}s: running work would be redelivered")
        retention = seconds(b.get("message_retention_duration"))
        if retention is None or not 600 <= retention <= 2678400:
            problems.append(f"{a}: message_retention_duration must be 600s..31d, got {b.get('message_retention_duration')}")
        if (block(b, "expiration_policy") or {}).get("ttl") != "":
            problems.append(f'{a}: expiration_policy {{ ttl = "" }} missing: an idle subscription would be deleted after 31 days')
    return problems


def check_dead_letters(d: Deployment) -> list[str]:
    """Each dead-letter topic has a pull subscription `{topic}-pull` that keeps its messages."""
    problems = []
    dlqs = {}
    for s in d.push_subscriptions():
        dlq = d.tf.topic_named((block(s.body, "dead_letter_policy") or {}).get("dead_letter_topic"))
        if dlq is not None:
            dlqs[dlq.address] = dlq
    if len(dlqs) < len(KINDS):
        problems.append(f"want a dead-letter topic per work type, found {len(dlqs)}")
    for dlq in dlqs.values():
        pulls = [p for p in d.pull_subscriptions() if d.tf.topic_named(p.body.get("topic")) is dlq]
        if not pulls:
            problems.append(f"{dlq.address}: no pull subscription: a topic with no subscription drops dead letters")
            continue
        for p in pulls:
            want = f"{dlq.body.get('name')}-pull"
            if p.body.get("name") != want:
                problems.append(f"{p.address}: name `{p.body.get('name')}` is not `{want}` (the name dev pubsub-setup uses)")
            retention = seconds(p.body.get("message_retention_duration"))
            if retention is None or retention < 7 * 86400:
                problems.append(f"{p.address}: keeps dead letters less than 7 days ({p.body.get('message_retention_duration')})")
            if (block(p.body, "expiration_policy") or {}).get("ttl") != "":
                problems.append(f"{p.address}: would expire when idle (set expiration_policy {{ ttl = \"\" }})")
    return problems


def check_pubsub_agent(d: Deployment) -> list[str]:
    """The Pub/Sub service agent may publish dead letters, ack on the push subscriptions and
    mint the push account's tokens."""
    problems = []
    grants = d.iam_grants()
    agent = [(i, role) for i, role, m in grants if isinstance(m, str) and PUBSUB_AGENT.match(m)]
    for s in d.push_subscriptions():
        dlq = d.tf.topic_named((block(s.body, "dead_letter_policy") or {}).get("dead_letter_topic"))
        if dlq is not None and not any(
            i.type == "google_pubsub_topic_iam_member" and role == "roles/pubsub.publisher"
            and d.tf.topic_named(i.body.get("topic")) is dlq for i, role in agent
        ):
            problems.append(f"{dlq.address}: the Pub/Sub service agent lacks roles/pubsub.publisher (dead letters could not be moved)")
        if not any(
            i.type == "google_pubsub_subscription_iam_member" and role == "roles/pubsub.subscriber"
            and d.tf.designates(i.body.get("subscription"), s) for i, role in agent
        ):
            problems.append(f"{s.address}: the Pub/Sub service agent lacks roles/pubsub.subscriber on it (needed to dead-letter)")
    push_sa = d.push_identity()
    if not any(
        i.type == "google_service_account_iam_member" and role == "roles/iam.serviceAccountTokenCreator"
        and d.tf.deref(i.body.get("service_account_id"))[0] is not None
        and "${" + d.tf.deref(i.body.get("service_account_id"))[0].address + ".email}" == push_sa
        for i, role in agent
    ):
        problems.append("the Pub/Sub service agent lacks roles/iam.serviceAccountTokenCreator on the push service account")
    return problems


def check_no_public_members(d: Deployment) -> list[str]:
    """No allUsers / allAuthenticatedUsers anywhere in the Terraform."""
    problems = []

    def scan(v: Any, where: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                if k != "__comments__":
                    scan(x, where)
        elif isinstance(v, list):
            for x in v:
                scan(x, where)
        elif isinstance(v, str) and any(p in v for p in PUBLIC_MEMBERS):
            problems.append(f"{where}: public member `{v}`")

    for i in d.tf.instances:
        scan(i.body, i.address)
    for name, expr in d.tf.locals.items():
        scan(expr, f"local.{name}")
    return problems


def check_invoker(d: Deployment) -> list[str]:
    """Only the push account may invoke the service, and it may."""
    problems = []
    push_sa = d.push_identity()
    if push_sa is None:
        return ["the push subscriptions do not share one oidc_token.service_account_email"]
    want = f"serviceAccount:{push_sa}"
    invokers = [(i, m) for i, role, m in d.iam_grants() if role == "roles/run.invoker"]
    for i, m in invokers:
        if member_identity(m) != want:
            problems.append(f"{i.address}: roles/run.invoker for `{m}`; only the push account ({push_sa}) may invoke")
    svc = d.run_service()
    if not any(
        i.type == "google_cloud_run_v2_service_iam_member" and d.tf.designates(i.body.get("name"), svc)
        and member_identity(m) == want for i, m in invokers
    ):
        problems.append("the push account has no roles/run.invoker on the Cloud Run service (every push would get 403)")
    return problems


def check_no_project_iam(d: Deployment) -> list[str]:
    """Nothing project-, folder- or organization-wide: every grant is on one resource."""
    return [
        f"{i.address}: grants at {i.type.split('_')[1]} level; grant on the resource instead"
        for i in d.tf.instances
        if re.match(r"^google_(project|folder|organization)_iam_", i.type)
    ]


def check_service_account_grants(d: Deployment) -> list[str]:
    """The service account: object admin on the replica bucket, publisher (and viewer, for the
    readiness probe) on the three work topics, nothing else."""
    problems = []
    svc = d.run_service()
    if svc is None:
        return ["no (single) google_cloud_run_v2_service"]
    sa = (block(svc.body, "template") or {}).get("service_account")
    me = f"serviceAccount:{sa}"
    store = str(d.tf_env().get("ALL_DOCS_STORE", ""))
    buckets = [b for b in d.tf.of_type("google_storage_bucket") if store.rstrip("/") == f"gs://{b.body.get('name')}"]
    bucket = buckets[0] if buckets else None
    work_topics = {i.address: i for i in d.tf.of_type("google_pubsub_topic") if i.body.get("name") in KINDS}
    has_bucket = False
    published = set()
    for i, role, m in d.iam_grants():
        if member_identity(m) != me:
            continue
        if i.type == "google_storage_bucket_iam_member" and role == "roles/storage.objectAdmin" and bucket is not None \
                and d.tf.designates(i.body.get("bucket"), bucket):
            has_bucket = True
        elif i.type == "google_pubsub_topic_iam_member" and role in ("roles/pubsub.publisher", "roles/pubsub.viewer") \
                and (t := d.tf.topic_named(i.body.get("topic"))) is not None and t.address in work_topics:
            if role == "roles/pubsub.publisher":
                published.add(t.address)
        else:
            problems.append(f"{i.address}: grants {role} to the service account; it needs only object admin on the bucket and publisher on the work topics")
    if not has_bucket:
        problems.append("the service account lacks roles/storage.objectAdmin on the replica bucket (ALL_DOCS_STORE)")
    for addr in sorted(set(work_topics) - published):
        problems.append(f"the service account lacks roles/pubsub.publisher on {addr}")
    return problems


def check_bucket(d: Deployment) -> list[str]:
    """The replica bucket: uniform access, public access prevention, versioning with a rule for
    old generations, and a rule for the GCS store's scratch objects."""
    problems = []
    store = str(d.tf_env().get("ALL_DOCS_STORE", ""))
    buckets = d.tf.of_type("google_storage_bucket")
    if not buckets:
        return ["no google_storage_bucket"]
    for b in buckets:
        body, a = b.body, b.address
        if body.get("uniform_bucket_level_access") is not True:
            problems.append(f"{a}: uniform_bucket_level_access must be true (no per-object ACLs)")
        if body.get("public_access_prevention") != "enforced":
            problems.append(f"{a}: public_access_prevention must be \"enforced\", got {body.get('public_access_prevention')!r}")
        if not block(body, "versioning"):
            problems.append(f"{a}: no versioning block (keep old generations, optionally)")
        rules = blocks(body, "lifecycle_rule")
        deletes = [(block(r, "condition") or {}) for r in rules if (block(r, "action") or {}).get("type") == "Delete"]
        if not any("days_since_noncurrent_time" in c or "num_newer_versions" in c for c in deletes):
            problems.append(f"{a}: no lifecycle rule deletes noncurrent versions: old generations would pile up")
        if not any("tmp/" in (c.get("matches_prefix") or []) and c.get("age") is not None for c in deletes):
            problems.append(f"{a}: no lifecycle rule deletes the GCS store's scratch objects under tmp/")
    if not any(store.rstrip("/") == f"gs://{b.body.get('name')}" for b in buckets):
        problems.append(f"ALL_DOCS_STORE `{store}` is not gs:// + a bucket of this config")
    return problems


def check_run_service(d: Deployment) -> list[str]:
    """The Cloud Run v2 service: own service account, internal ingress, probes on the health
    routes, the push audience accepted, and settings that nest (budget < timeout, rate budget)."""
    problems = []
    svc = d.run_service()
    if svc is None:
        return ["want exactly one google_cloud_run_v2_service"]
    b, a = svc.body, svc.address
    tpl = block(b, "template") or {}
    sa = tpl.get("service_account")
    sa_inst, attr = d.tf.deref(sa)
    if sa_inst is None or sa_inst.type != "google_service_account" or attr != "email":
        problems.append(f"{a}: template.service_account must be a dedicated google_service_account's email, got {sa!r}")
    elif "${" + sa_inst.address + ".email}" == d.push_identity():
        problems.append(f"{a}: runs as the push account; the service needs its own")
    if b.get("ingress") != "INGRESS_TRAFFIC_INTERNAL_ONLY":
        problems.append(f"{a}: ingress must be INGRESS_TRAFFIC_INTERNAL_ONLY, got {b.get('ingress')!r}")
    if b.get("invoker_iam_disabled") is True:
        problems.append(f"{a}: invoker_iam_disabled = true lets anyone who reaches it invoke it")
    c = d.run_container()
    probe = lambda name: (block(block(c, name) or {}, "http_get") or {}).get("path")  # noqa: E731
    if probe("startup_probe") != "/readyz":
        problems.append(f"{a}: startup_probe must GET /readyz, got {probe('startup_probe')!r}")
    if probe("liveness_probe") != "/healthz":
        problems.append(f"{a}: liveness_probe must GET /healthz, got {probe('liveness_probe')!r}")
    env = d.tf_env()
    problems += _env_problems(a, env, d)
    audiences = set(b.get("custom_audiences") or [])
    for s in d.push_subscriptions():
        aud = (block(block(s.body, "push_config") or {}, "oidc_token") or {}).get("audience")
        if aud is not None and aud not in audiences:
            problems.append(f"{s.address}: audience {aud!r} is not a custom audience of the service (Cloud Run would refuse the tokens)")
        if aud is not None and env.get("ALL_DOCS_PUSH_AUDIENCE") != aud:
            problems.append(f"{a}: ALL_DOCS_PUSH_AUDIENCE {env.get('ALL_DOCS_PUSH_AUDIENCE')!r} differs from {s.address}'s audience {aud!r}")
    push_sa = d.push_identity()
    if push_sa is not None and env.get("ALL_DOCS_PUSH_SERVICE_ACCOUNT") != push_sa:
        problems.append(f"{a}: ALL_DOCS_PUSH_SERVICE_ACCOUNT {env.get('ALL_DOCS_PUSH_SERVICE_ACCOUNT')!r} is not the push identity {push_sa}")
    concurrency = as_int(tpl.get("max_instance_request_concurrency"))
    timeout = d.tf_timeout()
    max_instances = as_int((block(tpl, "scaling") or {}).get("max_instance_count"))
    problems += _nesting_problems(a, env, concurrency, timeout, max_instances, d.tf.values.get("upstream_rps_budget"))
    for topic_kind, name in TOPIC_ENV.items():
        t = d.tf.topic_named(env.get(name))
        if t is None or t.body.get("name") != topic_kind:
            problems.append(f"{a}: {name} {env.get(name)!r} is not the `{topic_kind}` topic")
    return problems


def _env_problems(where: str, env: dict, d: Deployment) -> list[str]:
    problems = []
    for name in sorted(REQUIRED_ENV - set(env)):
        problems.append(f"{where}: env {name} is missing")
    for name in sorted(FORBIDDEN_ENV & set(env)):
        problems.append(f"{where}: env {name} turns push authentication off (emulators only)")
    if d.src_env:
        for name in sorted(set(env) - d.src_env):
            problems.append(f"{where}: env {name} is not read by the service (no `env = \"{name}\"` in src/)")
    return problems


def _nesting_problems(where: str, env: dict, concurrency: Any, timeout: Any, max_instances: Any, budget: Any) -> list[str]:
    problems = []
    in_flight = as_int(env.get("ALL_DOCS_MAX_IN_FLIGHT"))
    if concurrency is None or in_flight != concurrency:
        problems.append(f"{where}: ALL_DOCS_MAX_IN_FLIGHT {env.get('ALL_DOCS_MAX_IN_FLIGHT')!r} must equal the container concurrency {concurrency}")
    req_budget = as_int(env.get("ALL_DOCS_REQUEST_BUDGET"))
    if req_budget is None or timeout is None or not 0 < req_budget < timeout:
        problems.append(f"{where}: ALL_DOCS_REQUEST_BUDGET {env.get('ALL_DOCS_REQUEST_BUDGET')!r} must be below the request timeout {timeout}")
    rps = seconds(env.get("ALL_DOCS_MAX_RPS"))
    if rps is None or max_instances is None or budget is None or max_instances * rps > float(budget):
        problems.append(f"{where}: max instances {max_instances} * ALL_DOCS_MAX_RPS {env.get('ALL_DOCS_MAX_RPS')!r} exceeds the upstream budget {budget} req/s")
    return problems


# ---------------------------------------------------------------------------------------------
# Checks on service.yaml, and its agreement with Terraform.


def check_service_yaml(d: Deployment) -> list[str]:
    """service.yaml on its own: a Knative Service with internal ingress, a service account,
    probes, the required env, settings that nest, and only the documented placeholders."""
    problems = []
    s = d.service or {}
    if s.get("apiVersion") != "serving.knative.dev/v1" or s.get("kind") != "Service":
        problems.append("service.yaml: not a serving.knative.dev/v1 Service")
    if d.svc_annotations().get("run.googleapis.com/ingress") != "internal":
        problems.append(f"service.yaml: run.googleapis.com/ingress must be `internal`, got {d.svc_annotations().get('run.googleapis.com/ingress')!r}")
    spec = d.svc_template().get("spec") or {}
    if not spec.get("serviceAccountName"):
        problems.append("service.yaml: no serviceAccountName (it would run as the default compute account)")
    c = d.svc_container()
    for probe, path in (("startupProbe", "/readyz"), ("livenessProbe", "/healthz")):
        got = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
        if got != path:
            problems.append(f"service.yaml: {probe} must GET {path}, got {got!r}")
    env = d.svc_env()
    problems += _env_problems("service.yaml", env, d)
    problems += _nesting_problems(
        "service.yaml",
        env,
        as_int(spec.get("containerConcurrency")),
        as_int(spec.get("timeoutSeconds")),
        as_int(d.svc_template_annotations().get("autoscaling.knative.dev/maxScale")),
        d.tf.values.get("upstream_rps_budget"),
    )
    try:
        audiences = json.loads(d.svc_annotations().get("run.googleapis.com/custom-audiences", "[]"))
    except ValueError:
        audiences = []
        problems.append("service.yaml: run.googleapis.com/custom-audiences is not a JSON list")
    if env.get("ALL_DOCS_PUSH_AUDIENCE") not in audiences:
        problems.append("service.yaml: ALL_DOCS_PUSH_AUDIENCE is not one of run.googleapis.com/custom-audiences")
    if any(p in v for v in _strings(d.service) for p in PUBLIC_MEMBERS):
        problems.append("service.yaml: names a public member")
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", d.service_text))
    for name in sorted(used - PLACEHOLDERS):
        problems.append(f"service.yaml: placeholder ${{{name}}} is not one docs/deploy.md fills")
    return problems


def _strings(v: Any) -> list[str]:
    """Every string (keys and values) in parsed YAML."""
    if isinstance(v, dict):
        return [x for k, w in v.items() for x in [str(k), *_strings(w)]]
    if isinstance(v, list):
        return [x for w in v for x in _strings(w)]
    return [v] if isinstance(v, str) else []


def _cpu(v: Any) -> float | None:
    v = str(v)
    if v.endswith("m") and v[:-1].isdigit():
        return int(v[:-1]) / 1000
    try:
        return float(v)
    except ValueError:
        return None


def check_agreement(d: Deployment) -> list[str]:
    """service.yaml and terraform/run.tf describe the same service."""
    problems = []
    svc = d.run_service()
    if svc is None:
        return ["no (single) google_cloud_run_v2_service to compare service.yaml with"]
    tpl = block(svc.body, "template") or {}
    spec = d.svc_template().get("spec") or {}
    c_tf, c_y = d.run_container(), d.svc_container()
    ann = d.svc_template_annotations()

    def differ(what: str, tf_value: Any, yaml_value: Any) -> None:
        problems.append(f"{what}: terraform says {tf_value!r}, service.yaml says {yaml_value!r}")

    if as_int(tpl.get("max_instance_request_concurrency")) != as_int(spec.get("containerConcurrency")):
        differ("concurrency", tpl.get("max_instance_request_concurrency"), spec.get("containerConcurrency"))
    if d.tf_timeout() != seconds(spec.get("timeoutSeconds")):
        differ("request timeout (s)", d.tf_timeout(), spec.get("timeoutSeconds"))
    limits_tf = (block(c_tf, "resources") or {}).get("limits") or {}
    limits_y = (c_y.get("resources") or {}).get("limits") or {}
    if _cpu(limits_tf.get("cpu")) != _cpu(limits_y.get("cpu")):
        differ("cpu", limits_tf.get("cpu"), limits_y.get("cpu"))
    if str(limits_tf.get("memory")) != str(limits_y.get("memory")):
        differ("memory", limits_tf.get("memory"), limits_y.get("memory"))
    scaling = block(tpl, "scaling") or {}
    if as_int(scaling.get("max_instance_count")) != as_int(ann.get("autoscaling.knative.dev/maxScale")):
        differ("max instances", scaling.get("max_instance_count"), ann.get("autoscaling.knative.dev/maxScale"))
    if as_int(scaling.get("min_instance_count") or 0) != as_int(ann.get("autoscaling.knative.dev/minScale") or 0):
        differ("min instances", scaling.get("min_instance_count"), ann.get("autoscaling.knative.dev/minScale"))
    res_tf = block(c_tf, "resources") or {}
    if (res_tf.get("cpu_idle") is True) != (ann.get("run.googleapis.com/cpu-throttling") == "true"):
        differ("CPU only during requests", res_tf.get("cpu_idle"), ann.get("run.googleapis.com/cpu-throttling"))
    if (res_tf.get("startup_cpu_boost") is True) != (ann.get("run.googleapis.com/startup-cpu-boost") == "true"):
        differ("startup CPU boost", res_tf.get("startup_cpu_boost"), ann.get("run.googleapis.com/startup-cpu-boost"))
    if list(c_tf.get("args") or []) != list(c_y.get("args") or []):
        differ("args", c_tf.get("args"), c_y.get("args"))
    port_tf = as_int((block(c_tf, "ports") or {}).get("container_port"))
    port_y = as_int(((c_y.get("ports") or [{}])[0]).get("containerPort"))
    if port_tf != port_y:
        differ("container port", port_tf, port_y)
    for tf_name, y_name in (("startup_probe", "startupProbe"), ("liveness_probe", "livenessProbe")):
        p_tf, p_y = block(c_tf, tf_name) or {}, c_y.get(y_name) or {}
        g_tf, g_y = block(p_tf, "http_get") or {}, p_y.get("httpGet") or {}
        pairs = [
            ("path", g_tf.get("path"), g_y.get("path")),
            ("port", as_int(g_tf.get("port")), as_int(g_y.get("port"))),
            ("period", as_int(p_tf.get("period_seconds")), as_int(p_y.get("periodSeconds"))),
            ("timeout", as_int(p_tf.get("timeout_seconds")), as_int(p_y.get("timeoutSeconds"))),
            ("failure threshold", as_int(p_tf.get("failure_threshold")), as_int(p_y.get("failureThreshold"))),
            ("initial delay", as_int(p_tf.get("initial_delay_seconds") or 0), as_int(p_y.get("initialDelaySeconds") or 0)),
        ]
        for what, x, y in pairs:
            if x != y:
                differ(f"{y_name} {what}", x, y)
    ingress = {"INGRESS_TRAFFIC_INTERNAL_ONLY": "internal", "INGRESS_TRAFFIC_ALL": "all",
               "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER": "internal-and-cloud-load-balancing"}
    if ingress.get(svc.body.get("ingress")) != d.svc_annotations().get("run.googleapis.com/ingress"):
        differ("ingress", svc.body.get("ingress"), d.svc_annotations().get("run.googleapis.com/ingress"))
    try:
        aud_y = json.loads(d.svc_annotations().get("run.googleapis.com/custom-audiences", "[]"))
    except ValueError:
        aud_y = None
    if sorted(svc.body.get("custom_audiences") or []) != sorted(aud_y or []):
        differ("custom audiences", svc.body.get("custom_audiences"), aud_y)
    if svc.body.get("name") != (d.service.get("metadata") or {}).get("name"):
        differ("service name", svc.body.get("name"), (d.service.get("metadata") or {}).get("name"))
    # Identities: service.yaml names accounts by e-mail, Terraform by resource; compare the
    # account ids (the part before @).
    for what, tf_ref, y_email in (
        ("service account", tpl.get("service_account"), spec.get("serviceAccountName")),
        ("ALL_DOCS_PUSH_SERVICE_ACCOUNT", d.tf_env().get("ALL_DOCS_PUSH_SERVICE_ACCOUNT"),
         d.svc_env().get("ALL_DOCS_PUSH_SERVICE_ACCOUNT")),
    ):
        inst, _ = d.tf.deref(tf_ref)
        tf_id = inst.body.get("account_id") if inst is not None else None
        y_id = str(y_email or "").split("@")[0]
        if tf_id != y_id:
            differ(what, tf_id, y_id)
    env_tf, env_y = d.tf_env(), d.svc_env()
    if set(env_tf) != set(env_y):
        problems.append(
            f"env names differ: only in terraform {sorted(set(env_tf) - set(env_y))}, "
            f"only in service.yaml {sorted(set(env_y) - set(env_tf))}"
        )
    # Values that are literals on both sides must be equal; placeholders are filled with the
    # same stand-ins the Terraform variables got.
    stand_ins = {
        "PROJECT_ID": d.tf.values.get("project"),
        "IMAGE": d.tf.values.get("image"),
        "BUCKET": d.tf.values.get("bucket"),
        "REPLICATE_ORIGIN": d.tf.values.get("replicate_origin"),
        "REGISTRY_ORIGIN": d.tf.values.get("registry_origin"),
    }
    for name in sorted(set(env_tf) & set(env_y)):
        x = env_tf[name]
        y = re.sub(r"\$\{(\w+)\}", lambda m: str(stand_ins.get(m.group(1), m.group(0))), str(env_y[name]))
        if isinstance(x, Unresolved):
            continue  # computed in Terraform (an e-mail): compared above where it matters
        if (str(x).lower() if isinstance(x, bool) else str(x)) != y:
            differ(f"env {name}", x, env_y[name])
    return problems


# ---------------------------------------------------------------------------------------------
# Checks on the image and the docs.


def dockerfile_stages(text: str) -> list[list[tuple[str, str]]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    stages: list[list[tuple[str, str]]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((op, rest.strip()))
    return stages


def check_dockerfile(d: Deployment) -> list[str]:
    """Multi-stage: a locked release build with a cached dependency layer; a minimal non-root
    final image holding only the binary, exposing 8080 and running `serve`."""
    problems = []
    stages = dockerfile_stages(d.dockerfile)
    if len(stages) < 2:
        return ["Dockerfile: want a build stage and a run stage"]
    build, final = stages[:-1], stages[-1]
    build_ins = [x for s in build for x in s]
    runs = " && ".join(rest for op, rest in build_ins if op == "RUN")
    builds = re.findall(r"cargo build\b[^&;|]*", runs)
    if not builds or any("--release" not in b.split() or "--locked" not in b.split() for b in builds):
        problems.append(f"Dockerfile: every build must be `cargo build --release --locked`, got {builds}")
    copies = [rest for op, rest in build_ins if op == "COPY"]
    manifest = next((i for i, c in enumerate(copies) if "Cargo.lock" in c and "src" not in c.split()), None)
    sources = next((i for i, c in enumerate(copies) if re.search(r"(^|\s)(src|\.)(/|\s)", c + " ")), None)
    if manifest is None or sources is None or manifest > sources:
        problems.append("Dockerfile: copy Cargo.toml and Cargo.lock (and build the dependencies) before the sources, so that layer is cached")
    base = final[0][1].split()[0]
    if not re.match(r"^(gcr\.io/distroless/|scratch$|cgr\.dev/chainguard/static)", base):
        problems.append(f"Dockerfile: the final image `{base}` is not minimal (distroless or scratch)")
    ops = [op for op, _ in final]
    if "RUN" in ops:
        problems.append("Dockerfile: the final stage runs commands (no shell or tools belong there)")
    for op, rest in final:
        if op in ("COPY", "ADD") and "--from=" not in rest:
            problems.append(f"Dockerfile: the final stage copies from the build context ({op} {rest}); only the binary from the build stage belongs there")
    users = [rest for op, rest in final if op == "USER"]
    if not users or not re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]):
        problems.append(f"Dockerfile: the final stage must end with a numeric non-root USER (e.g. 65532:65532), got {users[-1] if users else None!r}")
    if not any(op == "EXPOSE" and "8080" in rest.split() for op, rest in final):
        problems.append("Dockerfile: the final stage must EXPOSE 8080")
    entry = [rest for op, rest in final if op == "ENTRYPOINT"]
    try:
        argv = json.loads(entry[-1]) if entry else None
    except ValueError:
        argv = None
    if not argv or argv[-1] != "serve" or not str(argv[0]).endswith("all-docs"):
        problems.append(f"Dockerfile: ENTRYPOINT must be the exec form [\".../all-docs\", \"serve\"], got {entry[-1] if entry else None!r}")
    return problems


def check_dockerignore(d: Deployment) -> list[str]:
    """The build context leaves out target/, .git and local replicas."""
    lines = [l.strip() for l in d.dockerignore.splitlines() if l.strip() and not l.strip().startswith("#")]
    if "*" in lines:  # an allow-list: only what is re-included goes in
        allowed = {l[1:].rstrip("/") for l in lines if l.startswith("!")}
        needed = {"Cargo.toml", "Cargo.lock", "src", "crates/core/Cargo.toml", "crates/core/src"}
        extra = allowed - needed
        if extra:
            return [f".dockerignore: re-includes {sorted(extra)}; the build needs only the manifests, Cargo.lock and the sources"]
        missing = needed - allowed
        return [f".dockerignore: leaves out {sorted(missing)}, which the build needs"] if missing else []
    problems = []
    for must in ("target", ".git"):
        if not any(l.strip("/") in (must, f"{must}/", f"**/{must}") for l in lines):
            problems.append(f".dockerignore: does not leave out {must}/")
    return problems


def deploy_files(root: Path) -> list[Path]:
    files = [root / "Dockerfile", root / ".dockerignore", root / "service.yaml", root / "docs" / "deploy.md",
             root / ".checkov.yaml", root / "scripts" / "check-deploy"]
    files += sorted((root / "terraform").glob("*.tf")) + sorted((root / "terraform").glob("*.example"))
    return [f for f in files if f.exists()]


def check_hosts(d: Deployment) -> list[str]:
    """No deployment file names an upstream: origins are variables or placeholders."""
    problems = []
    for path in deploy_files(d.root):
        for host in re.findall(r"https?://([A-Za-z0-9.\-]*)", path.read_text()):
            host = host.strip(".").lower()
            if host and not ALLOWED_HOST.search(host):
                problems.append(f"{path.relative_to(d.root)}: names host `{host}`; origins must stay variables or example.com placeholders")
    return problems


def check_docs(d: Deployment) -> list[str]:
    """docs/deploy.md covers every step from an empty project to a running replica."""
    problems = []
    must = {
        "gcloud services enable": "enable the APIs",
        "terraform apply": "apply the Terraform",
        "gcloud builds submit": "build and push the image",
        "gcloud run services replace": "deploy service.yaml",
        "envsubst": "fill service.yaml's placeholders",
        "all-docs publish --partitions": "start a run from the CLI",
        "gcloud pubsub topics publish": "start a run with any Pub/Sub client",
        "gcloud storage ls": "list the replica",
        "gcloud storage cat": "read a packument",
        "xxd -p": "compute the hex of a name",
        "-dead-letter-pull": "inspect dead letters",
    }
    for text, why in must.items():
        if text not in d.docs:
            problems.append(f"docs/deploy.md: no `{text}` ({why})")
    for name in sorted(PLACEHOLDERS):
        if f"${name}" not in d.docs and f"${{{name}}}" not in d.docs:
            problems.append(f"docs/deploy.md: does not say how to fill service.yaml's ${{{name}}}")
    # Every work item written in the docs must be one the service accepts.
    items = re.findall(r"--message='(\{.*?\})'", d.docs)
    if not items:
        problems.append("docs/deploy.md: no `gcloud pubsub topics publish ... --message='{...}'` example")
    for raw in items:
        try:
            item = json.loads(raw)
        except ValueError as e:
            problems.append(f"docs/deploy.md: work item {raw} is not JSON ({e})")
            continue
        if item.get("type") not in KINDS or not isinstance(item.get("payload"), dict):
            problems.append(f"docs/deploy.md: work item {raw} has no known type and payload")
        elif item["type"] == "partition-set":
            pivots = item["payload"].get("pivots")
            if not isinstance(pivots, list) or not pivots or pivots[0] is not None:
                problems.append(f"docs/deploy.md: partition-set {raw} wants payload.pivots, a list starting with null")
        elif item["type"] == "packument" and not item["payload"].get("packageName"):
            problems.append(f"docs/deploy.md: packument item {raw} has no payload.packageName")
    # Hex object names shown must be the hex of the names beside them.
    for name, hexed in re.findall(r"printf %s '([^']+)' \| xxd -p[^\n]*\n#\s*([0-9a-f]+)", d.docs):
        if name.encode().hex() != hexed:
            problems.append(f"docs/deploy.md: hex of {name!r} is {name.encode().hex()}, not {hexed}")
    return problems


# Name -> check, in the order the report lists them.
CHECKS: dict[str, Callable[[Deployment], list[str]]] = {
    f.__name__: f
    for f in (
        check_topics,
        check_push_subscriptions,
        check_dead_letters,
        check_pubsub_agent,
        check_no_public_members,
        check_invoker,
        check_no_project_iam,
        check_service_account_grants,
        check_bucket,
        check_run_service,
        check_service_yaml,
        check_agreement,
        check_dockerfile,
        check_dockerignore,
        check_hosts,
        check_docs,
    )
}
