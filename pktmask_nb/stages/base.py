"""The stage interface that `Pipeline` drives.

A stage sees one packet at a time and returns its new bytes, or None to drop
it. A stage that must see the whole capture before changing anything (TLS
masking needs the record boundaries of every connection) sets
`needs_first_pass`; the pipeline then reads the file once more and calls
`scan` for every packet before the pass that calls `process`.

Stages follow scikit-learn's conventions: `__init__` only stores its
arguments, options are keyword-only, and `get_params()` and `repr` come from
the signature. Validation happens in `reset()`, when a run starts.
"""

from __future__ import annotations

import html
import inspect
from collections import Counter
from typing import Any, ClassVar

from pktmask_nb.packet import Packet


class Stage:
    """Base class of the sanitizing stages.

    Subclasses set `name` (the command-line name) and `counter_names` (the
    statistics they report, in display order), and implement `process`.
    Per-file state lives in attributes set by `reset()`, never in `__init__`,
    so one stage object can run on many files without state leaking between them.
    """

    name: ClassVar[str] = "stage"
    needs_first_pass: ClassVar[bool] = False
    counter_names: ClassVar[tuple[str, ...]] = ()
    # Parameters never shown in repr, HTML or logs (a secret key, for example).
    secret_params: ClassVar[frozenset[str]] = frozenset()

    # -- scikit-learn style parameters -------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """Return the constructor arguments as given, by name."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Stage:
        """Set constructor arguments by name and return the stage.

        Raises ValueError for a name that is not a parameter of this stage.
        """
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {key!r}; valid parameters: {', '.join(valid)}"
                )
            setattr(self, key, value)
        return self

    def _changed_params(self) -> dict[str, Any]:
        """Parameters that differ from their defaults, secrets replaced by '***'."""
        signature = inspect.signature(type(self).__init__)
        changed = {}
        for name, value in self.get_params().items():
            default = signature.parameters[name].default
            if default is not inspect.Parameter.empty and params_equal(value, default):
                continue
            changed[name] = "***" if name in self.secret_params and value is not None else value
        return changed

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_short_repr(v)}" for k, v in self._changed_params().items())
        return f"{type(self).__name__}({args})"

    def _repr_html_(self) -> str:
        from pktmask_nb.display import stage_html

        return stage_html(self)

    def replica(self) -> Stage:
        """Return a fresh stage with the same parameters and no per-file state.

        The pipeline runs replicas of the stages that come before a scanning
        stage during the first pass, so that the scanning stage sees packets
        exactly as they will reach it in the final pass.
        """
        return type(self)(**self.get_params())

    # -- per-file work ------------------------------------------------------

    def reset(self, path: str) -> None:
        """Forget all per-file state before a run on the capture at `path`.

        Subclasses that keep state extend this and call `super().reset(path)`.
        Invalid parameters raise ValueError here, when the work starts.
        """
        self.path_ = path
        self.counters_: Counter[str] = Counter({name: 0 for name in self.counter_names})

    def scan(self, packet: Packet) -> None:
        """Observe one packet in the first pass (only when `needs_first_pass` is set)."""

    def finish_scan(self) -> None:
        """Called once after the first pass, before the final pass starts."""

    def process(self, packet: Packet) -> bytes | None:
        """Return the packet's new captured bytes, or None to drop the packet.

        The returned bytes may be `packet.data` itself when nothing changed.
        """
        raise NotImplementedError

    def stats(self) -> dict[str, int]:
        """Counters of the last run, in `counter_names` order."""
        counters = getattr(self, "counters_", Counter())
        return {name: counters[name] for name in self.counter_names}

    def close(self) -> None:
        """Release resources the stage holds. Idempotent."""


def params_equal(value: Any, default: Any) -> bool:
    try:
        return bool(value == default)
    except (TypeError, ValueError):
        return value is default


def _short_repr(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return text


def escape(value: Any) -> str:
    return html.escape(str(value))
