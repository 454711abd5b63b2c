"""Registers the training config's schema (models.trainers.config_schema) in Hydra's ConfigStore.

Hydra imports every module of the `hydra_plugins` namespace package before it composes a config, so
the primary configs can name `omnire_training_schema` in their defaults in any process: omnire-train,
a sweep job, or a script that composes with hydra.compose.
"""
from models.trainers.config_schema import register_schema

register_schema()
