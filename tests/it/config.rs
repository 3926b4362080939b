//! Configuration loading and `sentry validate`.
