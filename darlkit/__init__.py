"""darlkit: Diffusion Adversarial Representation Learning (DARL) as reusable PyTorch parts.

The package follows the method from the bottom up::

    layers -> diffusion -> nets -> model -> training

with ``data``, ``synthesis``, ``preparation``, ``metrics``, ``losses``, ``kernels``, ``flops`` and
``baselines`` (classical filters to compare with) each in their own subpackage. Every public
symbol of the subpackages is re-exported here, so
``from darlkit import SwitchableSPADE, GaussianDiffusion, DARL`` works.
"""

from darlkit._version import __version__
from darlkit import polyphase, layers, diffusion, losses, metrics, nets, model, flops, data, synthesis, preparation, kernels, training
from darlkit import baselines
from darlkit.polyphase import *  # noqa: F401,F403
from darlkit.layers import *  # noqa: F401,F403
from darlkit.diffusion import *  # noqa: F401,F403
from darlkit.losses import *  # noqa: F401,F403
from darlkit.metrics import *  # noqa: F401,F403
from darlkit.nets import *  # noqa: F401,F403
from darlkit.model import *  # noqa: F401,F403
from darlkit.flops import *  # noqa: F401,F403
from darlkit.data import *  # noqa: F401,F403
from darlkit.synthesis import *  # noqa: F401,F403
from darlkit.preparation import *  # noqa: F401,F403
from darlkit.kernels import *  # noqa: F401,F403
from darlkit.training import *  # noqa: F401,F403
from darlkit.baselines import *  # noqa: F401,F403

__all__ = [
    "__version__",
    *polyphase.__all__,
    *layers.__all__,
    *diffusion.__all__,
    *losses.__all__,
    *metrics.__all__,
    *nets.__all__,
    *model.__all__,
    *flops.__all__,
    *data.__all__,
    *synthesis.__all__,
    *preparation.__all__,
    *kernels.__all__,
    *training.__all__,
    *baselines.__all__,
]
