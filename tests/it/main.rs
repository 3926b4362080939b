//! Integration tests: drive the real `sentry` binary against loopback servers and temp dirs.

mod support;

mod bounds;
mod cli;
mod config;
mod deploy;
mod faults;
mod filters;
mod forge;
mod hostile;
mod http;
mod operator;
mod reliability;
mod rollback;
mod run;
mod security;
mod shards;
mod state;
mod support_selftest;
mod tags;
mod ux;
