//! Planning: a pure function from configuration, heads and state to jobs.
