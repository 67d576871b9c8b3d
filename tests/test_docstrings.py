"""Docstrings match signatures: every parameter documented, nothing stale."""

import inspect
import re

import pytest

import anomalib_lite


def _public_classes():
    for name in anomalib_lite.__all__:
        obj = getattr(anomalib_lite, name)
        if inspect.isclass(obj):
            yield obj


def _section(doc, title):
    """Names listed in a numpydoc section ``title``."""
    doc = inspect.cleandoc(doc or "")
    match = re.search(rf"^{title}\n-+\n(.*?)(?=^\S[^\n]*\n-+\n|\Z)", doc, re.S | re.M)
    if not match:
        return []
    names = []
    for line in match.group(1).splitlines():
        m = re.match(r"^(\*{0,2}[A-Za-z_][\w, *]*?)\s*:", line)
        if m and not line.startswith(" "):
            names.extend(n.strip() for n in m.group(1).split(","))
    return names


def _signature_params(func):
    params = []
    for p in inspect.signature(func).parameters.values():
        if p.name == "self":
            continue
        if p.kind is p.VAR_KEYWORD:
            params.append("**" + p.name)
        elif p.kind is p.VAR_POSITIONAL:
            params.append("*" + p.name)
        else:
            params.append(p.name)
    return params


def _methods(cls):
    yield "__init__", cls.__doc__, cls.__init__
    for name, member in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("_") or not member.__doc__:
            continue
        if name in {"get_params", "set_params"} or member.__module__.startswith("sklearn"):
            continue
        yield name, member.__doc__, member


CASES = [
    pytest.param(cls, name, doc, func, id=f"{cls.__name__}.{name}")
    for cls in _public_classes()
    for name, doc, func in _methods(cls)
    if not (name == "__init__" and cls.__init__ is object.__init__)
]


@pytest.mark.parametrize(("cls", "name", "doc", "func"), CASES)
def test_documented_parameters_match_signature(cls, name, doc, func):
    documented = _section(doc, "Parameters")
    expected = _signature_params(func)
    if name == "__init__" and inspect.isabstract(cls):
        return
    assert documented == expected, (
        f"{cls.__name__}.{name}: documented {documented}, signature {expected}"
    )


@pytest.mark.parametrize("cls", list(_public_classes()), ids=lambda c: c.__name__)
def test_classes_have_examples_and_attributes(cls):
    if cls is anomalib_lite.BaseDetector:
        return
    doc = inspect.cleandoc(cls.__doc__)
    assert "Examples\n--------" in doc
    assert "Attributes\n----------" in doc
