"""RTMobile training tools: BSP pruning, ADMM, export to the BSPC format.

Submodules are imported explicitly (``from rtmobile_train import bsp, bspc``). Nothing is
imported here on purpose: ``bsp`` and ``bspc`` need only numpy, while the training modules need
torch, and importing this package must not pull torch in.
"""
