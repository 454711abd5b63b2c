"""The variants of the staged-quality comparison: the same scene and total steps trained as
(a) pretrain only, (b) pretrain + entropy, (c) pretrain + entropy + sugar with SuGaR's terms alone,
(d) the same stages with the surface terms as well (depth-normal consistency, flattening), and the
configuration each is trained with."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

from models.mesh.run_io import RunInputError

BENCH_VARIANTS = ("a_pretrain", "b_pretrain_entropy", "c_pretrain_entropy_sugar", "d_staged_surface")
VARIANT_LABELS = {"a_pretrain": "(a) plain 3DGS", "b_pretrain_entropy": "(b) 3DGS + entropy",
                  "c_pretrain_entropy_sugar": "(c) staged, SuGaR's terms", "d_staged_surface": "(d) staged + surface terms"}
# what each variant sets over the config: (c) SuGaR's regularizers alone, their SDF on the default
# depth (auto: the LiDAR's in a run with --lidar), (d) with the surface terms at these weights, whatever
# the config's defaults are; the benchmark's own overrides come after them
SUGAR_ONLY = ("sugar.depth_normal_weight=0", "sugar.flatten_weight=0", "sugar.sdf_depth=auto")
# chosen on the default street with LiDAR at 1,500 steps (docs/results.md, "The surface terms")
SURFACE_TERMS = ("sugar.depth_normal_weight=0.03", "sugar.flatten_weight=10", "sugar.sdf_depth=expected")
VARIANT_OVERRIDES = {"c_pretrain_entropy_sugar": SUGAR_ONLY, "d_staged_surface": SURFACE_TERMS}
SEED_STEPS, QUICK_STEPS = 15_000, 1_500
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def bench_schedules(total: int) -> Dict[str, list]:
    """The three schedules with the same total steps. (c) keeps the seed's 7 : 2 : 6 proportions
    (7,000 / 2,000 / 6,000 for 15,000; 700 / 200 / 600 for 1,500); (b) shares (c)'s pretrain and spends
    the rest in the entropy stage, so (b) vs (c) isolates the sugar stage and (a) vs (b) the entropy stage."""
    if total < 15:
        raise RunInputError(f"total={total}: expected at least 15 steps (three stages of >= 2 steps)", param="total")
    pre, ent = round(total * 7 / 15), round(total * 2 / 15)
    staged = [{"name": "pretrain", "steps": pre}, {"name": "entropy", "steps": ent},
              {"name": "sugar", "steps": total - pre - ent}]
    return {
        "a_pretrain": [{"name": "pretrain", "steps": total}],
        "b_pretrain_entropy": [{"name": "pretrain", "steps": pre}, {"name": "entropy", "steps": total - pre}],
        "c_pretrain_entropy_sugar": staged,
        "d_staged_surface": [dict(s) for s in staged],
    }


def schedule_override(schedule: list) -> str:
    def entry(s):
        hooks = s.get("hooks") or {}
        h = (",hooks:{" + ",".join(f"{k}:{str(bool(v)).lower()}" for k, v in hooks.items()) + "}") if hooks else ""
        return f"{{name:{s['name']},steps:{s['steps']}{h}}}"
    return "optim.stage_schedule=[" + ",".join(entry(s) for s in schedule) + "]"


def compose_config(config_name: str, overrides: Sequence[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


def configured_hooks(config_name: str, overrides: Sequence[str] = ()) -> Dict[str, dict]:
    """Each configured stage's own hooks (by stage name), which the benchmark's schedules keep: a
    config that turns densification off in its entropy stage benchmarks with it off."""
    from omegaconf import OmegaConf

    cfg = compose_config(config_name, overrides)
    return {str(s["name"]): dict(s.get("hooks") or {})
            for s in OmegaConf.to_container(cfg.optim.stage_schedule, resolve=True)}
