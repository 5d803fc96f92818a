"""Configuration: the structured schema of every config group (:mod:`.schema`), the checks every
command runs first (:mod:`.validation`) and the eval-time sweep grid (:mod:`.grid`)."""

from mjexp.config.schema import register_configs
from mjexp.config.validation import ConfigError, validate

__all__ = ["ConfigError", "register_configs", "validate"]
