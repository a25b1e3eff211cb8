"""Environment files: which modules run in which AWS accounts and regions.

An environment file is validated against a schema built from the modules' own input
definitions, so a typo or a bad value is reported with the file and the key path
(``accounts[1].modules.notifications.email_addresses[0]``) before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic_core import core_schema

from bundle.inputs import parameters_model
from bundle.paths import ENVIRONMENTS, relative


class EnvironmentError(Exception):
    """A bad environment file; the message names the file and the key path."""

    def __init__(self, path: Path, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = list(problems)
        listed = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"{relative(path)}: invalid environment file\n{listed}")


@dataclass(frozen=True)
class _Pattern:
    """A string that must match ``regex`` in full: refused with ``message`` otherwise, and
    published as ``pattern`` in the JSON Schema (``python main.py schema``)."""

    regex: str
    message: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        compiled = re.compile(self.regex)

        def check(value: str) -> str:
            if not compiled.fullmatch(value):
                raise ValueError(self.message)
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        result = handler(schema)
        result["pattern"] = f"^(?:{self.regex})$"
        return result


def _pattern(regex: str, message: str) -> _Pattern:
    return _Pattern(regex, message)


Slug = Annotated[
    StrictStr,
    _pattern(r"[a-z][a-z0-9-]{0,38}[a-z0-9]", "must be 2-40 lowercase letters, digits or hyphens"),
]
AccountId = Annotated[
    StrictStr, _pattern(r"[0-9]{12}", 'must be a 12-digit AWS account id, quoted ("012345678901")')
]
Region = Annotated[
    StrictStr,
    _pattern(r"[a-z]{2}(-gov)?-[a-z]+-[0-9]", "must be an AWS region name such as us-east-1"),
]
RoleArn = Annotated[
    StrictStr,
    _pattern(
        r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}",
        "must be an IAM role ARN such as arn:aws:iam::012345678901:role/PlaybookDeployer",
    ),
]
Bucket = Annotated[
    StrictStr, _pattern(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", "must be an S3 bucket name")
]
OrganizationId = Annotated[
    StrictStr,
    _pattern(r"o-[a-z0-9]{10,32}", "must be an AWS Organizations id such as o-a1b2c3d4e5"),
]
Version = Annotated[
    StrictStr, _pattern(r"[0-9]+\.[0-9]+\.[0-9]+", "must be a release version X.Y.Z such as 1.4.0")
]
Tags = dict[StrictStr, StrictStr]
ModuleSettings = dict[StrictStr, dict[StrictStr, Any] | None]
ModuleVersions = dict[StrictStr, Version]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Backend(Strict):
    bucket: Bucket
    region: Region
    key_prefix: Annotated[
        StrictStr, _pattern(r"[A-Za-z0-9_./-]{1,200}", "must be a path of letters, digits, _./-")
    ] = "playbook-as-code"


class Organization(Strict):
    """The AWS organisation the accounts belong to, and the account that holds the hub."""

    id: OrganizationId = Field(description="AWS Organizations id; the hub bus admits only it.")
    hub_account: Slug = Field(
        description="Name of the account (in `accounts`) that holds the hub: the "
        "organisation-wide EventBridge bus, the notifier and the alert topics."
    )
    hub_region: Region | None = Field(
        default=None, description="Region of the hub; the hub account's first region if unset."
    )


class Wave(Strict):
    """How one rollout wave runs; waves run in ascending order."""

    number: Annotated[StrictInt, Field(ge=1, le=100, description="The wave accounts name.")]
    name: StrictStr = Field(default="", description="What the wave is for, e.g. canary.")
    stop_on_failure: bool = Field(
        default=True,
        description="A failure in this wave stops the rollout before the next wave.",
    )
    max_parallel: Annotated[
        StrictInt,
        Field(ge=1, le=64, description="Stacks of this wave run at most this many at once."),
    ] = 4
    module_versions: ModuleVersions = Field(
        default_factory=dict,
        description="Released module versions this wave's stacks use (module -> X.Y.Z); "
        "unpinned modules use the build in dist/.",
    )


class Releases(Strict):
    """Where pinned module versions come from."""

    source: StrictStr = Field(
        description="Terraform module source of a release, with {module} and {version} "
        "placeholders: an s3:: URL of the archive (`s3::https://s3.amazonaws.com/BUCKET/"
        "{module}-{version}.zip`) or a git:: URL with a ref "
        "(`git::https://example.com/modules.git//{module}?ref=v{version}`)."
    )

    @model_validator(mode="after")
    def _placeholders(self) -> Releases:
        if "{module}" not in self.source or "{version}" not in self.source:
            raise ValueError("source must contain both {module} and {version}")
        loopback = self.source.startswith(("http://127.0.0.1", "http://localhost"))
        if not (loopback or self.source.startswith(("s3::", "git::", "https://"))):
            raise ValueError(
                "source must be an s3:: or git:: URL, or an https:// URL of the archive "
                "(http:// only on this machine: 127.0.0.1 or localhost)"
            )
        return self


class Pipeline(Strict):
    """How CI runs this environment's rollout (`python main.py pipeline`)."""

    role_arn: RoleArn | None = Field(
        default=None,
        description="Role CI assumes through OpenID Connect; it reads and writes the state "
        "and assumes each account's role_arn. Unset: the repository variable "
        "PLAYBOOK_CI_ROLE_ARN.",
    )
    branch: StrictStr = Field(default="main", description="Branch whose pushes apply.")
    terraform_version: Annotated[
        StrictStr, _pattern(r"[0-9]+\.[0-9]+\.[0-9]+", "must be a version X.Y.Z")
    ] = "1.11.4"
    python_version: StrictStr = "3.12"


