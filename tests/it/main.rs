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
mod monitoring;
mod operator;
mod reliability;
mod rollback;
mod run;
mod security;
mod shards;
mod state;
mod statuses;
mod support_selftest;
mod tags;
mod teams;
mod ux;
