"""The relay's app for granian: the bench's server comparison, not a way to run the relay.

The same app `relay serve` hands uvicorn (``create_app`` on the config named by
``BENCH_RELAY_CONFIG``, logging and masking set up as `relay serve` does). What it lacks
under granian is the receiver's connection hardening (header and body deadlines, the
connection cap with its JSON 503, 431), which lives in uvicorn's protocol
(``relay/http_protocol.py``); see the bench README.
"""

from __future__ import annotations

import gc
import os

from relay.app import create_app
from relay.config import load_config
from relay.logs import REDACTOR, configure

_path = os.environ["BENCH_RELAY_CONFIG"]
_config = load_config(_path)
configure(_config.settings.logging.level, _config.settings.logging.format)
REDACTOR.update(_config.secrets, _config.settings.logging.mask_hwid)
app = create_app(_config, config_path=_path, listen_host="127.0.0.1")
gc.collect()
gc.freeze()  # as `relay serve` does
