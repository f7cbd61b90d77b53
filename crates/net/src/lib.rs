//! pvl-net: libp2p networking for pvl (being built; see issue 4).
