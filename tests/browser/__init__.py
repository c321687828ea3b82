"""Browser tests: JupyterLab driven in Chromium as a learner would (see conftest.py)."""
