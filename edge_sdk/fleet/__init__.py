"""Fleet: signed model bundles, A/B model slots, the device agent, rollouts and OTA-engine adapters.

- :mod:`edge_sdk.fleet.keys`: Ed25519 key pairs and trusted keys (``EDGE_SDK_TRUSTED_KEYS``);
- :mod:`edge_sdk.fleet.bundle`: ``.edgebundle`` build / verify / extract;
- :mod:`edge_sdk.fleet.slots`: ``STATE_DIR/slots/{a,b}`` + ``STATE_DIR/active``, crash-safe activation;
- :mod:`edge_sdk.fleet.mender`: the Mender update module's states (``scripts/mender/edge-model``).

Nothing is imported here: ``cryptography`` and ``paho-mqtt`` (the ``fleet`` extra) load only when used.
"""
