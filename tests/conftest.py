import os
import sys
from pathlib import Path

# Tests run from a checkout; make the packages importable even before `pip install -e .`.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Two cores: keep torch from oversubscribing while other test processes run.
os.environ.setdefault("OMP_NUM_THREADS", "2")