class Defaults(Strict):
    regions: list[Region] = Field(default_factory=list)
    tags: Tags = Field(default_factory=dict)
    modules: ModuleSettings = Field(default_factory=dict)
    # Settings that apply in one region only, merged over ``modules`` there; a module
    # named only here runs only in that region.
    region_modules: dict[Region, ModuleSettings] = Field(default_factory=dict)


class Account(Strict):
    name: Slug
    id: AccountId
    role_arn: RoleArn
    regions: list[Region] = Field(default_factory=list)
    wave: Annotated[StrictInt, Field(ge=1, le=100)] = 1
    tags: Tags = Field(default_factory=dict)
    modules: ModuleSettings = Field(default_factory=dict)
    region_modules: dict[Region, ModuleSettings] = Field(default_factory=dict)
    module_versions: ModuleVersions = Field(
        default_factory=dict,
        description="Released module versions this account's stacks use; over its wave's.",
    )

    @model_validator(mode="after")
    def _role_in_account(self) -> Account:
        if f"::{self.id}:" not in self.role_arn:
            raise ValueError(f"role_arn must be a role in account {self.id}")
        return self


class EnvironmentFile(Strict):
    name: Slug
    description: StrictStr = ""
    backend: Backend
    organization: Organization | None = None
    waves: list[Wave] = Field(default_factory=list)
    releases: Releases | None = None
    pipeline: Pipeline = Field(default_factory=Pipeline)
    defaults: Defaults = Field(default_factory=Defaults)
    accounts: Annotated[list[Account], Field(min_length=1)]


@dataclass(frozen=True)
class Stack:
    """One root stack: an account in a region with its module parameters."""

    environment: str
    account: Account
    region: str
    modules: Mapping[str, Mapping[str, Any]]
    tags: Mapping[str, str]
    backend: Backend
    module_versions: Mapping[str, str] = field(default_factory=dict)
    release_source: str | None = None

    @property
    def name(self) -> str:
        return f"{self.account.name}-{self.region}"

    @property
    def wave(self) -> int:
        return self.account.wave

    def module_source(self, module: str, local: str) -> str:
        """Where this stack takes ``module`` from: the released version it is pinned to
        (its account's pin, else its wave's), or ``local``, the build beside it."""
        version = self.module_versions.get(module)
        if version is None or self.release_source is None:
            return local
        return self.release_source.replace("{module}", module).replace("{version}", version)

    @property
    def state_key(self) -> str:
        return f"{self.backend.key_prefix}/{self.environment}/{self.name}/terraform.tfstate"


