"""Many scenes in one command: Hydra multirun on one workstation or on SLURM (through submitit).

naming.py      the per-scene output folder name (the `scene_name` resolver of hydra.sweep.subdir)
scene_list.py  `scene_list=FILE` on the command line -> a `scene.path=a,b,...` sweep
job.py         one scene inside a sweep: status file, failure report, preemption -> checkpoint + requeue
launch.py      capacity of a workstation, output-folder plan, waiting for jobs (used by the launchers in
               hydra_plugins/omnire_sugar_launchers)
gather.py      one table over a sweep's scenes (omnire-gather)
"""
