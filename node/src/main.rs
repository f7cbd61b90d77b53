//! The `pvl` binary (being built; see issue 4).

fn main() {}
