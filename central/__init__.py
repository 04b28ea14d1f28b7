"""rftwin central unit: ingest, digital twin, detection, alarms and the operator dashboard."""
