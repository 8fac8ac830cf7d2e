"""aann: the mechanics under the AANN book.

Sparse ternary networks and p-SIREN (``ternary``, ``pruning``, ``psiren``), the networks
(``models``), data through torchvision with an offline mirror (``data``), training and evaluation
(``training``), a configuration-keyed model cache (``cache``) and each chapter's results file
(``results``); Cheney's perturbations (``perturbations``, ``robustness``); Pardo's
self-introspection (``activations``, ``infovae``, ``introspection``, ``adversarial``, ``detection``).
The chapters in ``book/`` import from here and tell the story.
"""

__version__ = "0.1.0"
