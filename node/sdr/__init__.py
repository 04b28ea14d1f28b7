"""SDR backends behind one interface: tune, set gain, read N complex samples with a timestamp, close."""
