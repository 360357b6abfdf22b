//! The conformance cases every server on the codec passes.
