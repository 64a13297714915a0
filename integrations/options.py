"""The watcher options every integration takes, in one validated object: :class:`WatchOptions`.

The four callbacks (``WeightWatch`` for PyTorch loops and the Keras,
Lightning and Hugging Face ``WeightWatchCallback``) accept these options as
keyword arguments, or as one ``options=WatchOptions(...)`` object shared
between them (keywords given as well override its fields):

>>> opts = WatchOptions(schedule=5, exclude=["*.norm*"], bins=32)
>>> opts.bins, [e for e in range(12) if opts.records(e)]
(32, [0, 5, 10])
>>> WatchOptions.build(opts, {"bins": 16}, owner="WeightWatch").bins
16

Imports no framework; the reference (``weightwatch.analysis``) is imported
only when one is given.
"""

from __future__ import annotations

import difflib
import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from weightwatch.layers import ROLES

from ._guard import WeightWatchWarning, strict_default

__all__ = ["Schedule", "WatchOptions", "as_schedule", "check_every"]

Schedule = Callable[[int], bool]


def as_schedule(schedule: Schedule | int | None) -> Schedule:
    """``schedule(epoch) -> bool`` from a callable, an int N (epochs 0, N, 2N, ...) or None (every epoch).

    >>> [e for e in range(7) if as_schedule(3)(e)]
    [0, 3, 6]
    """
    if schedule is None:
        return lambda epoch: True
    if isinstance(schedule, bool) or not (isinstance(schedule, int) or callable(schedule)):
        raise TypeError(f"schedule must be a callable epoch -> bool, an int or None, got {schedule!r}")
    if callable(schedule):
        return schedule
    n = check_every(schedule, "schedule")
    return lambda epoch: epoch % n == 0


def check_every(n: int | None, name: str) -> int | None:
    """``n`` itself when it is None or a positive int; otherwise a ValueError naming the option."""
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {n!r}")
    return n


def _check_patterns(name: str, patterns: Any) -> tuple[str, ...] | None:
    """``include`` / ``exclude``: None or a list of glob strings (a bare string is refused:
    iterated, it would be one pattern per character)."""
    if patterns is None:
        return None
    if isinstance(patterns, str):
        raise TypeError(f"{name} must be a list of glob patterns, got the string {patterns!r}; "
                        f"write {name}=[{patterns!r}]")
    if not isinstance(patterns, Sequence) or not all(isinstance(p, str) for p in patterns):
        raise TypeError(f"{name} must be a list of glob patterns (strings), got {patterns!r}")
    return tuple(patterns)


def _check_roles(roles: Any) -> dict[str, str] | None:
    if roles is None:
        return None
    if not isinstance(roles, Mapping) or not all(isinstance(k, str) for k in roles):
        raise TypeError(f"roles must be a mapping {{'glob': role}}, got {roles!r}")
    for pattern, role in roles.items():
        if role not in ROLES:
            raise ValueError(f"roles[{pattern!r}]: {role!r} is not one of {ROLES}")
    return dict(roles)


def _check_heads(heads: Any) -> dict[str, int] | None:
    if heads is None:
        return None
    if not isinstance(heads, Mapping) or not all(isinstance(k, str) for k in heads):
        raise TypeError(f"heads must be a mapping {{'glob': number of heads}}, got {heads!r}")
    for pattern, n in heads.items():
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"heads[{pattern!r}]: {n!r} must be a positive integer number of heads")
    return {k: int(v) for k, v in heads.items()}


