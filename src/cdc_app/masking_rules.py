"""The masking policy from ``masking.rules_file`` and ``masking.hmac_key``.

Loaded with the rest of the configuration (``config check`` builds it too), because a
rules file that cannot be applied must stop the pipeline before any data leaves it.
"""

from __future__ import annotations

from collections.abc import Mapping

from cdc_app.config import ConfigError, read_yaml
from cdc_app.settings import MaskingSettings
from cdc_domain.masking import MaskingConfigError, MaskingPolicy

__all__ = ["masking_policy"]


def masking_policy(settings: MaskingSettings) -> MaskingPolicy:
    key = settings.hmac_key.encode() if settings.hmac_key else None
    rules: object = {}
    if settings.rules_file is not None:
        try:
            rules = read_yaml(settings.rules_file) or {}
        except ConfigError as exc:
            raise ConfigError(f"masking.rules_file: {p}" for p in exc.problems) from None
    if not isinstance(rules, Mapping):
        raise ConfigError([f"masking.rules_file: {settings.rules_file}: expected a mapping"])
    try:
        return MaskingPolicy.from_config(rules, key)
    except MaskingConfigError as exc:
        raise ConfigError([str(exc)]) from None
