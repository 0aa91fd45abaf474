"""The training layer: one loop for every method and modality (it knows no domain).

``relpos.train`` is this package *and* the :func:`relpos.train.api.train` function: calling
``relpos.train(cfg, dataset, out_dir)`` trains, while ``relpos.train.loop``,
``relpos.train.config`` etc. stay reachable as submodules (a plain function exported under the
package's own name would hide them).
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _TrainPackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from relpos.train.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _TrainPackage