@dataclass(frozen=True)
class WatchOptions:
    """What to watch and how: the options shared by every integration's callback.

    Attributes:
        hparams: the run's hyperparameters (name -> number, string or bool),
            shown in TensorBoard's HParams dashboard and stored in
            ``weightwatch.json``. None lets Lightning take the module's
            ``hparams`` and Hugging Face a few ``TrainingArguments``; the
            PyTorch loop and Keras then record none.
        schedule: when the weights are recorded: a callable ``schedule(i) -> bool``,
            an int N (i = 0, N, 2N, ...) or None (every time). ``i`` is the
            epoch (from 0) for the callbacks and the ``step`` given to
            ``WeightWatch.log`` for PyTorch loops. Metrics are written every
            time either way.
        include / exclude: glob patterns on layer names (``["encoder.*"]``):
            watch only the layers matching an ``include`` pattern (all when
            None) and none matching an ``exclude`` pattern.
        roles: ``{"glob": role}`` overrides of the automatic roles (first
            matching glob wins); roles are those of ``weightwatch.layers.ROLES``.
        bins: histogram bins per layer (an integer >= 2).
        reference: a reference fitted by ``weightwatch fit`` (its path, or the
            loaded object): each weight record then also logs
            ``weightwatch/p_optimal`` and ``weightwatch/predicted_accuracy``
            (see ``weightwatch.analysis.StopRule``). Read and checked once, here.
        stop: with a reference, when the callback's ``should_stop`` turns True
            (and the framework's stop flag is set): a ``StopRule``, a P(optimal)
            threshold, or True for the default rule.
        heads: ``{"glob": n}`` head counts of Linear layers: the q/k/v
            projections of attention modules that declare no
            ``num_attention_heads`` / ``num_heads`` (PyTorch-based callbacks).
        fold_norm_scale: multiply the outgoing weights of the complex-network
            strength by the scale (gamma) of the norm layers between a layer
            and its consumers (default False: the weights alone; see
            docs/node-strength.md).
        strict: once the callback is made, raise weightwatch's own errors
            (an unreadable layer, a log directory that failed, a metric that is
            no number, a reference that cannot score) into the training loop
            instead of warning once and going on. None takes
            ``$WEIGHTWATCH_STRICT`` (1: strict), else False.

    Raises ``TypeError`` / ``ValueError`` naming the option at construction.
    """

    hparams: Mapping[str, Any] | None = None
    schedule: Schedule | int | None = None
    include: Sequence[str] | None = None
    exclude: Sequence[str] | None = None
    roles: Mapping[str, str] | None = None
    bins: int = 64
    reference: Any = None
    stop: Any = None
    heads: Mapping[str, int] | None = None
    fold_norm_scale: bool = False
    strict: bool | None = None
    #: the reference and the stop rule, loaded and checked (None without a reference)
    loaded_reference: Any = field(default=None, init=False, repr=False, compare=False)
    stop_rule: Any = field(default=None, init=False, repr=False, compare=False)
    records: Schedule = field(default=as_schedule(None), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.hparams is not None and not isinstance(self.hparams, Mapping):
            raise TypeError(f"hparams must be a mapping of name -> value (a dict), got {type(self.hparams).__name__}")
        if isinstance(self.bins, bool) or not isinstance(self.bins, numbers.Integral) or self.bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {self.bins!r}")
        set_ = object.__setattr__  # frozen: the checked forms are set once, here
        set_(self, "hparams", dict(self.hparams) if self.hparams is not None else None)
        set_(self, "bins", int(self.bins))
        set_(self, "include", _check_patterns("include", self.include))
        set_(self, "exclude", _check_patterns("exclude", self.exclude))
        set_(self, "roles", _check_roles(self.roles))
        set_(self, "records", as_schedule(self.schedule))
        set_(self, "heads", _check_heads(self.heads))
        if not isinstance(self.fold_norm_scale, bool):
            raise TypeError(f"fold_norm_scale must be True or False, got {self.fold_norm_scale!r}")
        if self.strict is not None and not isinstance(self.strict, bool):
            raise TypeError(f"strict must be True, False or None, got {self.strict!r}")
        set_(self, "strict", strict_default() if self.strict is None else self.strict)
        if self.reference is None:
            if self.stop is not None and self.stop is not False:
                raise ValueError("stop= needs reference=: the stop rule judges the reference's P(optimal); "
                                 "pass the reference fitted by `weightwatch fit`, or drop stop=")
            return
        from weightwatch.analysis import load_reference, stop_rule

        set_(self, "stop_rule", stop_rule(self.stop))
        try:
            set_(self, "loaded_reference", load_reference(self.reference))
        except Exception as exc:  # a missing or damaged file must not keep training from starting
            if self.strict:
                raise
            warnings.warn(f"weightwatch: the reference {self.reference!r} cannot be read ({type(exc).__name__}: "
                          f"{exc}); training goes on without live scores. Pass a reference written by "
                          "`weightwatch fit`.", WeightWatchWarning, stacklevel=3)

    @classmethod
    def names(cls) -> list[str]:
        """The option names, in order."""
        return [f.name for f in fields(cls) if f.init]

    @classmethod
    def build(cls, options: WatchOptions | None, overrides: Mapping[str, Any], *, owner: str) -> WatchOptions:
        """``options`` (or the defaults) with the keyword arguments ``overrides`` set.

        ``owner`` names the callback in the error raised for an unknown keyword.
        """
        if options is not None and not isinstance(options, WatchOptions):
            raise TypeError(f"{owner}: options must be a WatchOptions, got {type(options).__name__}")
        known = cls.names()
        for name in overrides:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise TypeError(f"{owner} got an unknown option {name!r}{hint}; the options are {known}")
        if options is None:
            return cls(**overrides)
        return replace(options, **overrides) if overrides else options
