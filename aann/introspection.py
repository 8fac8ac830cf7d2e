"""Self-introspection (Pardo et al.): a classifier read through a 2-D map of its hidden activations.

Trained in the paper's order, each stage on the previous one's frozen outputs (gradients stopped):

1. the classifier (``training.train_classifier`` with ``loss="mse_sigmoid"``);
2. an InfoVAE on its concatenated hidden activations h (``infovae``);
3. an error estimator z -> log10 e, with e = 1/2 ||y - y_hat||^2 (:class:`ErrorEstimator`).

Then the map is interrogated (section 2.8): E[z | class] from a density estimate on a grid over
[-4, 4]^2 (eqs. 7-8), decoded to E[h | class] (eq. 9), each unit assigned to its argmax class
(eq. 10), the layers reordered by that assignment, and the units coloured by the classes they serve
("brainbow", eq. 11).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from . import cache
from .activations import capture, check_layers, default_layers, record_training
from .data import Split
from .infovae import AutoencoderConfig, InfoVAE, elu_mlp, encode, fit, train_infovae
from .runtime import seed_everything
from .training import TrainConfig, classifier_error, train_classifier

__all__ = ["ErrorEstimator", "EstimatorConfig", "log10_error", "train_estimator", "Reading",
           "SelfIntrospection", "fit_self_introspection", "latent_grid", "class_densities",
           "expected_latent", "expected_activations", "assign_units", "layer_slices", "unit_order",
           "permute_h", "reorder_network", "brainbow"]

# --- 3. the error estimator -------------------------------------------------------------------


class ErrorEstimator(nn.Module):
    """z -> 3 x 200 ELU -> one linear output, read as log10 of the classifier's error (Table 2)."""

    def __init__(self, latent: int = 2, hidden: int = 200, depth: int = 3):
        super().__init__()
        self.net = elu_mlp([latent] + [hidden] * depth + [1])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(1)


@dataclass
class EstimatorConfig:
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 32  # the paper's
    floor: float = 1e-8  # e below this counts as this: sigmoid outputs saturate, log10(0) is -inf
    hidden: int = 200
    depth: int = 3


def log10_error(logits: torch.Tensor, y: torch.Tensor, floor: float) -> torch.Tensor:
    """The estimator's regression target, log10(max(e, floor))."""
    return classifier_error(logits, y).clamp_min(floor).log10()


def train_estimator(z: torch.Tensor, target: torch.Tensor, config: EstimatorConfig | None = None, seed: int = 0,
                    progress: bool = True) -> tuple[ErrorEstimator, dict]:
    """Regress ``target`` (log10 e per sample) on ``z`` with the loss 1/2 (e_hat - target)^2.
    Cached under the configuration, the seed and fingerprints of ``z`` and ``target``."""
    config = config or EstimatorConfig()
    if len(z) != len(target):
        raise ValueError(f"z has {len(z)} rows but target has {len(target)}")
    seed_everything(seed)
    model = ErrorEstimator(z.shape[1], config.hidden, config.depth).to(z.device)
    key = {"algorithm": "train_estimator", **asdict(config), "seed": seed,
           "z": cache.tensor_fingerprint(z), "target": cache.tensor_fingerprint(target)}

    def train():
        history = fit(model, lambda m, zb, tb, gen: 0.5 * (m(zb) - tb).pow(2).mean(), (z, target),
                      config.epochs, config.lr, config.batch_size, seed, "error estimator", progress)
        return model.state_dict(), {"history": history}

    state, meta = cache.memoized(key, train)
    model.load_state_dict(state)
    return model.eval(), meta


# --- the assembled system ---------------------------------------------------------------------


@dataclass
class Reading:
    """What self-introspection says about a batch of inputs."""

    z: torch.Tensor  # N x 2: where the activations lie on the map
    log10_error: torch.Tensor  # N: the estimator's log10 e_hat
    confidence: torch.Tensor  # N: c = -log10 e_hat (section 2.7)
    prediction: torch.Tensor  # N: the classifier's class (-1 where no logits were given)
    h: torch.Tensor  # N x N_h: the hidden activations read
    logits: torch.Tensor | None  # N x classes: the classifier's outputs (sigmoid gives y_hat)