@dataclass(frozen=True)
class Environment:
    name: str
    path: Path
    description: str
    stacks: tuple[Stack, ...]
    organization: Organization | None = None
    wave_settings: Mapping[int, Wave] = field(default_factory=dict)
    pipeline: Pipeline = field(default_factory=Pipeline)
    backend: Backend | None = None

    def waves(self) -> dict[int, list[Stack]]:
        grouped: dict[int, list[Stack]] = {}
        for stack in self.stacks:
            grouped.setdefault(stack.account.wave, []).append(stack)
        return dict(sorted(grouped.items()))

    def wave(self, number: int) -> Wave:
        """The settings of wave ``number`` (the defaults when the file declares none)."""
        return self.wave_settings.get(number) or Wave(number=number)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of duplicate keys silently; a config file must not."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {seen[key]})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def key_path(location: Sequence[str | int]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _problem(item: Mapping[str, Any], prefix: Sequence[str | int] = ()) -> str:
    location = [*prefix, *item["loc"]]
    message = str(item["msg"]).removeprefix("Value error, ")
    if item["type"] == "extra_forbidden":
        message = "unknown key"
    elif item["type"] == "missing":
        message = "required key is missing"
    elif item["type"] in {"string_type", "int_type", "bool_type", "dict_type", "list_type"}:
        message += f" (got {type(item['input']).__name__} {item['input']!r})"
    return f"{key_path(location)}: {message}"


def _problems(error: ValidationError) -> list[str]:
    return [_problem(item) for item in error.errors()]


@cache
def _registry() -> Mapping[str, Any]:
    from modules import REGISTRY

    return REGISTRY


@cache
def _parameters_model(name: str) -> type[BaseModel]:
    module = _registry()[name]
    return parameters_model(name, module.all_inputs())


