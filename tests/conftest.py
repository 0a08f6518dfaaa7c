"""Hypothesis profiles for the whole suite, chosen by the environment variable
HYPOTHESIS_PROFILE (default "default"):

* ``default``: quick, a few examples per property, for every local run;
* ``ci``: the same size, derandomized (the same examples on every run, so CI is reproducible),
  printing the reproduction blob of a failure;
* ``thorough``: many examples, for a long run before a release or after changing a rule.

No deadline anywhere: timings on shared CI machines vary too much to be a test.
"""
import os

from hypothesis import settings

settings.register_profile("default", max_examples=10, deadline=None)
settings.register_profile("ci", max_examples=10, deadline=None, derandomize=True,
                          print_blob=True)
settings.register_profile("thorough", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
