"""rftwin calibration campaigns: fit the twin's materials to measurements, learn normal statistics."""
