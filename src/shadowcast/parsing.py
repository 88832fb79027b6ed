"""Reading files someone else wrote: JSON and YAML that fail only with our own errors.

Every loader of outside input (topologies, plans, rules, sites) parses through these, so a
damaged or hostile file gives one ``error`` (a :class:`~shadowcast.errors.ShadowcastError`
subclass chosen by the caller) on one line naming the file and what is wrong, never a library
exception, a traceback or an echo of the input:

* :func:`read_input` — a file's bytes, refused past a size cap;
* :func:`load_json` — JSON; nesting deeper than the interpreter's recursion limit (about
  1000), integers longer than :data:`MAX_INT_DIGITS` digits and text that is not UTF-8/16/32
  are refused;
* :func:`load_yaml` — safe YAML; nesting deeper than :data:`MAX_DEPTH`, aliases that expand
  past :data:`MAX_YAML_NODES` nodes ("billion laughs") are refused, and so is a recursive alias;
* :func:`clip`, :func:`one_line` — short one-line excerpts of input values and library
  messages, for error messages.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from shadowcast.errors import ShadowcastError

#: Deepest nesting of YAML sequences/mappings accepted.
MAX_DEPTH = 200
#: Longest integer literal accepted (digits); longer ones are refused, not parsed.
MAX_INT_DIGITS = 64
#: Most YAML nodes a document may expand to once aliases are followed.
MAX_YAML_NODES = 1_000_000
#: Default cap on the size of a settings-like input file (rules, sites, plans).
MAX_FILE_BYTES = 64 << 20


class _Refused(Exception):
    """Raised inside a parser hook; turned into the caller's error by the entry point."""


def clip(value: object, limit: int = 60) -> str:
    """``repr(value)`` on one line, cut to about ``limit`` characters."""
    text = " ".join(repr(value).split())
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text)} chars)"


def one_line(message: str, limit: int = 300) -> str:
    """A library's message on one line, cut to ``limit`` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_input(
    path: str | Path, error: type[ShadowcastError], what: str, max_bytes: int = MAX_FILE_BYTES
) -> bytes:
    """The bytes of ``path``; ``error`` names the file when it is unreadable or too big."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size  # 0 for a pipe: then the read is capped
            data = b"" if size > max_bytes else fh.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"{p}: cannot read {what} ({exc.strerror or exc})") from exc
    if size > max_bytes or len(data) > max_bytes:
        raise error(f"{p}: {what} is larger than {max_bytes} bytes; refused")
    return data


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"integer literal of {len(text)} digits (more than {MAX_INT_DIGITS})")
    return int(text)


def load_json(data: bytes | str, where: str | Path, error: type[ShadowcastError]) -> Any:
    """Parse JSON ``data`` read from ``where``; any fault raises ``error`` on one line."""
    try:
        return json.loads(data, parse_int=_int)
    except json.JSONDecodeError as exc:
        raise error(f"{where}:{exc.lineno}:{exc.colno}: malformed JSON ({exc.msg})") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{where}: not UTF-8 JSON text ({exc.reason} at byte {exc.start})") from exc
    except _Refused as exc:
        raise error(f"{where}: malformed JSON ({exc})") from exc
    except RecursionError as exc:
        raise error(f"{where}: JSON nested too deeply") from exc
    except ValueError as exc:  # e.g. a float literal too long to convert
        raise error(f"{where}: malformed JSON ({one_line(str(exc), 120)})") from exc


class _Loader(yaml.SafeLoader):
    """SafeLoader that counts its nesting depth while composing."""

    def __init__(self, stream: bytes | str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_bounded_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(ch.isdigit() for ch in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise _Refused(f"integer of {digits} digits (more than {MAX_INT_DIGITS})")
        return int(self.construct_yaml_int(node))


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_bounded_int)


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes in the tree ``root`` stands for once aliases are expanded (stops past ``limit``).

    The composed graph shares one node per anchor, so this walks it once with a memo.
    """
    size: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in size:
            continue
        kids: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            kids = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            kids = [n for pair in node.value for n in pair]
        if done:
            active.discard(key)
            total = 1 + sum(size[id(k)] for k in kids)
            if total > limit:
                return total
            size[key] = total
            continue
        if key in active:
            raise _Refused("recursive alias (a node that contains itself)")
        active.add(key)
        stack.append((node, True))
        for k in kids:
            if id(k) in active:
                raise _Refused("recursive alias (a node that contains itself)")
            if id(k) not in size:
                stack.append((k, False))
    return size[id(root)]


def load_yaml(
    data: bytes | str,
    where: str | Path,
    error: type[ShadowcastError],
    *,
    max_nodes: int = MAX_YAML_NODES,
) -> Any:
    """Parse one YAML document safely; any fault raises ``error`` on one line."""
    loader: _Loader | None = None
    try:
        loader = _Loader(data)
        node = loader.get_single_node()
        if node is None:
            return None
        n = _expanded_size(node, max_nodes)
        if n > max_nodes:
            raise error(
                f"{where}: YAML aliases expand to more than {max_nodes} nodes; refused "
                "(an alias bomb?)"
            )
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        what = exc.problem or exc.context or "syntax error"
        raise error(f"{where}{pos}: not valid YAML ({one_line(what, 120)})") from exc
    except yaml.YAMLError as exc:
        raise error(f"{where}: not valid YAML ({one_line(str(exc), 120)})") from exc
    except _Refused as exc:
        raise error(f"{where}: YAML {exc}; refused") from exc
    except RecursionError as exc:
        raise error(f"{where}: YAML nested too deeply") from exc
    except (ValueError, TypeError, OverflowError) as exc:  # a constructor on a bad scalar
        raise error(f"{where}: not valid YAML ({one_line(str(exc), 120)})") from exc
    finally:
        if loader is not None:
            loader.dispose()
