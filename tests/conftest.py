import os
import sys
from pathlib import Path

# Tests run from a checkout; make the packages importable even before `pip install -e .`.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Two cores: keep torch from oversubscribing while other test processes run.
os.environ.setdefault("OMP_NUM_THREADS", "2")

# Tests must pass on a loaded machine: Hypothesis's wall-clock checks (per-example deadline, "data generation
# too slow") measure the machine's load, not the code, so they are off; the examples themselves still run.
try:
    from hypothesis import HealthCheck, settings

    settings.register_profile("loaded-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("loaded-machine")
except ImportError:  # hypothesis is a dev dependency; tests that use it import it themselves
    pass