@dataclass
class SelfIntrospection:
    """A trained classifier with its autoencoder and estimator; call it on inputs for a :class:`Reading`."""

    classifier: nn.Module
    layers: list[str]
    autoencoder: InfoVAE
    estimator: ErrorEstimator

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, batch_size: int = 1000) -> Reading:
        h, logits = capture(self.classifier, x, self.layers, batch_size)
        return self.read(h, logits)

    @torch.inference_mode()
    def read(self, h: torch.Tensor, logits: torch.Tensor | None = None) -> Reading:
        """The reading of activations already captured (``logits`` None: no prediction)."""
        z = encode(self.autoencoder, h)
        log_e = self.estimator.eval()(z)
        pred = logits.argmax(1) if logits is not None else torch.full((len(h),), -1, device=h.device)
        return Reading(z=z, log10_error=log_e, confidence=-log_e, prediction=pred, h=h, logits=logits)


def fit_self_introspection(data: dict[str, Split], config: TrainConfig, autoencoder: AutoencoderConfig,
                           estimator: EstimatorConfig, seed: int = 0, device=None,
                           record_samples: Split | None = None) -> tuple[SelfIntrospection, dict]:
    """The paper's sequential training on ``data["train"]``: classifier, then an InfoVAE on its hidden
    activations (``model.hidden_layers``), then the estimator on the encoder's z; each stage cached.

    Returns the system and ``{"classifier": training meta, "autoencoder": ..., "estimator": ...,
    "h": training activations, "logits": training logits, "record": h of ``record_samples`` before
    and after every epoch (None without samples)}``."""
    if record_samples is not None:
        model, meta, record = record_training(data, config, record_samples, seed=seed, device=device)
    else:
        (model, meta), record = train_classifier(data, config, seed=seed, device=device), None
    layers = default_layers(model)
    h, logits = capture(model, data["train"].x, layers)
    vae, vae_meta = train_infovae(h, autoencoder, seed=seed)
    target = log10_error(logits, data["train"].y, estimator.floor)
    est, est_meta = train_estimator(encode(vae, h), target, estimator, seed=seed)
    system = SelfIntrospection(model, layers, vae, est)
    return system, {"classifier": meta, "autoencoder": vae_meta, "estimator": est_meta, "h": h, "logits": logits,
                    "record": record}


# --- section 2.8: expected activations, unit assignment, reordering, brainbow ------------------


def latent_grid(limit: float = 4.0, points: int = 161) -> tuple[torch.Tensor, float]:
    """The grid z_ij = (i dz, j dz) over [-limit, limit]^2 (``points`` per axis) as a
    (points^2) x 2 tensor, row-major in (z1, z2), and its spacing dz."""
    axis = torch.linspace(-limit, limit, points)
    z1, z2 = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([z1.flatten(), z2.flatten()], 1), float(axis[1] - axis[0])


def class_densities(z: torch.Tensor, y: torch.Tensor, num_classes: int, limit: float = 4.0, points: int = 161,
                    bandwidth: float | None = None) -> torch.Tensor:
    """f_hat(z | H_k) on ``latent_grid(limit, points)``: a Gaussian kernel density estimate per class
    (binned on the grid, then smoothed; Scott's bandwidth n^(-1/6) sd per class unless given),
    normalised so that sum f dz^2 = 1 over the grid. Returns num_classes x points x points.
    Points outside the square fall out, as in the paper's truncation to [-4, 4]^2."""
    z, y = z.detach().cpu().double(), y.detach().cpu()
    dz = 2 * limit / (points - 1)
    out = torch.zeros(num_classes, points, points, dtype=torch.float64)
    for k in range(num_classes):
        zk = z[y == k]
        if len(zk) < 2:
            raise ValueError(f"class {k} has {len(zk)} samples; a density needs at least 2")
        idx = torch.round((zk + limit) / dz).long()
        inside = ((idx >= 0) & (idx < points)).all(1)
        hist = torch.zeros(points * points, dtype=torch.float64)
        hist.index_add_(0, idx[inside, 0] * points + idx[inside, 1], torch.ones(int(inside.sum()), dtype=torch.float64))
        bw = bandwidth if bandwidth is not None else len(zk) ** (-1 / 6) * float(zk.std(0).mean())
        out[k] = _smooth(hist.view(points, points), max(bw / dz, 0.5))
        out[k] /= out[k].sum() * dz * dz
    return out


