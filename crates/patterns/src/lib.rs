//! pvl-patterns: coordination patterns as sans-I/O state machines (being built; see issue 5).
