//! Integration tests: drive the real `sentry` binary against loopback servers and temp dirs.

mod support;

mod cli;
mod config;
mod state;
