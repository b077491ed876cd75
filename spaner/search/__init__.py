"""Search: score calibration across modalities, the one calibrated merge, spoken queries."""
