"""Import asn1tools' codecs without its grammar parser, for a quick start.

``import asn1tools`` runs the package ``__init__``, which loads everything: the ASN.1 grammar
parser (pyparsing), the C and Rust source generators, and every codec. A process that finds
the compiled schema in its cache (:mod:`euicc_protocol.schema`) needs none of the parser: the
pickled specification refers to the compiler and the DER/BER codecs only. Skipping the parser
and the package ``__init__`` saves about a third of asn1tools' import time, which is most of
what a short command like ``ipa eid`` spends.

How: the package is registered in ``sys.modules`` without running its ``__init__``;
``asn1tools.parser`` is replaced by a small module offering the three names the codecs and the
compiler import from it (``EXTENSION_MARKER``, ``parse_files``, ``parse_string``), the last two
loading the real parser on first call; the codecs a DER specification never uses (PER, UPER,
XER, JER, OER, GSER) are stand-ins that load the real module on first use. The first access
to any other attribute of the package (``asn1tools.compile_dict``, ``asn1tools.ParseError``,
...) runs the real ``__init__`` and loads the real modules, so code that imports asn1tools
itself sees the whole package.

This relies on asn1tools' module layout; the dependency is pinned to one version
(``pyproject.toml``), and a layout that does not fit is detected and imported normally.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

__all__ = ["codecs", "full", "version"]

_PACKAGE = "asn1tools"
_PARSER = "asn1tools.parser"


#: Codecs the cached (DER) specification never uses, loaded on first use only.
_UNUSED_CODECS = ("gser", "jer", "oer", "per", "uper", "xer")


class _StandIn(types.ModuleType):
    """A module not loaded yet: the first use of one of its names loads the real one."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system asks for __path__, __spec__...
            raise AttributeError(name)
        return getattr(_load_real(self.__name__), name)


class _ParserStandIn(_StandIn):
    """``asn1tools.parser`` until someone needs the grammar: the names the codecs import."""

    EXTENSION_MARKER = None  # asn1tools.parser.EXTENSION_MARKER

    @staticmethod
    def parse_files(*args: Any, **kwargs: Any) -> Any:
        return _load_real(_PARSER).parse_files(*args, **kwargs)

    @staticmethod
    def parse_string(*args: Any, **kwargs: Any) -> Any:
        return _load_real(_PARSER).parse_string(*args, **kwargs)


def _load_real(name: str) -> types.ModuleType:
    """The real module ``name``, replacing its stand-in (modules that hold the stand-in keep
    working: it forwards every name)."""
    current = sys.modules.get(name)
    if not isinstance(current, _StandIn):
        return importlib.import_module(name)
    del sys.modules[name]
    real = importlib.import_module(name)
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, real)
    return real


def _is_submodule(name: str) -> bool:
    try:
        return importlib.util.find_spec(f"{_PACKAGE}.{name}") is not None
    except (ImportError, ValueError):
        return False


def _install_light_package() -> None:
    """Register asn1tools without running its ``__init__`` (no-op once it is imported)."""
    if _PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return  # not a regular package: let the normal import say what is wrong
    package = importlib.util.module_from_spec(spec)
    state = {"initialised": False}

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module-level hook of PEP 562
        # A submodule not imported yet (``from .. import compat``): the import system loads it.
        submodule = not name.startswith("_") and _is_submodule(name)
        if state["initialised"] or name.startswith("__") or submodule:
            raise AttributeError(f"module {_PACKAGE!r} has no attribute {name!r}")
        state["initialised"] = True
        for name_ in [m for m, mod in sys.modules.items() if isinstance(mod, _StandIn)]:
            _load_real(name_)
        spec.loader.exec_module(package)  # type: ignore[union-attr]
        return getattr(package, name)

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[_PACKAGE] = package
    sys.modules[_PARSER] = _ParserStandIn(_PARSER)
    for codec in _UNUSED_CODECS:
        name = f"{_PACKAGE}.codecs.{codec}"
        sys.modules[name] = _StandIn(name)


def codecs() -> tuple[Any, Any]:
    """The ``asn1tools.codecs.ber`` and ``asn1tools.codecs.der`` modules (and the compiler,
    so that a pickled specification loads), without the grammar parser."""
    _install_light_package()
    try:
        ber = importlib.import_module("asn1tools.codecs.ber")
        der = importlib.import_module("asn1tools.codecs.der")
        importlib.import_module("asn1tools.compiler")
    except ImportError:  # a layout this module does not know: import the package normally
        for name in [m for m in sys.modules if m == _PACKAGE or m.startswith(_PACKAGE + ".")]:
            del sys.modules[name]
        full()
        ber = importlib.import_module("asn1tools.codecs.ber")
        der = importlib.import_module("asn1tools.codecs.der")
    return ber, der


def full() -> Any:
    """The whole asn1tools package (``parse_files``, ``compile_dict``, ...)."""
    package = importlib.import_module(_PACKAGE)
    package.compile_dict  # noqa: B018 - runs the real __init__ if only the codecs were loaded
    return package


def version() -> str:
    """asn1tools' version, without loading the package."""
    _install_light_package()
    return str(importlib.import_module("asn1tools.version").__version__)
