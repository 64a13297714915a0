"""Running the tracer of :mod:`._torch_flow` on a model: torch.fx first, forward hooks when fx
cannot trace it, registration order (with one warning) when neither runs.

:class:`FlowTracer` does it once, on an example the user gives (``example_input=``)
or on the first real forward pass (a one-shot forward pre-hook).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.overrides import TorchFunctionMode

from weightwatch.flow import Flow, fallback, warn_lost
from weightwatch.integrations._torch_dist import clean_name
from weightwatch.layers import LayerInfo

from ._torch_flow import _CONV, _NORM, Tracker


def watched_modules(model: nn.Module, names: Mapping[int, str]) -> dict[nn.Module, str]:
    """Module -> layer name for the modules the tracker handles (``names``: id(module) -> name)."""
    out = {}
    for label, m in model.named_modules():
        if id(m) in names and (isinstance(m, (nn.Linear, nn.MultiheadAttention) + _CONV + _NORM)):
            out[m] = names[id(m)]
    return out


class _Mode(TorchFunctionMode):
    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.tracker, self.depth = tracker, 0

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth == 0:
            self.tracker.op(func, args, kwargs, out)
        return out


def _first_sample(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x[:1] if x.dim() >= 1 and x.shape[0] > 1 else x
    if isinstance(x, (list, tuple)):
        return type(x)(_first_sample(item) for item in x)
    if isinstance(x, dict):
        return {k: _first_sample(v) for k, v in x.items()}
    return x


class _Leaves(fx.Tracer):
    def __init__(self, leaves: set[int]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if id(m) in self.leaves:
            return True
        if any(id(sub) in self.leaves for sub in m.modules()):
            return False  # a torch.nn container of watched layers (TransformerEncoder): traced inside
        return super().is_leaf_module(m, qualname)


def _run_fx(model: nn.Module, modules: Mapping[nn.Module, str], args: tuple, kwargs: Mapping[str, Any],
            tracker: Tracker) -> None:
    graph = _Leaves({id(m) for m in modules}).trace(model)
    gm = fx.GraphModule(model, graph)
    mode = _Mode(tracker)

    class Interpreter(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            out = super().run_node(n)
            a, k = self.fetch_args_kwargs_from_env(n)
            if n.op == "call_function":
                tracker.op(n.target, a, k, out)
            elif n.op == "call_method":
                tracker.op(getattr(torch.Tensor, n.target, n.target), a, k, out)
            elif n.op == "call_module":
                m = self.fetch_attr(n.target)
                if m in modules:
                    tracker.layer(m, a, k, out)
            return out

        def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
            m = self.fetch_attr(target)
            if m in modules:
                return super().call_module(target, args, kwargs)
            with mode:  # other leaves (nn.ReLU, nn.Flatten, pooling): their functions are seen
                return super().call_module(target, args, kwargs)

    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    positional = list(args) + [kwargs[n.target] for n in placeholders[len(args):] if n.target in kwargs]
    Interpreter(gm).run(*positional)


def _run_hooks(model: nn.Module, modules: Mapping[nn.Module, str], args: tuple, kwargs: Mapping[str, Any],
               tracker: Tracker) -> None:
    mode = _Mode(tracker)

    def pre(module: nn.Module, a: tuple, k: dict) -> None:
        mode.depth += 1

    def post(module: nn.Module, a: tuple, k: dict, out: Any) -> None:
        mode.depth -= 1
        if mode.depth == 0:
            tracker.layer(module, a, k, out)

    handles = [h for m in modules for h in (m.register_forward_pre_hook(pre, with_kwargs=True),
                                            m.register_forward_hook(post, with_kwargs=True))]
    try:
        with mode:
            model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()


def trace(model: nn.Module, modules: Mapping[nn.Module, str], args: tuple,
          kwargs: Mapping[str, Any] | None = None) -> Flow:
    """The model's :class:`Flow` on one example (``model(*args, **kwargs)``), cut to its first sample.

    torch.fx first; forward hooks when fx cannot trace the model. Runs in eval
    mode (batch-norm statistics untouched) with gradients on, so no fused fast
    path skips the watched modules; the training mode is restored. Raises
    whatever the forward pass raises when both fail.
    """
    kwargs = dict(kwargs or {})
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            errors = []
            for driver, method in ((_run_fx, "fx"), (_run_hooks, "hooks")):
                for example in ((_first_sample(args), _first_sample(kwargs)), (args, kwargs)):
                    tracker = Tracker(modules)
                    try:
                        driver(model, modules, *example, tracker)
                    except Exception as exc:  # noqa: BLE001 - try the next way, report all at the end
                        errors.append(f"{method}: {type(exc).__name__}: {exc}")
                        continue
                    tracker.flow.method = method
                    tracker.flow.lost = sorted(tracker.lost)
                    return tracker.flow
            raise RuntimeError("; ".join(errors))
    finally:
        model.train(was_training)


def module_names(found: Sequence[tuple[LayerInfo, Any]], model: nn.Module) -> dict[int, str]:
    """id(module) -> the name the flow uses: the layer name, or an MHA's prefix."""
    by_name = {info.name for info, _ in found}
    out = {}
    for label, m in model.named_modules():
        label = clean_name(label) or type(m).__name__.lower()  # the names discovery gives the layers
        if isinstance(m, nn.MultiheadAttention) and f"{label}.q_proj" in by_name:
            out[id(m)] = label
        elif label in by_name:
            out[id(m)] = label
    return out




