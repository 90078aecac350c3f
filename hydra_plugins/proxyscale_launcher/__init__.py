"""Hydra launcher `hydra/launcher=submitit_local` (conf/hydra/launcher/submitit_local.yaml):
hydra-submitit-launcher's local launcher with a parallelism limit. Hydra only instantiates
plugins from the hydra_plugins package; the class itself lives in proxyscale/launch.py."""
from proxyscale.launch import SubmititLocalLauncher  # noqa: F401
