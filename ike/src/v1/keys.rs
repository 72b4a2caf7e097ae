//! IKEv1 key material (RFC 2409 section 5 and Appendix B) for pre-shared keys.
