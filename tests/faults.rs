//! Faults: damaged data, crashes, full disks, concurrent prune (being written).