def load(path: Path) -> Environment:
    """Read and validate ``path``; raises :class:`EnvironmentError` naming every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise EnvironmentError(path, [f"cannot read the file: {error.strerror}"]) from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise EnvironmentError(
            path, [f"YAML syntax error at {where}: {error.problem or error}"]
        ) from None
    except yaml.YAMLError as error:
        raise EnvironmentError(path, [f"YAML error: {error}"]) from None
    if not isinstance(raw, dict):
        raise EnvironmentError(path, ["(top level): must be a mapping of keys to values"])
    try:
        parsed = EnvironmentFile.model_validate(raw)
    except ValidationError as error:
        raise EnvironmentError(path, _problems(error)) from None

    problems: list[str] = []
    if parsed.name != path.stem:
        problems.append(f"name: must match the file name ({path.stem!r}), got {parsed.name!r}")
    problems += _duplicates(parsed.accounts)
    problems += _rollout_problems(parsed)
    waves = {wave.number: wave for wave in parsed.waves}
    stacks: list[Stack] = []
    for index, account in enumerate(parsed.accounts):
        regions = account.regions or parsed.defaults.regions
        if not regions:
            problems.append(f"accounts[{index}].regions: no regions here or in defaults.regions")
        if len(set(regions)) != len(regions):
            problems.append(f"accounts[{index}].regions: a region is listed twice")
        for origin, settings in (
            (f"accounts[{index}]", account.region_modules),
            ("defaults", parsed.defaults.region_modules if not account.regions else {}),
        ):
            for region in settings:
                if region not in regions:
                    problems.append(
                        f"{origin}.region_modules.{region}: not a region of "
                        f"{'this account' if origin != 'defaults' else 'defaults.regions'} "
                        f"({', '.join(regions) or 'none'})"
                    )
        tags = {**parsed.defaults.tags, **account.tags}
        for region in regions:
            modules, module_problems = _stack_modules(
                parsed.defaults, account, index, region, regions
            )
            problems += module_problems
            wave = waves.get(account.wave)
            versions = {**(wave.module_versions if wave else {}), **account.module_versions}
            stacks.append(
                Stack(
                    parsed.name,
                    account,
                    region,
                    modules,
                    tags,
                    parsed.backend,
                    versions,
                    parsed.releases.source if parsed.releases else None,
                )
            )
    if problems:
        raise EnvironmentError(path, list(dict.fromkeys(problems)))
    if parsed.organization is not None:
        stacks = _wire_hub(parsed.organization, stacks)
    return Environment(
        parsed.name,
        path,
        parsed.description,
        tuple(stacks),
        parsed.organization,
        waves,
        parsed.pipeline,
        parsed.backend,
    )


HUB_MODULE = "notifications"


def _wire_hub(organization: Organization, stacks: list[Stack]) -> list[Stack]:
    """The hub account's stack in the hub region runs notifications in hub mode (the
    organisation's bus); every other stack with notifications forwards to that bus.
    Values set in the file win over these."""
    hub_stacks = [s for s in stacks if s.account.name == organization.hub_account]
    region = organization.hub_region or hub_stacks[0].region
    hub = next(s for s in hub_stacks if s.region == region)
    if HUB_MODULE not in hub.modules:
        return stacks
    prefix = hub.modules[HUB_MODULE].get("name_prefix", "playbook")
    bus = f"arn:aws:events:{region}:{hub.account.id}:event-bus/{prefix}-hub"
    wired = []
    for stack in stacks:
        if HUB_MODULE not in stack.modules:
            wired.append(stack)
            continue
        setting = (
            {"hub_organization_id": organization.id} if stack is hub else {"hub_event_bus_arn": bus}
        )
        modules = {**stack.modules, HUB_MODULE: {**setting, **stack.modules[HUB_MODULE]}}
        wired.append(dataclasses.replace(stack, modules=modules))
    return wired


def _rollout_problems(parsed: EnvironmentFile) -> list[str]:
    """Waves, the organisation's hub and module pins must agree with the accounts."""
    problems = []
    declared: dict[int, int] = {}
    for index, wave in enumerate(parsed.waves):
        if wave.number in declared:
            problems.append(
                f"waves[{index}].number: wave {wave.number} is declared twice "
                f"(also waves[{declared[wave.number]}])"
            )
        declared.setdefault(wave.number, index)
    if declared:
        for index, account in enumerate(parsed.accounts):
            if account.wave not in declared:
                problems.append(
                    f"accounts[{index}].wave: wave {account.wave} is not declared under waves "
                    f"(declared: {', '.join(str(n) for n in sorted(declared))})"
                )
    organization = parsed.organization
    if organization is not None:
        names = {account.name: account for account in parsed.accounts}
        hub = names.get(organization.hub_account)
        if hub is None:
            problems.append(
                f"organization.hub_account: no account named {organization.hub_account!r} "
                f"(accounts: {', '.join(names)})"
            )
        elif organization.hub_region is not None:
            regions = hub.regions or parsed.defaults.regions
            if organization.hub_region not in regions:
                problems.append(
                    f"organization.hub_region: {organization.hub_region} is not a region of "
                    f"the hub account {hub.name} ({', '.join(regions) or 'none'})"
                )
    pins = [(f"waves[{i}]", w.module_versions) for i, w in enumerate(parsed.waves)]
    pins += [(f"accounts[{i}]", a.module_versions) for i, a in enumerate(parsed.accounts)]
    known = _registry()
    for origin, versions in pins:
        for module in versions:
            if module not in known:
                problems.append(
                    f"{origin}.module_versions.{module}: unknown module "
                    f"(known: {', '.join(sorted(known))})"
                )
            elif parsed.releases is None:
                problems.append(
                    f"{origin}.module_versions.{module}: a pinned version needs "
                    "releases.source (where released modules are fetched from)"
                )
    return problems


