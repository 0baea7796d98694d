"""Synthetic chest radiographs with ground truth: the data behind `vigil phantom`.

Pure numpy, Pillow and pydicom (no web framework, no database). Entry points:
``PhantomOptions`` and ``generate`` (generator.py); the tables' columns are in manifest.py.
"""

from service.training.phantom.generator import PhantomOptions, RunSummary, generate

__all__ = ["PhantomOptions", "RunSummary", "generate"]
