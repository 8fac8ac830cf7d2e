r"""Internal perturbations of one layer (Cheney, Schrimpf & Kreiman), undone exactly, and sweeps
that evaluate many perturbed copies of a network per forward pass.

A *fault* names one layer (a ``Conv2d`` or ``Linear`` of any ``nn.Module``, by its name in
``named_modules``), a treatment, an amount and a repeat index; its random draws depend only on
those (and a base seed), never on what ran before. The treatments act on the weights $W$ and
biases $b$ *leading into* the layer, $W$ and $b$ separately:

- ``synapse_knockout`` (fraction $f$): $\operatorname{round}(f\,|W|)$ weights and
  $\operatorname{round}(f\,|b|)$ biases, drawn uniformly, set to 0;
- ``node_knockout`` (fraction $f$): $\operatorname{round}(f\,n)$ of the layer's $n$ units (output
  channels) lose every incoming weight and their bias;
- ``gaussian`` (magnitude $m$): $W \leftarrow W + \varepsilon$, $\varepsilon \sim
  \mathcal N(0, (m\,\sigma_W)^2)$, with $\sigma_W$ the standard deviation of the layer's unperturbed
  weights; the same for $b$ with $\sigma_b$.

For the sparse ternary layers of part A, $W$ is the weight the layer computes with,
$\alpha\,t$, not the latent weight behind it (knocking a latent weight to 0 would make it
$\operatorname{sign}(0) = +1$).

A sweep does not deep-copy the network per fault. For each batch of images and each layer it runs
the network once up to the layer, computes the layer's output for $K$ perturbed weight sets at once
(one convolution with $K$ times the output channels, or one matrix product), and sends the $K$
outputs on through the rest of the network as one batch of $K \times n$ images. That is exact for
any network whose path from the layer to the output handles each image separately (every
feed-forward net of this book, torchvision's AlexNet and VGG); a skip connection around the layer
would break it, and then ``copies_per_pass=1`` still works. A node knockout does not even compute
the layer: its output is the clean one (recorded in the pass that gives the shared prefix) with the
knocked-out units set to 0.
"""

from .faults import (KNOCKOUTS, TREATMENTS, Fault, check_amount, fault_weights, faults_grid, layer_name, layer_weights,
                     perturb, perturbed_weights, weight_layer, weight_layers)
from .statistics import weight_statistics
from .sweeps import naive_sweep, sweep, topk_accuracy

__all__ = ["TREATMENTS", "KNOCKOUTS", "Fault", "check_amount", "faults_grid", "weight_layers", "layer_name", "weight_layer",
           "layer_weights", "perturbed_weights", "fault_weights", "perturb", "topk_accuracy", "naive_sweep", "sweep",
           "weight_statistics"]
