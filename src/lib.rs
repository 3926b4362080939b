//! sentry: watches Git repositories and deploys when they change.
//!
//! A run flows one way: [`config`] -> [`state`] -> [`forge`] (check) -> [`plan`] -> [`deploy`]
//! -> record -> [`report`]. The pipeline is the only module that knows that order; the
//! commands are the only ones that print or pick an exit code (ARCHITECTURE.md).

// Every public item says in a line what it is for (the house rule, kept by the compiler).
#![warn(missing_docs)]

pub mod app;
mod cli;
mod commands;
pub mod config;
pub mod deploy;
pub mod error;
pub mod forge;
mod fsutil;
mod gitcmd;
pub mod http;
pub mod logging;
mod metrics;
pub mod model;
mod notify;
mod pipeline;
mod plan;
mod report;
pub mod secret;
pub mod signals;
pub mod state;
mod sys;
mod text;
pub mod time;
mod workdir;
