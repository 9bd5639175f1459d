from .backbones import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .with_deployed_dgconv import with_deployed_dgconv  # noqa: F401
