"""Which models complete the prompts, and how each one samples.

On the command line, ``--model`` is repeated; each is

* a local model directory (full model or PEFT adapter): ``runs/zephyr-sft``;
* an OpenAI-compatible endpoint and the model name it serves, joined by ``#``:
  ``http://127.0.0.1:8000/v1#mistral-7b-instruct`` (``transformers serve DIR`` serves ``DIR``);
* either of those with a name in front: ``sft-hot=runs/zephyr-sft``. The name (the *model id*) is
  what records, ratings and manifests call the model; by default it is the directory's last
  component or the served model's name. The same directory may be listed twice under two names,
  e.g. to sample it at two temperatures (set per model in a models file).

``--models-file models.yaml`` adds models with their own settings::

    models:
      - id: sft-hot                 # optional, as above
        path: runs/zephyr-sft       # a local directory, or:
        # base_url: http://127.0.0.1:8000/v1
        # model: served-name
        # api_key_env: MY_KEY       # NAME of the variable holding the key (never the key)
        # backend: transformers     # or vllm (local models)
        # chat_template: zephyr     # override the tokenizer's (local models)
        # request_params: {top_k: 40, seed: 1}   # extra request fields (endpoints)
        temperature: 1.0
        top_p: 0.95
        max_new_tokens: 512
        n: 4

A setting in the file wins over the command line's ``--temperature/--top-p/--max-new-tokens/--n``,
which apply to every other model.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.errors import ConfigError, Problem, UsageError

LABEL = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*)=(.+)$")
RESERVED_PARAMS = ("model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "n", "stream")
LOCAL_BACKENDS = ("transformers", "vllm")


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 512
    n: int = 4

    def as_json(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_new_tokens": self.max_new_tokens}


@dataclass
class ModelSpec:
    id: str
    kind: str  # "local" | "endpoint"
    sampling: Sampling
    origin: str  # where it was given: "--model runs/sft", "models.yaml models[1]"
    path: str | None = None
    base_url: str | None = None
    served_model: str | None = None
    api_key_env: str | None = None
    backend: str = "transformers"  # transformers | vllm | endpoint
    chat_template: str | None = None
    request_params: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """What is printed for the model: its directory, or the endpoint without credentials."""
        if self.kind == "local":
            return str(self.path)
        from alignkit.client import display_url

        return f"{display_url(self.base_url or '')}#{self.served_model}"

    def identity(self) -> dict[str, Any]:
        """What must not change between runs that share a work directory (n may grow)."""
        ident: dict[str, Any] = {"kind": self.kind, "backend": self.backend, **self.sampling.as_json()}
        if self.kind == "local":
            ident["path"] = str(Path(self.path).resolve()) if self.path else None
            ident["chat_template"] = _template_digest(self.chat_template)
        else:
            from alignkit.client import display_url

            ident["endpoint"] = display_url(self.base_url or "")
            ident["model"] = self.served_model
            ident["request_params"] = self.request_params
        return ident

    def record(self) -> dict[str, Any]:
        rec = {"id": self.id, **self.identity(), "n": self.sampling.n}
        if self.api_key_env:
            rec["api_key_env"] = self.api_key_env  # the variable's name, never its value
        return rec


def _template_digest(spec: str | None) -> str | None:
    if not spec:
        return None
    from alignkit.aif.manifest import sha256_text
    from alignkit.eval.generate import resolve_chat_template

    return sha256_text(resolve_chat_template(spec) or "")


def _served_id(name: str) -> str:
    if name.startswith(("/", "./", "../", "~")):
        return Path(name.rstrip("/")).name or name
    return name


def _is_url(text: str) -> bool:
    return urllib.parse.urlsplit(text).scheme in ("http", "https")


def parse_model_arg(text: str, sampling: Sampling, *, api_key_env: str | None = None,
                    backend: str = "transformers", chat_template: str | None = None,
                    option: str = "--model") -> ModelSpec:
    """One ``--model`` value (see the module docstring)."""
    label = None
    rest = text
    m = LABEL.match(text)
    if m and not Path(text).expanduser().exists():
        label, rest = m.group(1), m.group(2)
    if _is_url(rest):
        url, sep, name = rest.rpartition("#")
        if not sep or not name or not _is_url(url):
            from alignkit.client import display_url

            raise UsageError(
                Problem(
                    where=f"{option} {display_url(rest)}",
                    message="an endpoint needs the served model's name after '#'",
                    fix="write URL#MODEL, e.g. http://127.0.0.1:8000/v1#my-model",
                )
            )
        from alignkit.client import chat_completions_url

        chat_completions_url(url, option=option)  # validates the URL
        from alignkit.client import display_url

        origin = f"{option} {display_url(url)}#{name}"
        if chat_template:
            raise UsageError(
                Problem(where="--chat-template", message="a served model applies its own chat template", fix="set it on the server, or drop --chat-template")
            )
        return ModelSpec(
            id=label or _served_id(name),
            kind="endpoint",
            sampling=sampling,
            origin=origin,
            base_url=url,
            served_model=name,
            api_key_env=api_key_env,
            backend="endpoint",
        )
    path = Path(rest).expanduser()
    if not path.is_dir():
        raise UsageError(
            Problem(
                where=f"{option} {rest}",
                message="not a local model directory",
                fix="give a model directory, or an endpoint as URL#MODEL (e.g. http://127.0.0.1:8000/v1#my-model)",
            )
        )
    origin = f"{option} {text}"
    if backend not in LOCAL_BACKENDS:
        raise UsageError(Problem(where="--backend", message=f"unknown backend {backend!r}", fix="transformers or vllm"))
    return ModelSpec(
        id=label or (path.resolve().name or str(path)),
        kind="local",
        sampling=sampling,
        origin=origin,
        path=str(path),
        backend=backend,
        chat_template=chat_template,
    )


def load_models_file(path: str | Path, defaults: Sampling, *, backend: str = "transformers",
                     chat_template: str | None = None) -> list[ModelSpec]:
    """The ``models:`` of a YAML file (see the module docstring); errors name FILE models[i].key."""
    from alignkit.config.yamlio import read_yaml
    from pydantic import BaseModel, ConfigDict, Field, ValidationError

    class Entry(BaseModel):
        model_config = ConfigDict(extra="forbid")
        id: str | None = Field(None, min_length=1)
        path: str | None = None
        base_url: str | None = None
        model: str | None = None
        api_key_env: str | None = None
        backend: str | None = None
        chat_template: str | None = None
        request_params: dict[str, Any] | None = None
        temperature: float | None = Field(None, ge=0)
        top_p: float | None = Field(None, gt=0, le=1)
        max_new_tokens: int | None = Field(None, ge=1)
        n: int | None = Field(None, ge=1)

    p = Path(path)
    where = str(p)
    data = read_yaml(p)  # the one YAML loader: safe, line numbers, duplicate keys, YAML 1.2 booleans
    if isinstance(data, dict) and set(data) == {"models"}:
        data = data["models"]
    if not isinstance(data, list) or not data:
        raise ConfigError(
            Problem(where=where, message="expected 'models:' with a list of models", fix="see `alignkit aif generate --help`")
        )
    problems: list[Problem] = []
    specs: list[ModelSpec] = []
    for i, raw in enumerate(data):
        loc = f"{where} models[{i}]"
        if not isinstance(raw, dict):
            problems.append(Problem(where=loc, message="expected a mapping (path: or base_url: + model:)"))
            continue
        try:
            e = Entry(**raw)
        except ValidationError as err:
            for x in err.errors():
                key = ".".join(str(part) for part in x["loc"])
                problems.append(Problem(where=f"{loc}.{key}" if key else loc, message=x["msg"]))
            continue
        sampling = Sampling(
            temperature=e.temperature if e.temperature is not None else defaults.temperature,
            top_p=e.top_p if e.top_p is not None else defaults.top_p,
            max_new_tokens=e.max_new_tokens if e.max_new_tokens is not None else defaults.max_new_tokens,
            n=e.n if e.n is not None else defaults.n,
        )
        if (e.path is None) == (e.base_url is None):
            problems.append(Problem(where=loc, message="give exactly one of 'path' (a local model) or 'base_url' (an endpoint)"))
            continue
        if e.base_url is not None:
            bad = [k for k in ("backend", "chat_template") if getattr(e, k) is not None]
            if bad:
                problems.append(Problem(where=f"{loc}.{bad[0]}", message="only for local models", fix="a served model uses the server's settings"))
                continue
            if not e.model:
                problems.append(Problem(where=f"{loc}.model", message="an endpoint needs the served model's name"))
                continue
            reserved = [k for k in (e.request_params or {}) if k in RESERVED_PARAMS]
            if reserved:
                problems.append(
                    Problem(where=f"{loc}.request_params.{reserved[0]}", message="is set by alignkit",
                            fix="use the model's temperature/top_p/max_new_tokens/n settings instead")  # fmt: skip
                )
                continue
            if not _is_url(e.base_url):
                problems.append(Problem(where=f"{loc}.base_url", message="is not an http(s) URL"))
                continue
            specs.append(
                ModelSpec(
                    id=e.id or _served_id(e.model),
                    kind="endpoint",
                    sampling=sampling,
                    origin=loc,
                    base_url=e.base_url,
                    served_model=e.model,
                    api_key_env=e.api_key_env,
                    backend="endpoint",
                    request_params=dict(e.request_params or {}),
                )
            )
        else:
            bad = [k for k in ("model", "api_key_env", "request_params") if getattr(e, k) is not None]
            if bad:
                problems.append(Problem(where=f"{loc}.{bad[0]}", message="only for endpoints (base_url:)"))
                continue
            b = e.backend or backend
            if b not in LOCAL_BACKENDS:
                problems.append(Problem(where=f"{loc}.backend", message=f"unknown backend {b!r}", fix="transformers or vllm"))
                continue
            lp = Path(e.path).expanduser()
            if not lp.is_dir():
                problems.append(Problem(where=f"{loc}.path", message=f"{e.path}: not a local model directory"))
                continue
            specs.append(
                ModelSpec(
                    id=e.id or (lp.resolve().name or e.path),
                    kind="local",
                    sampling=sampling,
                    origin=loc,
                    path=str(lp),
                    backend=b,
                    chat_template=e.chat_template if e.chat_template is not None else chat_template,
                )
            )
    if problems:
        raise ConfigError(problems, title="invalid models file")
    return specs


def check_unique(models: list[ModelSpec]) -> None:
    if not models:
        raise UsageError(Problem(where="--model", message="no model given", fix="pass --model DIR (or URL#MODEL), or --models-file"))
    seen: dict[str, ModelSpec] = {}
    problems = []
    for m in models:
        if m.id in seen:
            problems.append(
                Problem(
                    where=m.origin,
                    message=f"model id {m.id!r} is also the id of {seen[m.id].origin}",
                    fix="name them apart: --model NAME=DIR (or id: in the models file)",
                )
            )
        seen.setdefault(m.id, m)
    if problems:
        raise UsageError(problems)
