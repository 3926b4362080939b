//! Deploy engine: clone the QA repository, run its commands, group strategies and timeouts.
