"""Hidden activations of named layers, captured with forward hooks and concatenated per sample.

Self-introspection (Pardo et al.) reads a classifier through the vector h of all its hidden
activations: the outputs of the chosen layers, each flattened, side by side. ``capture`` returns h
for any ``nn.Module`` and any of its named submodules; ``record_training`` keeps h of a fixed set
of samples after every epoch of training, for the trajectories of the paper's Fig. 2a/e.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from . import cache
from .data import Split
from .ternary import UnknownLayerError
from .training import TrainConfig, train_classifier, training_key

__all__ = ["check_layers", "default_layers", "hooked", "forward_with_activations", "capture", "layer_sizes",
           "record_training"]


def check_layers(model: nn.Module, layers) -> list[str]:
    """``layers`` as a list of submodule names of ``model``; an unknown name is an error listing the known ones."""
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise ValueError("give at least one layer name")
    names = dict(model.named_modules())
    unknown = [name for name in layers if name not in names or name == ""]
    if unknown:
        known = ", ".join(n for n in names if n)
        raise UnknownLayerError(f"unknown layer(s) {unknown} in {type(model).__name__}; its submodules are: {known}")
    return layers


def default_layers(model: nn.Module) -> list[str]:
    """The layers a model declares for introspection (``model.hidden_layers``, as the book's
    ``elu_mlp`` and ``allconv_elu`` do)."""
    if not hasattr(model, "hidden_layers"):
        raise AttributeError(f"{type(model).__name__} declares no hidden_layers: name the layers to capture")
    return list(model.hidden_layers)


@contextmanager
def hooked(model: nn.Module, layers: list[str]):
    """Within the block, ``outputs[name]`` holds the latest output of each named layer (flattened per sample)."""
    modules = dict(model.named_modules())
    outputs: dict[str, torch.Tensor] = {}
    handles = [modules[name].register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o.flatten(1)))
               for name in layers]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def forward_with_activations(model: nn.Module, x: torch.Tensor, layers: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(h, logits)`` for one batch (no mode or gradient setting of its own: ``capture`` runs it
    without gradients)."""
    with hooked(model, layers) as outputs:
        logits = model(x)
    return torch.cat([outputs[name] for name in layers], 1), logits


@torch.inference_mode()
def capture(model: nn.Module, x: torch.Tensor, layers=None, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden activations ``h`` (N x N_h, layers in the order given) and logits (N x classes) of
    ``model`` in eval mode on inputs ``x``, in batches."""
    layers = check_layers(model, layers if layers is not None else default_layers(model))
    model.eval()
    hs, logits = [], []
    for start in range(0, len(x), batch_size):
        h, out = forward_with_activations(model, x[start:start + batch_size], layers)
        hs.append(h)
        logits.append(out)
    return torch.cat(hs), torch.cat(logits)


def layer_sizes(model: nn.Module, x: torch.Tensor, layers=None) -> dict[str, int]:
    """How many entries each layer contributes to h (from one forward pass on ``x[:1]``)."""
    layers = check_layers(model, layers if layers is not None else default_layers(model))
    with torch.inference_mode(), hooked(model.eval(), layers) as outputs:
        model(x[:1])
    return {name: outputs[name].shape[1] for name in layers}


def record_training(data: dict[str, Split], config: TrainConfig, samples: Split, layers=None, seed: int = 0,
                    device=None) -> tuple[nn.Module, dict, torch.Tensor]:
    """Train as ``train_classifier`` does and capture h of ``samples`` before training and after
    every epoch: returns ``(model, meta, record)`` with ``record`` of shape
    (epochs + 1) x len(samples) x N_h. Record and model are cached together, and a stopped
    training resumes with the epochs it recorded."""
    from .models import get_model

    untrained = get_model(config.model, **config.model_kwargs)
    layers = check_layers(untrained, layers if layers is not None else default_layers(untrained))
    what = {"record": "hidden activations", "samples": samples.fingerprint(), "layers": layers}
    model, meta = train_classifier(data, config, seed=seed, device=device,
                                   probe=(what, lambda net: capture(net, samples.x, layers)[0]))
    meta = dict(meta)
    record = meta.pop("probe").to(samples.x.device)
    return model, meta, record
