//! The end-to-end harness: a fleet of processes in one namespace.
