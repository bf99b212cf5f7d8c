"""alignkit: preference-alignment studies on SLURM, from one YAML sweep spec.

The login-node half. It imports only light libraries so the CLI answers at once; everything that
needs torch lives in the compute-node half, `jobs/`.
"""

__version__ = "0.1.0"
