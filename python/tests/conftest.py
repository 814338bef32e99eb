import os
import sys

# The package is built into build/python (see python/CMakeLists.txt); PYTHONPATH may point
# elsewhere (another build directory), in which case it wins.
_build = os.path.join(os.path.dirname(__file__), "..", "..", "build", "python")
if os.path.isdir(_build) and not any(p.endswith(os.path.join("build", "python")) for p in sys.path):
    sys.path.append(os.path.abspath(_build))
