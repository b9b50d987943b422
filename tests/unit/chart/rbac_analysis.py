"""The Kubernetes API permissions a KubeTEE component needs, read from its source code.

A component is a ``kubetee`` subcommand; its code is the module that registers it and
every ``kubetee``/``enclave_runtime`` module reachable from there by imports (including
``importlib.import_module("...")`` with a literal name and imports inside functions).
In that code:

* every call of a Kubernetes client API method (``self._core.patch_namespaced_pod(...)``)
  is one request: its HTTP method and path come from the client's own generated
  ``_<method>_serialize`` code, and become an RBAC (group, resource, verb). The group and
  plural of ``CustomObjectsApi`` calls are resolved from literals, module constants, or,
  when they are parameters of the enclosing function, from the callers of that function.
  A server-side apply (``_content_type`` = apply-patch) is a ``patch`` that creates
  missing objects, which the apiserver authorizes as ``create`` too; a list with
  ``watch=True`` or passed to ``Watch().stream`` is also a ``watch``;
* every kopf resource handler or index (``@kopf.on.event(group, version, plural)``,
  ``@kopf.index(...)``) lists and watches its resource; change-detecting handlers
  (create, update, delete, resume, field, timers, daemons) also patch it (finalizers,
  progress annotations);
* kopf itself posts Events (unless ``settings.posting.enabled = False``), watches
  CustomResourceDefinitions (unless ``settings.scanning.disabled = True``) and, unless
  run with ``standalone=True``, its peering objects.

Whatever the analysis cannot resolve fails loudly (:class:`UnresolvedCallError`), so a new
kind of API access is noticed rather than passed over.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes.client

OUR_PACKAGES = ("kubetee", "enclave_runtime")
APPLY_PATCH = "application/apply-patch+yaml"
ANY_RESOURCE = "*"

_KOPF_WATCHING = {"event", "index"}
_KOPF_CHANGING = {"create", "update", "delete", "resume", "field", "timer", "daemon"}
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


class UnresolvedCallError(Exception):
    """An API access whose resource the analysis cannot determine."""


@dataclass(frozen=True, order=True)
class Permission:
    group: str
    resource: str  # "pods", "pods/status", or ANY_RESOURCE when the plural is dynamic
    verb: str

    def covers(self, other: Permission) -> bool:
        return (
            self.group == other.group
            and self.verb == other.verb
            and ANY_RESOURCE in (self.resource, other.resource)
        ) or self == other

    def __str__(self) -> str:
        return f"{self.verb} {self.resource}.{self.group or 'core'}"


@dataclass(frozen=True)
class Endpoint:
    """What one Kubernetes client method requests."""

    http_method: str
    path: str

    def permission(self, group: str | None = None, plural: str | None = None) -> Permission:
        parts = self.path.strip("/").split("/")
        if parts[0] == "api":
            api_group, rest = "", parts[2:]
        else:
            api_group, rest = parts[1], parts[3:]
        if api_group == "{group}":
            if group is None:
                raise UnresolvedCallError(f"{self.path}: no group")
            api_group = group
        watch = bool(rest) and rest[0] == "watch"
        if watch:
            rest = rest[1:]
        if len(rest) > 2 and rest[0] == "namespaces" and rest[1] == "{namespace}":
            rest = rest[2:]
        resource = rest[0]
        if resource == "{plural}":
            resource = plural or ANY_RESOURCE
        named = len(rest) >= 2
        if len(rest) >= 3:
            resource = f"{resource}/{rest[2]}"
        return Permission(api_group, resource, self._verb(named, watch))

    def _verb(self, named: bool, watch: bool) -> str:
        if watch:
            return "watch"
        if self.http_method == "GET":
            return "get" if named else "list"
        if self.http_method == "DELETE":
            return "delete" if named else "deletecollection"
        return _VERBS[self.http_method]


@cache
def client_endpoints() -> dict[str, dict[str, Endpoint]]:
    """Method name -> {API class name -> endpoint}, from the client's generated code."""
    index: dict[str, dict[str, Endpoint]] = {}
    # kubernetes.client loads its classes lazily: ask for each by name.
    for class_name in dir(kubernetes.client):
        api_class = getattr(kubernetes.client, class_name)
        if not (class_name.endswith("Api") and inspect.isclass(api_class)):
            continue
        for attribute in vars(api_class):
            match = re.fullmatch(r"_(\w+)_serialize", attribute)
            if not match:
                continue
            source = inspect.getsource(getattr(api_class, attribute))
            method = re.search(r"method='(\w+)'", source)
            path = re.search(r"resource_path='([^']+)'", source)
            if method and path:
                endpoint = Endpoint(method.group(1), path.group(1))
                index.setdefault(match.group(1), {})[class_name] = endpoint
    return index


