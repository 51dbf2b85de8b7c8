"""Tortoise models, one module per domain, plus the migrations that build their tables."""

MODEL_MODULES = [
    "models.workspace",
    "models.change",
    "models.timeline",
    "models.incident",
    "models.agent",
    "models.policy",
    "models.approval",
]
