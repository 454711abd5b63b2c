"""Driving scenes: a synthetic street generator and a reader of drivestudio's processed layout.

    prepare_scene(scene_cfg) -> Path         generate (synthetic) or validate (processed) a scene folder
    load_scene(scene_cfg) -> DrivingScene    prepare and load it: views, LiDAR, tracks, GT
    load_imperfections(root), true_camera_to_world(scene, view)   a synthetic scene's true poses and exposure
"""
from .config import compose_scene_config, load_options, load_scene, prepare_scene, synthetic_params
from .driving_dataset import DrivingScene, InstanceTrack, LidarPoints, LoadOptions, View
from .imperfections import (Imperfections, load_imperfections, true_camera_to_world, true_camera_to_world_np,
                            true_exposure, true_vignetting)
from .processed_layout import SceneFormatError
from .synthetic import SyntheticParams, generate

__all__ = ["prepare_scene", "load_scene", "compose_scene_config", "load_options", "synthetic_params", "DrivingScene", "View",
           "InstanceTrack", "LidarPoints", "LoadOptions", "SceneFormatError", "SyntheticParams", "generate",
           "Imperfections", "load_imperfections", "true_camera_to_world", "true_camera_to_world_np", "true_exposure",
           "true_vignetting"]
