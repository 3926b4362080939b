//! `sentry status` through the real binary.