def _smooth(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a 2-D array (sigma in grid steps, zero padding)."""
    radius = int(np.ceil(4 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1)
    x = image[None, None]
    x = torch.nn.functional.conv2d(x, kernel[..., None], padding=(radius, 0))
    x = torch.nn.functional.conv2d(x, kernel[:, :, None, :], padding=(0, radius))
    return x[0, 0]


def expected_latent(densities: torch.Tensor, limit: float = 4.0) -> torch.Tensor:
    """Eq. 8: E[z | H_k] = sum_ij z_ij f_hat(z_ij | H_k) dz^2, for each class (num_classes x 2)."""
    points = densities.shape[-1]
    grid, dz = latent_grid(limit, points)
    weights = densities.flatten(1) * dz * dz
    return (weights @ grid.double()).float()


@torch.inference_mode()
def expected_activations(autoencoder: InfoVAE, expected_z: torch.Tensor) -> torch.Tensor:
    """Eq. 9: E[h | H_k] ~ decoder(E[z | H_k]); num_classes x N_h, in the classifier's units."""
    return autoencoder.eval().decode(expected_z.to(autoencoder.mean.device))


def assign_units(expected_h: torch.Tensor) -> torch.Tensor:
    """Eq. 10: each unit's class, argmax_k E[h_i | H_k] (N_h)."""
    return expected_h.argmax(0)


def layer_slices(sizes: dict[str, int]) -> dict[str, slice]:
    """Where each layer's units sit in h, from ``activations.layer_sizes``."""
    out, start = {}, 0
    for name, size in sizes.items():
        out[name] = slice(start, start + size)
        start += size
    return out


def unit_order(expected_h: torch.Tensor, sizes: dict[str, int]) -> dict[str, torch.Tensor]:
    """Per layer, the permutation that sorts its units by assigned class and, within a class, by
    decreasing expected activation for that class (Fig. 3c)."""
    order = {}
    for name, sl in layer_slices(sizes).items():
        e = expected_h[:, sl].detach().cpu().numpy()
        order[name] = torch.from_numpy(np.lexsort((-e.max(0), e.argmax(0))))  # last key sorts first
    return order


def permute_h(h: torch.Tensor, order: dict[str, torch.Tensor], sizes: dict[str, int]) -> torch.Tensor:
    """The columns of h rearranged layer by layer as ``order`` says."""
    slices = layer_slices(sizes)
    return torch.cat([h[:, slices[name]][:, order[name].to(h.device)] for name in sizes], 1)


def reorder_network(model: nn.Module, order: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of a dense net whose hidden units are physically rearranged: for each named hidden
    layer, the rows of its Linear weight and bias and the columns of the next Linear weight are
    permuted. The function the network computes does not change (tests check the outputs)."""
    model = copy.deepcopy(model)
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    modules = dict(model.named_modules())
    check_layers(model, list(order))
    for layer, perm in order.items():
        own = [n for n in linears if n == layer or n.startswith(layer + ".")]
        if len(own) != 1:
            raise ValueError(f"layer {layer!r} must contain exactly one Linear to be reordered, has {len(own)}")
        nxt = linears.index(own[0]) + 1
        if nxt >= len(linears):
            raise ValueError(f"layer {layer!r} is followed by no Linear layer; the output units keep their order")
        this, following = modules[own[0]], modules[linears[nxt]]
        perm = perm.to(this.weight.device)
        if len(perm) != this.out_features or following.in_features != this.out_features:
            raise ValueError(f"layer {layer!r}: permutation of {len(perm)} units for {this.out_features} outputs "
                             f"feeding {following.in_features} inputs")
        with torch.no_grad():
            this.weight.copy_(this.weight[perm])
            this.bias.copy_(this.bias[perm])
            following.weight.copy_(following.weight[:, perm])
    return model


def brainbow(expected_h: torch.Tensor, sizes: dict[str, int], colors) -> torch.Tensor:
    """Eq. 11 with a normalisation: colour of unit i = sum_k c_k w_ki / sum_k w_ki, where w_ki is
    E[h_i | H_k] min-max scaled over the classes for that unit (a unit responding to all classes
    alike gets equal weights). A unit that serves one class takes that class's colour; one that
    responds to many turns towards the palette's mean, a grey. (The paper writes
    (1/K) sum_k c_k E[h_i | H_k], whose colours depend on each unit's scale; this version keeps a
    single-class unit at full colour, which is what its Fig. 3 shows.) Returns N_h x 3 RGB;
    ``sizes`` (layer -> units) only checks that h is covered."""
    colors = torch.as_tensor(np.asarray(colors, dtype=np.float64))
    if colors.ndim != 2 or colors.shape != (expected_h.shape[0], 3):
        raise ValueError(f"need one RGB colour per class ({expected_h.shape[0]} x 3), got {tuple(colors.shape)}")
    if sum(sizes.values()) != expected_h.shape[1]:
        raise ValueError(f"layers of {sum(sizes.values())} units in all, but E[h | H_k] has {expected_h.shape[1]}")
    e = expected_h.detach().cpu().double()
    spread = e.max(0).values - e.min(0).values
    w = torch.where(spread > 1e-12, (e - e.min(0).values) / spread.clamp_min(1e-12), torch.ones_like(e))
    return ((w.T @ colors) / w.sum(0)[:, None]).float()
