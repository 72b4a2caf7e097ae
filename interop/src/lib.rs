//! Interop harness (network namespaces, strongSwan peer).