def _as_call(example: Any) -> tuple[tuple, dict]:
    """``example_input`` as (args, kwargs): a tuple is the positional arguments, a dict the keywords."""
    if isinstance(example, dict):
        return (), dict(example)
    if isinstance(example, tuple):
        return example, {}
    return (example,), {}


class FlowTracer:
    """The data flow of ``model``, traced once, before include / exclude.

    Args:
        everything: every layer discovery found (unfiltered), with its source.
        example_input: traced at once when given (a tensor, a tuple of
            positional arguments or a dict of keywords); else at the first
            forward pass.
        on_traced: called with the :class:`Flow` when it is known.
    """

    def __init__(self, model: nn.Module, everything: Sequence[tuple[LayerInfo, Any]], example_input: Any = None,
                 on_traced: Callable[[Flow], None] | None = None) -> None:
        self.model = model
        self.layers = [info for info, _ in everything]
        self.modules = watched_modules(model, module_names(everything, model))
        self.on_traced = on_traced
        self.flow: Flow | None = None
        self._hook = None
        if example_input is not None:
            self._trace(*_as_call(example_input))
        else:
            self._hook = model.register_forward_pre_hook(self._first_forward, with_kwargs=True)

    def _first_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.detach()
        self._trace(args, kwargs)

    def detach(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _trace(self, args: tuple, kwargs: dict) -> None:
        model = type(self.model).__name__
        try:
            flow = warn_lost(model, trace(self.model, self.modules, args, kwargs))
        except Exception as exc:  # noqa: BLE001 - any failure of the user's forward: fall back, say so once
            flow = fallback(model, exc, self.layers)
        self.flow = flow
        if self.on_traced is not None:
            self.on_traced(flow)


def traced_run_options(model: nn.Module, plan: Any, get_run: Callable[[], Any],
                       example_input: Any = None) -> dict[str, Any]:
    """``WatchSession`` keywords for a callback watching ``model`` as ``plan`` (a
    :class:`~weightwatch.integrations.torch.Watched`) says: whether this rank writes, the sharded
    reduction, and the data flow. A whole model is traced on ``example_input`` or its first forward
    pass (the flow known so far, every layer as context; the run's recorder gets the flow once
    traced); a sharded one is not (its strengths have no outgoing term)."""
    ranks = {"writes": plan.writes, "reduce": plan.reduce}
    if plan.sharded:
        return {**ranks, "flow": Flow(method="untraced")}

    def use(flow: Flow) -> None:
        run = get_run()
        if run is not None and run.recorder is not None:
            run.recorder.flow = flow

    tracer = FlowTracer(model, plan.everything, example_input, on_traced=use)
    return {**ranks, "flow": tracer.flow or Flow(method="untraced"), "context": plan.everything}
