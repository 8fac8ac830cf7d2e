"""Every chapter's budgets, for both profiles, in one place.

A chapter, an experiment program and a test that need a budget read it here, with
``budgets(chapter, profile)``; nothing else writes a budget down. The trained networks and search
checkpoints are cached by their configurations, so two programs that read the same budget find
the same cache entries.

* ``quick``: the same code on small budgets, minutes on a 2-core CPU (CI runs every chapter so);
* ``full``: the papers' scale, meant for a GPU (each chapter's budget: 25 minutes on one H100-class
  GPU; the car chapter's p-SIREN sweeps and searches take hours on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

from .dagger import DaggerConfig
from .demonstrations import DemoConfig
from .infovae import AutoencoderConfig
from .introspection import EstimatorConfig
from .psiren import LEVELS_FIG2, LEVELS_FIG2B, PSirenConfig
from .runtime import check_profile
from .sense import SenseConfig
from .training import TrainConfig

__all__ = ["SCALE_NOTES", "SparseTernaryBudget", "ManifoldBudget", "SenseBudget", "RobustnessBudget", "IntrospectionBudget",
           "CarBudget", "BUDGETS", "budgets"]


@dataclass(frozen=True)
class SparseTernaryBudget:
    """p-SIREN's reference networks (every chapter that starts from one reads this budget)."""

    levels: tuple[float, ...]  # sparsity levels, percent
    n_seeds: int  # networks per level: seeds seed, seed + 1, ...
    train_size: int | None  # training images (None: all)
    config: PSirenConfig

    def seeds(self, seed: int = 0) -> list[int]:
        return [seed + i for i in range(self.n_seeds)]


@dataclass(frozen=True)
class ManifoldBudget:
    n_neighbours: int  # sampled first neighbours per layer
    fc_neighbours: int | str  # fc neighbours beyond the paper ("all": the whole neighbourhood)
    n_eval_images: int  # test images each neighbour is evaluated on


@dataclass(frozen=True)
class SenseBudget:
    n_select: int  # validation images that choose (the climb from p-SIREN)
    n_report: int  # test images that report
    climb: SenseConfig
    climb_seeds: int
    random90: dict  # steps, block, neighbours of the searches from a random 90 % network
    backprop_epochs: int
    random_select: int  # validation images that choose (random starts)
    random80: SenseConfig
    steepest: dict  # steps, n_select
    anneal: dict  # steps, neighbours
    long_fc: SenseConfig
    ensemble_k: int = 5


@dataclass(frozen=True)
class RobustnessBudget:
    train_size: int | None  # CIFAR-10 training images
    epochs: int
    augment: bool
    mnist_train: int | None
    mnist_epochs: int
    n_eval: int  # test images each fault is evaluated on
    repeats: int  # perturbations per point
    grids: dict  # treatment -> amounts


@dataclass(frozen=True)
class IntrospectionBudget:
    mnist_train: int | None
    cifar_train: int | None
    net1: TrainConfig
    net2: TrainConfig
    autoencoder: AutoencoderConfig
    estimator: EstimatorConfig
    record_samples: int


@dataclass(frozen=True)
class CarBudget:
    tracks: dict  # split -> number of tracks of demonstrations
    demo: DemoConfig
    drive_tracks: int  # evaluation tracks driven
    levels: tuple[float, ...]
    n_seeds: int
    psiren: PSirenConfig
    neighbours: int
    sense80: SenseConfig
    sense80_all: SenseConfig
    sense80_ce: SenseConfig
    select: int  # validation frames that choose in SENSE
    dagger: DaggerConfig
    dagger_val_steps: int  # frames of each validation drive that chooses the round
    lap_frames: int | None  # frames of the lap animation (None: the whole episode)
    lap_scale: int  # its pixels per frame pixel

    def seeds(self, seed: int = 0) -> list[int]:
        return [seed + i for i in range(self.n_seeds)]


def _grid(step: float, stop: float) -> tuple[float, ...]:
    return tuple(round(step * i, 2) for i in range(round(stop / step) + 1))


