"""KerasTuner oracles for the searches (growth, pruning, location-direction).

Empty in this release: the oracles are the work of the growth/pruning NAS
and NHN issues. Installed as `spzoo.tuners`.
"""
