"""Error templates: mask variable parts of messages, mine recurring patterns (Drain) with stable ids."""

from .api import MiningResult, TemplateRow, alias_rows, error_text, mine_templates
from .mask import mask
from .miner import TemplateMiner, template_id

__all__ = [
    "MiningResult",
    "TemplateMiner",
    "TemplateRow",
    "alias_rows",
    "error_text",
    "mask",
    "mine_templates",
    "template_id",
]