def _base_method(name: str) -> str:
    """The method a generated variant returning the raw answer (``..._with_http_info``,
    the asyncio client's ``..._without_preload_content``) is of: the same request."""
    for suffix in ("_with_http_info", "_without_preload_content"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def _stable(class_name: str) -> bool:
    return not re.search(r"V\d+(alpha|beta)\d*Api$", class_name)


# -- the code of a component -------------------------------------------------------------


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    parents: dict[ast.AST, ast.AST] = field(default_factory=dict)

    @classmethod
    def load(cls, name: str) -> Module | None:
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:  # `from module import name`: name is no submodule
            return None
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            return None
        path = Path(spec.origin)
        tree = ast.parse(path.read_text(), filename=str(path))
        module = cls(name, path, tree)
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                module.parents[child] = parent
        return module

    @property
    def package(self) -> str:
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]

    def imported_modules(self) -> Iterator[str]:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = self.package.rsplit(".", node.level - 1)[0]
                    base = f"{parent}.{base}" if base else parent
                yield base
                # `from package import module` imports a submodule.
                yield from (f"{base}.{alias.name}" for alias in node.names)
            elif (
                isinstance(node, ast.Call)
                and _dotted(node.func) in {"importlib.import_module", "import_module"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                yield node.args[0].value

    def namespace(self) -> dict[str, Any]:
        return vars(importlib.import_module(self.name))

    def enclosing_function(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return node
        return None


def component_modules(entry: str, exclude: tuple[str, ...] = ()) -> list[Module]:
    """The entry module and every module of ours it reaches by imports, but ``exclude``
    (packages or modules, with what is below them)."""
    seen: dict[str, Module] = {}
    pending = [entry]
    while pending:
        name = pending.pop()
        if name in seen or not name.startswith(OUR_PACKAGES):
            continue
        if any(name == e or name.startswith(f"{e}.") for e in exclude):
            continue
        module = Module.load(name)
        if module is None:
            continue
        seen[name] = module
        pending.extend(module.imported_modules())
        # Importing a.b.c runs a/__init__ and a/b/__init__ too.
        parts = name.split(".")
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))
    return sorted(seen.values(), key=lambda m: m.name)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


# -- resolving values --------------------------------------------------------------------


def _constant(module: Module, node: ast.AST) -> Any:
    """The value of a literal or a module-level name (``GROUP``, ``names.EC_PLURAL``)."""
    if isinstance(node, ast.Constant):
        return node.value
    dotted = _dotted(node)
    if not dotted:
        raise LookupError
    value: Any = module.namespace()
    for part in dotted.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


def _argument(call: ast.Call, signature: inspect.Signature, name: str, skip: int) -> ast.AST | None:
    parameters = [p for p in signature.parameters if p != "self"][skip:]
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    if name in parameters and parameters.index(name) < len(call.args):
        return call.args[parameters.index(name)]
    return None


def _resolve(modules: list[Module], module: Module, call: ast.Call, node: ast.AST) -> set[str]:
    """Values an argument takes: a constant, or what callers pass for that parameter."""
    try:
        return {str(_constant(module, node))}
    except (LookupError, AttributeError, KeyError):
        pass
    function = module.enclosing_function(call)
    if not isinstance(node, ast.Name) or function is None:
        raise UnresolvedCallError(
            f"{module.name}:{call.lineno}: cannot resolve {ast.unparse(node)}"
        )
    parameters = [a.arg for a in function.args.args if a.arg != "self"]
    if node.id not in parameters:
        raise UnresolvedCallError(f"{module.name}:{call.lineno}: cannot resolve {node.id}")
    position = parameters.index(node.id)
    values: set[str] = set()
    for other in modules:
        for caller in ast.walk(other.tree):
            if not (isinstance(caller, ast.Call) and _called_name(caller) == function.name):
                continue
            passed = next((k.value for k in caller.keywords if k.arg == node.id), None)
            if passed is None and position < len(caller.args):
                passed = caller.args[position]
            if passed is not None:
                values |= _resolve(modules, other, caller, passed)
    if not values:
        raise UnresolvedCallError(f"{module.name}:{call.lineno}: nobody passes {node.id}")
    return values


def _called_name(call: ast.Call) -> str:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return ""


# -- what the code asks for ----------------------------------------------------------------


def _api_attributes(module: Module) -> dict[str, str]:
    """``self._core = client.CoreV1Api(...)`` and the like: attribute -> API class."""
    found = {}
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            class_name = _dotted(node.value.func).rpartition(".")[2]
            if class_name.endswith("Api") and hasattr(kubernetes.client, class_name):
                for target in node.targets:
                    found[_dotted(target).rpartition(".")[2]] = class_name
    return found


def _endpoint_of(module: Module, call: ast.Call, candidates: dict[str, Endpoint]) -> Endpoint:
    receiver = _dotted(call.func.value) if isinstance(call.func, ast.Attribute) else ""
    declared = _api_attributes(module).get(receiver.rpartition(".")[2])
    if declared in candidates:
        return candidates[declared]
    stable = {name: e for name, e in candidates.items() if _stable(name)} or candidates
    if (
        len(set(stable.values())) == 1
        or len({e.permission("g", "p") for e in stable.values()}) == 1
    ):
        return next(iter(stable.values()))
    raise UnresolvedCallError(
        f"{module.name}:{call.lineno}: {ast.unparse(call.func)} could be any of "
        f"{sorted(stable)}; assign the client as `x = client.<Api>(...)` in the module"
    )


def _watched(module: Module) -> set[Permission]:
    """``watch.Watch().stream(api.list_x, ...)``: the list method is passed, not called."""
    endpoints = client_endpoints()
    found: set[Permission] = set()
    for call in ast.walk(module.tree):
        if not (isinstance(call, ast.Call) and _called_name(call) == "stream" and call.args):
            continue
        listed = call.args[0]
        if isinstance(listed, ast.Attribute) and listed.attr in endpoints:
            fake = ast.Call(func=listed, args=call.args[1:], keywords=call.keywords)
            fake.lineno = call.lineno
            endpoint = _endpoint_of(module, fake, endpoints[listed.attr])
            if "{" in endpoint.path.replace("{namespace}", "").replace("{name}", ""):
                raise UnresolvedCallError(
                    f"{module.name}:{call.lineno}: watch of a custom resource"
                )
            permission = endpoint.permission()
            found |= {permission, Permission(permission.group, permission.resource, "watch")}
    return found


def client_calls(modules: list[Module]) -> set[Permission]:
    endpoints = client_endpoints()
    needed: set[Permission] = set()
    for module in modules:
        needed |= _watched(module)
        for call in ast.walk(module.tree):
            if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
                continue
            method = _base_method(call.func.attr)
            candidates = endpoints.get(method)
            if not candidates:
                continue
            endpoint = _endpoint_of(module, call, candidates)
            api_class = next(c for c, e in candidates.items() if e == endpoint)
            signature = inspect.signature(getattr(getattr(kubernetes.client, api_class), method))
            groups: set[str | None] = {None}
            plurals: set[str | None] = {None}
            if "{group}" in endpoint.path:
                argument = _argument(call, signature, "group", 0)
                groups = set(_resolve(modules, module, call, argument)) if argument else {None}
            if "{plural}" in endpoint.path:
                argument = _argument(call, signature, "plural", 0)
                plurals = set(_resolve(modules, module, call, argument)) if argument else {None}
            for group in groups:
                for plural in plurals:
                    permission = endpoint.permission(group, plural)
                    needed.add(permission)
                    if permission.verb == "list" and _keyword_true(call, "watch"):
                        needed.add(Permission(permission.group, permission.resource, "watch"))
                    if permission.verb == "patch" and _applies(module, call):
                        needed.add(Permission(permission.group, permission.resource, "create"))
    return needed


def _keyword_true(call: ast.Call, name: str) -> bool:
    return any(
        k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is True
        for k in call.keywords
    )


def _applies(module: Module, call: ast.Call) -> bool:
    for keyword in call.keywords:
        if keyword.arg == "_content_type":
            try:
                return _constant(module, keyword.value) == APPLY_PATCH
            except (LookupError, AttributeError, KeyError):
                raise UnresolvedCallError(
                    f"{module.name}:{call.lineno}: cannot resolve the content type"
                ) from None
    return False


def kopf_handlers(modules: list[Module]) -> set[Permission]:
    needed: set[Permission] = set()
    for module in modules:
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for decorator in node.decorator_list:
                if not isinstance(decorator, ast.Call):
                    continue
                name = _dotted(decorator.func)
                kind = name.rpartition(".")[2]
                if not name.startswith("kopf.") or kind not in _KOPF_WATCHING | _KOPF_CHANGING:
                    continue
                args = [_constant(module, a) for a in decorator.args]
                if len(args) != 3:
                    raise UnresolvedCallError(
                        f"{module.name}:{decorator.lineno}: write @{name}(group, version, plural)"
                    )
                group, _version, plural = (str(a) for a in args)
                verbs = {"list", "watch"} | ({"patch"} if kind in _KOPF_CHANGING else set())
                needed |= {Permission(group, plural, verb) for verb in verbs}
    return needed


def _assigned(modules: list[Module], target: str) -> Any:
    """The constant assigned to e.g. ``settings.posting.enabled`` anywhere, else None."""
    for module in modules:
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Assign) and any(_dotted(t) == target for t in node.targets):
                return _constant(module, node.value)
    return None


def kopf_framework(modules: list[Module]) -> set[Permission]:
    """What kopf does on its own once it runs (kopf.run found in the code)."""
    runs = [
        call
        for module in modules
        for call in ast.walk(module.tree)
        if isinstance(call, ast.Call) and _dotted(call.func) in {"kopf.run", "kopf.operator"}
    ]
    if not runs:
        return set()
    needed: set[Permission] = set()
    if _assigned(modules, "settings.posting.enabled") is not False:
        needed.add(Permission("", "events", "create"))
    if _assigned(modules, "settings.scanning.disabled") is not True:
        crds = "customresourcedefinitions"
        needed |= {Permission("apiextensions.k8s.io", crds, v) for v in ("list", "watch")}
    for call in runs:
        standalone = next((k.value for k in call.keywords if k.arg == "standalone"), None)
        if not (isinstance(standalone, ast.Constant) and standalone.value is True):
            needed |= {
                Permission("kopf.dev", "kopfpeerings", v) for v in ("list", "watch", "patch")
            }
    return needed


def needed_permissions(entry_module: str, exclude: tuple[str, ...] = ()) -> set[Permission]:
    modules = component_modules(entry_module, exclude)
    return client_calls(modules) | kopf_handlers(modules) | kopf_framework(modules)
