"""Contracts that several sides of rftwin share: file formats, typed config fields, service-manager and
journal conventions, the discovery record. A leaf package: it imports nothing of the project, so node,
central, calibration, evaluation, models and sim may all import it (docs/architecture.md)."""
