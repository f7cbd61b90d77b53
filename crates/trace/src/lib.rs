//! pvl-trace: the sled-backed trace graph store (being built; see issue 3).