BUDGETS = {
    "sparse_ternary": {
        "quick": SparseTernaryBudget(levels=(0, 50, 90, 95), n_seeds=1, train_size=25_000,
                                     config=PSirenConfig(n1=2, n2=5, n3=1, n4=4)),
        "full": SparseTernaryBudget(levels=tuple(LEVELS_FIG2), n_seeds=3, train_size=None,
                                    config=PSirenConfig(n1=8, n2=38, n3=3, n4=5)),
    },
    "architecture_manifold": {
        "quick": ManifoldBudget(n_neighbours=200, fc_neighbours=20_000, n_eval_images=2_000),
        "full": ManifoldBudget(n_neighbours=1000, fc_neighbours="all", n_eval_images=10_000),
    },
    "sense": {
        "quick": SenseBudget(
            n_select=2_000, n_report=2_000,
            climb=SenseConfig(schedule="fc", steps=6, block=10**6, neighbours=200), climb_seeds=1,
            random90=dict(steps=30, block=10, neighbours=30), backprop_epochs=2, random_select=1_000,
            random80=SenseConfig(schedule="random", steps=60, block=3, neighbours=30),
            steepest=dict(steps=1, n_select=50), anneal=dict(steps=300, neighbours=100),
            long_fc=SenseConfig(schedule="fc", steps=1_500, block=10**6, neighbours=100)),
        # random80: as many steps as the CPU run that first reached 90 % (2,000 of 30); on an H100 a
        # 30-neighbour step costs about 0.12 s in layer 1.0 with 5,000 images, 0.01 s in 2.0, 1 ms in
        # fc. steepest: layer 1.0's whole neighbourhood is about 38,000 neighbours, so 3 steps on
        # 1,000 images are about 10**8 image-neighbours, a minute and a half on an H100
        "full": SenseBudget(
            n_select=5_000, n_report=10_000,
            climb=SenseConfig(schedule="fc", steps=10, block=10**6, neighbours=1000), climb_seeds=3,
            random90=dict(steps=90, block=10, neighbours=500), backprop_epochs=10, random_select=5_000,
            random80=SenseConfig(schedule="random", steps=2000, block=3, neighbours=30),
            steepest=dict(steps=3, n_select=1_000), anneal=dict(steps=3000, neighbours=500),
            long_fc=SenseConfig(schedule="fc", steps=30_000, block=10**6, neighbours=100)),
    },
    "robustness": {
        "quick": RobustnessBudget(
            train_size=20_000, epochs=5, augment=False, mnist_train=25_000, mnist_epochs=2, n_eval=400, repeats=3,
            grids={"synapse_knockout": [0, 0.25, 0.5, 0.8, 1.0], "node_knockout": [0, 0.25, 0.5, 0.8, 1.0],
                   "gaussian": [0, 0.5, 1, 2, 3]}),
        "full": RobustnessBudget(
            train_size=None, epochs=40, augment=True, mnist_train=None, mnist_epochs=10, n_eval=10_000, repeats=5,
            grids={"synapse_knockout": list(_grid(0.1, 1.0)), "node_knockout": list(_grid(0.1, 1.0)),
                   "gaussian": list(_grid(0.25, 3.0))}),
    },
    "self_introspection": {
        "quick": IntrospectionBudget(
            mnist_train=20_000, cifar_train=8_000,
            net1=TrainConfig(model="elu_mlp", epochs=6, cycle_epochs=1, lr=1e-3, weight_decay=0.0,
                             loss="mse_sigmoid", schedule="triangular"),
            net2=TrainConfig(model="allconv_elu", model_kwargs=dict(width=0.25, dense=128), epochs=4, cycle_epochs=1,
                             lr_decay=1.0, lr=1e-3, weight_decay=0.0, loss="bce_sigmoid", schedule="triangular",
                             augment=False),
            autoencoder=AutoencoderConfig(epochs=8), estimator=EstimatorConfig(epochs=8), record_samples=300),
        "full": IntrospectionBudget(
            mnist_train=None, cifar_train=None,
            net1=TrainConfig(model="elu_mlp", epochs=60, cycle_epochs=2, lr=1e-3, weight_decay=0.0,
                             loss="mse_sigmoid", schedule="triangular"),
            # half the filters: a forward pass of the paper's width costs 521 MFLOP an image, of
            # this one 132 (torch.utils.flop_counter), so that 60 epochs train on a 2-core CPU
            net2=TrainConfig(model="allconv_elu", model_kwargs=dict(width=0.5), epochs=60, cycle_epochs=2,
                             lr_decay=0.95, lr=1e-3, weight_decay=0.0, loss="bce_sigmoid", schedule="triangular", augment=True),
            autoencoder=AutoencoderConfig(epochs=40), estimator=EstimatorConfig(epochs=40), record_samples=1000),
    },
    # sense80*: steps of 30 neighbours (more steps of fewer neighbours climb further per evaluation).
    # On an H100 a step of 30 costs ~0.03 s on 2,000 frames averaged over the layers
    # (results/bench/bench_sense_step_cuda.json), ~0.06 s on 5,000
    "car_racing": {
        "quick": CarBudget(
            tracks={"train": 8, "val": 2, "test": 2}, demo=DemoConfig(steps=400, noise=0.1), drive_tracks=4,
            levels=(0, 50, 90, 95, 99), n_seeds=1, psiren=PSirenConfig(model="car_net", n1=3, n2=6, n3=1, n4=3),
            neighbours=200,
            sense80=SenseConfig(schedule="random", layers=("1.0", "2.0"), steps=30, block=3, neighbours=30),
            sense80_all=SenseConfig(schedule="random", steps=60, block=3, neighbours=30),
            sense80_ce=SenseConfig(schedule="random", steps=60, block=3, neighbours=30, fitness="cross_entropy"),
            select=500, dagger=DaggerConfig(rounds=2, tracks_per_round=4, steps=400, epochs=3), dagger_val_steps=400,
            lap_frames=600, lap_scale=3),
        "full": CarBudget(
            tracks={"train": 40, "val": 8, "test": 8}, demo=DemoConfig(steps=1000, noise=0.1), drive_tracks=10,
            levels=tuple(LEVELS_FIG2B), n_seeds=3, psiren=PSirenConfig(model="car_net", n1=10, n2=40, n3=3, n4=6),
            neighbours=1000,
            sense80=SenseConfig(schedule="random", layers=("1.0", "2.0"), steps=2000, block=3, neighbours=30),
            sense80_all=SenseConfig(schedule="random", steps=2000, block=3, neighbours=30),
            sense80_ce=SenseConfig(schedule="random", steps=4000, block=3, neighbours=30, fitness="cross_entropy"),
            select=5_000, dagger=DaggerConfig(rounds=5, tracks_per_round=10, steps=1000, epochs=3),
            dagger_val_steps=1000, lap_frames=None, lap_scale=2),
    },
}


# Where a chapter's full profile differs from its paper's scale, in a sentence its page's provenance
# note and the landing page show (a chapter not listed runs at the paper's scale).
SCALE_NOTES = {
    "robustness": "the networks are AlexNet and VGG-16 scaled for CIFAR-10 (32 x 32 images, narrower layers), "
                  "trained here, in place of the ImageNet AlexNet and VGG-16 of the paper; torchvision's ImageNet "
                  "networks run in the last section where their weights and an ImageNet validation folder are "
                  "given.",
    "self_introspection": "Net2 has half the paper's filters (48 and 96 per convolution in place of 96 and 192), "
                          "a quarter of the multiply-adds per image, so that its 60 epochs of training fit a 2-core CPU.",
}


def budgets(chapter: str, profile: str):
    """The budget of ``chapter`` in ``profile`` (``"quick"`` or ``"full"``)."""
    if chapter not in BUDGETS:
        raise ValueError(f"unknown chapter {chapter!r}; chapters with budgets: {', '.join(BUDGETS)}")
    return BUDGETS[chapter][check_profile(profile)]
