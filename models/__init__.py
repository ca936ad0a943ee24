"""What a network is: search spaces, structures, their modules and exact counts, the ZenNet zoo.

    from hwnas.models import get_space
    space = get_space("cifar32")
    arch = space.parse("SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,1,8,1)SuperConvK1BNRELU(16,64,1,1)")
    space.counts(arch).params, space.build(arch)
"""

from hwnas.models.spaces.base import Space, get_space, register_space, space_names
from hwnas.models.structure import Structure, parse

__all__ = ["Space", "Structure", "get_space", "parse", "register_space", "space_names"]
