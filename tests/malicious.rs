//! Malicious repositories and restore targets (being written).
