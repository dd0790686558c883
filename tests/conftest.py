import os

# Triton kernels run on CPU tensors through the interpreter; it is read once, at import.
os.environ.setdefault("TRITON_INTERPRET", "1")

from hypothesis import settings  # noqa: E402

settings.register_profile("ci", max_examples=30, deadline=None, database=None)
settings.load_profile("ci")
