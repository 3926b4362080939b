//! sentry: watches Git repositories and deploys when they change.
//!
//! A run flows one way: [`config`] -> [`state`] -> [`forge`] (check) -> [`plan`] -> [`deploy`]
//! -> [`state`] -> [`report`]. [`run`] is the only module that knows that order; [`app`] turns
//! the command line into calls to it.

// Every public item says in a line what it is for (the house rule, kept by the compiler).
#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod config;
pub mod deploy;
pub mod error;
pub mod forge;
pub mod fsutil;
pub mod git;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod plan;
pub mod report;
pub mod run;
pub mod secret;
pub mod signals;
pub mod state;
pub mod time;