def _duplicates(accounts: Sequence[Account]) -> list[str]:
    problems = []
    for attribute in ("name", "id"):
        seen: dict[str, int] = {}
        for index, account in enumerate(accounts):
            value = getattr(account, attribute)
            if value in seen:
                problems.append(
                    f"accounts[{index}].{attribute}: duplicate account {attribute} {value!r} "
                    f"(also accounts[{seen[value]}])"
                )
            seen.setdefault(value, index)
    return problems


def _stack_modules(
    defaults: Defaults, account: Account, index: int, region: str, regions: Sequence[str]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The module parameters of one (account, region) stack: defaults, then the defaults
    for the region, then the account's, then the account's for the region."""
    known = _registry()
    problems = []
    merged: dict[str, dict[str, Any]] = {}
    sources: dict[str, dict[str, str]] = {}
    layers = (
        ("defaults.modules", defaults.modules, False),
        (f"defaults.region_modules.{region}", defaults.region_modules.get(region, {}), True),
        (f"accounts[{index}].modules", account.modules, False),
        (
            f"accounts[{index}].region_modules.{region}",
            account.region_modules.get(region, {}),
            True,
        ),
    )
    regional_origins = {origin for origin, _, regional in layers if regional}
    for origin, modules, _ in layers:
        for module, parameters in modules.items():
            if module not in known:
                problems.append(
                    f"{origin}.{module}: unknown module (known: {', '.join(sorted(known))})"
                )
                continue
            merged.setdefault(module, {}).update(parameters or {})
            for key in parameters or {}:
                sources.setdefault(module, {})[key] = f"{origin}.{module}"
    validated: dict[str, dict[str, Any]] = {}
    for module, parameters in sorted(merged.items()):
        references, reference_problems = _references(module, parameters, merged, sources, index)
        problems += reference_problems
        parameters = {k: v for k, v in parameters.items() if k not in references}
        try:
            model = _parameters_model(module).model_validate(parameters)
        except ValidationError as error:
            for item in error.errors():
                key = str(item["loc"][0]) if item["loc"] else ""
                origin = sources.get(module, {}).get(key, f"accounts[{index}].modules.{module}")
                problems.append(_problem(item, _split(origin)))
            continue
        values = model.model_dump(exclude_unset=True)
        problems += _region_bound(
            module, values, sources.get(module, {}), regional_origins, region, regions, index
        )
        validated[module] = {**values, **references}
    return validated, problems


def _arn_region(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 5 else ""


def _region_bound(
    module: str,
    values: Mapping[str, Any],
    sources: Mapping[str, str],
    regional_origins: set[str],
    region: str,
    regions: Sequence[str],
    index: int,
) -> list[str]:
    """Values that exist in one region only, given where they cannot apply.

    An id (``acl-...``, ``subnet-...``) does not say its region, so one given to every
    region of an account with several is refused: it can be right in one of them at most.
    An ARN says its region (empty for global services such as CloudFront), which must be
    the stack's."""
    problems = []
    inputs = {item.name: item for item in _registry()[module].all_inputs()}
    for key, value in values.items():
        kind = inputs[key].region_bound
        if not kind or not value:
            continue
        origin = sources.get(key, f"accounts[{index}].modules.{module}")
        if kind == "ids" and len(regions) > 1 and origin.rsplit(".", 1)[0] not in regional_origins:
            account_origin = f"accounts[{index}].region_modules.<region>.{module}"
            problems.append(
                f"{origin}.{key}: these ids exist in one region only, and an id does not say "
                f"which; this value would go to every region of the account "
                f"({', '.join(regions)}): give it under {account_origin}"
            )
        if kind == "arns":
            arns = value.values() if isinstance(value, Mapping) else value
            for arn in arns:
                if _arn_region(arn) and _arn_region(arn) != region:
                    problems.append(
                        f"{origin}.{key}: {arn} is in {_arn_region(arn)}, not in {region} "
                        f"where this stack deploys {module}; give it under "
                        f"accounts[{index}].region_modules.{_arn_region(arn)}.{module}"
                    )
    return problems


REFERENCE = re.compile(r"\$\{module\.([a-z_]+)\.([a-z_]+)(\[[^\]]+\])?\}")


def _references(
    module: str,
    parameters: Mapping[str, Any],
    modules: Mapping[str, Any],
    sources: Mapping[str, Mapping[str, str]],
    index: int,
) -> tuple[dict[str, str], list[str]]:
    """Parameters that take another module's output in the same stack, such as
    ``notify_topic_arn: ${module.notifications.topic_arns["high"]}``. They are checked
    here (the module and output exist) and resolved by Terraform."""
    references: dict[str, str] = {}
    problems: list[str] = []
    for key, value in parameters.items():
        if not (isinstance(value, str) and value.startswith("${module.")):
            continue
        origin = sources.get(module, {}).get(key, f"accounts[{index}].modules.{module}")
        match = REFERENCE.fullmatch(value)
        if match is None:
            problems.append(f"{origin}.{key}: a reference must look like ${{module.NAME.OUTPUT}}")
            continue
        target, output = match.group(1), match.group(2)
        if target == module or target not in modules:
            problems.append(f"{origin}.{key}: {target!r} is not another module of this account")
            continue
        outputs = {o.name for o in _registry()[target].outputs}
        if output not in outputs:
            problems.append(
                f"{origin}.{key}: module {target} has no output {output!r} "
                f"(it has: {', '.join(sorted(outputs))})"
            )
            continue
        references[key] = value
    return references, problems


def _split(origin: str) -> list[str | int]:
    parts: list[str | int] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", origin):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    return parts


SCHEMA_PATH = ENVIRONMENTS / "environment.schema.json"
SCHEMA_ID = "https://playbook-as-code.dev/schemas/environment.json"


def json_schema() -> dict[str, Any]:
    """The environment file's JSON Schema, from the same pydantic models that validate it.

    The module settings are typed per module (each module's parameter model), so an editor
    completes ``modules.notifications.email_addresses`` and flags an unknown key. Checks that
    span several keys (a hub account that exists, a declared wave) stay with ``load``."""
    schema = EnvironmentFile.model_json_schema()
    definitions = schema.setdefault("$defs", {})
    modules: dict[str, Any] = {}
    for name in sorted(_registry()):
        parameters = _parameters_model(name).model_json_schema()
        for nested, definition in parameters.pop("$defs", {}).items():
            definitions[f"{name}_{nested}"] = definition
        text = json.dumps(parameters).replace('"#/$defs/', f'"#/$defs/{name}_')
        parameters = json.loads(text)
        parameters["title"] = f"{name} parameters"
        definitions[f"{name}_parameters"] = parameters
        modules[name] = {"anyOf": [{"$ref": f"#/$defs/{name}_parameters"}, {"type": "null"}]}
    definitions["ModuleSettings"] = {
        "type": "object",
        "description": "Module name -> its parameters (the module's Terraform variables).",
        "properties": modules,
        "additionalProperties": False,
    }
    schema = _typed_module_settings(schema)
    versions = {"type": "object", "propertyNames": {"enum": sorted(_registry())}}
    for definition in ("Wave", "Account"):
        schema["$defs"][definition]["properties"]["module_versions"].update(versions)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
    }


_UNTYPED_MODULES = {"anyOf": [{"additionalProperties": True, "type": "object"}, {"type": "null"}]}


def _typed_module_settings(node: Any) -> Any:
    """Replace each ``ModuleSettings`` (module name -> any mapping) in pydantic's schema by
    the reference to the per-module definition."""
    if isinstance(node, list):
        return [_typed_module_settings(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") == "object" and node.get("additionalProperties") == _UNTYPED_MODULES:
        kept = {k: v for k, v in node.items() if k in ("title", "description")}
        return {**kept, "$ref": "#/$defs/ModuleSettings"}
    return {key: _typed_module_settings(value) for key, value in node.items()}


def discover() -> list[Path]:
    return sorted(ENVIRONMENTS.glob("*.yaml"))


def find(name: str) -> Path:
    path = ENVIRONMENTS / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(p.stem for p in discover()) or "none"
        raise EnvironmentError(path, [f"no such environment {name!r} (known: {known})"])
    return path
